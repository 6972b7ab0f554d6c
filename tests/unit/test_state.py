"""Rules of the simulator's state model (azdo_sim.state), independent of HTTP."""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime, timedelta

import pytest
from azdo_sim.state import (
    _MAX_TICKS,
    AZURE_DEVOPS_SERVICE_ACTOR,
    NEVER,
    Clock,
    OrgState,
    SimError,
    World,
    b64url,
    b64url_decode,
    dotnet_ticks,
    iso,
)


@pytest.fixture
def world() -> World:
    return World(seed=11)


@pytest.fixture
def org(world: World) -> OrgState:
    org = world.new_org("fabrikam")
    owner = org.add_user(kind="aad", display_name="Olivia Owner", principal_name="olivia@contoso.com")
    org.owner_key = owner.storage_key
    org.add_membership(org.org_groups["project_collection_administrators"], owner.descriptor, audit=False)
    org.set_entitlement(owner.storage_key, "express", audit=False)
    return org


def _user(org: OrgState, name: str, kind: str = "aad"):
    domain = "outlook.com" if kind == "msa" else "contoso.com"
    u = org.add_user(kind=kind, display_name=name.title(), principal_name=f"{name}@{domain}")
    org.set_entitlement(u.storage_key, "express", audit=False)
    return u


def _group(org: OrgState, name: str, project_id: str | None = None):
    return org.create_group(display_name=name, project_id=project_id, audit=False)


def _actions(org: OrgState) -> list[str]:
    return [e.action_id for e in org.audit]


# ---- identifiers --------------------------------------------------------------------------


def test_descriptors_are_type_prefix_plus_base64url_identifier(org: OrgState, world: World) -> None:
    u = _user(org, "ann")
    m = _user(org, "max", kind="msa")
    svc = org.add_user(kind="svc", display_name="P Build Service (fabrikam)", principal_name="",
                       svc_identifier=f"{org.id}:Build:{org.id}")
    sp = org.add_service_principal(display_name="deploy")
    g = _group(org, "Release Approvers")
    eg = org.create_group(display_name="SG-Dev", entra_oid=world.new_guid(), audit=False)
    assert u.descriptor.startswith("aad.") and m.descriptor.startswith("msa.")
    assert b64url_decode(svc.descriptor.split(".", 1)[1]) == f"{org.id}:Build:{org.id}"
    assert sp.descriptor.startswith("aadsp.") and sp.application_id and sp.subject_kind == "servicePrincipal"
    sid = b64url_decode(g.descriptor.split(".", 1)[1])
    assert g.descriptor.startswith("vssgp.") and re.fullmatch(r"S-1-9-1551374245(-\d+){6}", sid)
    assert eg.descriptor.startswith("aadgp.") and eg.principal_name == "[TEAM FOUNDATION]\\SG-Dev"
    assert g.principal_name == "[fabrikam]\\Release Approvers"
    assert g.domain == f"vstfs:///Framework/IdentityDomain/{org.id}"
    assert "=" not in u.descriptor and b64url_decode(b64url("ab?")) == "ab?"
    # Entra objects are registered on the Entra side of the world.
    assert world.entra_objects[u.origin_id] == "user" and world.entra_objects[eg.origin_id] == "group"
    assert world.entra_objects[sp.origin_id] == "servicePrincipal" and m.origin_id not in world.entra_objects


def test_project_creates_builtin_groups_nested_in_valid_users(org: OrgState) -> None:
    proj = org.create_project("Apollo")
    assert set(proj.role_groups) == {"project_administrators", "contributors", "readers",
                                     "build_administrators", "project_valid_users"}
    pvu = proj.role_groups["project_valid_users"]
    assert org.members(pvu) == {d for r, d in proj.role_groups.items() if r != "project_valid_users"}
    assert pvu in org.members(org.org_groups["project_collection_valid_users"])
    team = org.teams[proj.default_team_id]
    assert team.name == "Apollo Team" and team.group_descriptor in org.members(proj.role_groups["contributors"])
    g = org.get(proj.role_groups["contributors"])
    assert g.principal_name == "[Apollo]\\Contributors"
    assert g.domain == f"vstfs:///Classification/TeamProject/{proj.id}"
    # The team id is the backing group's identity id (storage key), as in the real service.
    assert org.get(team.group_descriptor).storage_key == team.id
    assert _actions(org) == ["Project.CreateCompleted"]
    with pytest.raises(SimError) as err:
        org.create_project("APOLLO")
    assert err.value.kind == "conflict"


# ---- memberships ----------------------------------------------------------------------------


def test_add_and_remove_membership_are_idempotent_and_audited_once(org: OrgState) -> None:
    g, u = _group(org, "Testers"), _user(org, "ann")
    assert org.add_membership(g.descriptor, u.descriptor) is True
    assert org.add_membership(g.descriptor, u.descriptor) is False
    assert org.is_member(g.descriptor, u.descriptor) and g.descriptor in org.member_of(u.descriptor)
    assert org.remove_membership(g.descriptor, u.descriptor) is True
    assert org.remove_membership(g.descriptor, u.descriptor) is False
    assert not org.is_member(g.descriptor, u.descriptor) and g.descriptor not in org.member_of(u.descriptor)
    assert _actions(org) == ["Group.UpdateGroupMembership.Add", "Group.UpdateGroupMembership.Remove"]
    add = org.audit[0]
    assert add.data["GroupId"] == g.storage_key and add.data["MemberId"] == u.storage_key
    assert add.data["Updates"] == [{"GroupId": g.storage_key, "MemberId": u.storage_key, "Active": True}]
    assert org.audit[1].data["Updates"][0]["Active"] is False


def test_cycles_are_rejected_including_self_membership(org: OrgState) -> None:
    a, b, c = _group(org, "A"), _group(org, "B"), _group(org, "C")
    org.add_membership(a.descriptor, b.descriptor)
    org.add_membership(b.descriptor, c.descriptor)
    before = len(org.audit)
    for container, member in ((c, a), (b, a), (a, a)):
        with pytest.raises(SimError) as err:
            org.add_membership(container.descriptor, member.descriptor)
        assert err.value.kind == "cycle"
    assert len(org.audit) == before and not org.is_member(c.descriptor, a.descriptor)
    # A user can always be added (users are leaves).
    u = _user(org, "ann")
    assert org.add_membership(c.descriptor, u.descriptor)


def test_users_cannot_contain_members_and_unknown_subjects_are_not_found(org: OrgState) -> None:
    u, v = _user(org, "ann"), _user(org, "bob")
    with pytest.raises(SimError) as err:
        org.add_membership(u.descriptor, v.descriptor)
    assert err.value.kind == "invalid"
    with pytest.raises(SimError) as err:
        org.add_membership(org.org_groups["project_collection_administrators"], "aad.bm90LWEtdXNlcg")
    assert err.value.kind == "not_found" and "VS403325" in err.value.message


def test_entra_groups_are_read_only_except_through_entra(org: OrgState, world: World) -> None:
    eg = org.create_group(display_name="SG-Dev", entra_oid=world.new_guid(), audit=False)
    u = _user(org, "ann")
    for op in (org.add_membership, org.remove_membership):
        with pytest.raises(SimError) as err:
            op(eg.descriptor, u.descriptor)
        assert err.value.kind == "read_only"
    assert org.add_membership(eg.descriptor, u.descriptor, via_entra=True)
    assert org.remove_membership(eg.descriptor, u.descriptor, via_entra=True)
    assert _actions(org) == []  # Entra-driven changes are never audited


def test_entra_writes_propagate_only_after_the_delay(org: OrgState, world: World) -> None:
    eg = org.create_group(display_name="SG-Dev", entra_oid=world.new_guid(), audit=False)
    u = _user(org, "ann")
    assert world.entra_write(eg.origin_id, u.origin_id, True) is True
    assert world.entra_write(eg.origin_id, u.origin_id, True) is False  # already a member in Entra
    assert u.origin_id in world.entra_members[eg.origin_id]
    world.settle()
    assert not org.is_member(eg.descriptor, u.descriptor)  # not visible in Azure DevOps yet
    world.clock.advance(world.propagation_delay - timedelta(seconds=1))
    world.settle()
    assert not org.is_member(eg.descriptor, u.descriptor)
    world.clock.advance(timedelta(seconds=2))
    world.settle()
    assert org.is_member(eg.descriptor, u.descriptor) and not world.pending_entra
    # Removal follows the same path.
    assert world.entra_write(eg.origin_id, u.origin_id, False)
    world.settle()
    assert org.is_member(eg.descriptor, u.descriptor)
    world.clock.advance(world.propagation_delay)
    world.settle()
    assert not org.is_member(eg.descriptor, u.descriptor)
    assert _actions(org) == []


def test_entra_write_for_a_subject_unknown_to_the_org_is_skipped(org: OrgState, world: World) -> None:
    eg = org.create_group(display_name="SG-Dev", entra_oid=world.new_guid(), audit=False)
    stranger = world.new_guid()
    world.entra_objects[stranger] = "user"
    world.entra_write(eg.origin_id, stranger, True)
    world.clock.advance(world.propagation_delay)
    world.settle()
    assert org.members(eg.descriptor) == set() and not world.pending_entra


# ---- deletions -----------------------------------------------------------------------------


def test_delete_group_removes_every_edge_and_index_entry(org: OrgState) -> None:
    outer, g, inner = _group(org, "Outer"), _group(org, "G"), _group(org, "Inner")
    u = _user(org, "ann")
    org.add_membership(outer.descriptor, g.descriptor, audit=False)
    org.add_membership(g.descriptor, inner.descriptor, audit=False)
    org.add_membership(g.descriptor, u.descriptor, audit=False)
    org.delete_group(g.descriptor)
    assert g.descriptor not in org.identities and g.descriptor not in org.group_order
    assert org.by_storage_key(g.storage_key) is None
    assert g.descriptor not in org.members(outer.descriptor)
    assert g.descriptor not in org.member_of(inner.descriptor) and not org.member_of(u.descriptor)
    assert not org.members(g.descriptor)
    ev = org.audit[-1]
    assert ev.action_id == "Group.UpdateGroups.Delete" and ev.category == "remove"
    assert ev.data == {"GroupId": g.storage_key, "GroupName": "[fabrikam]\\G"}
    with pytest.raises(SimError):
        org.delete_group(u.descriptor)  # not a group


def test_delete_project_removes_its_groups_teams_and_edges(org: OrgState) -> None:
    proj = org.create_project("Apollo")
    other = org.create_project("Zephyr")
    team = org.create_team(proj.id, "Web", audit=False)
    u = _user(org, "ann")
    org.add_membership(proj.role_groups["contributors"], u.descriptor, audit=False)
    org.add_membership(other.role_groups["readers"], proj.role_groups["readers"], audit=False)
    project_groups = {g.descriptor for g in org.groups() if g.project_id == proj.id}
    assert len(project_groups) == 7  # 5 built-in groups + 2 teams
    org.delete_project(proj.id)
    assert proj.id not in org.projects and proj.id not in org.project_order
    assert not project_groups & set(org.identities) and not project_groups & set(org.group_order)
    assert team.id not in org.teams and proj.default_team_id not in org.teams
    assert not org.member_of(u.descriptor)
    assert org.members(other.role_groups["readers"]) == set()
    pcvu = org.org_groups["project_collection_valid_users"]
    assert org.members(pcvu) == {other.role_groups["project_valid_users"]}
    assert all(m in org.identities for ms in org.down.values() for m in ms)
    ev = org.audit[-1]
    assert ev.action_id == "Project.HardDeleteCompleted"
    assert ev.data == {"ProjectId": proj.id, "ProjectName": "Apollo", "ProjectDeleteType": "Hard"}
    with pytest.raises(SimError) as err:
        org.delete_project(proj.id)
    assert err.value.kind == "not_found"


def test_remove_user_cleans_entitlement_memberships_and_team_admin(org: OrgState) -> None:
    proj = org.create_project("Apollo")
    team = org.teams[proj.default_team_id]
    u = _user(org, "ann")
    org.set_entitlement(u.storage_key, "stakeholder", audit=False)
    org.add_membership(team.group_descriptor, u.descriptor, audit=False)
    team.admins.add(u.descriptor)
    org.remove_user(u.storage_key)
    assert u.storage_key not in org.entitlements and u.descriptor not in org.identities
    assert u.descriptor not in org.user_order and org.by_storage_key(u.storage_key) is None
    assert u.descriptor not in org.members(team.group_descriptor) and u.descriptor not in team.admins
    assert org.by_origin_id.get(u.origin_id) is None
    ev = org.audit[-1]
    assert ev.action_id == "Licensing.Removed"
    assert ev.data == {"UserIdentifier": "ann@contoso.com", "AccessLevel": "Stakeholder"}
    with pytest.raises(SimError) as err:
        org.remove_user(u.storage_key)
    assert err.value.kind == "not_found"


# ---- entitlements --------------------------------------------------------------------------


def test_entitlement_assigned_then_modified_only_on_real_change(org: OrgState) -> None:
    u = org.add_user(kind="aad", display_name="Ann", principal_name="ann@contoso.com")
    ent = org.set_entitlement(u.storage_key, "express")
    assert ent.license_display_name == "Basic" and ent.last_accessed == NEVER
    org.set_entitlement(u.storage_key, "express")  # same licence: no event
    org.set_entitlement(u.storage_key, "advanced", "msdn", "enterprise")
    assert _actions(org) == ["Licensing.Assigned", "Licensing.Modified"]
    assert org.audit[0].data == {"UserIdentifier": "ann@contoso.com", "AccessLevel": "Basic"}
    assert org.audit[1].data == {"UserIdentifier": "ann@contoso.com",
                                 "AccessLevel": "Visual Studio Enterprise subscription",
                                 "PreviousAccessLevel": "Basic"}
    # date_created survives a licence change.
    assert org.entitlements[u.storage_key].date_created == ent.date_created
    with pytest.raises(SimError):
        org.set_entitlement("00000000-0000-0000-0000-00000000abcd", "express")


# ---- audit ---------------------------------------------------------------------------------


def test_audit_ids_have_the_real_format_and_sort_newest_first_as_strings(org: OrgState, world: World) -> None:
    g = _group(org, "G")
    users = [_user(org, f"u{i}") for i in range(5)]
    for u in users:
        world.clock.advance(timedelta(minutes=3))
        org.add_membership(g.descriptor, u.descriptor, actor_key=org.owner_key)
    world.clock.advance(timedelta(minutes=3))
    org.remove_membership(g.descriptor, users[0].descriptor)  # no actor: the service
    ids = [e.id for e in org.audit]
    pattern = re.compile(r"\d{19};[0-9a-f-]{36};[0-9a-f-]{36}")
    assert all(pattern.fullmatch(i) for i in ids)
    assert sorted(ids) == ids[::-1]  # lexicographic order is newest first
    first = org.audit[0]
    assert int(first.id.split(";")[0]) == _MAX_TICKS - dotnet_ticks(first.timestamp)
    assert first.actor_user_id == org.owner_key and first.id.split(";")[1] == org.owner_key
    assert first.actor_upn == "olivia@contoso.com" and first.scope_type == "organization"
    last = org.audit[-1]
    assert last.actor_user_id == AZURE_DEVOPS_SERVICE_ACTOR and last.actor_display_name == "Azure DevOps Service"
    assert [e.seq for e in org.audit] == list(range(len(org.audit)))


def test_project_scoped_events_carry_the_project(org: OrgState) -> None:
    proj = org.create_project("Apollo")
    u = _user(org, "ann")
    org.add_membership(proj.role_groups["readers"], u.descriptor)
    ev = org.audit[-1]
    assert (ev.scope_type, ev.scope_id, ev.project_id, ev.project_name) == ("project", proj.id, proj.id, "Apollo")
    assert ev.data["ScopeId"] == proj.id and ev.data["GroupName"] == "[Apollo]\\Readers"


def test_audit_window_keeps_90_days(org: OrgState, world: World) -> None:
    g, u = _group(org, "G"), _user(org, "ann")
    org.add_membership(g.descriptor, u.descriptor)  # day 0
    world.clock.advance(timedelta(days=30))
    org.remove_membership(g.descriptor, u.descriptor)  # day 30
    assert len(org.audit_window()) == 2
    world.clock.advance(timedelta(days=60, seconds=1))  # day 90 + 1 s: the first event expires
    window = org.audit_window()
    assert [e.action_id for e in window] == ["Group.UpdateGroupMembership.Remove"]
    assert len(org.audit) == 2  # expiry is a view, the log itself is kept
    world.clock.advance(timedelta(days=31))
    assert org.audit_window() == []


def test_auditing_disabled_records_nothing(org: OrgState) -> None:
    org.auditing_enabled = False
    g, u = _group(org, "G"), _user(org, "ann")
    org.add_membership(g.descriptor, u.descriptor)
    org.create_project("Apollo")
    assert org.audit == [] and org.is_member(g.descriptor, u.descriptor)


# ---- helpers -------------------------------------------------------------------------------


def test_iso_and_clock() -> None:
    assert iso(NEVER) == "0001-01-01T00:00:00Z"
    assert iso(datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=UTC)) == "2026-01-02T03:04:05.12Z"
    assert iso(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05Z"
    start = datetime(2025, 6, 1, tzinfo=UTC)
    clock = Clock(start=start)
    assert abs((clock.now() - start).total_seconds()) < 5
    clock.advance(timedelta(days=2))
    assert abs((clock.now() - start - timedelta(days=2)).total_seconds()) < 5


def test_world_guids_are_seeded(world: World) -> None:
    assert World(seed=3).new_guid() == World(seed=3).new_guid() != World(seed=4).new_guid()
    with pytest.raises(SimError):
        world.new_org("x")
        world.new_org("X")  # organization names are case-insensitive
    assert world.org("X") is world.orgs["x"]


def test_collection_admin_is_transitive(org: OrgState) -> None:
    pca = org.org_groups["project_collection_administrators"]
    admins, u = _group(org, "Admins"), _user(org, "ann")
    assert not org.is_collection_admin(u.storage_key)
    org.add_membership(pca, admins.descriptor, audit=False)
    org.add_membership(admins.descriptor, u.descriptor, audit=False)
    assert org.is_collection_admin(u.storage_key) and org.is_collection_admin(org.owner_key)
    assert org.transitive_groups(u.descriptor) == {admins.descriptor, pca}


# ---- former gaps in state.py, fixed ----


def test_remove_user_of_a_service_principal_keeps_indexes_consistent(org: OrgState) -> None:
    sp = org.add_service_principal(display_name="deploy")
    org.remove_user(sp.storage_key)
    assert sp.descriptor not in org.identities and sp.descriptor not in org.sp_order


def test_deleting_a_team_group_never_leaves_a_dangling_team(org: OrgState) -> None:
    proj = org.create_project("Apollo")
    team = org.create_team(proj.id, "Web", audit=False)
    with contextlib.suppress(SimError):
        org.delete_group(team.group_descriptor)
    assert all(t.group_descriptor in org.identities for t in org.teams.values())
