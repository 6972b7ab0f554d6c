"""Writing an access-graph snapshot: shared with the published graph when no raw table changed,
brought up to date from it after an incremental sync (accessgraph/incremental.py), else built in full.
The access_graph asset and the incremental benchmark write the graph through here."""

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
                raw_snapshot: str | None, *, max_share: float = graph_update.MAX_SHARE) -> GraphWrite:
    """The derived tables of `raw` (the raw snapshot `raw_snapshot`) into `draft`. `max_share`: the share
    of principals affected above which the graph is built in full rather than brought up to date."""
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
    update, why = graph_update.plan_update(raw, raw_manifest, graph_manifest,
                                           lambda table, snap: store.snapshot_path(table, org, snap),
                                           max_share=max_share)
    if update is not None:
        counts = graph_update.write_updated_graph(raw, update.affected, update.files, draft.writer, organization=org)
        return GraphWrite(counts, update.describe(), None, update.previous.graph_snapshot)
    return GraphWrite(write_access_graph(raw, draft.writer, organization=org), why, None, None)
