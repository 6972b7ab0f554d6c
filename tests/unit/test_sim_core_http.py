"""Core, entitlements, audit and accounts over real HTTP (uvicorn + TLS on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import httpx
import pytest
from azdo_sim.server import SimulatorServer
from azdo_sim.state import OrgState, World

from tests.conftest import basic_auth, make_tiny


@dataclass
class Live:
    world: World
    org: OrgState
    server: SimulatorServer
    client: httpx.Client  # owner, org-bound full-access PAT


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    sim = make_tiny()
    org = sim.org
    with sim.world.lock:
        for i in range(130):
            u = org.add_user(kind="aad", display_name=f"Live {i:03d}", principal_name=f"live{i:03d}@fabrikam.com")
            org.set_entitlement(u.storage_key, "express", audit=False)
        for i in range(4):
            org.create_project(f"Live project {i}", actor_key=org.owner_key)
    with SimulatorServer(sim.world) as srv, httpx.Client(
            base_url=srv.base_url, verify=srv.ssl_context(),
            headers={"Authorization": basic_auth(sim.pat), "X-TFS-FedAuthRedirect": "Suppress"}) as client:
        yield Live(sim.world, org, srv, client)


def test_projects_header_token_over_http(live: Live) -> None:
    seen, token = [], None
    while True:
        params = {"api-version": "7.1", "$top": "2", **({"continuationToken": token} if token else {})}
        r = live.client.get("/fabrikam/_apis/projects", params=params)
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
        seen += [p["id"] for p in r.json()["value"]]
        token = r.headers.get("x-ms-continuationtoken")
        if token is None:
            break
    with live.world.lock:
        assert seen == list(live.org.project_order)
    assert r.json()["value"][0]["url"].startswith(f"{live.server.base_url}/fabrikam/_apis/projects/")


def test_userentitlements_token_must_be_encoded_over_http(live: Live) -> None:
    url = "/vsaex/fabrikam/_apis/userentitlements"
    first = live.client.get(url, params={"api-version": "7.1"}).json()
    token = first["continuationToken"]
    assert token is not None and all(ch in token for ch in "+#=")
    # a client that pastes the token unencoded: '#' ends the query on the wire, '+' becomes a space
    r = live.client.get(f"{url}?api-version=7.1&continuationToken={token}")
    assert r.status_code == 500 and r.json()["typeKey"] == "InvalidContinuationTokenException"
    ids = [m["id"] for m in first["members"]]
    while token is not None:
        body = live.client.get(f"{url}?api-version=7.1&continuationToken={quote(token, safe='')}").json()
        ids += [m["id"] for m in body["members"]]
        token = body["continuationToken"]
    with live.world.lock:
        expected = [u.storage_key for u in live.org.users() if u.storage_key in live.org.entitlements]
    assert ids == expected and len(ids) > 100


def test_audit_paging_over_http(live: Live) -> None:
    url = "/auditservice/fabrikam/_apis/audit/auditlog"
    ids, token = [], None
    while True:
        params = {"api-version": "7.1-preview.1", "batchSize": "4", "skipAggregation": "true",
                  **({"continuationToken": token} if token else {})}
        body = live.client.get(url, params=params).json()
        ids += [e["id"] for e in body["decoratedAuditLogEntries"]]
        if not body["hasMore"]:
            break
        token = body["continuationToken"]
    with live.world.lock:
        window = {e.id for e in live.org.audit_window()}
        created = {e.id for e in live.org.audit if e.action_id == "Project.CreateCompleted"}
    # every retained event exactly once (only the first page wrote an AccessLog event)
    assert len(ids) == len(set(ids)) and set(ids) == window
    assert created <= set(ids)


def test_accounts_and_profile_over_http(live: Live) -> None:
    with live.world.lock:
        global_pat = live.world.issue_pat(None, live.org.owner_key, {"vso.profile"}).token
    h = {"Authorization": basic_auth(global_pat), "X-TFS-FedAuthRedirect": "Suppress"}
    me = live.client.get("/app.vssps/_apis/profile/profiles/me", params={"api-version": "7.1"}, headers=h).json()
    r = live.client.get("/app.vssps/_apis/accounts", params={"api-version": "7.1", "memberId": me["id"]}, headers=h)
    assert r.status_code == 200
    assert [a["accountName"] for a in r.json()["value"]] == ["fabrikam"]
    assert r.json()["value"][0]["accountUri"] == f"{live.server.base_url}/vssps/fabrikam/"
    # the org-bound PAT of the shared client is refused by app.vssps
    r = live.client.get("/app.vssps/_apis/accounts", params={"api-version": "7.1", "memberId": me["id"]})
    assert r.status_code == 401
