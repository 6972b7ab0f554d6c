"""The simulator's per-organization route caches follow every change of the state.

List pages keep indexes (licensed-user scan, filtered/ordered scans, project role groups, teams per
project, legacy descriptors) so that a page costs O(page); these tests change the organization
between two requests through the state's own methods, including the silent ones (audit=False),
and check that the next answer matches the live state.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

import httpx
import pytest
from azdo_sim.state import OrgState, World

from tests.unit.test_sim_core import BASE, pat

ENT = "/vsaex/fabrikam/_apis/userentitlements"
V = {"api-version": "7.1"}


@pytest.fixture
def env(tiny, asgi_client_for: Callable[..., httpx.Client]) -> tuple[World, OrgState, httpx.Client, dict]:
    w, org = tiny.world, tiny.org
    headers = pat(w, org, org.owner_key, {"app_token"})
    return w, org, asgi_client_for(w, base_url=BASE), headers


def _all_ids(client: httpx.Client, headers: dict, **params: str) -> tuple[list[str], int]:
    ids: list[str] = []
    token = None
    total = -1
    while True:
        q = {**V, **params}
        if token:
            q["continuationToken"] = token
        r = client.get(ENT, params=q, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        ids += [m["id"] for m in body["members"]]
        total = body["totalCount"]
        token = body["continuationToken"]
        if not token:
            return ids, total


def _licensed(org: OrgState) -> list[str]:
    return [u.storage_key for u in org.users() if u.storage_key in org.entitlements]


def test_entitlement_scan_follows_silent_additions_and_removals(env) -> None:
    _w, org, client, headers = env
    assert _all_ids(client, headers) == (_licensed(org), len(_licensed(org)))
    # a user and a licence added without any audit event
    u = org.add_user(kind="aad", display_name="Zed Silent", principal_name="zed@fabrikam.com")
    org.set_entitlement(u.storage_key, "express", audit=False)
    ids, total = _all_ids(client, headers)
    assert u.storage_key in ids and ids == _licensed(org) and total == len(ids)
    # auditing off: removal writes nothing, then a new user takes the same list length
    org.auditing_enabled = False
    org.remove_user(u.storage_key)
    v = org.add_user(kind="aad", display_name="Amy Silent", principal_name="amy@fabrikam.com")
    org.set_entitlement(v.storage_key, "stakeholder", audit=False)
    ids, _ = _all_ids(client, headers)
    assert u.storage_key not in ids and v.storage_key in ids and ids == _licensed(org)


def test_filtered_and_ordered_pages_see_in_place_changes_on_a_new_walk(env) -> None:
    _w, org, client, headers = env
    flt = "licenseStatus eq 'disabled'"
    before, _ = _all_ids(client, headers, **{"$filter": flt})
    target = next(k for k in _licensed(org) if k not in before)
    org.entitlements[target].status = "disabled"  # an in-place edit, like the activity mutations
    after, total = _all_ids(client, headers, **{"$filter": flt})
    assert target in after and total == len(before) + 1
    names = {k: org.by_storage_key(k).display_name.lower() for k in _licensed(org)}
    ordered, _ = _all_ids(client, headers, **{"$orderBy": "name desc"})
    assert ordered == sorted(names, key=lambda k: (names[k], k), reverse=True)


def test_token_walk_over_a_large_scan_is_complete_after_a_change(env) -> None:
    _w, org, client, headers = env
    for i in range(230):
        u = org.add_user(kind="aad", display_name=f"Bulk {i:03d}", principal_name=f"bulk{i:03d}@fabrikam.com")
        org.set_entitlement(u.storage_key, "express", audit=False)
    r = client.get(ENT, params=V, headers=headers)
    token = r.json()["continuationToken"]
    extra = org.add_user(kind="aad", display_name="Late", principal_name="late@fabrikam.com")
    org.set_entitlement(extra.storage_key, "express", audit=False)
    r2 = client.get(ENT, params={**V, "continuationToken": token}, headers=headers)
    assert r2.json()["totalCount"] == len(_licensed(org))


def test_project_entitlements_follow_a_new_project(env) -> None:
    _w, org, client, headers = env
    user = next(u for u in org.users() if u.storage_key in org.entitlements)
    url = f"{ENT}/{user.storage_key}"
    assert client.get(url, params=V, headers=headers).status_code == 200
    proj = org.create_project("Cache Probe", actor_key=org.owner_key)
    org.add_membership(proj.role_groups["contributors"], user.descriptor, actor_key=org.owner_key)
    body = client.get(url, params=V, headers=headers).json()
    assert proj.id in {pe["projectRef"]["id"] for pe in body["projectEntitlements"]}


def test_team_lists_follow_new_teams(env) -> None:
    _w, org, client, headers = env
    proj = org.projects[org.project_order[0]]
    url = f"/fabrikam/_apis/projects/{proj.id}/teams"
    first = client.get(url, params=V, headers=headers).json()["value"]
    team = org.create_team(proj.id, "AAA cache probe team", audit=False)
    teams = client.get(url, params=V, headers=headers).json()["value"]
    assert [t["id"] for t in teams] == [t.id for t in org.teams_of(proj.id)][:100]
    assert team.id in {t["id"] for t in teams} and len(teams) == min(len(first) + 1, 100)
    everywhere = client.get("/fabrikam/_apis/teams", params={"api-version": "7.1-preview.3", "$top": "1000"},
                            headers=headers).json()["value"]
    assert team.id in {t["id"] for t in everywhere}
    r = client.get(f"{url}/{team.id}/members", params=V, headers=headers)
    assert r.status_code == 200


def test_identities_by_legacy_descriptor_follow_new_users(env) -> None:
    _w, org, client, headers = env
    url = "/vssps/fabrikam/_apis/identities"
    known = next(org.users())
    r = client.get(url, params={**V, "descriptors": known.identity_descriptor}, headers=headers)
    assert r.json()["value"][0]["id"] == known.storage_key
    new = org.add_user(kind="aad", display_name="Fresh", principal_name="fresh@fabrikam.com")
    r = client.get(url, params={**V, "descriptors": quote(new.identity_descriptor, safe=";\\@.")},
                   headers=headers)
    assert r.status_code == 200 and r.json()["value"][0]["id"] == new.storage_key


def test_indexed_router_keeps_404_405_and_trailing_slash_answers(env) -> None:
    _w, org, client, headers = env
    assert client.get("/fabrikam/_apis/nosuchthing", headers=headers).status_code == 404
    assert client.get("/fabrikam/_apis/a/b/c/d/e/f/g/h/i", headers=headers).status_code == 404
    r = client.patch(ENT, params=V, headers=headers)
    assert r.status_code == 405
    proj = org.projects[org.project_order[0]]
    team = org.teams_of(proj.id)[0]
    slash = client.get(f"/fabrikam/_apis/projects/{proj.id}/teams/{team.id}/members/", params=V, headers=headers)
    assert slash.status_code == 200
