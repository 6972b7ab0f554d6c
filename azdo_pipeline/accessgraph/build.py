"""Entry points: raw tables of one organization's snapshot → the access-graph tables.

`build_access_graph(raw)` returns every derived table in memory. `write_access_graph(raw, open_writer)`
streams the three large ones (effective_grants, access_by_principal, principals_by_project) chunk
by chunk into writers instead, so peak memory does not grow with their size. Per-table functions
accept either the raw tables or a `GraphIndex` (compile once with `GraphIndex.from_raw` when
calling several).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any, Protocol

import pyarrow as pa

from azdo_pipeline.schemas import RAW_TABLES

from . import closure, effective, grants, resources, views
from .index import GraphIndex
from .schemas import DERIVED_TABLES, MEMBERSHIP_CYCLES

Source = GraphIndex | Mapping[str, pa.Table]
STREAMED = ("effective_grants", "access_by_principal", "principals_by_project")


def compile_graph(src: Source, organization: str | None = None) -> GraphIndex:
    return src if isinstance(src, GraphIndex) else GraphIndex.from_raw(src, organization)


def resource_types_table() -> pa.Table:
    return resources.resource_types_table()


def resources_table(src: Source, *, organization: str | None = None) -> pa.Table:
    return compile_graph(src, organization).resources


def entitlements_table(src: Source, *, organization: str | None = None) -> pa.Table:
    return compile_graph(src, organization).catalogue.table


def grants_table(src: Source, *, organization: str | None = None) -> pa.Table:
    return grants.grants_table(compile_graph(src, organization))


def effective_grants_table(src: Source, *, organization: str | None = None) -> pa.Table:
    return effective.effective_grants_table(compile_graph(src, organization))


def access_by_principal_table(src: Source, *, organization: str | None = None) -> pa.Table:
    return views.access_by_principal_table(compile_graph(src, organization))


def principals_by_project_table(src: Source, *, organization: str | None = None) -> pa.Table:
    return views.principals_by_project_table(compile_graph(src, organization))


def membership_cycles_table(src: Source, *, organization: str | None = None) -> pa.Table:
    """Circular group memberships (an asset check warns when this is not empty)."""
    ix = compile_graph(src, organization)
    names = ix.nodes
    rows = []
    for i, (members, example) in enumerate(closure.cycles(ix.group_closure)):
        rows.append({"cycle_id": i, "size": len(members), "group_ids": names.take(members).to_pylist(),
                     "example": names.take(example).to_pylist()})
    return pa.Table.from_pylist(rows, schema=MEMBERSHIP_CYCLES)


def find_cycles(src: Source, *, organization: str | None = None) -> list[list[str]]:
    """Example cycles as lists of descriptors (each a direct member of the next; last == first)."""
    return membership_cycles_table(src, organization=organization)["example"].to_pylist()


def iter_streamed_batches(ix: GraphIndex) -> Iterator[tuple[str, pa.RecordBatch]]:
    """(table, batch) for the three large tables, one closure pass, chunk by chunk."""
    for rows in effective.iter_effective(ix):
        yield "effective_grants", effective.effective_batch(ix, rows)
        yield "access_by_principal", views.access_by_principal_batch(ix, rows)
        yield "principals_by_project", views.principals_by_project_batch(ix, rows)


def reusable_graph(raw_manifest: Mapping[str, Any] | None, graph_manifest: Mapping[str, Any] | None) -> str | None:
    """The access-graph snapshot that is provably this raw snapshot's graph, else None.

    The graph is a function of the raw tables only. An incremental raw snapshot whose every table is
    the previous raw snapshot's file (shared, not rewritten: nothing changed) has the graph built from
    that previous snapshot, when that is the graph published now. Anything else is built again in full.
    """
    if not raw_manifest or not graph_manifest:
        return None
    state = raw_manifest.get("incremental") or {}
    shared = set(state.get("tables_linked") or [])
    if (state.get("mode") == "incremental" and state.get("previous_snapshot")
            and graph_manifest.get("raw_snapshot") == state.get("previous_snapshot")
            and shared >= set(RAW_TABLES) and graph_manifest.get("snapshot")):
        return str(graph_manifest["snapshot"])
    return None


def small_tables(ix: GraphIndex) -> dict[str, pa.Table]:
    return {"resource_types": resource_types_table(), "resources": ix.resources,
            "entitlements": ix.catalogue.table, "grants": grants.grants_table(ix),
            "membership_cycles": membership_cycles_table(ix)}


def build_access_graph(raw: Source, *, organization: str | None = None) -> dict[str, pa.Table]:
    """Every derived table (keys and order as `schemas.DERIVED_TABLES`).

    organization: the partition's organization name (the `organization` resource id); may be
    omitted when the raw organizations table names exactly one organization.
    """
    ix = compile_graph(raw, organization)
    batches: dict[str, list[pa.RecordBatch]] = {name: [] for name in STREAMED}
    for name, batch in iter_streamed_batches(ix):
        batches[name].append(batch)
    tables = small_tables(ix)
    for name in STREAMED:
        tables[name] = pa.Table.from_batches(batches[name], schema=DERIVED_TABLES[name])
    return {name: tables[name] for name in DERIVED_TABLES}


class TableSink(Protocol):
    def write_table(self, table: pa.Table) -> Any: ...


def write_access_graph(raw: Source, open_writer: Callable[[str, pa.Schema], Any], *,
                       organization: str | None = None) -> dict[str, int]:
    """Stream every derived table into writers; returns row counts.

    open_writer(name, schema) must return a context manager whose value has `write_table(table)`,
    e.g. `draft.writer` of a Store.begin draft.
    """
    ix = compile_graph(raw, organization)
    return write_tables(ix, open_writer, iter_streamed_batches(ix))


def write_tables(ix: GraphIndex, open_writer: Callable[[str, pa.Schema], Any],
                 streamed: Iterable[tuple[str, pa.Table | pa.RecordBatch]]) -> dict[str, int]:
    """The small tables built from `ix`, then the large ones from `streamed` ((table, rows) in any
    order), each into its writer; returns row counts.

    A background thread writes while the next chunks are built (pyarrow encodes without the GIL, so
    on two cores the build and the writing overlap), at most two chunks behind to bound memory.
    """
    counts = dict.fromkeys(DERIVED_TABLES, 0)
    with ExitStack() as stack:
        sinks: dict[str, TableSink] = {name: stack.enter_context(open_writer(name, schema))
                                       for name, schema in DERIVED_TABLES.items()}
        writes = stack.enter_context(_Background(depth=2))
        for name, table in small_tables(ix).items():
            writes.submit(sinks[name].write_table, table)
            counts[name] = table.num_rows
        for name, part in streamed:
            if part.num_rows:
                writes.submit(sinks[name].write_table,
                              part if isinstance(part, pa.Table) else pa.Table.from_batches([part]))
                counts[name] += part.num_rows
    return counts


class _Background:
    """One writer thread; `submit` waits while `depth` writes are still pending (bounds memory).
    Leaving the block waits for every write and re-raises the first failure."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="graph-writer")
        self.futures: deque[Future[Any]] = deque()

    def __enter__(self) -> _Background:
        return self

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        while len(self.futures) >= self.depth:
            self.futures.popleft().result()
        self.futures.append(self.pool.submit(fn, *args))

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            while self.futures:
                future = self.futures.popleft()
                if exc_type is None:
                    future.result()
                else:
                    future.cancel()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)
