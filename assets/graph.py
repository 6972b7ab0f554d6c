"""Access graph: resources, entitlements, grants and effective (transitive) grants with provenance.

Derived only from the latest raw snapshot of the organization (never from the API); the logic is
in azdo_pipeline.accessgraph, this module only reads, writes and reports. The graph is checked
before it is published: one that fails an ERROR check is kept under _rejected/ and `latest` keeps
the previous graph.
"""


from collections.abc import Iterator

import dagster as dg

from assets.raw import CODE_VERSION, OWNERS, RAW_SPECS, column_schema
from azdo_pipeline import schemas
from azdo_pipeline.accessgraph import checks as graph_checks
from azdo_pipeline.accessgraph.schemas import DERIVED_TABLES
from azdo_pipeline.failures import plain_failures
from azdo_pipeline.graphwrite import write_graph
from azdo_pipeline.partitions import org_partitions
from azdo_pipeline.resources import AzdoPipeline
from azdo_pipeline.store import new_snapshot_id

GRAPH_GROUP = "access_graph"
RAW_KEYS = [s.key for s in RAW_SPECS]

GRAPH_SPECS = [
    dg.AssetSpec(name, group_name=GRAPH_GROUP, partitions_def=org_partitions, deps=RAW_KEYS, owners=OWNERS,
                 code_version=CODE_VERSION, description=(schema.metadata or {}).get(b"description", b"").decode(),
                 kinds={"parquet"}, tags={"azdo/layer": "access_graph"},
                 metadata={"dagster/column_schema": column_schema(schema)})
    for name, schema in DERIVED_TABLES.items()
]

# check name -> (asset it is attached to, description)
GRAPH_CHECKS = {
    "grant_references": ("grants", "Every grant's principal and entitlement exist."),
    "keys_unique": ("effective_grants", "Key columns of every access-graph table are unique."),
    "effective_superset": ("effective_grants", "Effective grants include every direct grant."),
    "counts_reconcile": ("resources", "Resource and grant counts reconcile with the raw tables."),
    "membership_cycles": ("membership_cycles", "No cycle in nested group memberships (warns: real data "
                                               "has had them; the closure never loops)."),
}
GRAPH_CHECK_SPECS = [dg.AssetCheckSpec(name, asset=asset, description=desc,
                                       blocking=graph_checks.SEVERITY.get(name) != "WARN")
                     for name, (asset, desc) in GRAPH_CHECKS.items()]


@dg.multi_asset(specs=GRAPH_SPECS, check_specs=GRAPH_CHECK_SPECS, name="access_graph_build")
def access_graph_build(context: dg.AssetExecutionContext, azdo: AzdoPipeline) -> Iterator[object]:
    """Builds every access-graph table of one organization from its latest raw snapshot."""
    org = context.partition_key
    with plain_failures(context.log):
        simulated = azdo.org(org).simulated  # simulator data is marked wherever it lands
        store = azdo.store()
        store.refresh(org)  # Azure storage: the raw snapshot may have been published by another worker
        # One raw snapshot, even should a sync publish `latest` while this reads it.
        raw, raw_snapshot = store.read_consistent(schemas.RAW_TABLES, org)
    # Its own id: the raw sync of the same run may have started within the same second.
    snapshot = f"{new_snapshot_id(run_id=context.run.run_id)}-graph"
    with store.begin(org, snapshot, kind="access_graph") as draft:
        # Shared when no raw table changed, brought up to date after an incremental sync, else in full.
        written = write_graph(draft, store, org, raw, raw_snapshot)
        counts = written.counts
        outcomes = graph_checks.run_all(raw, {name: draft.read(name) for name in DERIVED_TABLES})
        failed = [name for name, out in outcomes.items()
                  if not out.passed and graph_checks.SEVERITY.get(name) != "WARN"]
        if failed:
            kept = draft.reject(f"{name}: {outcomes[name].count} offending, e.g. {', '.join(outcomes[name].examples)}"
                                for name in failed)
        else:
            draft.commit(simulated=simulated, extra={
                "raw_snapshot": raw_snapshot, "shared_with": written.shared_with, "updated_from": written.updated_from,
                "built": written.built})
    if not failed:
        for name, schema in DERIVED_TABLES.items():
            yield dg.MaterializeResult(asset_key=name, metadata={
                "dagster/row_count": counts[name],
                "dagster/column_schema": column_schema(schema),
                "path": dg.MetadataValue.path(str(store.latest_path(name, org))),
                "snapshot": snapshot,
                "simulated": simulated,
                "raw snapshot": raw_snapshot or "latest",
                "built": written.built,
            })
    for name, (asset, _desc) in GRAPH_CHECKS.items():
        out = outcomes[name]
        severity = dg.AssetCheckSeverity.WARN if graph_checks.SEVERITY.get(name) == "WARN" \
            else dg.AssetCheckSeverity.ERROR
        yield dg.AssetCheckResult(asset_key=asset, check_name=name, passed=out.passed, severity=severity,
                                  metadata={"offending": out.count, "examples": ", ".join(out.examples)})
    if failed:
        raise dg.Failure(
            description=f"the access graph of {org} built from raw snapshot {raw_snapshot} failed the checks "
                        f"{', '.join(failed)}, so it was not published (latest keeps the previous graph). It is "
                        f"kept for inspection at {kept}. What to do: re-run the sync and the graph; if the same "
                        "check fails again, report it with the check's examples.",
            metadata={"failure": "validation", "failed checks": ", ".join(failed), "kept at": str(kept)})
