"""`resource_types` and `resources`: every synced object with its parent and profile fields."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import model
from .arrays import block
from .schemas import RESOURCE_TYPES, RESOURCES

if TYPE_CHECKING:
    from .index import GraphIndex


def resource_types_table() -> pa.Table:
    rows = [{"resource_type": t.id, "display_name": t.display_name, "description": t.description,
             "traits": list(t.traits), "account_type": t.account_type, "is_principal": t.is_principal,
             "source_table": t.source_table} for t in model.RESOURCE_TYPES]
    return pa.Table.from_pylist(rows, schema=RESOURCE_TYPES)


def _block(n: int, columns: dict[str, object]) -> pa.Table:
    return block(RESOURCES, n, columns)


def _if(mask: pa.Array | pa.ChunkedArray, values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    return pc.if_else(mask, values, pa.scalar(None, values.type))


def license_levels(users: pa.Table) -> pa.Array:
    lic, src = users["license"].to_pylist(), users["licensing_source"].to_pylist()
    return pa.array([model.license_level(a, b) for a, b in zip(lic, src, strict=True)], pa.string())


def build_resources(ix: GraphIndex) -> pa.Table:
    """Rows in a fixed order: organization, projects, teams, groups, users, service accounts, service
    principals (groups and the principal types are contiguous: `GraphIndex.node_resource` relies on it)."""
    r, org = ix.raw, ix.organization
    orgs = r["organizations"]
    match = [i for i, n in enumerate(orgs["name"].to_pylist()) if n and n.lower() == org.lower()]
    o = orgs.slice(match[0], 1) if match else None
    blocks = [_block(1, {
        "resource_type": model.ORGANIZATION, "resource_id": org,
        "display_name": o["name"][0].as_py() if o else org,
        "status": o["status"][0].as_py() if o else None, "url": o["url"][0].as_py() if o else None})]

    p = r["projects"]
    blocks.append(_block(p.num_rows, {
        "resource_type": model.PROJECT, "resource_id": p["id"], "display_name": p["name"],
        "description": p["description"], "parent_resource_type": model.ORGANIZATION,
        "parent_resource_id": org, "project_id": p["id"], "status": p["state"], "visibility": p["visibility"]}))

    t = r["teams"]
    backing = np.where(ix.team_group >= 0, ix.team_group, 0)
    team_group = ix.nodes.take(pa.array(backing, mask=ix.team_group < 0)) if t.num_rows else pa.array([], pa.string())
    blocks.append(_block(t.num_rows, {
        "resource_type": model.TEAM, "resource_id": t["id"], "display_name": t["name"],
        "description": t["description"], "parent_resource_type": model.PROJECT,
        "parent_resource_id": t["project_id"], "project_id": t["project_id"], "team_group_id": team_group}))

    g = r["groups"]
    in_project = pc.is_valid(g["project_id"])
    role_slugs = pa.array([x.slug for x in model.PROJECT_ROLES])
    g_code = ix.row_group
    role = ix.group_role[g_code] if len(g_code) else np.zeros(0, np.int32)
    project_role = role_slugs.take(pa.array(np.maximum(role, 0), mask=role < 0)) if len(role) else None
    blocks.append(_block(g.num_rows, {
        "resource_type": model.GROUP, "resource_id": g["descriptor"], "display_name": g["display_name"],
        "description": g["description"],
        "parent_resource_type": pc.if_else(in_project, model.PROJECT, model.ORGANIZATION),
        "parent_resource_id": pc.if_else(in_project, g["project_id"], org), "project_id": g["project_id"],
        "storage_key": g["storage_key"], "principal_name": g["principal_name"], "origin": g["origin"],
        "entra_object_id": _if(pc.equal(g["kind"], "aadgp"), g["origin_id"]), "group_kind": g["kind"],
        "scope": g["scope"], "is_team": g["is_team"], "project_role": project_role}))

    u = r["users"]
    blocks.append(_block(u.num_rows, {
        "resource_type": model.USER, "resource_id": u["descriptor"], "display_name": u["display_name"],
        "parent_resource_type": model.ORGANIZATION, "parent_resource_id": org, "storage_key": u["storage_key"],
        "principal_name": u["principal_name"], "email": u["mail_address"], "user_type": u["meta_type"],
        "status": u["status"], "license": u["license"], "license_level": license_levels(u),
        "license_display_name": u["license_display_name"], "licensing_source": u["licensing_source"],
        "last_accessed": u["last_accessed"], "date_created": u["date_created"], "origin": u["origin"],
        "entra_object_id": _if(pc.equal(u["origin"], "aad"), u["origin_id"])}))

    s = r["service_accounts"]
    blocks.append(_block(s.num_rows, {
        "resource_type": model.SERVICE_ACCOUNT, "resource_id": s["descriptor"], "display_name": s["display_name"],
        "parent_resource_type": model.ORGANIZATION, "parent_resource_id": org,
        "principal_name": s["principal_name"], "origin": s["origin"]}))

    sp = r["service_principals"]
    blocks.append(_block(sp.num_rows, {
        "resource_type": model.SERVICE_PRINCIPAL, "resource_id": sp["descriptor"],
        "display_name": sp["display_name"], "parent_resource_type": model.ORGANIZATION,
        "parent_resource_id": org, "principal_name": sp["application_id"], "origin": "aad",
        "entra_object_id": sp["origin_id"], "application_id": sp["application_id"]}))
    return pa.concat_tables(blocks).combine_chunks()
