"""Sensors: keep the organization partitions equal to the configured organizations."""

from __future__ import annotations

import dagster as dg

from .partitions import ORG_PARTITIONS_NAME, org_partitions
from .resources import AzdoPipeline


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Adds a partition for every configured organization and removes those no longer configured.")
def register_organizations(context: dg.SensorEvaluationContext, azdo: AzdoPipeline):
    wanted = {o.name for o in azdo.config().organizations}
    known = set(context.instance.get_dynamic_partitions(ORG_PARTITIONS_NAME))
    add, remove = sorted(wanted - known), sorted(known - wanted)
    if not add and not remove:
        return dg.SkipReason(f"organizations up to date: {', '.join(sorted(wanted)) or 'none'}")
    return dg.SensorResult(dynamic_partitions_requests=[
        org_partitions.build_add_request(add), org_partitions.build_delete_request(remove)])
