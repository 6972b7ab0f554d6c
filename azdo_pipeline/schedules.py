"""Schedules (off by default; switch them on in the UI): a daily full sync of every organization, and an
incremental sync every 15 minutes (organizations whose `incremental_sync` setting is off get a full
sync from it instead)."""

from __future__ import annotations

from collections.abc import Callable

import dagster as dg

from .jobs import full_sync_job, incremental_sync_job
from .partitions import ORG_PARTITIONS_NAME
from .resources import AzdoPipeline


def per_org_requests(context: dg.ScheduleEvaluationContext, mode: str,
                     mode_of: Callable[[str], str] | None = None) -> list[dg.RunRequest] | dg.SkipReason:
    """One run per registered organization; `mode_of(org)` overrides `mode` per organization."""
    orgs = context.instance.get_dynamic_partitions(ORG_PARTITIONS_NAME)
    if not orgs:
        return dg.SkipReason("no organizations registered yet (the register_organizations sensor adds them)")
    tick = context.scheduled_execution_time.strftime("%Y%m%dT%H%M")
    out = []
    for org in orgs:
        m = mode_of(org) if mode_of else mode
        out.append(dg.RunRequest(run_key=f"{m}:{org}:{tick}", partition_key=org,
                                 tags={"azdo/sync_mode": m, "azdo/org": org}))
    return out


@dg.schedule(job=full_sync_job, cron_schedule="0 2 * * *", execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.STOPPED,
             description="Daily full sync of every configured organization, one run per organization.")
def daily_full_sync(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest] | dg.SkipReason:
    return per_org_requests(context, "full")


@dg.schedule(job=incremental_sync_job, cron_schedule="*/15 * * * *", execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.STOPPED,
             description="Every 15 minutes: incremental sync from the audit log of each organization whose "
                         "incremental_sync setting is on (a full sync of the others), one run per organization.")
def incremental_sync_every_15_minutes(context: dg.ScheduleEvaluationContext,
                                      azdo: AzdoPipeline) -> list[dg.RunRequest] | dg.SkipReason:
    cfg = azdo.config()
    on = {o.name.lower() for o in cfg.organizations if o.incremental_sync}
    return per_org_requests(context, "incremental", lambda org: "incremental" if org.lower() in on else "full")
