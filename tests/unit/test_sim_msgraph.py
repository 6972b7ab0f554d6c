"""Simulated Microsoft Graph: group members read/add/remove, the error envelope, auth, throttling and the
Entra → Azure DevOps propagation delay. In-process through the simulator app (ASGI)."""

from __future__ import annotations

import base64
from datetime import timedelta

import httpx
import pytest
from azdo_sim import entra
from azdo_sim.state import OrgState, World
from azdo_sim.tokens import store_of

GRAPH = "https://graph.microsoft.com"
ALREADY = "One or more added object references already exist for the following modified properties: 'members'."


@pytest.fixture
def world(tiny_world: World) -> World:
    return tiny_world


@pytest.fixture
def org(world: World) -> OrgState:
    return world.org("fabrikam")


def app_token(world: World, roles: tuple[str, ...] = ("GroupMember.ReadWrite.All",)) -> str:
    app = entra.register_app(world, app_roles=roles)
    with world.lock:
        return store_of(world).issue_access_token(world, audience="msgraph", client_id=app.client_id,
                                                  oid=app.sp_object_id, delegated=False,
                                                  roles=frozenset(app.app_roles)).token


@pytest.fixture
def graph(world: World, asgi_client_for) -> httpx.Client:
    c = asgi_client_for(world, None, base_url=GRAPH, suppress=False)
    c.headers["Authorization"] = f"Bearer {app_token(world)}"
    return c


@pytest.fixture
def group(org: OrgState) -> tuple[str, str]:
    """(Entra object id, ADO descriptor) of an aadgp group."""
    g = next(g for g in org.groups() if g.subject_type == "aadgp")
    return g.origin_id, g.descriptor


def outsider(world: World, org: OrgState, gid: str):
    """An Entra user of the org who is not in the group."""
    members = world.entra_members.get(gid, set())
    return next(u for u in org.users() if u.origin == "aad" and u.origin_id not in members)


def assert_graph_error(resp: httpx.Response, status: int, code: str, message: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["code"] == code
    if message is not None:
        assert err["message"] == message
    inner = err["innerError"]
    assert set(inner) == {"date", "request-id", "client-request-id"}
    assert resp.headers["request-id"] == inner["request-id"]
    assert resp.headers["client-request-id"] == inner["client-request-id"]
    return err


def ref(oid: str, host: str = GRAPH) -> dict[str, str]:
    return {"@odata.id": f"{host}/v1.0/directoryObjects/{oid}"}


# ---- reads -------------------------------------------------------------------------------------------


def test_get_group(graph: httpx.Client, group) -> None:
    gid, _ = group
    r = graph.get(f"/v1.0/groups/{gid}")
    assert r.status_code == 200
    body = r.json()
    assert body["id"] == gid and body["securityEnabled"] is True and body["displayName"]
    assert body["@odata.context"] == f"{GRAPH}/v1.0/$metadata#groups/$entity"
    assert r.headers["request-id"]


def test_group_lookup_errors(graph: httpx.Client, world: World) -> None:
    assert_graph_error(graph.get("/v1.0/groups/not-a-guid"), 400, "Request_BadRequest",
                       "Invalid object identifier 'not-a-guid'.")
    missing = world.new_guid()
    assert_graph_error(graph.get(f"/v1.0/groups/{missing}"), 404, "Request_ResourceNotFound",
                       f"Resource '{missing}' does not exist or one of its queried reference-property objects "
                       "are not present.")
    assert_graph_error(graph.get("/v1.0/frobnicate"), 400, "BadRequest", "Resource not found for the segment "
                                                                        "'frobnicate'.")


def test_members_are_paged_with_next_link(graph: httpx.Client, world: World, org: OrgState, group) -> None:
    gid, _ = group
    with world.lock:
        for u in list(org.users())[:7]:
            if u.origin == "aad":
                world.entra_members[gid].add(u.origin_id)
        expected = set(world.entra_members[gid])
    assert len(expected) >= 3
    seen: list[str] = []
    url: str | None = f"/v1.0/groups/{gid}/members?$top=2"
    pages = 0
    while url:
        r = graph.get(url)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["@odata.context"] == f"{GRAPH}/v1.0/$metadata#directoryObjects"
        assert len(body["value"]) <= 2
        for item in body["value"]:
            assert item["@odata.type"] in ("#microsoft.graph.user", "#microsoft.graph.group",
                                           "#microsoft.graph.servicePrincipal")
        seen += [m["id"] for m in body["value"]]
        url = body.get("@odata.nextLink")
        if url:
            assert url.startswith(f"{GRAPH}/v1.0/groups/{gid}/members?") and "$skiptoken=" in url
        pages += 1
    assert sorted(seen) == sorted(expected) and len(seen) == len(set(seen))
    assert pages == -(-len(expected) // 2)
    users = [m for m in graph.get(f"/v1.0/groups/{gid}/members").json()["value"]
             if m["@odata.type"] == "#microsoft.graph.user"]
    assert users and all(u["userPrincipalName"] for u in users)


def test_member_paging_errors(graph: httpx.Client, group) -> None:
    gid, _ = group
    assert_graph_error(graph.get(f"/v1.0/groups/{gid}/members?$top=1000"), 400, "Request_BadRequest")
    assert_graph_error(graph.get(f"/v1.0/groups/{gid}/members?$skiptoken=garbage"), 400,
                       "Directory_ExpiredPageToken")


# ---- writes ------------------------------------------------------------------------------------------


def test_add_and_remove_member(graph: httpx.Client, world: World, org: OrgState, group) -> None:
    gid, _ = group
    user = outsider(world, org, gid)
    r = graph.post(f"/v1.0/groups/{gid}/members/$ref", json=ref(user.origin_id))
    assert r.status_code == 204 and r.content == b""
    assert user.origin_id in world.entra_members[gid]
    assert_graph_error(graph.post(f"/v1.0/groups/{gid}/members/$ref", json=ref(user.origin_id)),
                       400, "Request_BadRequest", ALREADY)
    r = graph.delete(f"/v1.0/groups/{gid}/members/{user.origin_id}/$ref")
    assert r.status_code == 204
    assert user.origin_id not in world.entra_members[gid]
    # not a member any more: 404 naming the GROUP
    assert_graph_error(graph.delete(f"/v1.0/groups/{gid}/members/{user.origin_id}/$ref"), 404,
                       "Request_ResourceNotFound",
                       f"Resource '{gid}' does not exist or one of its queried reference-property objects are "
                       "not present.")


def test_add_member_errors(graph: httpx.Client, world: World, group) -> None:
    gid, _ = group
    ghost = world.new_guid()
    err = assert_graph_error(graph.post(f"/v1.0/groups/{gid}/members/$ref", json=ref(ghost)), 404,
                             "Request_ResourceNotFound")
    assert ghost in err["message"]
    assert_graph_error(graph.post(f"/v1.0/groups/{gid}/members/$ref", json=ref("12345")), 400,
                       "Request_BadRequest", "Invalid object identifier '12345'.")
    assert_graph_error(graph.post(f"/v1.0/groups/{gid}/members/$ref", content=b"{nope",
                                  headers={"Content-Type": "application/json"}), 400, "BadRequest")
    assert_graph_error(graph.post(f"/v1.0/groups/{gid}/members/$ref", json={"id": ghost}), 400,
                       "Request_BadRequest")
    assert_graph_error(graph.post(f"/v1.0/groups/{gid}/members/$ref", json=ref(ghost, "https://evil.example")),
                       400, "Request_BadRequest")
    assert_graph_error(graph.post(f"/v1.0/groups/{world.new_guid()}/members/$ref", json=ref(ghost)), 404,
                       "Request_ResourceNotFound")
    assert_graph_error(graph.delete(f"/v1.0/groups/{gid}/members/xyz/$ref"), 400, "Request_BadRequest",
                       "Invalid object identifier 'xyz'.")


def test_delete_without_ref_never_deletes_the_object(graph: httpx.Client, world: World, group) -> None:
    gid, _ = group
    member = sorted(world.entra_members[gid])[0]
    assert_graph_error(graph.delete(f"/v1.0/groups/{gid}/members/{member}"), 403, "Authorization_RequestDenied",
                       "Insufficient privileges to complete the operation.")
    assert member in world.entra_members[gid] and member in world.entra_objects


def test_patch_members_bind_is_all_or_nothing(graph: httpx.Client, world: World, org: OrgState, group) -> None:
    gid, _ = group
    existing = sorted(world.entra_members[gid])[0]
    fresh = [u.origin_id for u in org.users() if u.origin == "aad" and u.origin_id not in world.entra_members[gid]]
    binds = [f"{GRAPH}/v1.0/directoryObjects/{o}" for o in fresh[:2]]
    r = graph.patch(f"/v1.0/groups/{gid}", json={"members@odata.bind": [*binds, f"{GRAPH}/v1.0/directoryObjects/"
                                                                                 f"{existing}"]})
    assert_graph_error(r, 400, "Request_BadRequest", ALREADY)
    assert not set(fresh[:2]) & world.entra_members[gid]
    assert graph.patch(f"/v1.0/groups/{gid}", json={"members@odata.bind": binds}).status_code == 204
    assert set(fresh[:2]) <= world.entra_members[gid]
    too_many = [f"{GRAPH}/v1.0/directoryObjects/{world.new_guid()}" for _ in range(21)]
    assert_graph_error(graph.patch(f"/v1.0/groups/{gid}", json={"members@odata.bind": too_many}), 400,
                       "Request_BadRequest")


# ---- auth, permissions, throttling --------------------------------------------------------------------


def test_missing_and_bad_tokens_are_401(graph: httpx.Client, world: World, group, tiny_pat: str) -> None:
    gid, _ = group
    url = f"/v1.0/groups/{gid}/members"
    r = graph.get(url, headers={"Authorization": "", "client-request-id": "abc-123"})
    err = assert_graph_error(r, 401, "InvalidAuthenticationToken", "Access token is empty.")
    assert err["innerError"]["client-request-id"] == "abc-123"
    assert r.headers["www-authenticate"].startswith("Bearer")
    pat = "Basic " + base64.b64encode(f":{tiny_pat}".encode()).decode()
    assert_graph_error(graph.get(url, headers={"Authorization": pat}), 401, "InvalidAuthenticationToken")
    assert_graph_error(graph.get(url, headers={"Authorization": "Bearer garbage"}), 401,
                       "InvalidAuthenticationToken")
    app = entra.register_app(world)
    with world.lock:
        ado = store_of(world).issue_access_token(world, audience="azure_devops", client_id=app.client_id,
                                                 oid=app.sp_object_id, delegated=False).token
    assert_graph_error(graph.get(url, headers={"Authorization": f"Bearer {ado}"}), 401, "InvalidAuthenticationToken",
                       "Access token validation failure. Invalid audience.")
    world.clock.advance(timedelta(hours=2))
    assert_graph_error(graph.get(url), 401, "InvalidAuthenticationToken",
                       "Lifetime validation failed, the token is expired.")


def test_token_without_group_member_role_is_403(graph: httpx.Client, world: World, org: OrgState, group) -> None:
    gid, _ = group
    weak = {"Authorization": f"Bearer {app_token(world, roles=())}"}
    for resp in (graph.get(f"/v1.0/groups/{gid}/members", headers=weak),
                 graph.post(f"/v1.0/groups/{gid}/members/$ref", json=ref(outsider(world, org, gid).origin_id),
                            headers=weak)):
        assert_graph_error(resp, 403, "Authorization_RequestDenied",
                           "Insufficient privileges to complete the operation.")
    read_only = {"Authorization": f"Bearer {app_token(world, roles=('GroupMember.Read.All',))}"}
    assert graph.get(f"/v1.0/groups/{gid}/members", headers=read_only).status_code == 200
    assert_graph_error(graph.post(f"/v1.0/groups/{gid}/members/$ref", json=ref(outsider(world, org, gid).origin_id),
                                  headers=read_only), 403, "Authorization_RequestDenied")


def test_delegated_scope_is_enough(graph: httpx.Client, world: World, org: OrgState, group) -> None:
    gid, _ = group
    app = entra.register_app(world)
    owner = org.by_storage_key(org.owner_key)
    with world.lock:
        tok = store_of(world).issue_access_token(world, audience="msgraph", client_id=app.client_id,
                                                 oid=owner.origin_id, delegated=True,
                                                 scopes=frozenset({"GroupMember.ReadWrite.All"})).token
    r = graph.post(f"/v1.0/groups/{gid}/members/$ref", json=ref(outsider(world, org, gid).origin_id),
                   headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 204


def test_throttle_knob(graph: httpx.Client, group) -> None:
    gid, _ = group
    assert graph.post("/_sim/msgraph/throttle", json={"count": 1, "retry_after": 3}).status_code == 200
    r = graph.get(f"/v1.0/groups/{gid}/members")
    assert_graph_error(r, 429, "TooManyRequests")
    assert r.headers["retry-after"] == "3"
    assert graph.get(f"/v1.0/groups/{gid}/members").status_code == 200


def test_unsupported_method_is_405_in_graph_shape(graph: httpx.Client, group) -> None:
    gid, _ = group
    assert_graph_error(graph.put(f"/v1.0/groups/{gid}/members/$ref", json={}), 405, "Request_BadRequest")


# ---- propagation to Azure DevOps ----------------------------------------------------------------------


def ado_members(ado: httpx.Client, descriptor: str) -> set[str]:
    r = ado.get(f"/fabrikam/_apis/graph/memberships/{descriptor}?direction=down&api-version=7.1-preview.1")
    assert r.status_code == 200, r.text
    return {m["memberDescriptor"] for m in r.json()["value"]}


def test_graph_writes_reach_azure_devops_after_the_propagation_delay(
        graph: httpx.Client, world: World, org: OrgState, group, tiny_pat: str, asgi_client_for) -> None:
    gid, descriptor = group
    ado = asgi_client_for(world, tiny_pat, base_url="https://vssps.dev.azure.com")
    user = outsider(world, org, gid)
    world.propagation_delay = timedelta(minutes=30)
    assert graph.post(f"/v1.0/groups/{gid}/members/$ref", json=ref(user.origin_id)).status_code == 204
    # Graph sees it at once, Azure DevOps not yet
    assert user.origin_id in {m["id"] for m in graph.get(f"/v1.0/groups/{gid}/members?$top=999").json()["value"]}
    assert user.descriptor not in ado_members(ado, descriptor)
    world.clock.advance(timedelta(minutes=29))
    assert user.descriptor not in ado_members(ado, descriptor)
    world.clock.advance(timedelta(minutes=2))
    assert user.descriptor in ado_members(ado, descriptor)
    # and the removal likewise
    assert graph.delete(f"/v1.0/groups/{gid}/members/{user.origin_id}/$ref").status_code == 204
    assert user.descriptor in ado_members(ado, descriptor)
    world.clock.advance(timedelta(minutes=31))
    assert user.descriptor not in ado_members(ado, descriptor)



def test_get_user_and_directory_object(graph: httpx.Client, world: World, org: OrgState, group) -> None:
    gid, _ = group
    user = next(u for u in org.users() if u.origin == "aad")
    # GroupMember.ReadWrite.All alone does not read users
    assert_graph_error(graph.get(f"/v1.0/users/{user.origin_id}"), 403, "Authorization_RequestDenied")
    reader = {"Authorization": f"Bearer {app_token(world, roles=('Directory.Read.All',))}"}
    r = graph.get(f"/v1.0/users/{user.origin_id}", headers=reader)
    assert r.status_code == 200 and r.json()["userPrincipalName"] == user.principal_name
    r = graph.get(f"/v1.0/directoryObjects/{gid}", headers=reader)
    assert r.status_code == 200 and r.json()["@odata.type"] == "#microsoft.graph.group"
    assert_graph_error(graph.get(f"/v1.0/users/{gid}", headers=reader), 404, "Request_ResourceNotFound")
