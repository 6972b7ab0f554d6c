"""`entitlements`: what can be granted on each resource, and the integer catalogue behind it.

- group `member` for every synced group; team `member` (the backing group's membership) and `admin`
  (immutable: the team-administrator flag);
- project roles: one per built-in group found in the project, plus project `member` (held through
  any group of the project);
- organization licences: one per licence level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import model
from .arrays import block, codes
from .closure import I32, sorted_unique
from .resources import license_levels
from .schemas import ENTITLEMENTS

if TYPE_CHECKING:
    from .index import GraphIndex

SLUGS: tuple[str, ...] = (model.MEMBER, model.ADMIN, *(r.slug for r in model.PROJECT_ROLES),
                          *(lv.slug for lv in model.LICENSE_LEVELS))
SLUG_MEMBER, SLUG_ADMIN = 0, 1
SLUG_ROLE0 = 2
SLUG_LICENSE0 = SLUG_ROLE0 + len(model.PROJECT_ROLES)
ENT_RESOURCE_TYPES: tuple[str, ...] = (model.ORGANIZATION, model.PROJECT, model.TEAM, model.GROUP)
RT_ORG, RT_PROJECT, RT_TEAM, RT_GROUP = range(4)
ALL_PRINCIPALS = list(model.PRINCIPAL_TYPES)


@dataclass(frozen=True)
class Catalogue:
    """The entitlements table and integer maps from the graph's codes to entitlement rows."""

    table: pa.Table
    rtype: np.ndarray  # per entitlement: index into ENT_RESOURCE_TYPES
    resource_row: np.ndarray  # per entitlement: row in `resources`
    slug: np.ndarray  # per entitlement: index into SLUGS
    group_member: np.ndarray  # per group code: its `member` entitlement, -1 when the group is not synced
    group_team_member: np.ndarray  # per group code: `member` of the team it backs, -1
    group_role: np.ndarray  # per group code: the project role it confers, -1
    project_member: np.ndarray  # per project row: the project's `member` entitlement
    # Grants held by a principal itself, not through membership of a group (team admins, licences,
    # members of teams whose backing group is unknown): expanded through the closure like any grant.
    held_ent: np.ndarray  # int32, sorted by held_principal
    held_principal: np.ndarray

    def __len__(self) -> int:
        return self.table.num_rows


def _strs(*parts: pa.Array | pa.ChunkedArray | str) -> pa.Array:
    out = pc.binary_join_element_wise(*parts, "")
    return out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out


def _block(n: int, columns: dict[str, object]) -> pa.Table:
    return block(ENTITLEMENTS, n, columns)


class _Blocks:
    """The catalogue's rows, added block by block; `add` returns the new rows' entitlement codes."""

    def __init__(self) -> None:
        self.tables: list[pa.Table] = []
        self.rtype: list[np.ndarray] = []
        self.res_row: list[np.ndarray] = []
        self.slug: list[np.ndarray] = []
        self.count = 0

    def add(self, block: pa.Table, rt: int, rows: np.ndarray, slugs: np.ndarray) -> np.ndarray:
        self.tables.append(block)
        self.rtype.append(np.full(block.num_rows, rt, np.int8))
        self.res_row.append(rows.astype(I32))
        self.slug.append(slugs.astype(np.int8))
        ids = np.arange(self.count, self.count + block.num_rows, dtype=I32)
        self.count += block.num_rows
        return ids


def build_catalogue(ix: GraphIndex) -> Catalogue:
    r = ix.raw
    n_proj, n_team = r["projects"].num_rows, r["teams"].num_rows
    team_row0 = 1 + n_proj  # resources rows: org, projects, teams, groups, …
    group_row0 = team_row0 + n_team
    b = _Blocks()
    lic = _licences(b, ix.organization)
    group_role = _project_roles(b, ix)
    project_member = _project_members(b, r["projects"])
    team_member, team_admin = _team_entitlements(b, ix, team_row0)
    group_member = _group_members(b, ix, group_row0)
    has_group = ix.team_group >= 0
    group_team_member = np.full(ix.n_groups, -1, I32)
    group_team_member[ix.team_group[has_group][::-1]] = team_member[has_group][::-1]
    he, hp = _held(ix, lic, team_member, team_admin)
    n = max(b.count, 1)
    key = sorted_unique(hp.astype(np.int64) * n + he)  # dedupe, sort by principal
    return Catalogue(
        pa.concat_tables(b.tables).combine_chunks(), np.concatenate(b.rtype), np.concatenate(b.res_row),
        np.concatenate(b.slug), group_member, group_team_member, group_role, project_member,
        (key % n).astype(I32), (key // n).astype(I32))


def _licences(b: _Blocks, org: str) -> np.ndarray:
    """Organization licences (access levels)."""
    levels = model.LICENSE_LEVELS
    return b.add(_block(len(levels), {
        "entitlement_id": pa.array([f"organization:{org}:{lv.slug}" for lv in levels]),
        "resource_type": model.ORGANIZATION, "resource_id": org,
        "entitlement": pa.array([lv.slug for lv in levels]),
        "display_name": pa.array([f"{lv.display_name} licence" for lv in levels]),
        "description": pa.array([f"Access level of the organization: {lv.description}" for lv in levels]),
        "purpose": "assignment", "grantable_to": [model.USER], "immutable": False,
        "is_paid": pa.array([lv.is_paid for lv in levels])}),
        RT_ORG, np.zeros(len(levels)), SLUG_LICENSE0 + np.arange(len(levels)))


def _project_roles(b: _Blocks, ix: GraphIndex) -> np.ndarray:
    """Project roles, one per built-in group found; per group code its role entitlement (-1: none)."""
    projects = ix.raw["projects"]
    group_role = np.full(ix.n_groups, -1, I32)
    role_groups = np.flatnonzero(ix.group_role >= 0)
    role_groups = role_groups[np.lexsort((ix.group_role[role_groups], ix.group_project[role_groups]))]
    if len(role_groups):
        proj = ix.group_project[role_groups]
        role = ix.group_role[role_groups]
        pid = projects["id"].take(pa.array(proj))
        pname = projects["name"].take(pa.array(proj))
        g_ids = ix.nodes.take(pa.array(role_groups))
        role_slug = pa.array([model.PROJECT_ROLES[i].slug for i in role])
        group_role[role_groups] = b.add(_block(len(role_groups), {
            "entitlement_id": _strs("project:", pid, ":", role_slug), "resource_type": model.PROJECT,
            "resource_id": pid, "entitlement": role_slug,
            "display_name": _strs(pa.array([model.PROJECT_ROLES[i].group_name for i in role]), " of ",
                                  pc.fill_null(pname, "")),
            "description": pa.array([f"Role held by the transitive members of the built-in group "
                                     f"'{model.PROJECT_ROLES[i].group_name}': {model.PROJECT_ROLES[i].description}"
                                     for i in role]),
            "purpose": "permission", "grantable_to": ALL_PRINCIPALS, "immutable": False, "group_id": g_ids,
            "project_id": pid}), RT_PROJECT, 1 + proj, SLUG_ROLE0 + role)
    return group_role


def _project_members(b: _Blocks, projects: pa.Table) -> np.ndarray:
    n_proj = projects.num_rows
    return b.add(_block(n_proj, {
        "entitlement_id": _strs("project:", projects["id"], ":member"), "resource_type": model.PROJECT,
        "resource_id": projects["id"], "entitlement": model.MEMBER,
        "display_name": _strs("Member of project ", pc.fill_null(projects["name"], "")),
        "description": "Any access to the project: held by every transitive member of any group of the project.",
        "purpose": "assignment", "grantable_to": ALL_PRINCIPALS, "immutable": False,
        "project_id": projects["id"]}), RT_PROJECT, 1 + np.arange(n_proj), np.full(n_proj, SLUG_MEMBER))


def _team_entitlements(b: _Blocks, ix: GraphIndex, team_row0: int) -> tuple[np.ndarray, np.ndarray]:
    """Teams: member (through the backing group) and admin (immutable flag on the team)."""
    teams = ix.raw["teams"]
    n_team = teams.num_rows
    has_group = ix.team_group >= 0
    backing = ix.nodes.take(pa.array(np.maximum(ix.team_group, 0), mask=~has_group)) if n_team \
        else pa.array([], pa.string())
    tname = pc.fill_null(teams["name"], "")
    team_member = b.add(_block(n_team, {
        "entitlement_id": _strs("team:", teams["id"], ":member"), "resource_type": model.TEAM,
        "resource_id": teams["id"], "entitlement": model.MEMBER, "display_name": _strs("Member of team ", tname),
        "description": "Membership of the team: the transitive members of the group that backs it.",
        "purpose": "assignment", "grantable_to": ALL_PRINCIPALS, "immutable": False, "group_id": backing,
        "project_id": teams["project_id"]}), RT_TEAM, team_row0 + np.arange(n_team), np.full(n_team, SLUG_MEMBER))
    team_admin = b.add(_block(n_team, {
        "entitlement_id": _strs("team:", teams["id"], ":admin"), "resource_type": model.TEAM,
        "resource_id": teams["id"], "entitlement": model.ADMIN,
        "display_name": _strs("Administrator of team ", tname),
        "description": "Team administrator (set on the team, not through a group; if the administrator is a "
                       "group, its transitive members hold it too).",
        "purpose": "permission", "grantable_to": ALL_PRINCIPALS, "immutable": True,
        "project_id": teams["project_id"]}), RT_TEAM, team_row0 + np.arange(n_team), np.full(n_team, SLUG_ADMIN))
    return team_member, team_admin


def _group_members(b: _Blocks, ix: GraphIndex, group_row0: int) -> np.ndarray:
    """Groups: member, for every synced group (in code order; containers missing from the groups
    table have no entitlement). Per group code its member entitlement (-1: none)."""
    known = np.flatnonzero(ix.group_row >= 0)
    grows = ix.group_row[known]
    gt = ix.raw["groups"].take(pa.array(grows))
    group_member = np.full(ix.n_groups, -1, I32)
    group_member[known] = b.add(_block(len(known), {
        "entitlement_id": _strs("group:", gt["descriptor"], ":member"), "resource_type": model.GROUP,
        "resource_id": gt["descriptor"], "entitlement": model.MEMBER,
        "display_name": _strs("Member of ", pc.coalesce(gt["principal_name"], gt["display_name"], gt["descriptor"])),
        "description": "Direct or nested membership of the group.", "purpose": "assignment",
        "grantable_to": ALL_PRINCIPALS, "immutable": False, "group_id": gt["descriptor"],
        "project_id": gt["project_id"]}), RT_GROUP, group_row0 + grows, np.full(len(known), SLUG_MEMBER))
    return group_member


def _held(ix: GraphIndex, lic: np.ndarray, team_member: np.ndarray,
          team_admin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grants held by the principal itself, not through a group: team administration, team membership
    of a team without a backing group, licences. (entitlement codes, principal codes)."""
    r = ix.raw
    teams, tm = r["teams"], r["team_members"]
    has_group = ix.team_group >= 0
    held_e: list[np.ndarray] = []
    held_p: list[np.ndarray] = []
    t_row = codes(tm["team_id"], teams["id"])
    m_code = codes(tm["member_descriptor"], ix.nodes)
    ok = (t_row >= 0) & (m_code >= 0)
    admin = ok & tm["is_team_admin"].fill_null(False).to_numpy(zero_copy_only=False)
    held_e.append(team_admin[t_row[admin]])
    held_p.append(m_code[admin])
    member = ok & tm["is_member"].fill_null(True).to_numpy(zero_copy_only=False)  # null: before the column
    orphan = member & ~has_group[np.maximum(t_row, 0)] if teams.num_rows else member
    held_e.append(team_member[t_row[orphan]])
    held_p.append(m_code[orphan])
    u = r["users"]
    levels = model.LICENSE_LEVELS
    level = codes(license_levels(u), pa.array([lv.slug for lv in levels]))
    u_code = codes(u["descriptor"], ix.nodes)
    has = level >= 0
    held_e.append(lic[level[has]])
    held_p.append(u_code[has])
    return np.concatenate(held_e).astype(I32), np.concatenate(held_p).astype(I32)


def entitlements_table(ix: GraphIndex) -> pa.Table:
    return ix.catalogue.table
