"""Raw tables: one Parquet table per synced resource kind, one partition per organization.

A single multi-asset pulls them all in one step, so one run is one consistent snapshot and the
membership read can reuse the group list and storage keys instead of asking the API again.

Every reconciliation rule the sync applies before publishing (azdo_pipeline/sync/reconcile.py) is
an asset check here, ERROR severity and blocking: a snapshot that fails one is never published and
the access graph is not built on it. Known errors end the run with a plain cause and what to do
(azdo_pipeline/failures.py).
"""


from collections.abc import Iterable, Iterator

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from azdo_pipeline import auditlog, schemas
from azdo_pipeline.failures import plain_failures
from azdo_pipeline.partitions import org_partitions
from azdo_pipeline.resources import AzdoPipeline
from azdo_pipeline.store import new_snapshot_id
from azdo_pipeline.sync.errors import ReconciliationError
from azdo_pipeline.sync.full import SyncReport
from azdo_pipeline.sync.reconcile import RuleResult

RAW_GROUP = "azdo_raw"
OWNERS = ["team:azdo-pipeline"]
# Bump when what the sync writes changes (a column, a rule): Dagster then marks the assets stale.
CODE_VERSION = "2"

_SUBJECTS = ("users", "service_accounts", "groups", "service_principals")
# Reconciliation rule -> (the tables it is checked on, what it asserts); check name `{table}_{rule}`.
RULES: dict[str, tuple[tuple[str, ...], str]] = {
    "unique_key": (tuple(schemas.RAW_TABLES), "No key repeats (Graph's known page repeats are kept once)."),
    "required_values": (tuple(schemas.RAW_TABLES), "No null in a column the API always fills."),
    "total_count": (("users",), "User entitlements read = the entitlement list's totalCount."),
    "entitlements_matched": (("users",), "Every user entitlement belongs to a listed Graph user."),
    "listed_with_descriptor": (("users",), "No Graph user was listed without a descriptor."),
    "groups_answered": (("memberships",), "Every group asked for in a batched membership read was answered, once."),
    "member_ids_resolved": (("memberships",), "Every member id of a batched membership read resolved."),
    "members_known": (("memberships",), "Every edge's container is a synced group and its member a synced "
                                        "user, service account, service principal or group."),
    "graph_repeats_dropped": (_SUBJECTS, "Rows a Graph list repeated across pages, kept once (counted; warns)."),
}
WARN_RULES = {"graph_repeats_dropped"}


def check_name(table: str, rule: str) -> str:
    return f"{table}_{rule}"


def column_schema(schema: pa.Schema) -> dg.TableSchema:
    return dg.TableSchema(columns=[
        dg.TableColumn(f.name, str(f.type), description=(f.metadata or {}).get(b"description", b"").decode())
        for f in schema])


RAW_SPECS = [
    dg.AssetSpec(name, group_name=RAW_GROUP, partitions_def=org_partitions, owners=OWNERS, code_version=CODE_VERSION,
                 description=(schema.metadata or {}).get(b"description", b"").decode(),
                 kinds={"azure", "parquet"}, tags={"azdo/layer": "raw"},
                 metadata={"dagster/column_schema": column_schema(schema)})
    for name, schema in schemas.RAW_TABLES.items()
]
# Blocking: the access graph (downstream) is not built when one fails with ERROR severity.
AUDIT_SPEC = dg.AssetSpec(
    auditlog.TABLE, group_name=RAW_GROUP, partitions_def=org_partitions, owners=OWNERS, code_version=CODE_VERSION,
    description=(schemas.AUDIT_LOG.metadata or {}).get(b"description", b"").decode(),
    kinds={"azure", "parquet"}, tags={"azdo/layer": "raw"},
    metadata={"dagster/column_schema": column_schema(schemas.AUDIT_LOG)})
RAW_CHECKS = [dg.AssetCheckSpec(check_name(table, rule), asset=table, description=desc,
                                blocking=rule not in WARN_RULES)
              for rule, (tables, desc) in RULES.items() for table in tables]


def check_results(results: Iterable[RuleResult], log: dg.DagsterLogManager) -> Iterator[dg.AssetCheckResult]:
    """One asset check result per reconciliation rule outcome (ERROR severity, WARN for counts)."""
    declared = {spec.name for spec in RAW_CHECKS}
    for r in results:
        name = check_name(r.table, r.rule)
        if name not in declared:  # a rule added to reconcile.py but not to RULES: still in the log
            log.warning(f"reconciliation rule {r.rule} on {r.table} has no asset check: "
                        f"{'passed' if r.passed else 'FAILED'} ({r.count} {r.unit})")
            continue
        severity = dg.AssetCheckSeverity.WARN if r.rule in WARN_RULES else dg.AssetCheckSeverity.ERROR
        yield dg.AssetCheckResult(asset_key=r.table, check_name=name, passed=r.passed, severity=severity,
                                  metadata={"count": r.count, "unit": r.unit, "detail": r.detail or "none",
                                            "examples": ", ".join(r.examples) or "none"})


def _preview(path: str) -> dg.MetadataValue:
    batch = next(pq.ParquetFile(path).iter_batches(batch_size=5), None)
    if batch is None or batch.num_rows == 0:
        return dg.MetadataValue.md("_empty_")
    return dg.MetadataValue.md(batch.to_pandas().to_markdown(index=False))


@dg.multi_asset(specs=[*RAW_SPECS, AUDIT_SPEC], check_specs=RAW_CHECKS, name="azdo_raw_sync", pool="azdo_api",
                op_tags={"azdo/kind": "sync"})
def azdo_raw_sync(context: dg.AssetExecutionContext, azdo: AzdoPipeline) -> Iterator[object]:
    """Sync of one organization into one snapshot: a full sync (every raw table, streamed page by page) or,
    in runs tagged `azdo/sync_mode: incremental` of organizations with `incremental_sync` on, an
    incremental one from the audit log (equal to a full sync; a full sync when that cannot be proven,
    saying why in the metadata). Organizations with `incremental_sync` on also append their audit log."""
    org = context.partition_key
    mode = context.run.tags.get("azdo/sync_mode", "full")
    with plain_failures(context.log):
        org_cfg = azdo.org(org)
        simulated = org_cfg.simulated  # simulator data is marked wherever it lands
        snapshot = new_snapshot_id(run_id=context.run.run_id)
        try:
            report: SyncReport = azdo.sync(org, snapshot, mode)
        except ReconciliationError as exc:  # not published: the checks show which rules failed
            yield from check_results(exc.results, context.log)
            raise
    store = azdo.store()
    for name, schema in schemas.RAW_TABLES.items():
        res = report.tables[name]
        yield dg.MaterializeResult(asset_key=name, metadata={
            "dagster/row_count": res.rows,
            "dagster/column_schema": column_schema(schema),
            "path": dg.MetadataValue.path(str(res.path)),
            "snapshot": snapshot,
            "simulated": simulated,
            "enabled": res.enabled,
            "requests (whole sync)": report.requests,
            "duration_s (whole sync)": round(report.duration_s, 3),
            "stream finished at s (whole sync)": dg.MetadataValue.json(report.stream_seconds),
            "notes (whole sync)": "\n".join(report.notes) or "none",
            "sync mode": report.mode,
            "full sync because": report.fallback_reason or "-",
            "shared with the previous snapshot": name in report.tables_linked,
            "preview": _preview(str(store.snapshot_path(name, org, snapshot))),
        })
    yield from check_results(report.reconciliation, context.log)
    state = (store.latest_manifest(org) or {}).get("incremental") or {}
    yield dg.MaterializeResult(asset_key=auditlog.TABLE, metadata={
        "enabled": org_cfg.incremental_sync,
        "events appended": int(state.get("audit_log_appended") or 0),
        "events read": int(state.get("events_read") or 0),
        "audit cursor": str(state.get("audit_cursor") or "-"),
        "problem": str(state.get("audit_problem") or "-"),
        "path": dg.MetadataValue.path(str(auditlog.org_dir(store.data_dir, org))),
        "simulated": simulated,
    })
    if report.fallback_reason and mode == "incremental":
        context.log.warning(f"incremental sync of {org} ran as a full sync because {report.fallback_reason}")
    for note in report.notes:  # e.g. a missing scope that made the sync slower: says which and the fix
        context.log.warning(note)
    context.log.info(f"synced {org} into snapshot {snapshot}: {report.requests} requests in "
                     f"{report.duration_s:.1f}s; requests by endpoint: {report.requests_by_endpoint}")
