"""Simulator Graph memberships: every verb and status, cycles, Entra read-only groups, list = state edges."""

from __future__ import annotations

import uuid

import pytest
from azdo_sim.state import b64url

V = "api-version=7.1-preview.1"
M = "/fabrikam/_apis/graph/memberships"


@pytest.fixture
def vssps(tiny, asgi_client_for):
    return asgi_client_for(tiny.world, tiny.pat, base_url="https://vssps.dev.azure.com")


def _outsider_and_group(org):
    """A user and a vssgp group the user is not a direct member of."""
    group = next(g for g in org.groups() if g.subject_type == "vssgp" and g.project_id and not g.is_team
                 and g.role == "readers")
    user = next(u for u in org.users() if u.subject_type == "aad" and not org.is_member(group.descriptor, u.descriptor))
    return user, group


def test_put_get_head_delete_cycle(vssps, tiny_org):
    user, group = _outsider_and_group(tiny_org)
    u, g = user.descriptor, group.descriptor
    edge = f"{M}/{u}/{g}?{V}"
    assert vssps.head(edge).status_code == 404
    r = vssps.get(edge)
    assert r.status_code == 404 and r.json()["typeKey"] == "GraphMembershipNotFoundException"
    assert r.json()["message"].startswith(f"VS403328: The graph membership for member descriptor '{u}' and "
                                          f"container descriptor '{g}' could not be found.")
    events = len(tiny_org.audit)
    r = vssps.put(edge)
    assert r.status_code == 201
    body = r.json()
    assert body["containerDescriptor"] == g and body["memberDescriptor"] == u
    assert body["_links"]["container"]["href"].endswith(f"/_apis/Graph/Groups/{g}")
    assert body["_links"]["member"]["href"].endswith(f"/_apis/Graph/Users/{u}")
    assert "Location" not in r.headers
    assert tiny_org.is_member(g, u)
    assert tiny_org.audit[-1].action_id == "Group.UpdateGroupMembership.Add" and len(tiny_org.audit) == events + 1
    again = vssps.put(edge)  # idempotent: same status and body, no second audit event
    assert again.status_code == 201 and again.json() == body and len(tiny_org.audit) == events + 1
    h = vssps.head(edge)
    assert h.status_code == 200 and h.content == b""
    assert vssps.get(edge).json() == body
    r = vssps.delete(edge)
    assert r.status_code == 200 and r.content == b""
    assert not tiny_org.is_member(g, u)
    assert tiny_org.audit[-1].action_id == "Group.UpdateGroupMembership.Remove"
    r = vssps.delete(edge)  # non-member: 404, clients treat it as already revoked
    assert r.status_code == 404 and r.json()["typeKey"] == "RemoveGroupMemberNotMemberException"
    assert vssps.head(edge).status_code == 404


def test_unknown_and_invalid_descriptors(vssps, tiny_org):
    user, group = _outsider_and_group(tiny_org)
    ghost = "aad." + b64url(str(uuid.uuid4()))
    r = vssps.put(f"{M}/{ghost}/{group.descriptor}?{V}")
    assert r.status_code == 404 and r.json()["typeKey"] == "GraphSubjectNotFoundException"
    assert vssps.head(f"{M}/{ghost}/{group.descriptor}?{V}").status_code == 400  # HEAD: unknown subject
    r = vssps.get(f"{M}/{ghost}/{group.descriptor}?{V}")  # GET only asks IsMember
    assert r.status_code == 404 and r.json()["typeKey"] == "GraphMembershipNotFoundException"
    r = vssps.put(f"{M}/{group.descriptor}/{user.descriptor}?{V}")  # container is a user
    assert r.status_code == 400
    scp = "scp." + b64url(tiny_org.project_order[0])
    r = vssps.get(f"{M}/{user.descriptor}/{scp}?{V}")
    assert r.status_code == 400 and r.json()["message"].startswith("VS860012")


def test_cycles_are_rejected(vssps, tiny_org):
    pid = tiny_org.project_order[0]
    proj = tiny_org.projects[pid]
    contributors, pvu = proj.role_groups["contributors"], proj.role_groups["project_valid_users"]
    assert tiny_org.is_member(pvu, contributors)
    r = vssps.put(f"{M}/{pvu}/{contributors}?{V}")  # PVU into Contributors: PVU already contains it
    assert r.status_code == 400
    assert r.json()["typeKey"] == "AddMemberCyclicMembershipException"
    assert r.json()["message"].startswith("TF50233")
    assert not tiny_org.is_member(contributors, pvu)
    r = vssps.put(f"{M}/{contributors}/{contributors}?{V}")  # self-membership
    assert r.status_code == 400


def test_entra_groups_are_read_only(vssps, tiny_org):
    aadgp = next(g for g in tiny_org.groups() if g.subject_type == "aadgp")
    user = next(u for u in tiny_org.users() if u.subject_type == "aad"
                and not tiny_org.is_member(aadgp.descriptor, u.descriptor))
    r = vssps.put(f"{M}/{user.descriptor}/{aadgp.descriptor}?{V}")
    assert r.status_code == 403 and r.json()["typeKey"] == "InvalidAccessException"
    assert not tiny_org.is_member(aadgp.descriptor, user.descriptor)
    member = next(iter(tiny_org.members(aadgp.descriptor)))
    r = vssps.delete(f"{M}/{member}/{aadgp.descriptor}?{V}")
    assert r.status_code == 403
    assert tiny_org.is_member(aadgp.descriptor, member)
    # but an Entra group can be put into an Azure DevOps group
    _, readers = _outsider_and_group(tiny_org)
    if not tiny_org.is_member(readers.descriptor, aadgp.descriptor):
        assert vssps.put(f"{M}/{aadgp.descriptor}/{readers.descriptor}?{V}").status_code == 201


def test_writes_need_collection_admin(tiny, asgi_client_for):
    org = tiny.org
    user, group = _outsider_and_group(org)
    pca = org.org_groups["project_collection_administrators"]
    outsider = next(u for u in org.users() if u.subject_type in ("aad", "msa")
                    and pca not in org.transitive_groups(u.descriptor))
    pat = tiny.world.issue_pat(org.name, outsider.storage_key, {"app_token"}).token
    c = asgi_client_for(tiny.world, pat, base_url="https://vssps.dev.azure.com")
    edge = f"{M}/{user.descriptor}/{group.descriptor}?{V}"
    assert c.put(edge).status_code == 403
    assert not org.is_member(group.descriptor, user.descriptor)
    assert c.head(edge).status_code == 404  # reads are allowed


def test_owner_cannot_leave_collection_admins(vssps, tiny_org):
    owner = tiny_org.by_storage_key(tiny_org.owner_key)
    pca = tiny_org.org_groups["project_collection_administrators"]
    if not tiny_org.is_member(pca, owner.descriptor):
        pytest.skip("owner is an indirect admin in this world")
    r = vssps.delete(f"{M}/{owner.descriptor}/{pca}?{V}")
    assert r.status_code == 403 and r.json()["typeKey"] == "RemoveAccountOwnerFromAdminGroupException"
    assert tiny_org.is_member(pca, owner.descriptor)


def test_list_equals_state_direct_edges(vssps, tiny_org):
    for d, ident in list(tiny_org.identities.items()):
        up = vssps.get(f"{M}/{d}?{V}")  # default direction: up
        assert up.status_code == 200 and "X-MS-ContinuationToken" not in up.headers
        body = up.json()
        assert body["count"] == len(body["value"])
        assert {(m["memberDescriptor"], m["containerDescriptor"]) for m in body["value"]} == \
            {(d, c) for c in tiny_org.member_of(d)}
        down = vssps.get(f"{M}/{d}?{V}&direction=Down&depth=1").json()
        assert {(m["memberDescriptor"], m["containerDescriptor"]) for m in down["value"]} == \
            {(m, d) for m in tiny_org.members(d)}
        if not ident.is_group:
            assert down["value"] == []


def test_list_parameters(vssps, tiny_org):
    d = tiny_org.user_order[0]
    r = vssps.get(f"{M}/{d}?{V}&depth=2")
    assert r.status_code == 400 and r.json()["message"].startswith("VS860019")
    r = vssps.get(f"{M}/{d}?{V}&direction=sideways")
    assert r.status_code == 400 and r.json()["message"].startswith("VS860020")
    expanded = vssps.get(f"{M}/{d}?{V}&depth=-1").json()
    assert {m["containerDescriptor"] for m in expanded["value"]} == tiny_org.transitive_groups(d)
    ghost = "aad." + b64url(str(uuid.uuid4()))
    assert vssps.get(f"{M}/{ghost}?{V}").status_code == 404
