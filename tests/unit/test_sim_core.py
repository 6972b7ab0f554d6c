"""Simulator core area: projects, teams, team members, connectionData, api-version rules."""

from __future__ import annotations

import base64
from collections.abc import Callable

import httpx
import pytest
from azdo_sim import generator
from azdo_sim.state import OrgState, World

ALL = frozenset({"app_token"})


def headers_for(token: str) -> dict[str, str]:
    basic = base64.b64encode(f":{token}".encode()).decode()
    return {"Authorization": f"Basic {basic}", "X-TFS-FedAuthRedirect": "Suppress"}


def make_world(seed: int = 7, org: str = "fabrikam") -> tuple[World, OrgState]:
    world = World(seed=seed)
    return world, generator.generate(world, org, size="tiny", seed=seed)


BASE = "http://127.0.0.1:8080"  # loopback style: internal paths are the public ones


def client_for(world: World) -> httpx.Client:
    """In-process client (no shared fixture) for modules that import this helper outside pytest."""
    from azdo_sim.server import in_process_client

    return in_process_client(world, base_url=BASE)


def pat(world: World, org: OrgState | None, user_key: str, scopes: frozenset[str] | set[str] = ALL) -> dict:
    return headers_for(world.issue_pat(org.name if org else None, user_key, scopes).token)


@pytest.fixture
def env(tiny, asgi_client_for: Callable[..., httpx.Client]) -> tuple[World, OrgState, httpx.Client, dict]:
    client = asgi_client_for(tiny.world, base_url=BASE)
    return tiny.world, tiny.org, client, pat(tiny.world, tiny.org, tiny.org.owner_key, {"vso.project"})


def test_projects_page_with_header_token(env) -> None:
    _world, org, client, h = env
    for i in range(5):
        org.create_project(f"Extra {i}")
    expected = [org.projects[p].id for p in org.project_order]
    assert len(expected) == 7
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        params = {"api-version": "7.1", "$top": "3"}
        if token:
            params["continuationToken"] = token
        r = client.get("/fabrikam/_apis/projects", params=params, headers=h)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["count"] == len(body["value"])
        seen += [p["id"] for p in body["value"]]
        pages += 1
        token = r.headers.get("X-MS-ContinuationToken")
        if token is None:
            break
        assert token == str(len(seen))  # the token is an integer offset
    assert pages == 3 and seen == expected
    first = client.get("/fabrikam/_apis/projects", params={"api-version": "7.1"}, headers=h).json()["value"][0]
    assert first["url"] == f"http://127.0.0.1:8080/fabrikam/_apis/projects/{first['id']}"
    assert first["state"] == "wellFormed" and first["visibility"] in ("private", "public")


def test_projects_top_skip_and_state_filter(env) -> None:
    _world, org, client, h = env
    for i in range(5):
        org.create_project(f"Extra {i}")
    r = client.get("/fabrikam/_apis/projects", params={"api-version": "7.1", "$skip": "5", "$top": "10"}, headers=h)
    assert [p["name"] for p in r.json()["value"]] == ["Extra 3", "Extra 4"]
    assert "X-MS-ContinuationToken" not in r.headers
    org.projects[org.project_order[0]].state = "deleting"
    names = {p["name"] for p in client.get("/fabrikam/_apis/projects", params={"api-version": "7.1"},
                                           headers=h).json()["value"]}
    assert org.projects[org.project_order[0]].name not in names and len(names) == 6
    r = client.get("/fabrikam/_apis/projects", params={"api-version": "7.1", "stateFilter": "all"}, headers=h)
    assert r.json()["count"] == 7
    r = client.get("/fabrikam/_apis/projects", params={"api-version": "7.1", "$top": "x"}, headers=h)
    assert r.status_code == 400 and r.json()["typeKey"] == "ArgumentException"


def test_get_project_by_name_and_capabilities(env) -> None:
    _world, org, client, h = env
    proj = org.projects[org.project_order[0]]
    r = client.get(f"/fabrikam/_apis/projects/{proj.name.upper()}",
                   params={"api-version": "7.1", "includeCapabilities": "true"}, headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == proj.id and body["capabilities"]["versioncontrol"]["sourceControlType"] == "Git"
    assert body["defaultTeam"]["id"] == proj.default_team_id
    plain = client.get(f"/fabrikam/_apis/projects/{proj.id}", params={"api-version": "7.1"}, headers=h).json()
    assert "capabilities" not in plain
    r = client.get("/fabrikam/_apis/projects/NoSuchProject", params={"api-version": "7.1"}, headers=h)
    assert r.status_code == 404
    assert r.json()["typeKey"] == "ProjectDoesNotExistWithNameException"
    assert r.json()["message"].startswith("TF200016")


def test_api_version_rules(env) -> None:
    _world, _org, client, h = env
    r = client.get("/fabrikam/_apis/projects", headers=h)
    assert r.status_code == 400 and r.json()["typeKey"] == "VssVersionNotSpecifiedException"
    r = client.get("/fabrikam/_apis/projects", headers={**h, "Accept": "application/json;api-version=7.1"})
    assert r.status_code == 200
    r = client.get("/fabrikam/_apis/teams", params={"api-version": "7.1"}, headers=h)
    assert r.status_code == 400 and r.json()["typeKey"] == "VssInvalidPreviewVersionException"
    assert client.get("/fabrikam/_apis/teams", params={"api-version": "7.1-preview.3"}, headers=h).status_code == 200
    r = client.get("/fabrikam/_apis/projects", params={"api-version": "9.0"}, headers=h)
    assert r.status_code == 400 and r.json()["typeKey"] == "VssVersionOutOfRangeException"
    r = client.get("/fabrikam/_apis/projects", params={"api-version": "banana"}, headers=h)
    assert r.status_code == 400 and r.json()["typeKey"] == "VssInvalidApiVersionException"
    # routes are case-insensitive, as in the real service
    assert client.get("/fabrikam/_apis/Projects", params={"api-version": "7.1"}, headers=h).status_code == 200


def test_scopes_and_org_binding(env) -> None:
    world, org, client, _h = env
    graph_only = pat(world, org, org.owner_key, {"vso.graph"})
    r = client.get("/fabrikam/_apis/projects", params={"api-version": "7.1"}, headers=graph_only)
    assert r.status_code == 401 and r.json()["message"].startswith("TF400813")
    world.new_org("other")
    other = pat(world, world.orgs["other"], org.owner_key, {"vso.project"})
    assert client.get("/fabrikam/_apis/projects", params={"api-version": "7.1"},
                      headers=other).status_code == 401
    # anonymous (the shared client sends X-TFS-FedAuthRedirect: Suppress, so 401 rather than 203)
    assert client.get("/fabrikam/_apis/projects", params={"api-version": "7.1"}).status_code == 401
    r = client.get("/nosuchorg/_apis/projects", params={"api-version": "7.1"}, headers=pat(world, None, org.owner_key))
    assert r.status_code == 404


def test_teams_beyond_100_no_cap(env) -> None:
    _world, org, client, h = env
    proj = org.projects[org.project_order[0]]
    for i in range(130):
        org.create_team(proj.id, f"Squad {i:03d}", audit=False)
    in_project = len(org.teams_of(proj.id))
    assert in_project > 130
    url = f"/fabrikam/_apis/projects/{proj.id}/teams"
    first = client.get(url, params={"api-version": "7.1"}, headers=h).json()
    assert first["count"] == 100  # default $top
    seen: list[str] = []
    skip = 0
    while True:
        page = client.get(url, params={"api-version": "7.1", "$top": "50", "$skip": str(skip)}, headers=h).json()
        seen += [t["id"] for t in page["value"]]
        skip += 50
        if page["count"] < 50:
            break
    assert len(seen) == len(set(seen)) == in_project
    assert set(seen) == {t.id for t in org.teams_of(proj.id)}
    # every team of the org, through the preview-only org-wide list, looping on $skip
    everything: list[str] = []
    skip = 0
    while True:
        page = client.get("/fabrikam/_apis/teams", params={"api-version": "7.1-preview.3", "$skip": str(skip)},
                          headers=h).json()
        everything += [t["id"] for t in page["value"]]
        skip += len(page["value"])
        if len(page["value"]) < 100:
            break
    assert sorted(everything) == sorted(org.teams) and len(everything) == len(org.teams) > 100
    big = client.get(url, params={"api-version": "7.1", "$top": "1000"}, headers=h).json()
    assert big["count"] == in_project
    t = big["value"][0]
    assert t["projectId"] == proj.id and t["projectName"] == proj.name
    assert t["identityUrl"] == f"http://127.0.0.1:8080/vssps/fabrikam/_apis/Identities/{t['id']}"


def test_team_by_name_and_members_with_admin_flags(env) -> None:
    _world, org, client, h = env
    team = next(t for t in org.teams.values() if t.admins and org.members(t.group_descriptor))
    proj = org.projects[team.project_id]
    r = client.get(f"/fabrikam/_apis/projects/{proj.name}/teams/{team.name.lower()}",
                   params={"api-version": "7.1"}, headers=h)
    assert r.status_code == 200 and r.json()["id"] == team.id
    r = client.get(f"/fabrikam/_apis/projects/{proj.id}/teams/{team.id}/members",
                   params={"api-version": "7.1"}, headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    members = org.members(team.group_descriptor)
    assert body["count"] == len(members)
    by_desc = {m["identity"]["descriptor"]: m for m in body["value"]}
    assert set(by_desc) == set(members)
    for d, m in by_desc.items():
        ident = org.identities[d]
        assert m["isTeamAdmin"] == (d in team.admins)
        assert m["identity"]["id"] == ident.storage_key
        assert m["identity"]["uniqueName"] == ident.principal_name
        assert m["identity"].get("isContainer", False) == ident.is_group
    assert any(m["isTeamAdmin"] for m in body["value"]) or not (team.admins & members)
    slash = client.get(f"/fabrikam/_apis/projects/{proj.id}/teams/{team.id}/members/",
                       params={"api-version": "7.1"}, headers=h)
    assert slash.status_code == 200 and slash.json() == body
    # paging of members: $top / $skip
    one = client.get(f"/fabrikam/_apis/projects/{proj.id}/teams/{team.id}/members",
                     params={"api-version": "7.1", "$top": "1", "$skip": "1"}, headers=h).json()
    assert one["count"] == min(1, max(0, len(members) - 1))
    assert one["value"][0] == body["value"][1]
    r = client.get(f"/fabrikam/_apis/projects/{proj.id}/teams/nope/members", params={"api-version": "7.1"},
                   headers=h)
    assert r.status_code == 404 and r.json()["typeKey"] == "TeamNotFoundException"


def test_teams_mine(env) -> None:
    _world, org, client, h = env
    proj = org.projects[org.project_order[0]]
    mine = org.create_team(proj.id, "Mine", audit=False)
    owner = org.by_storage_key(org.owner_key)
    org.add_membership(mine.group_descriptor, owner.descriptor, audit=False)
    r = client.get("/fabrikam/_apis/teams", params={"api-version": "7.1-preview.3", "$mine": "true"}, headers=h)
    ids = {t["id"] for t in r.json()["value"]}
    assert mine.id in ids
    groups = org.transitive_groups(owner.descriptor)
    assert ids == {t.id for t in org.teams.values() if t.group_descriptor in groups}


def test_connection_data(env) -> None:
    world, org, client, h = env
    r = client.get("/fabrikam/_apis/connectionData", headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    owner = org.by_storage_key(org.owner_key)
    assert body["authenticatedUser"]["id"] == owner.storage_key
    assert body["authenticatedUser"]["subjectDescriptor"] == owner.descriptor
    assert body["authenticatedUser"]["providerDisplayName"] == owner.display_name
    assert body["instanceId"] == org.id
    assert body["locationServiceData"]["serviceOwner"]
    # an all-organizations PAT of a person who is not in this org
    stranger = world.new_org("elsewhere").add_user(kind="aad", display_name="S", principal_name="s@x.example")
    r = client.get("/fabrikam/_apis/connectionData", headers=pat(world, None, stranger.storage_key))
    assert r.status_code == 401
