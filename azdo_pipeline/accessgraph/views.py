"""Analyst views over the effective grants: `access_by_principal` and `principals_by_project`.

Both are computed chunk by chunk from the same integer rows as effective_grants (see
`effective.iter_effective`), so building them costs no second closure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from . import model
from .arrays import dict_array, list_array
from .closure import I64, Paths, argsort_keys, first_of_runs
from .effective import EffectiveRows, iter_effective
from .entitlements import ENT_RESOURCE_TYPES, RT_PROJECT, SLUG_MEMBER, SLUG_ROLE0, SLUGS
from .schemas import ACCESS_BY_PRINCIPAL, PRINCIPALS_BY_PROJECT, VIA_VALUES

if TYPE_CHECKING:
    from .index import GraphIndex

_SLUGS = pa.array(SLUGS)
_SLUG_RANK = np.argsort(np.argsort(np.array(SLUGS))).astype(np.int64)  # alphabetical rank of each slug
_RTYPES = pa.array(ENT_RESOURCE_TYPES)
_KINDS = pa.array(model.PRINCIPAL_KINDS)
_VIA = pa.array(VIA_VALUES)
_ADMIN_SLUG = SLUGS.index(model.PROJECT_ADMIN_ROLE)


def _principal_columns(ix: GraphIndex, p: np.ndarray) -> list[pa.Array]:
    return [dict_array(ix.node_kind[p], _KINDS, pa.int8()), dict_array(p, ix.nodes),
            ix.lookup("resource_name").array(ix.node_resource[p])]


def _paths(ix: GraphIndex, paths: Paths) -> pa.Array:
    return list_array(paths, dict_array(paths.values, ix.nodes))


def access_by_principal_batch(ix: GraphIndex, e: EffectiveRows) -> pa.RecordBatch:
    """One row per (principal, resource) of the chunk."""
    cat = ix.catalogue
    if len(e) == 0:
        return pa.RecordBatch.from_pylist([], schema=ACCESS_BY_PRINCIPAL)
    r = cat.resource_row[e.ent].astype(I64)
    n_res = ix.resources.num_rows
    lo = int(e.principal.min())
    p = (e.principal - lo).astype(I64)
    span = int(p.max()) + 1
    by_depth = argsort_keys(p, r, e.depth, e.ent, bounds=(span, n_res, int(e.depth.max()) + 1, len(cat)))
    starts = first_of_runs(p[by_depth] * n_res + r[by_depth])
    best = by_depth[starts]
    slug = cat.slug[e.ent]
    by_name = argsort_keys(p, r, _SLUG_RANK[slug], bounds=(span, n_res, len(SLUGS)))
    offsets = np.append(starts, len(e)).astype(np.int32)
    ents = pa.ListArray.from_arrays(pa.array(offsets), dict_array(slug[by_name], _SLUGS, pa.int8()))
    b = e.take(best)
    rb = r[best]
    cols = [*_principal_columns(ix, b.principal),
            dict_array(cat.rtype[b.ent], _RTYPES, pa.int8()),
            ix.lookup("resource_id").array(rb), ix.lookup("resource_name").array(rb),
            ix.lookup("resource_project").array(rb), ents,
            dict_array(b.via(ix.entra), _VIA, pa.int8()), pa.array(b.depth, pa.int32()), _paths(ix, b.paths)]
    return pa.RecordBatch.from_arrays(cols, schema=ACCESS_BY_PRINCIPAL)


def principals_by_project_batch(ix: GraphIndex, e: EffectiveRows) -> pa.RecordBatch:
    """One row per (project, principal) holding the project's `member` entitlement."""
    cat = ix.catalogue
    on_project = cat.rtype[e.ent] == RT_PROJECT
    slug = cat.slug[e.ent]
    member = on_project & (slug == SLUG_MEMBER)
    # a project's own groups (built-in groups, teams) trivially reach it: not listed as principals
    own = e.principal < ix.n_groups
    own[own] = ix.group_project[e.principal[own]] == cat.resource_row[e.ent[own]] - 1  # rows: org, projects…
    mem = e.take(np.flatnonzero(member & ~own))
    roles = np.flatnonzero(on_project & (slug >= SLUG_ROLE0) & (slug < SLUG_ROLE0 + len(model.PROJECT_ROLES)))
    if len(mem) == 0:
        return pa.RecordBatch.from_pylist([], schema=PRINCIPALS_BY_PROJECT)
    n_res = ix.resources.num_rows
    lo = int(e.principal.min())
    m_key = (mem.principal - lo).astype(I64) * n_res + cat.resource_row[mem.ent]
    order = np.argsort(m_key, kind="stable")
    mem, m_key = mem.take(order), m_key[order]
    r_key = (e.principal[roles] - lo).astype(I64) * n_res + cat.resource_row[e.ent[roles]]
    r_slug = slug[roles]
    r_order = np.lexsort((_SLUG_RANK[r_slug], r_key))
    r_key, r_slug = r_key[r_order], r_slug[r_order]
    # every role is held through a group of the project, so every role key has a member row
    # (roles of the project's own groups are dropped with them)
    pos = np.searchsorted(m_key, r_key)
    kept = (pos < len(m_key)) & (m_key[np.minimum(pos, len(m_key) - 1)] == r_key)
    r_key, r_slug, pos = r_key[kept], r_slug[kept], pos[kept]
    counts = np.bincount(pos, minlength=len(mem))
    offsets = np.zeros(len(mem) + 1, np.int32)
    np.cumsum(counts, out=offsets[1:])
    role_lists = pa.ListArray.from_arrays(pa.array(offsets), dict_array(r_slug, _SLUGS, pa.int8()))
    admin = np.zeros(len(mem), bool)
    admin[pos[r_slug == _ADMIN_SLUG]] = True
    proj_row = cat.resource_row[mem.ent]
    names = ix.lookup("resource_name")
    cols = [ix.lookup("resource_id").array(proj_row), names.array(proj_row),
            *_principal_columns(ix, mem.principal), role_lists, pa.array(admin),
            dict_array(mem.via(ix.entra), _VIA, pa.int8()), pa.array(mem.depth, pa.int32()),
            _paths(ix, mem.paths),
            list_array(mem.paths, names.array(ix.node_resource[mem.paths.values])),
            dict_array(mem.source, ix.nodes), names.array(ix.node_resource[np.maximum(mem.source, 0)])]
    return pa.RecordBatch.from_arrays(cols, schema=PRINCIPALS_BY_PROJECT)


def access_by_principal_table(ix: GraphIndex) -> pa.Table:
    return pa.Table.from_batches([access_by_principal_batch(ix, e) for e in iter_effective(ix)],
                                 schema=ACCESS_BY_PRINCIPAL)


def principals_by_project_table(ix: GraphIndex) -> pa.Table:
    return pa.Table.from_batches([principals_by_project_batch(ix, e) for e in iter_effective(ix)],
                                 schema=PRINCIPALS_BY_PROJECT)

