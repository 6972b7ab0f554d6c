"""`grants`: direct grants only (entitlement × principal), with Baton's grant source.

A membership edge container → member is a direct grant of the container's `member` entitlement;
when the container also confers a team or project entitlement (it backs a team, it is a built-in
project group, it belongs to a project), the member holds that entitlement directly too, with the
container as the grant's `source`. Team administrators and licences are held by the principal
itself (no source). A group listed as its own member is a cycle (see membership_cycles), not a grant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from . import model
from .arrays import dict_array
from .closure import I32
from .entitlements import ENT_RESOURCE_TYPES, SLUGS
from .schemas import GRANTS

if TYPE_CHECKING:
    from .index import GraphIndex

_RTYPES = pa.array(ENT_RESOURCE_TYPES)
_SLUGS = pa.array(SLUGS)
_KINDS = pa.array(model.PRINCIPAL_KINDS)


def grant_columns(ix: GraphIndex, ent: np.ndarray, principal: np.ndarray) -> list[pa.Array]:
    """The six leading columns shared by grants and effective_grants."""
    cat = ix.catalogue
    return [
        ix.lookup("entitlement_id").array(ent),
        dict_array(cat.rtype[ent], _RTYPES, pa.int8()),
        ix.lookup("resource_id").array(cat.resource_row[ent]),
        dict_array(cat.slug[ent], _SLUGS, pa.int8()),
        dict_array(ix.node_kind[principal], _KINDS, pa.int8()),
        dict_array(principal, ix.nodes),
    ]


def direct_grants(ix: GraphIndex) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(entitlement, principal, source) codes of every direct grant; source -1 when there is none."""
    cat = ix.catalogue
    # A group listed as a member of itself is a (reported) cycle, not a grant.
    keep = ix.edge_member != ix.edge_container
    m, c = ix.edge_member[keep], ix.edge_container[keep]
    ents, prins, srcs = [], [], []

    def add(ent: np.ndarray, mask: np.ndarray, with_source: bool) -> None:
        ents.append(ent[mask])
        prins.append(m[mask])
        srcs.append(c[mask] if with_source else np.full(int(mask.sum()), -1, I32))

    gm = cat.group_member[c]
    add(gm, gm >= 0, False)
    tm = cat.group_team_member[c]
    add(tm, tm >= 0, True)
    role = cat.group_role[c]
    add(role, role >= 0, True)
    proj = ix.group_project[c]
    add(np.where(proj >= 0, cat.project_member[np.maximum(proj, 0)], -1), proj >= 0, True)
    ents.append(cat.held_ent)
    prins.append(cat.held_principal)
    srcs.append(np.full(len(cat.held_ent), -1, I32))
    return (np.concatenate(ents).astype(I32), np.concatenate(prins).astype(I32),
            np.concatenate(srcs).astype(I32))


def grants_table(ix: GraphIndex) -> pa.Table:
    ent, principal, source = direct_grants(ix)
    cols = [*grant_columns(ix, ent, principal), dict_array(source, ix.nodes)]
    return pa.Table.from_arrays(cols, schema=GRANTS)
