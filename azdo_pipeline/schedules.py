"""Schedules: a daily full sync of every organization (off by default; switch it on in the UI)."""

from __future__ import annotations

import dagster as dg

from .jobs import full_sync_job
from .partitions import ORG_PARTITIONS_NAME


def per_org_requests(context: dg.ScheduleEvaluationContext, mode: str) -> list[dg.RunRequest] | dg.SkipReason:
    orgs = context.instance.get_dynamic_partitions(ORG_PARTITIONS_NAME)
    if not orgs:
        return dg.SkipReason("no organizations registered yet (the register_organizations sensor adds them)")
    tick = context.scheduled_execution_time.strftime("%Y%m%dT%H%M")
    return [dg.RunRequest(run_key=f"{mode}:{org}:{tick}", partition_key=org,
                          tags={"azdo/sync_mode": mode, "azdo/org": org}) for org in orgs]


@dg.schedule(job=full_sync_job, cron_schedule="0 2 * * *", execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.STOPPED,
             description="Daily full sync of every configured organization, one run per organization.")
def daily_full_sync(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest] | dg.SkipReason:
    return per_org_requests(context, "full")
