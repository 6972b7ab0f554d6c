"""Raw tables → integer-coded graph: node ids, group facts, resources and the entitlement catalogue.

Everything downstream (grants, closure, effective grants, views) works on the arrays built here;
descriptors become strings again only when output columns are written, as dictionary arrays whose
dictionary is `nodes` (or `resources.resource_id`, …) and whose indices are these codes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from azdo_pipeline.schemas import RAW_TABLES

from . import model
from .arrays import Lookup, codes
from .arrays import to_np as _np
from .closure import I32, GroupClosure, group_closure, sorted_unique
from .entitlements import Catalogue, build_catalogue
from .resources import build_resources


def normalize_raw(raw: Mapping[str, pa.Table]) -> dict[str, pa.Table]:
    """Every raw table present, with exactly the columns of its schema (missing tables are empty,
    missing columns null), so a snapshot with teams or organizations switched off still builds."""
    out: dict[str, pa.Table] = {}
    for name, schema in RAW_TABLES.items():
        t = raw.get(name)
        if t is None:
            out[name] = schema.empty_table()
            continue
        cols = []
        for f in schema:
            if f.name not in t.column_names:
                cols.append(pa.nulls(t.num_rows, f.type))
            else:
                c = t[f.name]
                cols.append(c if c.type == f.type else c.cast(f.type))
        out[name] = pa.Table.from_arrays(cols, names=schema.names)
    return out


def resolve_organization(raw: Mapping[str, pa.Table], organization: str | None) -> str:
    if organization:
        return organization
    orgs = raw.get("organizations")
    names = [n for n in (orgs["name"].to_pylist() if orgs is not None and orgs.num_rows else []) if n]
    if len(names) == 1:
        return names[0]
    raise ValueError("pass organization=… (the partition's organization name): the organizations table "
                     f"does not name exactly one organization ({len(names)} rows)")


def _sorted_unique(parts: list[pa.Array | pa.ChunkedArray]) -> pa.Array:
    chunks = [c for p in parts for c in (p.chunks if isinstance(p, pa.ChunkedArray) else [p])]
    if not chunks:
        return pa.array([], pa.string())
    u = pc.unique(pa.chunked_array(chunks, type=pa.string()).drop_null())
    return u.take(pc.sort_indices(u))


@dataclass
class GraphIndex:
    """The organization's raw snapshot compiled to integer arrays (see module docstring)."""

    organization: str
    raw: dict[str, pa.Table]
    nodes: pa.Array  # descriptors: codes 0..n_groups-1 are groups (sorted), then other principals (sorted)
    n_groups: int
    node_kind: np.ndarray  # int8 index into model.PRINCIPAL_KINDS
    entra: np.ndarray  # bool per node: an Entra group (aadgp)
    group_row: np.ndarray  # per group code: row in raw groups, -1 for containers missing from it
    row_group: np.ndarray  # per raw groups row: its group code
    group_role: np.ndarray  # per group code: index into model.PROJECT_ROLES of the built-in group, -1
    group_project: np.ndarray  # per group code: row in raw projects, -1
    team_group: np.ndarray  # per team row: group code of its backing group, -1
    team_project: np.ndarray  # per team row: row in raw projects, -1
    edge_member: np.ndarray  # direct membership edges, deduplicated, sorted by (member, container)
    edge_container: np.ndarray

    @property
    def n_nodes(self) -> int:
        return len(self.nodes)

    @staticmethod
    def from_raw(raw: Mapping[str, pa.Table], organization: str | None = None) -> GraphIndex:
        org = resolve_organization(raw, organization)
        r = normalize_raw(raw)
        groups, m, tm = r["groups"], r["memberships"], r["team_members"]
        group_ids = _sorted_unique([groups["descriptor"], m["container_descriptor"]])
        others = _sorted_unique([r["users"]["descriptor"], r["service_accounts"]["descriptor"],
                                 r["service_principals"]["descriptor"], m["member_descriptor"],
                                 tm["member_descriptor"]])
        others = others.filter(pc.invert(pc.is_in(others, value_set=group_ids)))
        nodes = pa.concat_arrays([group_ids, others]) if len(others) else group_ids
        n_groups = len(group_ids)

        kind = np.full(len(nodes), model.KIND_OTHER, np.int8)
        mk = codes(m["member_kind"], pa.array(model.PRINCIPAL_KINDS))
        mc = codes(m["member_descriptor"], nodes)
        kind[mc[mc >= 0]] = np.where(mk >= 0, mk, model.KIND_OTHER)[mc >= 0]
        for table, k in (("service_principals", model.KIND_SERVICE_PRINCIPAL),
                         ("service_accounts", model.KIND_SERVICE_ACCOUNT), ("users", model.KIND_USER)):
            kind[codes(r[table]["descriptor"], nodes)] = k
        kind[:n_groups] = model.KIND_GROUP

        group_code = codes(groups["descriptor"], group_ids)
        group_row = np.full(n_groups, -1, I32)
        group_row[group_code[::-1]] = np.arange(len(group_code), dtype=I32)[::-1]  # first row wins
        entra = np.zeros(len(nodes), bool)
        entra[group_code] = _np(groups["kind"], "") == "aadgp"
        # Entra groups missing from the groups table are still recognisable by descriptor prefix.
        entra[:n_groups] |= _np(pc.starts_with(group_ids, "aadgp."), False)

        projects = r["projects"]
        g_project = codes(groups["project_id"], projects["id"])
        group_project = np.full(n_groups, -1, I32)
        group_project[group_code] = g_project
        group_role = np.full(n_groups, -1, I32)
        role = codes(pc.utf8_lower(groups["display_name"]), pa.array(list(model.ROLE_BY_GROUP_NAME)))
        builtin = ((role >= 0) & (g_project >= 0) & (_np(groups["kind"], "") == "vssgp")
                   & ~_np(groups["is_team"], False))
        # One built-in group per (project, role): the smallest descriptor wins if the data repeats one.
        cand = np.flatnonzero(builtin)
        cand = cand[np.lexsort((group_code[cand], role[cand], g_project[cand]))]
        pr = g_project[cand].astype(np.int64) * len(model.PROJECT_ROLES) + role[cand]
        first = np.concatenate(([True], pr[1:] != pr[:-1])) if len(pr) else np.zeros(0, bool)
        group_role[group_code[cand[first]]] = role[cand[first]]

        teams = r["teams"]
        key_code = codes(teams["id"], groups["storage_key"])
        # (No groups at all: no team has a backing group, and there is nothing to index.)
        team_group = (np.where(key_code >= 0, group_code[np.maximum(key_code, 0)], -1) if len(group_code)
                      else np.full(len(key_code), -1)).astype(I32)
        team_project = codes(teams["project_id"], projects["id"])

        em = mc
        ec = codes(m["container_descriptor"], nodes)
        ok = (em >= 0) & (ec >= 0)
        em, ec = em[ok], ec[ok]
        edge_key = sorted_unique(em.astype(np.int64) * max(len(nodes), 1) + ec)
        edge_member = (edge_key // max(len(nodes), 1)).astype(I32)
        edge_container = (edge_key % max(len(nodes), 1)).astype(I32)
        return GraphIndex(org, r, nodes, n_groups, kind, entra, group_row, group_code, group_role, group_project,
                          team_group, team_project, edge_member, edge_container)

    # ---- derived pieces, computed once -------------------------------------------------
    @cached_property
    def group_closure(self) -> GroupClosure:
        gg = self.edge_member < self.n_groups
        return group_closure(self.n_groups, self.edge_member[gg], self.edge_container[gg], self.entra)

    @cached_property
    def resources(self) -> pa.Table:
        return build_resources(self)

    @cached_property
    def node_resource(self) -> np.ndarray:
        """Per node: its row in `resources` (groups and principals), -1 when it is not synced."""
        res = self.resources
        is_principal = pc.is_in(res["resource_type"], value_set=pa.array(list(model.PRINCIPAL_TYPES)))
        rows = np.flatnonzero(_np(is_principal, False))
        if len(rows) == 0:
            return np.full(self.n_nodes, -1, I32)
        lo = int(rows[0])  # principal rows are contiguous (groups, users, service accounts, principals)
        pos = codes(self.nodes, res["resource_id"].slice(lo, len(rows)))
        return np.where(pos >= 0, pos + lo, -1).astype(I32)

    def lookup(self, name: str) -> Lookup:
        """Dictionary lookups for output columns: entitlement_id, resource_id, resource_name,
        resource_project (per resources row)."""
        cache = self.__dict__.setdefault("_lookups", {})
        if name not in cache:
            sources: dict[str, Callable[[], Any]] = {
                "entitlement_id": lambda: self.catalogue.table["entitlement_id"],
                "resource_id": lambda: self.resources["resource_id"],
                "resource_name": lambda: self.resources["display_name"],
                "resource_project": lambda: self.resources["project_id"]}
            source = sources[name]
            cache[name] = Lookup(source())
        return cache[name]

    @cached_property
    def catalogue(self) -> Catalogue:
        return build_catalogue(self)
