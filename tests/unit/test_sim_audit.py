"""Simulator audit log: newest first, id continuation tokens with hasMore, 90 days, disabled auditing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from azdo_sim.state import OrgState, World

from tests.unit.test_sim_core import BASE, pat

URL = "/auditservice/fabrikam/_apis/audit/auditlog"
V = {"api-version": "7.1-preview.1"}


@dataclass
class Env:
    world: World
    org: OrgState
    client: httpx.Client
    h: dict


@pytest.fixture
def env(tiny, asgi_client_for: Callable[..., httpx.Client]) -> Env:
    w, org = tiny.world, tiny.org
    return Env(w, org, asgi_client_for(w, base_url=BASE), pat(w, org, org.owner_key, {"vso.auditlog"}))


def key(entry_id: str) -> tuple[int, str]:
    head, _, rest = entry_id.partition(";")
    return int(head), rest


def read_all(env: Env, batch: int, **extra: str) -> tuple[list[dict], int]:
    entries: list[dict] = []
    token = None
    pages = 0
    while True:
        params = {**V, "batchSize": str(batch), **extra}
        if token:
            params["continuationToken"] = token
        r = env.client.get(URL, params=params, headers=env.h)
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"decoratedAuditLogEntries", "continuationToken", "hasMore"}  # no "value" wrapper
        page = body["decoratedAuditLogEntries"]
        assert len(page) <= batch
        entries += page
        pages += 1
        if page:
            assert body["continuationToken"] == page[-1]["id"]
        if not body["hasMore"]:
            break
        token = body["continuationToken"]
    return entries, pages


def test_newest_first_paging_gets_every_retained_event_once(env: Env) -> None:
    org = env.org
    for i in range(12):
        org.create_project(f"Audit {i}", actor_key=org.owner_key)
    entries, pages = read_all(env, 5, skipAggregation="true")
    window = org.audit_window()
    ids = [e["id"] for e in entries]
    assert len(ids) == len(set(ids))
    assert set(ids) == {e.id for e in window}  # includes the AccessLog event of this read
    assert pages == -(-len(window) // 5)
    assert [key(i) for i in ids] == sorted(key(i) for i in ids)  # newest first
    stamps = [e["timestamp"] for e in entries]
    assert stamps == sorted(stamps, reverse=True)
    access = [e for e in entries if e["actionId"] == "AuditLog.AccessLog"]
    assert len(access) == 1 and access[0]["actorUserId"] == org.owner_key  # one per query, not per page
    assert access[0]["category"] == "access" and access[0]["categoryDisplayName"] == "Access"
    assert access[0]["area"] == "Auditing"  # as the auditLog example
    created = next(e for e in entries if e["actionId"] == "Project.CreateCompleted"
                   and e["data"]["ProjectName"] == "Audit 11")
    assert created["projectName"] == "Audit 11" and created["scopeType"] == "project"
    assert created["actorUserId"] == org.owner_key and created["categoryDisplayName"] == "Create"
    assert created["actorImageUrl"].startswith("http://127.0.0.1:8080/fabrikam/_apis/GraphProfile/MemberAvatars/")
    for f in ("correlationId", "activityId", "actorCUID", "actorClientId", "actorUPN", "authenticationMechanism",
              "scopeDisplayName", "scopeId", "ipAddress", "userAgent", "details", "area", "category"):
        assert f in created


def test_time_window_and_retention_cutoff(env: Env) -> None:
    org = env.org
    old = org.create_project("Old one", actor_key=org.owner_key)
    env.world.clock.advance(timedelta(days=60))
    org.create_project("New one", actor_key=org.owner_key)
    env.h = pat(env.world, org, org.owner_key, {"vso.auditlog"})  # PATs live 30 days
    mid = env.world.clock.now() - timedelta(days=1)
    r = env.client.get(URL, params={**V, "startTime": mid.isoformat(), "skipAggregation": "true"}, headers=env.h)
    names = [e["data"].get("ProjectName") for e in r.json()["decoratedAuditLogEntries"]]
    assert "New one" in names and "Old one" not in names
    env.world.clock.advance(timedelta(days=35))  # "Old one" is now 95 days old
    env.h = pat(env.world, org, org.owner_key, {"vso.auditlog"})
    entries, _ = read_all(env, 1000, skipAggregation="true")
    names = {e["data"].get("ProjectName") for e in entries}
    assert "New one" in names and "Old one" not in names
    cutoff = env.world.clock.now() - timedelta(days=90)
    assert all(e.timestamp >= cutoff for e in org.audit_window())
    assert {e["id"] for e in entries} == {e.id for e in org.audit_window()}
    assert old.id in org.projects  # the project is still there; only its event aged out


def test_access_log_aggregated_unless_skipped(env: Env) -> None:
    for _ in range(3):
        env.client.get(URL, params=V, headers=env.h)
    body = env.client.get(URL, params={**V, "batchSize": "1000"}, headers=env.h).json()
    access = [e for e in body["decoratedAuditLogEntries"] if e["actionId"] == "AuditLog.AccessLog"]
    assert len(access) == 1
    assert len(access[0]["data"]["EventSummary"]) == 4
    assert access[0]["details"] == "Accessed the audit log 4 times"
    flat = env.client.get(URL, params={**V, "batchSize": "1000", "skipAggregation": "true"}, headers=env.h).json()
    assert sum(e["actionId"] == "AuditLog.AccessLog" for e in flat["decoratedAuditLogEntries"]) == 5


def test_aggregated_paging_sees_each_entry_once_while_reads_continue(env: Env) -> None:
    org = env.org
    for i in range(8):
        org.create_project(f"P{i}", actor_key=org.owner_key)
    entries: list[dict] = []
    token = None
    while True:
        params = {**V, "batchSize": "3"}
        if token:
            params["continuationToken"] = token
        body = env.client.get(URL, params=params, headers=env.h).json()
        entries += body["decoratedAuditLogEntries"]
        env.client.get(URL, params=V, headers=env.h)  # someone else reads the log meanwhile
        if not body["hasMore"]:
            break
        token = body["continuationToken"]
    ids = [e["id"] for e in entries]
    assert len(ids) == len(set(ids))
    non_access = {e.id for e in org.audit_window() if e.action_id != "AuditLog.AccessLog"}
    assert non_access <= set(ids)


def test_disabled_auditing_and_permissions(env: Env) -> None:
    org = env.org
    org.auditing_enabled = False
    r = env.client.get(URL, params=V, headers=env.h)
    assert r.status_code == 403 and r.json()["typeKey"] == "AuditLogDisabledException"
    org.auditing_enabled = True
    plain = next(u for u in org.users() if not org.is_collection_admin(u.storage_key))
    r = env.client.get(URL, params=V, headers=pat(env.world, org, plain.storage_key, {"vso.auditlog"}))
    assert r.status_code == 403
    r = env.client.get(URL, params=V, headers=pat(env.world, org, org.owner_key, {"vso.graph"}))
    assert r.status_code == 401
    r = env.client.get(URL, params={"api-version": "7.1"}, headers=env.h)
    assert r.status_code == 400 and r.json()["typeKey"] == "VssInvalidPreviewVersionException"
    r = env.client.get(URL, params={**V, "batchSize": "0"}, headers=env.h)
    assert r.status_code == 400
    r = env.client.get(URL, params={**V, "continuationToken": "garbage"}, headers=env.h)
    assert r.status_code == 400


def test_batch_size_default_and_clamp(env: Env) -> None:
    org = env.org
    for i in range(230):
        org.record("Licensing.Modified", "modify", {"UserIdentifier": f"u{i}"}, "x", actor_key=org.owner_key)
    body = env.client.get(URL, params={**V, "skipAggregation": "true"}, headers=env.h).json()
    assert len(body["decoratedAuditLogEntries"]) == 200 and body["hasMore"] is True


def test_actions(env: Env) -> None:
    r = env.client.get("/auditservice/fabrikam/_apis/audit/actions", params={**V, "areaName": "Security"},
                       headers=env.h)
    assert r.status_code == 200
    body = r.json()
    assert body["count"] == 13 == len(body["value"])
    assert {"area": "Security", "category": "modify", "actionId": "Group.UpdateGroupMembership.Add"} in body["value"]
    everything = env.client.get("/auditservice/fabrikam/_apis/audit/actions", params=V, headers=env.h).json()
    assert any(a["actionId"] == "Licensing.Assigned" for a in everything["value"])
