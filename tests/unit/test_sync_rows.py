"""Row mapping and the users/entitlements join of the full sync (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa

from azdo_pipeline import schemas
from azdo_pipeline.sync import rows
from azdo_pipeline.sync.full import _ENTITLEMENT_PART, _USER_PART, join_users


def _user(d: str) -> dict:
    return rows.user_row({"descriptor": d, "origin": "aad", "principalName": f"{d}@x.com"}, None)


def _ent(d: str, lic: str, last: str = "0001-01-01T00:00:00Z") -> dict:
    return {"descriptor": d, **rows.entitlement_fields({
        "id": f"key-{d}", "accessLevel": {"accountLicenseType": lic, "status": "active"},
        "lastAccessedDate": last, "dateCreated": "2024-05-01T10:00:00.1234567Z"})}


def test_join_keeps_every_user_and_the_first_entitlement() -> None:
    users = [pa.RecordBatch.from_pylist([_user("aad.a"), _user("aad.b")], schema=_USER_PART),
             pa.RecordBatch.from_pylist([_user("msa.c")], schema=_USER_PART)]
    ents = [pa.RecordBatch.from_pylist([_ent("aad.a", "express", "2026-01-02T03:04:05Z"),
                                        _ent("aad.b", "stakeholder")], schema=_ENTITLEMENT_PART),
            pa.RecordBatch.from_pylist([_ent("aad.a", "advanced")], schema=_ENTITLEMENT_PART)]
    t = join_users(users, ents)
    assert t.schema == schemas.USERS
    by = {r["descriptor"]: r for r in t.to_pylist()}
    assert set(by) == {"aad.a", "aad.b", "msa.c"}
    assert by["aad.a"]["license"] == "express" and by["aad.a"]["storage_key"] == "key-aad.a"
    assert by["aad.a"]["last_accessed"] == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert by["aad.b"]["last_accessed"] is None  # never signed in
    assert by["aad.b"]["date_created"] == datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert by["msa.c"]["license"] is None and by["msa.c"]["storage_key"] is None


def test_join_with_no_entitlements() -> None:
    t = join_users([pa.RecordBatch.from_pylist([_user("aad.a")], schema=_USER_PART)], [])
    assert t.num_rows == 1 and t["license"].null_count == 1


def test_member_kind_and_group_scope() -> None:
    assert [rows.member_kind(d) for d in ("aad.x", "msa.x", "svc.x", "aadsp.x", "vssgp.x", "aadgp.x", "acs.x")] == [
        "user", "user", "service_account", "service_principal", "group", "group", "other"]
    g = rows.group_row({"descriptor": "vssgp.x", "originId": "t1",
                        "domain": "vstfs:///Classification/TeamProject/p1"}, {"t1"})
    assert (g["scope"], g["project_id"], g["is_team"], g["storage_key"]) == ("project", "p1", True, "t1")
    e = rows.group_row({"descriptor": "aadgp.y", "originId": "oid", "domain": "vstfs:///Framework/IdentityDomain/t"},
                       {"oid"})
    assert (e["scope"], e["is_team"], e["storage_key"]) == ("organization", False, None)


def test_tables_off_by_setting_are_reported_disabled(tiny, tmp_path) -> None:
    """teams/team_members/organizations are written empty and flagged when their setting is off;
    the real client against the simulator app in process."""
    import asyncio

    import httpx
    from azdo_sim.app import create_app

    from azdo_pipeline.auth import PatCredential
    from azdo_pipeline.client import AzureDevOpsClient
    from azdo_pipeline.store import Store
    from azdo_pipeline.sync.full import SyncOptions, full_sync

    async def run():
        transport = httpx.ASGITransport(app=create_app(tiny.world), client=("127.0.0.1", 50000))
        async with await AzureDevOpsClient.connect("https://dev.azure.com/fabrikam", PatCredential(tiny.pat),
                                                   transport=transport) as client:
            return await full_sync(client, Store(tmp_path), "fabrikam", "s1", SyncOptions())

    report = asyncio.run(run())
    off = {n for n, t in report.tables.items() if not t.enabled}
    assert off == {"teams", "team_members", "organizations"}
    assert all(report.tables[n].rows == 0 for n in off)
    assert all(report.tables[n].rows > 0 for n in ("users", "groups", "memberships", "projects"))
    assert all(t.path.exists() for t in report.tables.values())
    assert "GET accesscontrollists" not in report.requests_by_endpoint  # nothing read for a table that is off
