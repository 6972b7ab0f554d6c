"""Provisioning outcomes: one row per request carried out from the inbox, one partition per organization.

The provisioning sensor launches a run of this asset for each batch of requests; the logic (the
ledger, the executor, the outcome table, the membership re-read) is in azdo_pipeline.provisioning.
"""

import dagster as dg
from pydantic import Field

from assets.raw import OWNERS
from azdo_pipeline.partitions import org_partitions
from azdo_pipeline.provisioning.flow import OUTCOMES_TABLE, BatchResult
from azdo_pipeline.resources import AzdoPipeline

PROVISIONING_GROUP = "provisioning"
# Bumped when what a run writes into provisioning_outcomes changes.
PROVISIONING_CODE_VERSION = "1"
TAG_BATCH = "azdo/provisioning_batch"
TAG_REQUESTS = "azdo/request_ids"


class ProvisioningRunConfig(dg.Config):
    """What one provisioning run does (the sensor fills it in; the launchpad can too)."""

    batch_id: str = Field(default="", description="The ledger batch to carry out (made by the provisioning_inbox "
                                                  "sensor). Empty: only re-check pending Entra changes and "
                                                  "republish the outcome table.")
    dry_run: bool = Field(default=False, description="Report the calls each request would make; make none.")


def _table(result: BatchResult) -> dg.MetadataValue:
    lines = ["| request | action | status | API calls | message |", "|---|---|---|---|---|"]
    for row in result.rows[:500]:
        msg = str(row.get("message") or "").replace("|", "\\|").replace("\n", " ")[:160]
        lines.append(f"| {row.get('request_id')} | {row.get('action')} | {row.get('status')} | "
                     f"{row.get('api_call_count')} | {msg} |")
    if len(result.rows) > 500:
        lines.append(f"| … {len(result.rows) - 500} more in the table | | | | |")
    return dg.MetadataValue.md("\n".join(lines))


@dg.asset(partitions_def=org_partitions, group_name=PROVISIONING_GROUP, pool="azdo_api",
          kinds={"azure", "parquet"}, tags={"azdo/layer": "provisioning"}, owners=OWNERS,
          code_version=PROVISIONING_CODE_VERSION)
def provisioning_outcomes(context: dg.AssetExecutionContext, config: ProvisioningRunConfig,
                          azdo: AzdoPipeline) -> dg.MaterializeResult:
    """Every provisioning request of the organization with its current outcome (succeeded,
    already_done, skipped_entra_managed, pending / confirmed / unconfirmed, refused, failed, dry_run):
    request id, action, target, principal, status, message, API calls made, requested / started /
    finished times. A run carries out one batch of inbox requests, then republishes the table."""
    org = context.partition_key
    result = azdo.provision(org, batch_id=config.batch_id, run_id=context.run.run_id, dry_run=config.dry_run)
    for row in result.rows:  # each request is findable by id in the run's log
        context.log.info(f"request {row.get('request_id')}: {row.get('action')} -> {row.get('status')}: "
                         f"{row.get('message') or ''}")
    for note in result.notes:
        context.log.warning(note)
    if result.refreshed_snapshot:
        # The changed groups were read again into a new raw snapshot: memberships shows the change
        # now (the access_graph_after_provisioning sensor rebuilds the graph from it).
        context.log_event(dg.AssetMaterialization(
            asset_key="memberships", partition=org, description="re-read after provisioning",
            metadata={"snapshot": result.refreshed_snapshot, "groups re-read": len(result.refreshed_groups),
                      "groups": dg.MetadataValue.json(result.refreshed_groups[:50])}))
    return dg.MaterializeResult(metadata={
        "dagster/row_count": result.table_rows,
        "path": dg.MetadataValue.path(str(result.path)) if result.path else "not written",
        "batch": config.batch_id or "none (re-check only)",
        "dry_run": config.dry_run,
        "requests in this run": len(result.rows),
        "statuses in this run": dg.MetadataValue.json(result.statuses()),
        "skipped (finished earlier)": len(result.skipped),
        "api calls in this run": sum(int(r.get("api_call_count") or 0) for r in result.rows),
        "pending re-checked": result.rechecked,
        "memberships refreshed": dg.MetadataValue.json(result.refreshed_groups[:50]),
        "requests": _table(result),
        "table": OUTCOMES_TABLE,
    })
