"""Simulator security area: `GET {org}/_apis/accesscontrollists/{securityNamespaceId}` (routes_security).

Filters (token exact / recurse, descriptors, includeExtendedInfo), scope refusal, host styles, and the
team ACEs of a generated medium organization against `Team.admins`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from azdo_sim.generator import generate
from azdo_sim.state import OrgState, World

from tests.conftest import ORG, basic_auth

NS = "5a27515b-ccd7-42c9-84f1-54c998f03866"
URL = f"/{ORG}/_apis/accesscontrollists/{NS}"
V = {"api-version": "7.1"}


@dataclass
class Env:
    world: World
    org: OrgState
    client: httpx.Client  # owner, full-access PAT, https://dev.azure.com


def _env(size: str, seed: int, factory: Callable[..., httpx.Client]) -> Env:
    world = World(seed=seed)
    org = generate(world, ORG, size=size, seed=seed)
    pat = world.issue_pat(ORG, org.owner_key, {"app_token"}).token
    return Env(world, org, factory(world, pat))


@pytest.fixture
def tiny_env(asgi_client_for: Callable[..., httpx.Client]) -> Env:
    return _env("tiny", 7, asgi_client_for)


@pytest.fixture(scope="module")
def medium_env() -> Iterator[Env]:
    from azdo_sim.server import in_process_client

    world = World(seed=11)
    org = generate(world, ORG, size="medium", seed=11)
    pat = world.issue_pat(ORG, org.owner_key, {"app_token"}).token
    headers = {"Authorization": basic_auth(pat), "X-TFS-FedAuthRedirect": "Suppress"}
    with in_process_client(world, base_url="https://dev.azure.com", headers=headers) as client:
        yield Env(world, org, client)


def _acls(env: Env, **params: str) -> dict[str, dict[str, dict]]:
    r = env.client.get(URL, params={**V, **params})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == len(body["value"])
    return {acl["token"]: acl["acesDictionary"] for acl in body["value"]}


def _expected(org: OrgState) -> dict[str, dict[str, int]]:
    """token -> {legacy descriptor: allow}, straight from the state."""
    out: dict[str, dict[str, int]] = {}
    for p in org.projects.values():
        pa = org.identities[p.role_groups["project_administrators"]].identity_descriptor
        pvu = org.identities[p.role_groups["project_valid_users"]].identity_descriptor
        out[p.id] = {pa: 31, pvu: 1}
    for t in org.teams.values():
        if t.admins:
            out[f"{t.project_id}\\{t.id}"] = {org.identities[a].identity_descriptor: 31 for a in t.admins}
    return out


# ---- medium organization: the ACLs are the state -----------------------------------------------


def test_medium_org_acls_equal_the_state(medium_env: Env) -> None:
    acls = _acls(medium_env)
    with medium_env.world.lock:
        expected = _expected(medium_env.org)
        teams = list(medium_env.org.teams.values())
    assert list(acls) == sorted(acls)  # ordered by token
    assert {t: {d: ace["allow"] for d, ace in aces.items()} for t, aces in acls.items()} == expected
    for aces in acls.values():
        for d, ace in aces.items():
            assert ace == {"descriptor": d, "allow": ace["allow"], "deny": 0}
    # every team with administrators has its ACL, the one without has none
    assert sum(1 for t in acls if "\\" in t) == sum(1 for t in teams if t.admins)
    assert any(not t.admins for t in teams) and any(len(t.admins) > 1 for t in teams)


def test_medium_org_team_aces_are_exactly_the_team_admins(medium_env: Env) -> None:
    acls = _acls(medium_env)
    with medium_env.world.lock:
        org = medium_env.org
        for t in org.teams.values():
            token = f"{t.project_id}\\{t.id}"
            if not t.admins:
                assert token not in acls
                continue
            legacy = {org.identities[a].identity_descriptor for a in t.admins}
            assert set(acls[token]) == legacy, t.name
            # the routes_identities descriptor of each admin is the ACE key (case and all)
            keys = {org.identities[a].storage_key for a in t.admins}
            assert {org.by_storage_key(k).identity_descriptor for k in keys} == set(acls[token])


def test_team_ace_descriptors_resolve_through_identitybatch(medium_env: Env) -> None:
    acls = _acls(medium_env)
    team_descriptors = sorted({d for t, aces in acls.items() if "\\" in t for d in aces})
    r = medium_env.client.post(f"https://vssps.dev.azure.com/{ORG}/_apis/identitybatch", params=V,
                               json={"descriptors": team_descriptors, "queryMembership": "None"})
    assert r.status_code == 200, r.text
    found = r.json()["value"]
    assert [i["descriptor"] for i in found] == team_descriptors  # every one resolves, exactly
    with medium_env.world.lock:
        admins = {medium_env.org.identities[a].storage_key for t in medium_env.org.teams.values() for a in t.admins}
    assert {i["id"] for i in found} == admins


# ---- filters ------------------------------------------------------------------------------------


def _project_with_team_acl(env: Env) -> tuple[str, list[str]]:
    """A project id and the team tokens under it (at least one)."""
    all_tokens = list(_acls(env))
    for t in all_tokens:
        if "\\" not in t:
            children = [c for c in all_tokens if c.startswith(t + "\\")]
            if children:
                return t, children
    raise AssertionError("no project with a team ACL")


def test_token_filter_is_exact_and_case_insensitive(tiny_env: Env) -> None:
    pid, children = _project_with_team_acl(tiny_env)
    assert list(_acls(tiny_env, token=pid)) == [pid]
    assert list(_acls(tiny_env, token=pid.upper())) == [pid]
    assert list(_acls(tiny_env, token=children[0])) == [children[0]]
    assert list(_acls(tiny_env, token=children[0].upper())) == [children[0]]
    assert _acls(tiny_env, token=pid[:8]) == {}  # not a prefix match
    assert _acls(tiny_env, token="00000000-0000-0000-0000-000000000000") == {}


def test_recurse_adds_the_children(tiny_env: Env) -> None:
    pid, children = _project_with_team_acl(tiny_env)
    assert list(_acls(tiny_env, token=pid, recurse="true")) == [pid, *sorted(children)]
    assert list(_acls(tiny_env, token=pid, recurse="True", includeExtendedInfo="False")) == [pid, *sorted(children)]
    assert list(_acls(tiny_env, token=pid, recurse="false")) == [pid]
    assert list(_acls(tiny_env, token=children[0], recurse="true")) == [children[0]]
    assert list(_acls(tiny_env, recurse="true")) == list(_acls(tiny_env))  # no token: everything


def test_descriptors_filter_keeps_only_their_aces(tiny_env: Env) -> None:
    everything = _acls(tiny_env)
    org = tiny_env.org
    admin = next(d for aces in (a for t, a in everything.items() if "\\" in t) for d in aces)
    got = _acls(tiny_env, descriptors=admin)
    assert got and all(list(aces) == [admin] for aces in got.values())
    assert set(got) == {t for t, aces in everything.items() if admin in aces}
    assert _acls(tiny_env, descriptors=admin.upper()) == got  # legacy descriptors are case-insensitive
    pa = org.identities[next(iter(org.projects.values())).role_groups["project_administrators"]].identity_descriptor
    both = _acls(tiny_env, descriptors=f"{admin}, {pa}")
    assert set(both) == set(got) | {t for t, aces in everything.items() if pa in aces}
    assert all(set(aces) <= {admin, pa} for aces in both.values())
    assert _acls(tiny_env, descriptors="Microsoft.TeamFoundation.Identity;S-1-9-0") == {}
    pid = next(t for t in got if "\\" in t).split("\\")[0]
    assert set(_acls(tiny_env, token=pid, recurse="true", descriptors=admin)) == {
        t for t in got if t.startswith(pid + "\\") or t == pid}


def test_include_extended_info(tiny_env: Env) -> None:
    r = tiny_env.client.get(URL, params={**V, "includeExtendedInfo": "true"})
    assert r.status_code == 200
    for acl in r.json()["value"]:
        assert list(acl) == ["inheritPermissions", "token", "acesDictionary", "includeExtendedInfo"]
        assert acl["includeExtendedInfo"] is True and acl["inheritPermissions"] is True
        for ace in acl["acesDictionary"].values():
            assert list(ace) == ["descriptor", "allow", "deny", "extendedInfo"]
            assert ace["extendedInfo"] == {"effectiveAllow": ace["allow"]}  # deny and inherited are 0
    plain = tiny_env.client.get(URL, params=V).json()
    for acl in plain["value"]:
        assert "includeExtendedInfo" not in acl
        assert all("extendedInfo" not in ace for ace in acl["acesDictionary"].values())


def test_bad_parameters(tiny_env: Env) -> None:
    r = tiny_env.client.get(URL, params={**V, "recurse": "maybe"})
    assert r.status_code == 400 and r.json()["typeKey"] == "ArgumentException"
    r = tiny_env.client.get(f"/{ORG}/_apis/accesscontrollists/identity", params=V)
    assert r.status_code == 400 and r.json()["typeKey"] == "ArgumentException"
    r = tiny_env.client.get(URL)
    assert r.status_code == 400 and r.json()["typeKey"] == "VssVersionNotSpecifiedException"
    r = tiny_env.client.get(URL, params={"api-version": "7.2"})
    assert r.status_code == 400 and r.json()["typeKey"] == "VssInvalidPreviewVersionException"
    for version in ("7.1-preview", "7.1-preview.1", "7.2-preview.1", "5.0"):
        assert tiny_env.client.get(URL, params={"api-version": version}).status_code == 200, version
    r = tiny_env.client.get(f"/{ORG}/_apis/accesscontrollists/{NS.replace('-', '')}", params=V)
    assert r.status_code == 200 and r.json()["count"] > 0  # any .NET Guid form
    other = tiny_env.client.get(f"/{ORG}/_apis/accesscontrollists/52d39943-cb85-4d7f-8fa8-c6baac873819", params=V)
    assert other.json() == {"count": 0, "value": []}
    # an org-bound PAT on another organization: the same answer as the core routes give
    elsewhere = tiny_env.client.get(f"/nosuchorg/_apis/accesscontrollists/{NS}", params=V)
    assert elsewhere.status_code == tiny_env.client.get("/nosuchorg/_apis/projects", params=V).status_code == 401


# ---- auth ---------------------------------------------------------------------------------------


def _pat(env: Env, scopes: set[str]) -> dict[str, str]:
    token = env.world.issue_pat(ORG, env.org.owner_key, scopes).token
    return {"Authorization": basic_auth(token)}


def test_scope_vso_security_manage_is_needed(tiny_env: Env) -> None:
    ok = tiny_env.client.get(URL, params=V, headers=_pat(tiny_env, {"vso.security_manage"}))
    assert ok.status_code == 200 and ok.json()["count"] > 0
    for scopes in ({"vso.security"}, {"vso.project", "vso.graph", "vso.identity"}):
        r = tiny_env.client.get(URL, params=V, headers=_pat(tiny_env, scopes))
        # the same 401 as any other route refused for a missing scope
        ref = tiny_env.client.get(f"/{ORG}/_apis/projects", params=V, headers=_pat(tiny_env, {"vso.graph"}))
        assert r.status_code == ref.status_code == 401, r.text
        body, expected = r.json(), ref.json()
        assert body["typeKey"] == expected["typeKey"] == "UnauthorizedRequestException"
        assert body["message"].startswith("TF400813:") and set(body) == set(expected)
        assert r.headers["www-authenticate"].startswith("Basic realm=")
    anonymous = tiny_env.client.get(URL, params=V, headers={"Authorization": ""})
    assert anonymous.status_code == 401


def test_oauth_token_needs_the_scope_too(tiny_env: Env) -> None:
    from azdo_sim.tokens import store_of

    with tiny_env.world.lock:
        owner = tiny_env.org.by_storage_key(tiny_env.org.owner_key)
        assert owner is not None and owner.origin == "aad"

    def bearer(scopes: set[str]) -> dict[str, str]:
        with tiny_env.world.lock:
            rec = store_of(tiny_env.world).issue_access_token(
                tiny_env.world, audience="azure_devops", client_id="00000000-0000-0000-0000-00000000c11e",
                oid=owner.origin_id, delegated=True, scopes=frozenset(scopes))
        return {"Authorization": f"Bearer {rec.token}"}

    for scopes in ({"vso.security_manage"}, {"user_impersonation"}):
        assert tiny_env.client.get(URL, params=V, headers=bearer(scopes)).status_code == 200, scopes
    r = tiny_env.client.get(URL, params=V, headers=bearer({"vso.project", "vso.security"}))
    assert r.status_code == 401 and r.json()["typeKey"] == "UnauthorizedRequestException"


# ---- host styles and admin mutations ------------------------------------------------------------


def test_host_styles_answer_alike(tiny_env: Env, asgi_client_for: Callable[..., httpx.Client]) -> None:
    cloud = _acls(tiny_env)
    pat = tiny_env.world.issue_pat(ORG, tiny_env.org.owner_key, {"vso.security_manage"}).token
    loopback = asgi_client_for(tiny_env.world, pat, base_url="http://127.0.0.1:8080")
    r = loopback.get(f"/{ORG}/_apis/AccessControlLists/{NS}/", params=V)
    assert r.status_code == 200, r.text
    assert {a["token"]: a["acesDictionary"] for a in r.json()["value"]} == cloud
    legacy = tiny_env.client.get(f"https://{ORG}.visualstudio.com/_apis/accesscontrollists/{NS}", params=V)
    assert legacy.status_code == 200 and {a["token"]: a["acesDictionary"] for a in legacy.json()["value"]} == cloud
    with tiny_env.world.lock:
        counts = dict(tiny_env.world.request_counts)
    assert counts.get("GET /{org}/_apis/accesscontrollists/{namespace_id}", 0) >= 2


def test_admin_mutations_change_the_team_aces(tiny_env: Env) -> None:
    org = tiny_env.org
    team = next(t for t in org.teams.values() if t.admins)
    token = f"{team.project_id}\\{team.id}"
    outsider = next(u for u in org.users() if u.descriptor not in team.admins and u.subject_type == "aad")

    def mutate(op: str, member: str) -> dict:
        r = tiny_env.client.post(f"/_sim/{ORG}/mutations", json=[{"op": op, "team_id": team.id, "member": member}])
        assert r.status_code == 200, r.text
        return r.json()["result"][0]

    assert mutate("add_team_admin", outsider.descriptor)["created"] is True
    assert outsider.identity_descriptor in _acls(tiny_env, token=token)[token]
    assert mutate("remove_team_admin", outsider.storage_key)["removed"] is True
    assert outsider.identity_descriptor not in _acls(tiny_env, token=token)[token]
    for admin in list(team.admins):
        mutate("remove_team_admin", admin)
    assert _acls(tiny_env, token=token) == {}  # a team without administrators has no ACL
    assert team.project_id in _acls(tiny_env, token=team.project_id)
