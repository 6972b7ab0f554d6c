"""Shortest-path transitive closure of group membership, vectorised over integer ids.

Descriptors are encoded to int32 ids once (groups first, 0..n_groups-1, then every other principal).
The closure is computed in two steps, both with numpy only:

1. Group → group: a level-synchronous breadth-first search from every group at once (groups are
   few; a frontier row is "source group reaches group X by a shortest chain"), with a sorted set of
   visited pairs so a cycle can never loop. A group that reaches itself is reported as cyclic.
2. Principal → group: each direct edge principal → container C is expanded with C's ancestors from
   step 1, and the shortest candidate per (principal, group) is kept. This runs in chunks of
   principals, so memory stays bounded however many users the organization has.

Chains are ragged int32 lists (`Paths`: offsets + values) and only become strings at the output.
Ties between equally short chains prefer chains without Entra groups, then the smallest ids.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

I32 = np.int32
I64 = np.int64


@dataclass(frozen=True)
class Paths:
    """Ragged lists of int32 ids: list i is values[offsets[i]:offsets[i + 1]]."""

    offsets: np.ndarray  # int64, length n + 1
    values: np.ndarray  # int32

    @staticmethod
    def empty(n: int) -> Paths:
        return Paths(np.zeros(n + 1, I64), np.zeros(0, I32))

    @staticmethod
    def from_matrix(mat: np.ndarray) -> Paths:
        """Equal-length lists given as the rows of a 2-d array."""
        n, k = mat.shape
        return Paths(np.arange(n + 1, dtype=I64) * k, np.ascontiguousarray(mat, dtype=I32).reshape(-1))

    @staticmethod
    def concat(parts: list[Paths]) -> Paths:
        if not parts:
            return Paths.empty(0)
        offsets, values, base = [np.zeros(1, I64)], [], 0
        for p in parts:
            offsets.append(p.offsets[1:] + base)
            values.append(p.values)
            base += len(p.values)
        return Paths(np.concatenate(offsets), np.concatenate(values) if values else np.zeros(0, I32))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def take(self, idx: np.ndarray) -> Paths:
        starts = self.offsets[idx]
        lens = self.offsets[idx + 1] - starts
        offsets = np.zeros(len(idx) + 1, I64)
        np.cumsum(lens, out=offsets[1:])
        total = int(offsets[-1])
        src = np.repeat(starts - offsets[:-1], lens) + np.arange(total, dtype=I64)
        return Paths(offsets, self.values[src])

    def prepend(self, first: np.ndarray) -> Paths:
        """Each list with one id put in front."""
        n = len(self)
        offsets = self.offsets + np.arange(n + 1, dtype=I64)
        values = np.empty(len(self.values) + n, I32)
        heads = np.zeros(len(values), bool)
        heads[offsets[:-1]] = True
        values[heads] = first
        values[~heads] = self.values
        return Paths(offsets, values)

    def drop_last(self) -> Paths:
        """Each (non-empty) list without its last id."""
        keep = np.ones(len(self.values), bool)
        keep[self.offsets[1:] - 1] = False
        return Paths(self.offsets - np.arange(len(self) + 1, dtype=I64), self.values[keep])

    def any_of(self, flags: np.ndarray, *, but_last: bool = False) -> np.ndarray:
        """Per list: does any id (but the last one, when asked) have flags[id] set."""
        csum = np.zeros(len(self.values) + 1, I64)
        np.cumsum(flags[self.values], out=csum[1:])
        end = np.maximum(self.offsets[1:] - 1, self.offsets[:-1]) if but_last else self.offsets[1:]
        return csum[end] > csum[self.offsets[:-1]]


@dataclass(frozen=True)
class ClosureRows:
    """Rows (principal, group, depth, path): the principal is a transitive member of the group.

    depth >= 1 is the number of membership hops; path lists the groups of the chain from the
    principal's direct container up to and including `group` (so len(path) == depth).
    Rows are sorted by (principal, group).
    """

    principal: np.ndarray  # int32
    group: np.ndarray  # int32
    depth: np.ndarray  # int32
    paths: Paths

    def __len__(self) -> int:
        return len(self.principal)

    def take(self, idx: np.ndarray) -> ClosureRows:
        return ClosureRows(self.principal[idx], self.group[idx], self.depth[idx], self.paths.take(idx))


def csr(keys: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Offsets of each key's run in an array sorted by key, and the sort order."""
    order = np.argsort(keys, kind="stable")
    ptr = np.zeros(n + 1, I64)
    np.cumsum(np.bincount(keys, minlength=n), out=ptr[1:])
    return ptr, order


def expand(ptr: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each item, every position in its CSR run: (index into items, position)."""
    starts = ptr[items]
    counts = ptr[items + 1] - starts
    rep = np.repeat(np.arange(len(items), dtype=I64), counts)
    local = np.arange(len(rep), dtype=I64) - np.repeat(np.cumsum(counts) - counts, counts)
    return rep, starts[rep] + local


def first_of_runs(sorted_keys: np.ndarray) -> np.ndarray:
    """Indices of the first element of each run of equal values in a sorted array."""
    if len(sorted_keys) == 0:
        return np.zeros(0, I64)
    return np.flatnonzero(np.concatenate(([True], sorted_keys[1:] != sorted_keys[:-1])))


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """np.unique for int arrays by sorting (numpy's hash-based unique is slower on millions of keys)."""
    s = np.sort(values)
    return s[first_of_runs(s)]


def argsort_keys(*columns: np.ndarray, bounds: tuple[int, ...]) -> np.ndarray:
    """Order by several non-negative integer columns (most significant first).

    Packs them into one int64 when the bounds allow (a single sort is much faster than lexsort).
    """
    span = 1
    for b in bounds:
        span *= max(int(b), 1)
    if span < 2**62:
        key = np.zeros(len(columns[0]), I64)
        for c, b in zip(columns, bounds, strict=True):
            key *= max(int(b), 1)
            key += c
        return np.argsort(key, kind="stable")
    return np.lexsort(tuple(reversed(columns)))


@dataclass(frozen=True)
class GroupClosure:
    """Closure among groups, plus the self rows (g, g, 0, []) used to expand principals."""

    rows: ClosureRows  # src group reaches dst group, depth >= 1, src != dst; sorted by (src, dst)
    cyclic: np.ndarray  # bool per group: the group reaches itself
    # rows with self rows added, sorted by (src, dst), CSR by src: used by principal_closure
    with_self: ClosureRows
    ptr: np.ndarray
    with_self_entra: np.ndarray  # per with_self row: an Entra group before the end of its path
    entra: np.ndarray  # per group: an Entra group


def group_closure(n_groups: int, member: np.ndarray, container: np.ndarray,
                  entra: np.ndarray | None = None) -> GroupClosure:
    """Breadth-first search from every group at once over group → group edges (member in container).

    entra: per group, True for Entra groups; among equally short chains one without Entra groups is
    preferred (so `via` says `entra_group` only when every shortest chain passes through one).
    """
    n = max(n_groups, 1)
    entra = np.zeros(n, bool) if entra is None else entra[:n_groups]
    ptr, order = csr(member, n)
    up = container[order]
    # visited pairs as sorted keys src * n + dst; self pairs are in from the start, so a chain back
    # to its source is seen (cycle) but never extended.
    visited = np.arange(n_groups, dtype=I64) * (n + 1)
    cyclic = np.zeros(n_groups, bool)
    levels: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (src, dst, path matrix)
    src = member.astype(I32)
    dst = container.astype(I32)
    pred = np.full(len(src), -1, I32)
    parent = np.zeros(len(src), I64)
    prev_paths = np.zeros((len(src), 0), I32)
    # does the chosen chain pass through an Entra group before its end (the end is the same for
    # every candidate of a pair, so it must not count)
    via_entra = np.zeros(len(dst), bool)
    depth = 1
    while len(src):
        key = src.astype(I64) * n + dst
        loops = src == dst
        cyclic[src[loops]] = True
        sel = argsort_keys(key, via_entra, pred.astype(I64) + 1, bounds=(n * n, 2, n + 1))
        sel = sel[first_of_runs(key[sel])]
        pos = np.searchsorted(visited, key[sel])
        new = (pos >= len(visited)) | (visited[np.minimum(pos, len(visited) - 1)] != key[sel])
        sel = sel[new]
        src, dst, chosen_entra = src[sel], dst[sel], via_entra[sel]
        mat = np.empty((len(sel), depth), I32)
        mat[:, : depth - 1] = prev_paths[parent[sel]]
        mat[:, depth - 1] = dst
        levels.append((src, dst, mat))
        visited = np.union1d(visited, key[sel])
        # next level: every container of each newly reached group
        rep, pos = expand(ptr, dst)
        prev_paths, parent = mat, rep
        pred = dst[rep]
        src, dst = src[rep], up[pos].astype(I32)
        via_entra = chosen_entra[rep] | entra[pred]
        depth += 1
    if levels:
        all_src = np.concatenate([lv[0] for lv in levels])
        all_dst = np.concatenate([lv[1] for lv in levels])
        paths = Paths.concat([Paths.from_matrix(lv[2]) for lv in levels])
    else:
        all_src = all_dst = np.zeros(0, I32)
        paths = Paths.empty(0)
    depths = paths.lengths().astype(I32)
    order = argsort_keys(all_src, all_dst, bounds=(n, n))
    rows = ClosureRows(all_src[order], all_dst[order], depths[order], paths.take(order))
    selves = np.arange(n_groups, dtype=I32)
    with_self = _merge_sorted(rows, ClosureRows(selves, selves, np.zeros(n_groups, I32),
                                                Paths.empty(n_groups)), n)
    gptr = np.zeros(n_groups + 1, I64)
    np.cumsum(np.bincount(with_self.principal, minlength=n_groups), out=gptr[1:])
    return GroupClosure(rows, cyclic, with_self, gptr, with_self.paths.any_of(entra, but_last=True), entra)


def _merge_sorted(a: ClosureRows, b: ClosureRows, n: int) -> ClosureRows:
    p = np.concatenate([a.principal, b.principal])
    g = np.concatenate([a.group, b.group])
    order = argsort_keys(p, g, bounds=(n, n))
    both = ClosureRows(p, g, np.concatenate([a.depth, b.depth]), Paths.concat([a.paths, b.paths]))
    return both.take(order)


def principal_closure(gc: GroupClosure, n_groups: int, member: np.ndarray,
                      container: np.ndarray) -> ClosureRows:
    """Closure rows of (non-group) principals, given their direct edges sorted by member."""
    ws = gc.with_self
    rep, pos = expand(gc.ptr, container)
    p = member[rep]
    c = container[rep]
    d = ws.depth[pos] + 1
    g = ws.group[pos]
    lo = int(p.min()) if len(p) else 0
    span = (int(p.max()) - lo + 1) if len(p) else 1
    max_depth = int(d.max()) + 1 if len(d) else 1
    via_entra = (gc.entra[c] & (g != c)) | gc.with_self_entra[pos]
    order = argsort_keys((p - lo).astype(I64), g, d, via_entra, c, bounds=(span, n_groups, max_depth, 2, n_groups))
    keep = order[first_of_runs((p[order] - lo).astype(I64) * n_groups + g[order])]
    paths = ws.paths.take(pos[keep]).prepend(c[keep])
    return ClosureRows(p[keep].astype(I32), g[keep].astype(I32), d[keep].astype(I32), paths)


def iter_principal_closure(gc: GroupClosure, n_groups: int, member: np.ndarray, container: np.ndarray,
                           *, chunk_edges: int = 262_144) -> Iterator[ClosureRows]:
    """principal_closure over consecutive ranges of principals (edges sorted by member)."""
    start = 0
    total = len(member)
    while start < total:
        stop = min(start + chunk_edges, total)
        if stop < total:  # never split one principal's edges across chunks
            stop = int(np.searchsorted(member, member[stop - 1], side="right"))
        yield principal_closure(gc, n_groups, member[start:stop], container[start:stop])
        start = stop


def cycles(gc: GroupClosure) -> list[tuple[list[int], list[int]]]:
    """Strongly connected sets of cyclic groups, each with one closed example cycle.

    Two cyclic groups are in the same set when each reaches the other; the example is the shortest
    chain from the set's smallest group back to itself.
    """
    rows = gc.rows
    cyc = np.flatnonzero(gc.cyclic)
    if len(cyc) == 0:
        return []
    n = len(gc.cyclic)
    mask = gc.cyclic[rows.principal] & gc.cyclic[rows.group]
    a, b = rows.principal[mask].astype(I64), rows.group[mask].astype(I64)
    fwd = np.sort(a * n + b)
    back = b * n + a
    pos = np.searchsorted(fwd, back)
    mutual = (pos < len(fwd)) & (fwd[np.minimum(pos, len(fwd) - 1)] == back)
    # component = the smallest group it mutually reaches (mutual reachability is an equivalence)
    comp_of = np.arange(n, dtype=I64)
    np.minimum.at(comp_of, a[mutual], b[mutual])
    comp = comp_of[cyc]
    out: list[tuple[list[int], list[int]]] = []
    for root in np.unique(comp):
        members = sorted(int(x) for x in cyc[comp == root])
        out.append((members, _example_cycle(gc, int(root))))
    return out


def _example_cycle(gc: GroupClosure, root: int) -> list[int]:
    """root → … → root: shortest chain from root to one of its members that contains root."""
    rows = gc.rows
    lo, hi = np.searchsorted(rows.principal, [root, root + 1])
    best: list[int] | None = None
    # root's own direct containers that chain back: root reaches x and x reaches root directly
    for i in range(lo, hi):
        x = int(rows.group[i])
        path = rows.paths.values[rows.paths.offsets[i]:rows.paths.offsets[i + 1]].tolist()
        xlo, xhi = np.searchsorted(rows.principal, [x, x + 1])
        j = xlo + int(np.searchsorted(rows.group[xlo:xhi], root))
        if j < xhi and rows.group[j] == root and rows.depth[j] == 1:
            cand = [root, *path, root]
            if best is None or len(cand) < len(best):
                best = cand
    if best is None:  # a self-loop edge (root is a direct member of itself)
        best = [root, root]
    return best
