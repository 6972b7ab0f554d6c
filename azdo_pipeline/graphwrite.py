"""Writing an access-graph snapshot: shared with the published graph when no raw table changed, else
built in full; or, when asked, brought up to date from the published graph after an incremental sync
(accessgraph/incremental.py).

The update is not the default: every derived table is one Parquet file, so an update reads every kept
row back and encodes it again, which costs more than computing it afresh (benchmarks/incremental.py,
xl, 100 changes: about 6 s against 3 s for a full build). It pays only once the large tables are
stored so that unchanged rows need not be rewritten (docs/operations.md, "Incremental sync").
The access_graph asset, the incremental benchmark and the equivalence tests write the graph here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow as pa

from .accessgraph import incremental as graph_update
from .accessgraph.build import reusable_graph, write_access_graph
from .accessgraph.schemas import DERIVED_TABLES
from .store import SnapshotDraft, Store


@dataclass(frozen=True)
class GraphWrite:
    counts: dict[str, int]  # rows per derived table
    built: str  # how: shared, updated (from which graph, how many principals), in full (and why)
    shared_with: str | None  # the graph snapshot whose files were linked
    updated_from: str | None  # the graph snapshot brought up to date


def write_graph(draft: SnapshotDraft, store: Store, org: str, raw: Mapping[str, pa.Table],
                raw_snapshot: str | None, *, update: bool = False,
                max_share: float = graph_update.MAX_SHARE) -> GraphWrite:
    """The derived tables of `raw` (the raw snapshot `raw_snapshot`) into `draft`. `update`: bring the
    published graph up to date when `raw` is an incremental snapshot of the raw snapshot it was built
    from; `max_share`: the share of principals affected above which it is built in full even so."""
    raw_manifest = store.latest_manifest(org)
    if not raw_manifest or raw_manifest.get("snapshot") != raw_snapshot:
        raw_manifest = None
    graph_manifest = store.latest_manifest(org, kind="access_graph")
    same_as = reusable_graph(raw_manifest, graph_manifest)
    if same_as:  # nothing in the raw tables changed: the published graph is this snapshot's (hard links)
        for name in DERIVED_TABLES:
            draft.link(name, same_as)
        counts = {name: draft.read(name).num_rows for name in DERIVED_TABLES}
        return GraphWrite(counts, f"shared with {same_as} (no raw table changed)", same_as, None)
    if not update:
        return GraphWrite(write_access_graph(raw, draft.writer, organization=org), "in full", None, None)
    plan, why = graph_update.plan_update(raw, raw_manifest, graph_manifest,
                                         lambda table, snap: store.snapshot_path(table, org, snap),
                                         max_share=max_share)
    if plan is not None:
        counts = graph_update.write_updated_graph(raw, plan.affected, plan.files, draft.writer, organization=org)
        return GraphWrite(counts, plan.describe(), None, plan.previous.graph_snapshot)
    return GraphWrite(write_access_graph(raw, draft.writer, organization=org), why, None, None)
