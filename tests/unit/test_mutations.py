"""Scripted and random mutations (azdo_sim.mutations) on generated organizations."""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta

import pytest
from azdo_sim.generator import generate
from azdo_sim.mutations import apply_ops, check_invariants, random_ops
from azdo_sim.state import NEVER, OrgState, World

# data keys per actionId (reference §5; the state writes these, the ops must reach them)
MEMBERSHIP_KEYS = {"GroupId", "GroupName", "MemberId", "MemberDisplayName", "ScopeId", "Updates"}


@pytest.fixture
def org() -> OrgState:
    return generate(World(seed=21), "fabrikam", size="tiny", seed=21)


def _one(org: OrgState, op: dict) -> tuple[dict, list]:
    before = len(org.audit)
    [res] = apply_ops(org, [op])
    return res, org.audit[before:]


def _project(org: OrgState):
    return org.projects[org.project_order[0]]


def _plain_user(org: OrgState):
    """A human user who is not the owner."""
    return next(u for u in org.users() if u.origin in ("aad", "msa") and u.storage_key != org.owner_key)


def test_add_and_remove_member_write_membership_events(org: OrgState) -> None:
    readers = _project(org).role_groups["readers"]
    user = _plain_user(org)
    org.remove_membership(readers, user.descriptor, audit=False)
    res, events = _one(org, {"op": "add_member", "container": readers, "member": user.descriptor})
    assert res == {"op": "add_member", "ok": True, "created": True}
    [ev] = events
    assert ev.action_id == "Group.UpdateGroupMembership.Add" and ev.category == "modify"
    assert set(ev.data) == MEMBERSHIP_KEYS
    assert ev.data["GroupId"] == org.get(readers).storage_key and ev.data["MemberId"] == user.storage_key
    assert ev.actor_user_id == org.owner_key  # default actor: the owner
    # Idempotent: a second add changes nothing and writes nothing.
    res, events = _one(org, {"op": "add_member", "container": readers, "member": user.storage_key})
    assert res["created"] is False and events == []
    res, events = _one(org, {"op": "remove_member", "container": readers, "member": user.principal_name})
    assert res["removed"] is True and [e.action_id for e in events] == ["Group.UpdateGroupMembership.Remove"]
    assert set(events[0].data) == MEMBERSHIP_KEYS and events[0].data["Updates"][0]["Active"] is False
    res, events = _one(org, {"op": "remove_member", "container": readers, "member": user.descriptor})
    assert res["removed"] is False and events == []


def test_cycles_are_rejected_without_an_event(org: OrgState) -> None:
    proj = _project(org)
    [a, b] = apply_ops(org, [{"op": "create_group", "name": "Outer", "project_id": proj.id},
                             {"op": "create_group", "name": "Inner", "project_id": proj.id}])
    ok = apply_ops(org, [{"op": "add_member", "container": a["descriptor"], "member": b["descriptor"]}])
    assert ok[0]["ok"]
    res, events = _one(org, {"op": "add_member", "container": b["descriptor"], "member": a["descriptor"]})
    assert res["ok"] is False and res["error"] == "cycle" and events == []
    # Through the built-in nesting too: Project Valid Users contains Contributors.
    res, _ = _one(org, {"op": "add_member", "container": proj.role_groups["contributors"],
                        "member": proj.role_groups["project_valid_users"]})
    assert res["error"] == "cycle"
    assert check_invariants(org) == []


def test_entra_groups_are_read_only_and_change_through_entra(org: OrgState) -> None:
    world = org.world
    eg = next(g for g in org.groups() if g.subject_type == "aadgp")
    user = next(u for u in org.users() if u.origin == "aad" and u.descriptor not in org.members(eg.descriptor))
    res, events = _one(org, {"op": "add_member", "container": eg.descriptor, "member": user.descriptor})
    assert res["error"] == "read_only" and events == []
    res, events = _one(org, {"op": "entra_add", "group_oid": eg.origin_id, "member_oid": user.origin_id})
    assert res["ok"] and res["changed"] and events == []  # Entra changes are not audited
    assert user.origin_id in world.entra_members[eg.origin_id]
    assert user.descriptor not in org.members(eg.descriptor)  # not propagated yet
    later = world.clock.now() + world.propagation_delay + timedelta(seconds=1)
    # An op's "at" moves the clock and settles pending Entra changes first.
    res, _ = _one(org, {"op": "set_last_access", "user": user.descriptor, "at": later})
    assert user.descriptor in org.members(eg.descriptor)
    res, _ = _one(org, {"op": "entra_remove", "group_oid": eg.origin_id, "member_oid": user.origin_id})
    assert res["changed"]
    world.clock.advance(world.propagation_delay)
    world.settle()
    assert user.descriptor not in org.members(eg.descriptor)
    res, _ = _one(org, {"op": "entra_add", "group_oid": "not-a-group", "member_oid": user.origin_id})
    assert res["error"] == "not_found"


def test_group_lifecycle_events(org: OrgState) -> None:
    proj = _project(org)
    res, events = _one(org, {"op": "create_group", "name": "Release Crew", "project_id": proj.id})
    assert res["ok"] and res["created"] and res["descriptor"].startswith("vssgp.")
    [ev] = events
    assert ev.action_id == "Group.CreateGroups" and ev.data == {"GroupName": f"[{proj.name}]\\Release Crew"}
    assert ev.project_id == proj.id
    dup, events = _one(org, {"op": "create_group", "name": "release crew", "project_id": proj.id})
    assert dup["error"] == "conflict" and events == []
    # Members can be named by principal name; the new group by its principal name too.
    user = _plain_user(org)
    add = apply_ops(org, [{"op": "add_member", "container": f"[{proj.name}]\\Release Crew",
                           "member": user.principal_name}])
    assert add[0]["created"]
    group = res["descriptor"]
    assert group in org.member_of(user.descriptor)
    res, events = _one(org, {"op": "delete_group", "descriptor": group})
    assert res["removed"] and [e.action_id for e in events] == ["Group.UpdateGroups.Delete"]
    assert set(events[0].data) == {"GroupId", "GroupName"}
    assert group not in org.identities and group not in org.member_of(user.descriptor)
    # Built-in groups cannot be deleted.
    res, events = _one(org, {"op": "delete_group", "descriptor": proj.role_groups["readers"]})
    assert res["error"] == "invalid" and events == []


def test_user_lifecycle_and_license_events(org: OrgState) -> None:
    res, events = _one(org, {"op": "add_user", "principal_name": "nina.new@fabrikam.com", "license": "express"})
    assert res["ok"] and res["descriptor"].startswith("aad.")
    [ev] = events
    assert ev.action_id == "Licensing.Assigned" and ev.category == "create"
    assert ev.data == {"UserIdentifier": "nina.new@fabrikam.com", "AccessLevel": "Basic"}
    ent = org.entitlements[res["storage_key"]]
    assert ent.status == "pending" and ent.last_accessed == NEVER
    assert org.world.entra_objects[org.get(res["descriptor"]).origin_id] == "user"
    msa, _ = _one(org, {"op": "add_user", "principal_name": "pat@outlook.com", "license": "stakeholder"})
    assert msa["descriptor"].startswith("msa.")
    dup, events = _one(org, {"op": "add_user", "principal_name": "NINA.new@fabrikam.com", "license": "express"})
    assert dup["error"] == "conflict" and events == []
    res, events = _one(org, {"op": "change_license", "user": "nina.new@fabrikam.com", "license": "vs_enterprise"})
    assert res["changed"] and [e.action_id for e in events] == ["Licensing.Modified"]
    assert events[0].data == {"UserIdentifier": "nina.new@fabrikam.com",
                              "AccessLevel": "Visual Studio Enterprise subscription",
                              "PreviousAccessLevel": "Basic"}
    assert org.entitlements[res_key(org, "nina.new@fabrikam.com")].status == "pending"  # status kept
    res, events = _one(org, {"op": "change_license", "user": "nina.new@fabrikam.com", "license": "advanced",
                             "source": "msdn"})
    assert res["changed"] is False and events == []  # advanced/msdn is what vs_enterprise means
    res, events = _one(org, {"op": "set_last_access", "user": "nina.new@fabrikam.com"})
    ent = org.entitlements[res_key(org, "nina.new@fabrikam.com")]
    assert abs(ent.last_accessed - org.world.clock.now()) < timedelta(seconds=5)
    assert ent.status == "active" and events == []  # first sign-in activates a pending user
    res, events = _one(org, {"op": "remove_user", "user": "nina.new@fabrikam.com"})
    assert res["removed"] and [e.action_id for e in events] == ["Licensing.Removed"]
    assert events[0].data == {"UserIdentifier": "nina.new@fabrikam.com",
                              "AccessLevel": "Visual Studio Enterprise subscription"}
    res, _ = _one(org, {"op": "remove_user", "user": org.owner_key})
    assert res["error"] == "forbidden"
    res, _ = _one(org, {"op": "change_license", "user": "nobody@fabrikam.com", "license": "express"})
    assert res["error"] == "not_found"
    # Licences and removal through userentitlements are for people only.
    sp = next(org.service_principals())
    svc = next(u for u in org.users() if u.subject_type == "svc")
    for ref in (sp.descriptor, svc.descriptor):
        res, events = _one(org, {"op": "remove_user", "user": ref})
        assert res["error"] == "invalid" and events == [] and ref in org.identities
        res, _ = _one(org, {"op": "change_license", "user": ref, "license": "express"})
        assert res["error"] == "invalid"


def res_key(org: OrgState, upn: str) -> str:
    return next(u.storage_key for u in org.users() if u.principal_name == upn)


def test_project_lifecycle_events(org: OrgState) -> None:
    res, events = _one(org, {"op": "create_project", "name": "Skylark", "visibility": "public"})
    assert res["ok"] and res["id"] in org.projects
    assert [e.action_id for e in events] == ["Project.CreateCompleted"]
    assert events[0].data == {"ProjectId": res["id"], "ProjectName": "Skylark", "ProcessTemplate": "Agile",
                              "ProjectVisibility": "Public"}
    svc = org.get(res["build_service"])
    assert svc.display_name == "Skylark Build Service (fabrikam)" and svc.subject_type == "svc"
    assert res["build_service"] in org.members(org.org_groups["project_collection_build_service_accounts"])
    dup, events = _one(org, {"op": "create_project", "name": "skylark"})
    assert dup["error"] == "conflict" and events == []
    res2, events = _one(org, {"op": "delete_project", "id": res["id"]})
    assert res2["removed"] and [e.action_id for e in events] == ["Project.HardDeleteCompleted"]
    assert set(events[0].data) == {"ProjectId", "ProjectName", "ProjectDeleteType"}
    assert res["id"] not in org.projects and check_invariants(org) == []


def test_team_admin_ops_change_admins_without_audit(org: OrgState) -> None:
    team = org.teams[_project(org).default_team_id]
    user = next(u for u in org.users() if u.origin in ("aad", "msa") and u.descriptor not in team.admins)
    res, events = _one(org, {"op": "add_team_admin", "team_id": team.id, "member": user.principal_name})
    assert res["created"] and user.descriptor in team.admins and events == []
    res, events = _one(org, {"op": "remove_team_admin", "team_id": team.id, "member": user.descriptor})
    assert res["removed"] and user.descriptor not in team.admins and events == []
    res, _ = _one(org, {"op": "add_team_admin", "team_id": "nope", "member": user.descriptor})
    assert res["error"] == "not_found"


def test_malformed_scripts_raise_before_anything_is_applied() -> None:
    org = generate(World(seed=1), "x", size="tiny", seed=1)
    good = {"op": "create_project", "name": "Skylark"}
    before = (len(org.audit), len(org.projects))
    for bad in ({"op": "teleport"}, {"op": "add_member", "container": "x"},
                {"op": "set_last_access", "user": org.owner_key, "at": "2026-01-01"}):
        with pytest.raises(ValueError):
            apply_ops(org, [good, bad])
    assert (len(org.audit), len(org.projects)) == before


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_ops_are_valid_and_keep_invariants(seed: int) -> None:
    org = generate(World(seed=seed), "fabrikam", size="small", seed=seed)
    rng = random.Random(seed)
    ops = random_ops(org, rng, 400)
    assert len(ops) == 400
    kinds = Counter(op["op"] for op in ops)
    assert {"add_member", "remove_member", "change_license", "add_user", "entra_add",
            "set_last_access"} <= set(kinds)
    assert kinds.most_common(1)[0][0] == "add_member"
    before = len(org.audit)
    results = apply_ops(org, ops, rng)
    failed = [(op, r) for op, r in zip(ops, results, strict=True) if not r["ok"]]
    assert failed == []
    assert len(org.audit) > before
    org.world.clock.advance(org.world.propagation_delay)
    org.world.settle()
    assert check_invariants(org) == []
    # A second batch against the changed organization is valid too.
    results = apply_ops(org, random_ops(org, rng, 200), rng)
    assert all(r["ok"] for r in results)
    assert check_invariants(org) == []


def test_random_ops_are_deterministic() -> None:
    a = generate(World(seed=4), "fabrikam", size="small", seed=4)
    b = generate(World(seed=4), "fabrikam", size="small", seed=4)
    assert random_ops(a, random.Random(9), 150) == random_ops(b, random.Random(9), 150)


def test_check_invariants_detects_broken_state(org: OrgState) -> None:
    proj = _project(org)
    org._link(proj.role_groups["contributors"], proj.role_groups["project_valid_users"])  # a cycle
    org.up[_plain_user(org).descriptor] = {"vssgp.missing"}
    problems = check_invariants(org)
    assert any("cycle" in p for p in problems)
    assert any("missing from down index" in p for p in problems)
