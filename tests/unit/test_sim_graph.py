"""Simulator Graph API: subjects, groups, descriptors, lookups, api-version, scopes and host echo."""

from __future__ import annotations

import base64
import uuid

import pytest
from azdo_sim.serialize import scope_descriptor
from azdo_sim.state import b64url

V = "api-version=7.1-preview.1"
VSSPS = "https://vssps.dev.azure.com/fabrikam/_apis"


@pytest.fixture
def vssps(tiny, asgi_client_for):
    return asgi_client_for(tiny.world, tiny.pat, base_url="https://vssps.dev.azure.com")


def _all(client, path: str, params: str = "") -> list[dict]:
    out, token = [], None
    while True:
        q = f"{path}?{V}{params}" + (f"&continuationToken={token}" if token else "")
        r = client.get(q)
        assert r.status_code == 200, r.text
        out.extend(r.json()["value"])
        token = r.headers.get("X-MS-ContinuationToken")
        if not token:
            return out


# ---- subjects ----------------------------------------------------------------------------
def test_users_list_matches_state_and_excludes_service_principals(vssps, tiny_org):
    users = _all(vssps, "/fabrikam/_apis/graph/users")
    assert [u["descriptor"] for u in users] == tiny_org.user_order
    assert all(u["subjectKind"] == "user" for u in users)
    assert not any(u["descriptor"].startswith("aadsp.") for u in users)
    sps = _all(vssps, "/fabrikam/_apis/graph/serviceprincipals")
    assert [s["descriptor"] for s in sps] == tiny_org.sp_order
    sp = sps[0]
    ident = tiny_org.identities[sp["descriptor"]]
    # Shape of GetAllServicePrincipals.json: principalName/directoryAlias are the SP object id.
    assert sp["subjectKind"] == "servicePrincipal" and sp["origin"] == "aad"
    assert sp["applicationId"] == ident.application_id
    assert sp["principalName"] == sp["originId"] == ident.origin_id
    assert sp["mailAddress"] is None


def test_user_shape_follows_spec_example(vssps, tiny_org):
    aad = next(u for u in tiny_org.users() if u.subject_type == "aad")
    r = vssps.get(f"/fabrikam/_apis/graph/users/{aad.descriptor}?{V}")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert list(body) == ["subjectKind", "metaType", "domain", "principalName", "mailAddress", "origin",
                          "originId", "displayName", "_links", "url", "descriptor"]
    assert body["url"] == f"{VSSPS}/Graph/Users/{aad.descriptor}"
    assert set(body["_links"]) == {"self", "memberships", "membershipState", "storageKey", "avatar"}
    assert body["_links"]["avatar"]["href"] == \
        f"https://dev.azure.com/fabrikam/_apis/GraphProfile/MemberAvatars/{aad.descriptor}"
    svc = next(u for u in tiny_org.users() if u.subject_type == "svc")
    body = vssps.get(f"/fabrikam/_apis/graph/users/{svc.descriptor}?{V}").json()
    assert "metaType" not in body and body["origin"] == "vsts" and body["domain"] == "Build"


def test_get_user_errors(vssps, tiny_org):
    missing = "aad." + b64url(str(uuid.uuid4()))
    r = vssps.get(f"/fabrikam/_apis/graph/users/{missing}?{V}")
    assert r.status_code == 404
    assert r.json()["typeKey"] == "GraphSubjectNotFoundException"
    assert r.json()["message"].startswith(f"VS403325: The graph subject with descriptor '{missing}'")
    sp = tiny_org.sp_order[0]
    r = vssps.get(f"/fabrikam/_apis/graph/users/{sp}?{V}")  # aadsp is not a user subject type
    assert r.status_code == 400 and r.json()["message"].startswith("VS860045")
    r = vssps.get(f"/fabrikam/_apis/graph/users/not-a-descriptor?{V}")
    assert r.status_code == 400 and r.json()["message"].startswith("VS860021")


def test_groups_list_scope_and_subject_types(vssps, tiny_org):
    groups = _all(vssps, "/fabrikam/_apis/graph/groups")
    assert [g["descriptor"] for g in groups] == tiny_org.group_order
    g0 = groups[0]
    assert "avatar" not in g0["_links"] and g0["mailAddress"] is None
    assert g0["url"] == f"{VSSPS}/Graph/Groups/{g0['descriptor']}"
    aad = _all(vssps, "/fabrikam/_apis/graph/groups", "&subjectTypes=aadgp")
    assert aad and all(g["descriptor"].startswith("aadgp.") for g in aad)
    assert all(g["isCrossProject"] is True and g["origin"] == "aad" for g in aad)
    assert {g["descriptor"] for g in aad} == {g.descriptor for g in tiny_org.groups() if g.subject_type == "aadgp"}
    # Unknown subject types match nothing (no 400), and are ignored next to known ones.
    assert _all(vssps, "/fabrikam/_apis/graph/groups", "&subjectTypes=bogus") == []
    both = _all(vssps, "/fabrikam/_apis/graph/groups", "&subjectTypes=VSSGP,bogus")
    assert {g["descriptor"] for g in both} == {g.descriptor for g in tiny_org.groups() if g.subject_type == "vssgp"}
    # Project scope: descriptor from graph/descriptors/{projectId}.
    pid = tiny_org.project_order[0]
    r = vssps.get(f"/fabrikam/_apis/graph/descriptors/{pid}?api-version=7.1")
    scp = r.json()["value"]
    assert scp == scope_descriptor(pid) and scp.startswith("scp.")
    scoped = _all(vssps, "/fabrikam/_apis/graph/groups", f"&scopeDescriptor={scp}")
    assert {g["descriptor"] for g in scoped} == {g.descriptor for g in tiny_org.groups() if g.project_id == pid}
    assert all(g["domain"] == f"vstfs:///Classification/TeamProject/{pid}" for g in scoped)


def test_users_in_project_scope_are_transitive_members(vssps, tiny_org):
    pid = tiny_org.project_order[0]
    scoped = _all(vssps, "/fabrikam/_apis/graph/users", f"&scopeDescriptor={scope_descriptor(pid)}")
    expected = set()
    for u in tiny_org.users():
        groups = {tiny_org.identities[g].project_id for g in tiny_org.transitive_groups(u.descriptor)}
        if pid in groups:
            expected.add(u.descriptor)
    assert {u["descriptor"] for u in scoped} == expected
    unknown = scope_descriptor(str(uuid.uuid4()))
    r = vssps.get(f"/fabrikam/_apis/graph/users?{V}&scopeDescriptor={unknown}")
    assert r.status_code == 404


# ---- api-version and auth ----------------------------------------------------------------
@pytest.mark.parametrize(("query", "type_key", "message"), [
    ("", "VssVersionNotSpecifiedException", 'No api-version was supplied for the "GET" request.'),
    ("?api-version=7.1", "VssInvalidPreviewVersionException",
     'The requested version "7.1" of the resource is under preview. The -preview flag must be supplied'),
    ("?api-version=banana", "VssInvalidApiVersionException", 'Invalid api version string: "banana".'),
    ("?api-version=9.0-preview.1", "VssVersionOutOfRangeException",
     "The requested REST API version of 9.0 is out of range for this server."),
])
def test_api_version_errors(vssps, query, type_key, message):
    r = vssps.get(f"/fabrikam/_apis/graph/users{query}")
    assert r.status_code == 400
    body = r.json()
    assert body["typeKey"] == type_key and body["message"].startswith(message)
    assert body["typeName"].startswith(f"Microsoft.VisualStudio.Services.WebApi.{type_key},")


def test_resource_minimum_versions(vssps):
    # GraphServicePrincipalsController is ControllerApiVersion(7.1); users exist since 3.2.
    r = vssps.get("/fabrikam/_apis/graph/serviceprincipals?api-version=6.0-preview.1")
    assert r.status_code == 400 and r.json()["typeKey"] == "VssVersionOutOfRangeException"
    assert "outside the valid version range for this route" in r.json()["message"]
    assert vssps.get("/fabrikam/_apis/graph/users?api-version=6.0-preview.1").status_code == 200
    assert vssps.get("/fabrikam/_apis/graph/users?api-version=3.0-preview.1").status_code == 400


def test_api_version_accepted_forms(vssps, tiny_org):
    for v in ("7.1-preview.1", "7.1-preview", "5.0-preview.1", "7.2-preview.1"):
        assert vssps.get(f"/fabrikam/_apis/graph/groups?api-version={v}").status_code == 200, v
    # version in the Accept header, as the real service allows
    r = vssps.get("/fabrikam/_apis/graph/groups", headers={"Accept": "application/json;api-version=7.1-preview.1"})
    assert r.status_code == 200
    # descriptors/storagekeys are released at 7.1
    key = tiny_org.identities[tiny_org.user_order[0]].storage_key
    assert vssps.get(f"/fabrikam/_apis/graph/descriptors/{key}?api-version=7.1").status_code == 200
    r = vssps.post("/fabrikam/_apis/graph/subjectlookup?api-version=7.1", json={"lookupKeys": []})
    assert r.status_code == 400 and r.json()["typeKey"] == "VssInvalidPreviewVersionException"
    r = vssps.post("/fabrikam/_apis/graph/groups", json={"displayName": "x"})
    assert r.status_code == 400 and 'for the "POST" request' in r.json()["message"]


def test_missing_scope_is_401(tiny, asgi_client_for):
    org = tiny.org
    pat = tiny.world.issue_pat(org.name, org.owner_key, {"vso.project"}).token
    c = asgi_client_for(tiny.world, pat, base_url="https://vssps.dev.azure.com")
    r = c.get(f"/fabrikam/_apis/graph/users?{V}")
    assert r.status_code == 401
    assert r.json()["message"].startswith("TF400813")
    read = tiny.world.issue_pat(org.name, org.owner_key, {"vso.graph"}).token
    c2 = asgi_client_for(tiny.world, read, base_url="https://vssps.dev.azure.com")
    assert c2.get(f"/fabrikam/_apis/graph/users?{V}").status_code == 200
    assert c2.post(f"/fabrikam/_apis/graph/groups?{V}", json={"displayName": "Nope"}).status_code == 401
    assert c2.get("/fabrikam/_apis/identities?api-version=7.1&identityIds="
                  f"{org.owner_key}").status_code == 401  # identities need vso.identity
    manage = tiny.world.issue_pat(org.name, org.owner_key, {"vso.graph_manage"}).token
    c3 = asgi_client_for(tiny.world, manage, base_url="https://vssps.dev.azure.com")
    assert c3.get(f"/fabrikam/_apis/graph/users?{V}").status_code == 200  # manage implies read


# ---- host echo ---------------------------------------------------------------------------
def test_urls_echo_the_request_host(tiny, asgi_client_for):
    d = tiny.org.user_order[0]
    cloud = asgi_client_for(tiny.world, tiny.pat, base_url="https://vssps.dev.azure.com")
    legacy = asgi_client_for(tiny.world, tiny.pat, base_url="https://fabrikam.vssps.visualstudio.com")
    loop = asgi_client_for(tiny.world, tiny.pat, base_url="http://127.0.0.1:8765")
    b = cloud.get(f"/fabrikam/_apis/graph/users/{d}?{V}").json()
    assert b["url"] == f"https://vssps.dev.azure.com/fabrikam/_apis/Graph/Users/{d}"
    b = legacy.get(f"/_apis/Graph/Users/{d}?{V}").json()  # mixed case path, legacy host
    assert b["url"] == f"https://fabrikam.vssps.visualstudio.com/_apis/Graph/Users/{d}"
    assert b["_links"]["avatar"]["href"].startswith("https://fabrikam.visualstudio.com/_apis/GraphProfile/")
    b = loop.get(f"/vssps/fabrikam/_apis/graph/users/{d}?{V}").json()
    assert b["url"] == f"http://127.0.0.1:8765/vssps/fabrikam/_apis/Graph/Users/{d}"
    assert b["_links"]["avatar"]["href"].startswith("http://127.0.0.1:8765/fabrikam/_apis/GraphProfile/")


# ---- descriptors / storage keys ----------------------------------------------------------
def test_descriptor_storage_key_round_trip(vssps, tiny_org):
    for ident in list(tiny_org.identities.values()):
        r = vssps.get(f"/fabrikam/_apis/graph/descriptors/{ident.storage_key}?api-version=7.1")
        assert r.status_code == 200
        body = r.json()
        assert body["value"] == ident.descriptor
        assert body["_links"]["storageKey"]["href"] == f"{VSSPS}/Graph/StorageKeys/{ident.descriptor}"
        r = vssps.get(f"/fabrikam/_apis/graph/storagekeys/{ident.descriptor}?api-version=7.1")
        assert r.status_code == 200 and r.json()["value"] == ident.storage_key
    pid = tiny_org.project_order[0]
    scp = vssps.get(f"/fabrikam/_apis/graph/descriptors/{pid}?api-version=7.1").json()["value"]
    assert base64.urlsafe_b64decode(scp[4:] + "==").decode() == pid
    assert vssps.get(f"/fabrikam/_apis/graph/storagekeys/{scp}?api-version=7.1").json()["value"] == pid


def test_descriptor_errors(vssps):
    unknown = str(uuid.uuid4())
    r = vssps.get(f"/fabrikam/_apis/graph/descriptors/{unknown}?api-version=7.1")
    assert r.status_code == 404 and r.json()["typeKey"] == "SubjectDescriptorNotFoundException"
    assert r.json()["message"] == f"VS403368: The subject descriptor for storage key '{unknown}' could not be found."
    d = "aad." + b64url(unknown)
    r = vssps.get(f"/fabrikam/_apis/graph/storagekeys/{d}?api-version=7.1")
    assert r.status_code == 404 and r.json()["typeKey"] == "StorageKeyNotFoundException"
    assert r.json()["message"] == f"VS403369: The storage key for descriptor '{d}' could not be found."
    r = vssps.get("/fabrikam/_apis/graph/descriptors/00000000-0000-0000-0000-000000000000?api-version=7.1")
    assert r.status_code == 400


# ---- subject lookup / query --------------------------------------------------------------
def test_subject_lookup(vssps, tiny_org):
    user = tiny_org.identities[tiny_org.user_order[0]]
    group = tiny_org.identities[tiny_org.group_order[-1]]
    missing = "aad." + b64url(str(uuid.uuid4()))
    scp = scope_descriptor(tiny_org.project_order[0])
    keys = [{"descriptor": d} for d in (user.descriptor, group.descriptor, missing, scp)]
    r = vssps.post(f"/fabrikam/_apis/graph/subjectlookup?{V}", json={"lookupKeys": keys})
    assert r.status_code == 200
    body = r.json()
    assert body["count"] == 4
    assert body["value"][user.descriptor]["displayName"] == user.display_name
    assert body["value"][group.descriptor]["subjectKind"] == "group"
    assert body["value"][missing] is None
    assert body["value"][scp]["subjectKind"] == "scope"


def test_subject_lookup_limit(vssps, tiny_org):
    keys = [{"descriptor": tiny_org.user_order[0]}] * 500
    assert vssps.post(f"/fabrikam/_apis/graph/subjectlookup?{V}", json={"lookupKeys": keys}).status_code == 200
    r = vssps.post(f"/fabrikam/_apis/graph/subjectlookup?{V}", json={"lookupKeys": keys + keys[:1]})
    assert r.status_code == 400
    assert r.json()["typeKey"] == "TooManyRequestedItemsException"
    assert "501, maximum allowed is 500" in r.json()["message"]


def test_subject_query_prefix(vssps, tiny_org):
    user = tiny_org.identities[tiny_org.user_order[0]]
    prefix = user.display_name[:3]
    r = vssps.post(f"/fabrikam/_apis/graph/subjectquery?{V}", json={"query": prefix, "subjectKind": ["User"]})
    assert r.status_code == 200
    names = [s["displayName"] for s in r.json()["value"]]
    assert user.display_name in names and names == sorted(names)
    assert all(s["subjectKind"] in ("user", "servicePrincipal") for s in r.json()["value"])
    r = vssps.post(f"/fabrikam/_apis/graph/subjectquery?{V}", json={"query": "Project Coll", "subjectKind": ["Group"]})
    assert {s["displayName"] for s in r.json()["value"]} >= {"Project Collection Administrators"}
    assert vssps.post(f"/fabrikam/_apis/graph/subjectquery?{V}", json={"query": "x"}).status_code == 400


# ---- groups: create / delete -------------------------------------------------------------
def test_create_and_delete_org_group(vssps, tiny_org):
    r = vssps.post(f"/fabrikam/_apis/graph/groups?{V}", json={"displayName": "Release Managers",
                                                              "description": "Ship it"})
    assert r.status_code == 201
    body = r.json()
    assert r.headers["Location"] == body["url"]
    assert body["principalName"] == "[fabrikam]\\Release Managers" and body["description"] == "Ship it"
    assert body["domain"] == f"vstfs:///Framework/IdentityDomain/{tiny_org.id}"
    d = body["descriptor"]
    assert d.startswith("vssgp.") and d in tiny_org.identities
    assert tiny_org.audit[-1].action_id == "Group.CreateGroups"
    r = vssps.post(f"/fabrikam/_apis/graph/groups?{V}", json={"displayName": "release managers"})
    assert r.status_code == 409 and r.json()["typeKey"] == "GroupCreationException"
    r = vssps.delete(f"/fabrikam/_apis/graph/groups/{d}?{V}")
    assert r.status_code == 204 and r.content == b""
    assert d not in tiny_org.identities
    assert vssps.get(f"/fabrikam/_apis/graph/groups/{d}?{V}").status_code == 404
    pca = tiny_org.org_groups["project_collection_administrators"]
    r = vssps.delete(f"/fabrikam/_apis/graph/groups/{pca}?{V}")
    assert r.status_code == 403 and r.json()["typeKey"] == "RemoveSpecialGroupException"


def test_create_project_group_joins_project_valid_users(vssps, tiny_org):
    pid = tiny_org.project_order[0]
    proj = tiny_org.projects[pid]
    r = vssps.post(f"/fabrikam/_apis/graph/groups?{V}&scopeDescriptor={scope_descriptor(pid)}",
                   json={"displayName": "Testers"})
    assert r.status_code == 201
    body = r.json()
    assert body["principalName"] == f"[{proj.name}]\\Testers"
    assert body["domain"] == f"vstfs:///Classification/TeamProject/{pid}"
    assert tiny_org.is_member(proj.role_groups["project_valid_users"], body["descriptor"])


def test_materialize_entra_group_by_origin_id(vssps, tiny, tiny_org):
    world = tiny.world
    oid = world.new_guid()
    world.entra_objects[oid] = "group"
    member = next(u for u in tiny_org.users() if u.subject_type == "aad")
    world.entra_members[oid] = {member.origin_id}
    pcvu = tiny_org.org_groups["project_collection_valid_users"]
    r = vssps.post(f"/fabrikam/_apis/graph/groups?{V}&groupDescriptors={pcvu}", json={"originId": oid})
    assert r.status_code == 201
    body = r.json()
    d = body["descriptor"]
    assert d.startswith("aadgp.") and body["originId"] == oid and body["origin"] == "aad"
    assert tiny_org.is_member(d, member.descriptor)  # materialized Entra members show up
    assert tiny_org.is_member(pcvu, d)
    again = vssps.post(f"/fabrikam/_apis/graph/groups?{V}", json={"originId": oid})
    assert again.status_code == 201 and again.json()["descriptor"] == d
    r = vssps.post(f"/fabrikam/_apis/graph/groups?{V}", json={"originId": str(uuid.uuid4())})
    assert r.status_code == 400 and r.json().startswith("VS860016")  # a bare JSON string body
    r = vssps.post(f"/fabrikam/_apis/graph/groups?{V}", json={"displayName": "a", "originId": oid})
    assert r.status_code == 400 and r.json()["message"].startswith("VS860014")


def test_group_writes_need_collection_admin(tiny, asgi_client_for):
    org = tiny.org
    pca = org.org_groups["project_collection_administrators"]
    outsider = next(u for u in org.users() if u.subject_type in ("aad", "msa")
                    and pca not in org.transitive_groups(u.descriptor))
    pat = tiny.world.issue_pat(org.name, outsider.storage_key, {"app_token"}).token
    c = asgi_client_for(tiny.world, pat, base_url="https://vssps.dev.azure.com")
    r = c.post(f"/fabrikam/_apis/graph/groups?{V}", json={"displayName": "Shadow IT"})
    assert r.status_code == 403 and r.json()["typeKey"] == "InvalidAccessException"
    assert c.get(f"/fabrikam/_apis/graph/groups?{V}").status_code == 200  # reads are fine


def test_membership_state(vssps, tiny_org):
    d = tiny_org.user_order[0]
    r = vssps.get(f"/fabrikam/_apis/graph/membershipstates/{d}?{V}")
    assert r.status_code == 200
    assert r.json()["active"] is True
    assert r.json()["_links"]["member"]["href"] == f"{VSSPS}/Graph/Users/{d}"
