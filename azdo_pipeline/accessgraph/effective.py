"""`effective_grants`: every grant a principal holds, directly or through nested groups.

From the closure rows (principal P is a transitive member of group H by the shortest chain
[H1, …, H]), each entitlement that H confers gives one effective grant with path [H1, …] (the
chain without H, so a direct member has an empty path and depth 0):
- H's own `member`; `member` of the team H backs (source H); the project role H is the built-in
  group of (source H);
- the project's `member` for the nearest group of each project (source: that group);
- grants held by a principal itself (team admin, licence) reach the transitive members of that
  principal when it is a group, with the whole chain as the path.

Work is done per chunk of principals (see closure.iter ranges), so memory stays bounded; each chunk
becomes one record batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from .arrays import dict_array, list_array
from .closure import I32, I64, ClosureRows, GroupClosure, Paths, argsort_keys, expand, first_of_runs, principal_closure
from .grants import grant_columns
from .schemas import EFFECTIVE_GRANTS, VIA_VALUES

if TYPE_CHECKING:
    from .index import GraphIndex

CHUNK_EDGES = 262_144  # direct edges of the principals handled in one chunk (bounds memory)
_VIA = pa.array(VIA_VALUES)


@dataclass(frozen=True)
class EffectiveRows:
    """Effective grants as codes: (entitlement, principal, depth, source or -1, path of group codes)."""

    ent: np.ndarray
    principal: np.ndarray
    depth: np.ndarray
    source: np.ndarray
    paths: Paths

    def __len__(self) -> int:
        return len(self.ent)

    def take(self, idx: np.ndarray) -> EffectiveRows:
        return EffectiveRows(self.ent[idx], self.principal[idx], self.depth[idx], self.source[idx],
                             self.paths.take(idx))

    @staticmethod
    def concat(parts: list[EffectiveRows]) -> EffectiveRows:
        ent, principal, depth, source = (np.concatenate([getattr(p, f) for p in parts]).astype(I32)
                                         for f in ("ent", "principal", "depth", "source"))
        return EffectiveRows(ent, principal, depth, source, Paths.concat([p.paths for p in parts]))

    def via(self, entra: np.ndarray) -> np.ndarray:
        """0 direct, 1 through Azure DevOps groups only, 2 through at least one Entra group."""
        return np.where(self.depth == 0, 0, np.where(self.paths.any_of(entra), 2, 1)).astype(np.int8)


def _empty() -> EffectiveRows:
    z = np.zeros(0, I32)
    return EffectiveRows(z, z, z, z, Paths.empty(0))


def _shortest(rows: EffectiveRows, tie: np.ndarray, n_ents: int) -> EffectiveRows:
    """One row per (principal, entitlement): smallest depth, then smallest `tie`."""
    if len(rows) == 0:
        return rows
    lo = int(rows.principal.min())
    span = int(rows.principal.max()) - lo + 1
    order = argsort_keys((rows.principal - lo).astype(I64), rows.ent, rows.depth, tie,
                         bounds=(span, n_ents, int(rows.depth.max()) + 1, int(tie.max()) + 2))
    key = (rows.principal[order] - lo).astype(I64) * n_ents + rows.ent[order]
    return rows.take(order[first_of_runs(key)])


def effective_from_closure(ix: GraphIndex, rows: ClosureRows, lo: int, hi: int,
                           only: np.ndarray | None = None) -> EffectiveRows:
    """Effective grants of the principals with codes in [lo, hi) (and in `only`, sorted codes, when
    given), given their closure rows."""
    cat = ix.catalogue
    n_ents = len(cat)
    h = rows.group
    parts: list[EffectiveRows] = []

    def through(ent_of_group: np.ndarray, with_source: bool) -> None:
        e = ent_of_group[h]
        idx = np.flatnonzero(e >= 0)
        parts.append(EffectiveRows(e[idx], rows.principal[idx], rows.depth[idx] - 1,
                                   h[idx] if with_source else np.full(len(idx), -1, I32),
                                   rows.paths.take(idx).drop_last()))

    through(cat.group_member, False)
    through(cat.group_team_member, True)
    through(cat.group_role, True)
    # project member: the nearest group of each project
    proj = ix.group_project[h]
    idx = np.flatnonzero(proj >= 0)
    if len(idx):
        ent = cat.project_member[proj[idx]]
        cand = EffectiveRows(ent, rows.principal[idx], rows.depth[idx] - 1, h[idx],
                             rows.paths.take(idx).drop_last())
        # prefer a chain without Entra groups, then the smallest group
        parts.append(_shortest(cand, cand.paths.any_of(ix.entra) * ix.n_groups + h[idx], n_ents))
    # grants held by a principal itself: direct for it, and through it for its transitive members
    held_p, held_e = cat.held_principal, cat.held_ent
    a, b = np.searchsorted(held_p, [lo, hi])
    own = np.arange(a, b) if only is None else a + np.flatnonzero(np.isin(held_p[a:b], only))
    held = [EffectiveRows(held_e[own], held_p[own], np.zeros(len(own), I32), np.full(len(own), -1, I32),
                          Paths.empty(len(own)))]
    if len(held_p) and len(rows):
        ptr = np.searchsorted(held_p, np.arange(ix.n_groups + 1)).astype(I64)  # held grants of groups
        rep, pos = expand(ptr, h)
        if len(rep):
            held.append(EffectiveRows(held_e[pos], rows.principal[rep], rows.depth[rep],
                                      np.full(len(rep), -1, I32), rows.paths.take(rep)))
    held_rows = EffectiveRows.concat(held)
    parts.append(_shortest(held_rows, held_rows.paths.any_of(ix.entra).astype(I32), n_ents))
    out = EffectiveRows.concat(parts)
    if len(out) == 0:
        return out
    order = argsort_keys((out.principal - lo).astype(I64), out.ent, bounds=(hi - lo, n_ents))
    return out.take(order)


def iter_effective(ix: GraphIndex, *, chunk_edges: int = CHUNK_EDGES) -> Iterator[EffectiveRows]:
    """Effective grants in chunks of principals: all groups first, then ranges of other principals."""
    gc = ix.group_closure
    n_groups, n_nodes = ix.n_groups, ix.n_nodes
    if n_groups:
        yield effective_from_closure(ix, gc.rows, 0, n_groups)
    member, container = ix.edge_member, ix.edge_container
    lo = n_groups
    while lo < n_nodes:
        e_lo = int(np.searchsorted(member, lo))
        target = e_lo + chunk_edges
        hi = n_nodes if target >= len(member) else max(int(member[target]), lo + 1)
        e_hi = int(np.searchsorted(member, hi))
        rows = _closure_of(gc, n_groups, member[e_lo:e_hi], container[e_lo:e_hi])
        out = effective_from_closure(ix, rows, lo, hi)
        if len(out):
            yield out
        lo = hi


def _closure_of(gc: GroupClosure, n_groups: int, member: np.ndarray, container: np.ndarray) -> ClosureRows:
    """The closure rows of the principals whose direct edges (member -> container) these are."""
    if len(member):
        return principal_closure(gc, n_groups, member, container)
    z = np.zeros(0, I32)
    return ClosureRows(z, z, z, Paths.empty(0))


def iter_effective_of(ix: GraphIndex, principals: np.ndarray, *,
                      chunk_edges: int = CHUNK_EDGES) -> Iterator[EffectiveRows]:
    """Effective grants of some principals only (sorted unique codes), chunk by chunk as
    `iter_effective`: each principal's rows are exactly those the whole graph's pass gives it."""
    gc = ix.group_closure
    n_groups, n_nodes = ix.n_groups, ix.n_nodes
    groups, others = principals[principals < n_groups], principals[principals >= n_groups]
    if len(groups):
        rows = gc.rows.take(np.flatnonzero(np.isin(gc.rows.principal, groups)))
        out = effective_from_closure(ix, rows, 0, n_groups, only=groups)
        if len(out):
            yield out
    sel = np.isin(ix.edge_member, others)
    member, container = ix.edge_member[sel], ix.edge_container[sel]  # still sorted by member
    i = 0
    while i < len(others):
        lo = int(others[i])
        e_lo = int(np.searchsorted(member, lo))
        target = e_lo + chunk_edges
        hi = n_nodes if target >= len(member) else max(int(member[target]), lo + 1)
        j = int(np.searchsorted(others, hi))
        e_hi = int(np.searchsorted(member, hi))
        rows = _closure_of(gc, n_groups, member[e_lo:e_hi], container[e_lo:e_hi])
        out = effective_from_closure(ix, rows, lo, hi, only=others[i:j])
        if len(out):
            yield out
        i = j


def effective_batch(ix: GraphIndex, rows: EffectiveRows) -> pa.RecordBatch:
    cols = [*grant_columns(ix, rows.ent, rows.principal),
            dict_array(rows.via(ix.entra), _VIA, pa.int8()),
            pa.array(rows.depth, pa.int32()),
            list_array(rows.paths, dict_array(rows.paths.values, ix.nodes)),
            dict_array(rows.source, ix.nodes)]
    return pa.RecordBatch.from_arrays(cols, schema=EFFECTIVE_GRANTS)


def effective_grants_table(ix: GraphIndex) -> pa.Table:
    batches = [effective_batch(ix, rows) for rows in iter_effective(ix)]
    return pa.Table.from_batches(batches, schema=EFFECTIVE_GRANTS)
