"""Raw tables: one Parquet table per synced resource kind, one partition per organization.

A single multi-asset pulls them all in one step, so one run is one consistent snapshot and the
membership read can reuse the group list and storage keys instead of asking the API again.
"""


import dagster as dg
import pyarrow as pa

from azdo_pipeline import schemas
from azdo_pipeline.checks import duplicate_keys, unresolved_members
from azdo_pipeline.partitions import org_partitions
from azdo_pipeline.resources import AzdoPipeline
from azdo_pipeline.store import new_snapshot_id
from azdo_pipeline.sync.full import SyncReport

RAW_GROUP = "azdo_raw"
MEMBERS_RESOLVE = "members_resolve"


def _key_check(table: str) -> str:
    return f"{table}_key_unique"


def column_schema(schema: pa.Schema) -> dg.TableSchema:
    return dg.TableSchema(columns=[
        dg.TableColumn(f.name, str(f.type), description=(f.metadata or {}).get(b"description", b"").decode())
        for f in schema])


RAW_SPECS = [
    dg.AssetSpec(name, group_name=RAW_GROUP, partitions_def=org_partitions,
                 description=(schema.metadata or {}).get(b"description", b"").decode(),
                 kinds={"azure", "parquet"}, tags={"azdo/layer": "raw"},
                 metadata={"dagster/column_schema": column_schema(schema)})
    for name, schema in schemas.RAW_TABLES.items()
]
RAW_CHECKS = [dg.AssetCheckSpec(_key_check(name), asset=name,
                                description=f"Key columns ({', '.join(schemas.key_columns(schema))}) are unique.")
              for name, schema in schemas.RAW_TABLES.items()]
RAW_CHECKS.append(dg.AssetCheckSpec(MEMBERS_RESOLVE, asset="memberships",
                                    description="Every edge's container is a synced group and every member "
                                                "a synced user, service account, service principal or group."))


def _preview(table: pa.Table) -> dg.MetadataValue:
    return dg.MetadataValue.md(table.slice(0, 5).to_pandas().to_markdown(index=False) if table.num_rows else "_empty_")


@dg.multi_asset(specs=RAW_SPECS, check_specs=RAW_CHECKS, name="azdo_raw_sync", pool="azdo_api",
                op_tags={"azdo/kind": "full_sync"})
def azdo_raw_sync(context: dg.AssetExecutionContext, azdo: AzdoPipeline):
    """Full sync of one organization: every raw table, streamed page by page into one snapshot."""
    org = context.partition_key
    simulated = azdo.org(org).simulated  # simulator data is marked wherever it lands
    snapshot = new_snapshot_id(run_id=context.run.run_id)
    report: SyncReport = azdo.full_sync(org, snapshot)
    store = azdo.store()
    tables = {name: store.read_latest(name, org) for name in schemas.RAW_TABLES}
    for name, schema in schemas.RAW_TABLES.items():
        t, res = tables[name], report.tables[name]
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
            "preview": _preview(t),
        })
        dup = duplicate_keys(t, schemas.key_columns(schema))
        yield dg.AssetCheckResult(asset_key=name, check_name=_key_check(name), passed=dup.passed,
                                  metadata={"duplicates": dup.count, "examples": ", ".join(dup.examples)})
    known = [tables[n]["descriptor"] for n in ("users", "service_accounts", "service_principals", "groups")]
    unresolved = unresolved_members(tables["memberships"], known, tables["groups"]["descriptor"])
    yield dg.AssetCheckResult(asset_key="memberships", check_name=MEMBERS_RESOLVE, passed=unresolved.passed,
                              metadata={"unresolved": unresolved.count, "examples": ", ".join(unresolved.examples)})
    for note in report.notes:  # e.g. a missing scope that made the sync slower: says which and the fix
        context.log.warning(note)
    context.log.info(f"synced {org} into snapshot {snapshot}: {report.requests} requests in "
                     f"{report.duration_s:.1f}s; requests by endpoint: {report.requests_by_endpoint}")
