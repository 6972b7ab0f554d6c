"""The access graph brought up to date from the previous one, equal to a full build (off by default:
see azdo_pipeline/graphwrite.py for why, with figures).

The three large tables (effective_grants, access_by_principal, principals_by_project) hold rows per
principal, and a principal's rows are a function of a few facts only: its own row (kind, display
name, licence), its direct memberships, and for every group it reaches through them that group's
row, memberships, team, project and held grants (team administration). So when a raw snapshot
differs a little from the one the previous graph was built from:

1. `affected_principals(old, new)` lists the principals whose facts may differ: the rows of principal
   tables that changed (in the columns the large tables read), members of changed memberships, the
   groups of changed projects and teams, members of changed team_members rows; then everything that
   reaches one of them through nested groups (walked over old and new memberships both, so a path
   that appeared or disappeared is covered). Anything it cannot bound (the organization row
   changed) means a full build.
2. `write_updated_graph` keeps the previous rows of every other principal as they are, computes the
   affected principals' rows from the new snapshot with the same code as the full build
   (`effective.iter_effective_of`), and rebuilds the small tables (resources, entitlements, grants,
   cycles) in full: they are cheap, and their rows are not per principal.

Rows are the same as a full build's; their order in the file is not (kept rows first). The
equivalence property tests compare the two, row for row after sorting.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from azdo_pipeline.schemas import RAW_TABLES

from . import effective, views
from .arrays import codes
from .build import STREAMED, compile_graph, write_tables
from .index import GraphIndex, normalize_raw
from .schemas import DERIVED_TABLES

# Columns of the principal tables that reach the large tables (the rest only reaches `resources`,
# rebuilt in full): descriptor, the display name (principal_name, path and source names), the
# licence (a held grant), and for groups what makes them Entra, built-in, a team's or a project's.
PRINCIPAL_FACTS: dict[str, tuple[str, ...]] = {
    "users": ("descriptor", "display_name", "license", "licensing_source"),
    "service_accounts": ("descriptor", "display_name"),
    "service_principals": ("descriptor", "display_name"),
    "groups": ("descriptor", "display_name", "kind", "project_id", "is_team", "storage_key"),
}
PRINCIPAL_COLUMN = "principal_id"  # of every streamed table
MAX_SHARE = 0.3  # above this share of principals recomputed, a full build is as cheap


@dataclass(frozen=True)
class Affected:
    """The principals whose rows are recomputed (descriptors), and why the set is that large."""

    principals: pa.Array
    seeds: int  # principals whose own facts changed, before adding what reaches them
    share: float  # of the new graph's principals


def _fingerprint(table: pa.Table, columns: Iterable[str]) -> pa.Array:
    """One string per row over `columns` (null distinct from every value), to compare rows as sets."""
    parts = [pc.fill_null(pc.cast(table[c], pa.string()), "\x00") for c in columns]
    if not parts:
        return pa.array([""] * table.num_rows, pa.string())
    out = pc.binary_join_element_wise(*parts, "\x1f") if len(parts) > 1 else parts[0]
    return out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out


def _changed(old: pa.Table, new: pa.Table, columns: tuple[str, ...], key: str) -> set[str]:
    """Values of `key` of the rows (over `columns`) that are in one table and not the other."""
    fo, fn = _fingerprint(old, columns), _fingerprint(new, columns)
    gone = old[key].filter(pc.invert(pc.is_in(fo, value_set=fn)))
    came = new[key].filter(pc.invert(pc.is_in(fn, value_set=fo)))
    return {v for v in gone.to_pylist() + came.to_pylist() if v is not None}


def _values_where(table: pa.Table, column: str, values: Collection[str], out: str, *,
                  lower: bool = False) -> set[str]:
    """Values of `out` in the rows whose `column` is one of `values` (compared lower-cased with `lower`)."""
    if not values or table.num_rows == 0:
        return set()
    col = pc.utf8_lower(table[column]) if lower else table[column]
    mask = pc.fill_null(pc.is_in(col, value_set=pa.array(sorted(values), pa.string())), False)
    return {v for v in table[out].filter(mask).to_pylist() if v is not None}


def _with_transitive_members(seeds: set[str], memberships: list[pa.Table]) -> pa.Array:
    """`seeds` and every principal that reaches one of them through nested memberships (in any of
    the given membership tables: old and new)."""
    containers = pa.chunked_array([c for m in memberships for c in m["container_descriptor"].chunks], pa.string())
    members = pa.chunked_array([c for m in memberships for c in m["member_descriptor"].chunks], pa.string())
    seen = pa.array(sorted(seeds), pa.string())
    frontier = seen
    while len(frontier):
        found = pc.unique(members.filter(pc.fill_null(pc.is_in(containers, value_set=frontier), False)))
        if isinstance(found, pa.ChunkedArray):
            found = found.combine_chunks()
        frontier = found.filter(pc.invert(pc.is_in(found, value_set=seen)))
        seen = pa.concat_arrays([seen, frontier])
    return seen


def affected_principals(old_raw: Mapping[str, pa.Table], new_raw: Mapping[str, pa.Table], *,
                        unchanged: Collection[str] = ()) -> Affected | None:
    """The principals whose large-table rows may differ between graphs of `old_raw` and `new_raw`;
    None when a full build is needed. `unchanged`: raw tables known to be the same file in both."""
    old, new = normalize_raw(old_raw), normalize_raw(new_raw)

    def changed(name: str, columns: tuple[str, ...], key: str) -> set[str]:
        return set() if name in unchanged else _changed(old[name], new[name], columns, key)

    if changed("organizations", tuple(RAW_TABLES["organizations"].names), "name") or \
            old["organizations"].num_rows != new["organizations"].num_rows:
        return None  # the organization's name is on every licence row
    seeds: set[str] = set()
    for name, columns in PRINCIPAL_FACTS.items():
        seeds |= changed(name, columns, "descriptor")
    # A changed membership changes the member's closure (never the container's own rows)...
    m_cols = ("container_descriptor", "member_descriptor", "member_kind")
    seeds |= changed("memberships", m_cols, "member_descriptor")
    # ...and a descriptor that starts or stops being a container becomes or stops being a group.
    if "memberships" not in unchanged:
        oc = set(pc.unique(old["memberships"]["container_descriptor"]).to_pylist())
        nc = set(pc.unique(new["memberships"]["container_descriptor"]).to_pylist())
        seeds |= {d for d in oc ^ nc if d is not None}
    # Projects and teams name the grants of their groups; a group role moves between groups of a project.
    projects = changed("projects", ("id", "name"), "id")
    projects |= {p for t in (old, new) for p in _values_where(t["groups"], "descriptor", seeds, "project_id")}
    for t in (old, new):
        seeds |= _values_where(t["groups"], "project_id", projects, "descriptor")
    teams = changed("teams", ("id", "name", "project_id"), "id")
    keys = {k for t in (old, new) for k in _values_where(t["groups"], "descriptor", seeds, "storage_key")}
    # A team's members hold its grants directly while no group backs it: any change on either side.
    team_keys = {k.lower() for k in teams | keys}
    for t in (old, new):
        seeds |= _values_where(t["groups"], "storage_key", team_keys, "descriptor", lower=True)
        seeds |= _values_where(t["team_members"], "team_id", team_keys, "member_descriptor", lower=True)
    seeds |= changed("team_members", ("team_id", "member_descriptor", "is_team_admin", "is_member"),
                     "member_descriptor")
    principals = _with_transitive_members(seeds, [old["memberships"], new["memberships"]]) if seeds \
        else pa.array([], pa.string())
    total = max(1, sum(new[n].num_rows for n in PRINCIPAL_FACTS))
    return Affected(principals, len(seeds), len(principals) / total)


def _kept_batches(path: Path, affected: pa.Array, schema: pa.Schema) -> Iterator[pa.Table]:
    """The previous table's rows of principals not affected, row group by row group (never the whole
    table in memory; row groups, not batches: Arrow cannot yet read list<dictionary> columns in batches)."""
    pf = pq.ParquetFile(path)
    for i in range(pf.metadata.num_row_groups):
        part = pf.read_row_group(i)
        masks = []
        for col in part[PRINCIPAL_COLUMN].chunks:
            if isinstance(col, pa.DictionaryArray):  # test the dictionary once, not every row
                masks.append(pc.is_in(col.dictionary, value_set=affected).take(col.indices))
            else:
                masks.append(pc.is_in(col, value_set=affected))
        kept = part.filter(pc.invert(pc.fill_null(pa.chunked_array(masks, pa.bool_()), False)))
        if kept.num_rows:
            yield kept.cast(schema)


def iter_affected_batches(ix: GraphIndex, affected: pa.Array) -> Iterator[tuple[str, pa.RecordBatch]]:
    """(table, batch) of the three large tables, for the affected principals only."""
    found = codes(affected, ix.nodes)
    principals = np.unique(found[found >= 0])
    for rows in effective.iter_effective_of(ix, principals):
        yield "effective_grants", effective.effective_batch(ix, rows)
        yield "access_by_principal", views.access_by_principal_batch(ix, rows)
        yield "principals_by_project", views.principals_by_project_batch(ix, rows)


def write_updated_graph(raw: Mapping[str, pa.Table], affected: Affected, previous: Mapping[str, Path],
                        open_writer: Callable[[str, pa.Schema], Any], *,
                        organization: str | None = None) -> dict[str, int]:
    """Every derived table into writers (as `build.write_access_graph`), the large ones from the
    previous graph's files (`previous`: table -> path) with the affected principals' rows replaced."""
    ix = compile_graph(raw, organization)
    kept = ((name, table) for name in STREAMED
            for table in _kept_batches(previous[name], affected.principals, DERIVED_TABLES[name]))
    return write_tables(ix, open_writer, itertools.chain(kept, iter_affected_batches(ix, affected.principals)))


@dataclass(frozen=True)
class PreviousGraph:
    """A published graph and the raw snapshot it was built from."""

    graph_snapshot: str
    raw_snapshot: str


def previous_graph(raw_manifest: Mapping[str, Any] | None,
                   graph_manifest: Mapping[str, Any] | None) -> PreviousGraph | None:
    """The graph an incremental raw snapshot's graph may be brought up to date from: the published
    one, when it was built from the raw snapshot this one patched. Anything else is built in full."""
    if not raw_manifest or not graph_manifest:
        return None
    state = raw_manifest.get("incremental") or {}
    prev_raw = state.get("previous_snapshot")
    if state.get("mode") != "incremental" or not prev_raw or graph_manifest.get("raw_snapshot") != prev_raw \
            or not graph_manifest.get("snapshot"):
        return None
    return PreviousGraph(str(graph_manifest["snapshot"]), str(prev_raw))


def unchanged_tables(raw_manifest: Mapping[str, Any]) -> set[str]:
    """Raw tables the incremental snapshot shares with its previous one (hard links: the same rows)."""
    return set((raw_manifest.get("incremental") or {}).get("tables_linked") or [])


@dataclass(frozen=True)
class GraphUpdate:
    """How to bring the published graph up to date: from which graph files, for which principals."""

    previous: PreviousGraph
    affected: Affected
    files: dict[str, Path]  # streamed table -> the previous graph's file

    def describe(self) -> str:
        return (f"updated from {self.previous.graph_snapshot}: {len(self.affected.principals)} principals "
                f"recomputed ({100 * self.affected.share:.1f}%), the others' rows kept")


def plan_update(raw: Mapping[str, pa.Table], raw_manifest: Mapping[str, Any] | None,
                graph_manifest: Mapping[str, Any] | None,
                snapshot_path: Callable[[str, str], Path], *,
                max_share: float = MAX_SHARE) -> tuple[GraphUpdate | None, str]:
    """An update of the published graph to `raw` (the raw snapshot of `raw_manifest`), or None and why
    the graph is built in full. `snapshot_path(table, snapshot)`: a committed snapshot's file;
    `max_share`: the share of principals affected above which a full build is chosen."""
    prev = previous_graph(raw_manifest, graph_manifest)
    if prev is None or raw_manifest is None:
        return None, "in full"
    files = {name: snapshot_path(name, prev.graph_snapshot) for name in STREAMED}
    raw_files = {name: snapshot_path(name, prev.raw_snapshot) for name in RAW_TABLES}
    if not all(p.exists() for p in [*files.values(), *raw_files.values()]):
        return None, f"in full (the files of {prev.graph_snapshot} or {prev.raw_snapshot} are gone)"
    old_raw = {name: pq.read_table(path) for name, path in raw_files.items()}
    affected = affected_principals(old_raw, raw, unchanged=unchanged_tables(raw_manifest))
    if affected is None:
        return None, "in full (the organization changed)"
    if affected.share > max_share:
        return None, f"in full ({100 * affected.share:.0f}% of the principals are affected)"
    return GraphUpdate(prev, affected, files), ""


__all__ = ["Affected", "GraphUpdate", "PreviousGraph", "affected_principals", "iter_affected_batches",
           "plan_update", "previous_graph", "unchanged_tables", "write_updated_graph"]
