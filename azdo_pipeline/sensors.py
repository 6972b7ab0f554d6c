"""Sensors: keep the organization partitions equal to the configured organizations; turn inbox
requests into provisioning runs."""

from __future__ import annotations

import json
import time

import dagster as dg

from .jobs import access_graph_job, provisioning_job
from .partitions import ORG_PARTITIONS_NAME, org_partitions
from .provisioning.dispatch import RunState, RunView, dispatch
from .provisioning.flow import provisioning_settings, request_parser
from .provisioning.intake import ingest
from .provisioning.ledger import Batch, Ledger
from .resources import AzdoPipeline


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Adds a partition for every configured organization and removes those no longer configured.")
def register_organizations(context: dg.SensorEvaluationContext, azdo: AzdoPipeline) -> dg.SensorResult | dg.SkipReason:
    wanted = {o.name for o in azdo.config().organizations}
    known = set(context.instance.get_dynamic_partitions(ORG_PARTITIONS_NAME))
    add, remove = sorted(wanted - known), sorted(known - wanted)
    if not add and not remove:
        return dg.SkipReason(f"organizations up to date: {', '.join(sorted(wanted)) or 'none'}")
    return dg.SensorResult(dynamic_partitions_requests=[
        org_partitions.build_add_request(add), org_partitions.build_delete_request(remove)])


# ---- provisioning ------------------------------------------------------------------------------
PROVISIONING_TAG_BATCH = "azdo/provisioning_batch"
_ENDED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


def _run_view(instance: dg.DagsterInstance, batch: Batch) -> RunView:
    runs = instance.get_runs(filters=dg.RunsFilter(tags={PROVISIONING_TAG_BATCH: batch.batch_id}), limit=1)
    if not runs:
        return RunView(RunState.NONE)
    run = runs[0]
    return RunView(RunState.ENDED if run.status in _ENDED else RunState.ACTIVE, run.run_id)


def _batch_tags(batch: Batch) -> dict[str, str]:
    ids = ",".join(batch.request_ids)
    return {PROVISIONING_TAG_BATCH: batch.batch_id, "azdo/provisioning_org": batch.org,
            "azdo/requests": str(len(batch.request_ids)),
            # Tag values stay short; the outcome materialization lists every id of the batch.
            "azdo/request_ids": ids if len(ids) <= 1000 else ids[:990].rsplit(",", 1)[0] + ",…"}


@dg.sensor(job=provisioning_job, minimum_interval_seconds=5, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Takes new request files from the provisioning inbox into the ledger (malformed ones go "
                       "to rejected/ with their reason), batches them and launches provisioning_job per batch; "
                       "re-launches the unfinished requests of a run that died.")
def provisioning_inbox(context: dg.SensorEvaluationContext, azdo: AzdoPipeline) -> dg.SensorResult:
    cfg = azdo.config()
    settings = provisioning_settings(cfg, data_dir=azdo.data_dir)
    inbox = settings.inbox().ensure()
    cursor = json.loads(context.cursor) if context.cursor else {}
    with Ledger(inbox.ledger_path) as ledger:
        intake = ingest(inbox, ledger, request_parser(azdo.store(cfg)), known_orgs=cfg.org_names)
        ledger.form_batches(settings.max_batch, skip_orgs={b.org for b in ledger.open_batches()})
        plan = dispatch(ledger, lambda b: _run_view(context.instance, b))
        pending = ledger.counts()
    for run_id in plan.dead_runs:
        run = context.instance.get_run_by_id(run_id)
        if run is not None and run.status not in _ENDED:
            context.instance.report_run_failed(run, "its worker process is gone; the provisioning sensor gave its "
                                                    "unfinished requests to a new batch")
    for name, reason in intake.rejected:
        context.log.warning(f"rejected {name}: {reason}")
    orgs = sorted({b.org for b in plan.launch})
    known = set(context.instance.get_dynamic_partitions(ORG_PARTITIONS_NAME))
    runs = [dg.RunRequest(run_key=b.batch_id, partition_key=b.org, tags=_batch_tags(b),
                          run_config={"ops": {"provisioning_outcomes": {"config": {
                              "batch_id": b.batch_id, "dry_run": settings.dry_run}}}})
            for b in plan.launch]
    cursor = {"ticks": int(cursor.get("ticks", 0)) + 1,
              "received": int(cursor.get("received", 0)) + len(intake.received),
              "duplicates": int(cursor.get("duplicates", 0)) + len(intake.duplicates),
              "rejected": int(cursor.get("rejected", 0)) + len(intake.rejected),
              "requeued": int(cursor.get("requeued", 0)) + len(plan.requeued),
              "ledger": pending}
    skip = None if runs else (f"no new batch: {len(intake.received)} received, {len(intake.duplicates)} duplicates, "
                              f"{len(intake.rejected)} rejected; {plan.waiting} batch(es) running")
    return dg.SensorResult(
        run_requests=runs, cursor=json.dumps(cursor, sort_keys=True), skip_reason=skip,
        dynamic_partitions_requests=[org_partitions.build_add_request([o for o in orgs if o not in known])]
        if set(orgs) - known else None)


@dg.run_status_sensor(run_status=dg.DagsterRunStatus.SUCCESS, monitored_jobs=[provisioning_job],
                      request_job=access_graph_job, default_status=dg.DefaultSensorStatus.RUNNING,
                      description="After a provisioning run re-read the memberships it changed, rebuilds that "
                                  "organization's access graph from the new snapshot.")
def access_graph_after_provisioning(context: dg.RunStatusSensorContext) -> dg.RunRequest | dg.SkipReason:
    org = context.dagster_run.tags.get("dagster/partition")
    if not org:
        return dg.SkipReason("the provisioning run has no organization partition")
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("memberships"), asset_partitions=[org]), limit=1).records
    if not records or records[0].run_id != context.dagster_run.run_id:
        return dg.SkipReason(f"run {context.dagster_run.run_id} changed no membership of '{org}'")
    return dg.RunRequest(run_key=context.dagster_run.run_id, partition_key=org, tags={"azdo/org": org})


@dg.sensor(job=provisioning_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Launches a re-check run (provisioning_job without a batch) for organizations with pending "
                       "Entra changes, every provisioning.recheck_interval_seconds: each becomes confirmed when "
                       "Azure DevOps shows it, or unconfirmed after provisioning.confirm_wait_minutes.")
def provisioning_pending_check(context: dg.SensorEvaluationContext,
                               azdo: AzdoPipeline) -> dg.SensorResult | dg.SkipReason:
    cfg = azdo.config()
    settings = provisioning_settings(cfg, data_dir=azdo.data_dir)
    inbox = settings.inbox()
    if not inbox.ledger_path.exists():
        return dg.SkipReason("no provisioning request received yet")
    last: dict[str, float] = json.loads(context.cursor) if context.cursor else {}
    with Ledger(inbox.ledger_path) as ledger:
        pending = ledger.pending_orgs()
    now = time.time()
    due = sorted(o for o in pending if now - float(last.get(o, 0)) >= settings.recheck_interval.total_seconds())
    if not due:
        return dg.SkipReason(f"pending Entra changes: {pending or 'none'}; next check not due")
    stamp = int(now)
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"recheck:{o}:{stamp}", partition_key=o,
                                    tags={"azdo/provisioning_org": o, "azdo/provisioning_recheck": "true"},
                                    run_config={"ops": {"provisioning_outcomes": {"config": {"batch_id": ""}}}})
                      for o in due],
        cursor=json.dumps({**last, **{o: now for o in due}}, sort_keys=True))
