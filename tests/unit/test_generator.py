"""The organization generator: determinism, realistic shape, audit history consistent with the state."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from azdo_sim.generator import SIZES, generate, max_nesting_depth
from azdo_sim.mutations import check_invariants
from azdo_sim.state import AUDIT_RETENTION, NEVER, Clock, OrgState, World


def snapshot(org: OrgState) -> dict:
    """Everything that must be identical between two generations with the same seed."""
    anchor = org.created
    return {
        "org": [org.id, org.tenant_id, org.owner_key],
        "users": [(d, i.storage_key, i.origin_id, i.display_name, i.principal_name, i.meta_type)
                  for d in org.user_order for i in [org.identities[d]]],
        "groups": [(d, i.storage_key, i.principal_name, i.project_id, i.role, i.is_team)
                   for d in org.group_order for i in [org.identities[d]]],
        "sps": [(d, org.identities[d].application_id) for d in org.sp_order],
        "edges": sorted((c, m) for c, ms in org.down.items() for m in ms),
        "projects": [(p, org.projects[p].name) for p in org.project_order],
        "teams": sorted((t.id, t.name, t.group_descriptor, tuple(sorted(t.admins))) for t in org.teams.values()),
        "entitlements": sorted((k, e.account_license_type, e.licensing_source, e.msdn_license_type, e.status,
                                str(e.date_created - anchor), str(e.last_accessed - anchor))
                               for k, e in org.entitlements.items()),
        "audit": [(e.id.split(";", 1)[1], e.action_id, str(e.timestamp - anchor), json.dumps(e.data, sort_keys=True))
                  for e in org.audit],
        "entra": sorted((g, tuple(sorted(ms))) for g, ms in org.world.entra_members.items()),
    }


def test_same_seed_same_organization_different_seed_different() -> None:
    a = snapshot(generate(World(seed=5), "fabrikam", size="small", seed=5))
    b = snapshot(generate(World(seed=5), "fabrikam", size="small", seed=5))
    assert a == b
    c = snapshot(generate(World(seed=6), "fabrikam", size="small", seed=6))
    assert a["users"] != c["users"] and a["edges"] != c["edges"]


def test_deterministic_across_processes_with_different_hash_seeds() -> None:
    """Nothing may depend on set/dict hash order: Dagster step processes must see the same org."""
    code = ("import hashlib, json; from tests.unit.test_generator import snapshot; "
            "from azdo_sim.generator import generate; from azdo_sim.state import World; "
            "s = snapshot(generate(World(seed=8), 'fabrikam', size='small', seed=8)); "
            "print(hashlib.sha256(json.dumps(s, default=str).encode()).hexdigest())")
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                             cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
        digests.add(out.stdout.strip())
    local = snapshot(generate(World(seed=8), "fabrikam", size="small", seed=8))
    digests.add(hashlib.sha256(json.dumps(local, default=str).encode()).hexdigest())
    assert len(digests) == 1


def test_unknown_size_is_rejected() -> None:
    assert list(SIZES) == ["tiny", "small", "medium", "large", "xl"]
    with pytest.raises(ValueError, match="unknown size"):
        generate(World(), "x", size="huge")


def test_tiny_is_small_enough_to_eyeball_and_complete() -> None:
    world = World(seed=7)
    org = generate(world, "fabrikam", size="tiny", seed=7)
    humans = [u for u in org.users() if u.origin in ("aad", "msa")]
    assert 7 <= len(humans) <= 14 and 2 <= len(org.projects) <= 3
    assert org.auditing_enabled
    owner = org.by_storage_key(org.owner_key)
    assert owner is not None and owner.origin == "aad" and owner.meta_type == "member"
    assert owner.descriptor in org.members(org.org_groups["project_collection_administrators"])
    assert org.is_collection_admin(org.owner_key)
    kinds = {(u.subject_type, u.meta_type) for u in humans}
    assert {("aad", "member"), ("aad", "guest"), ("msa", "member")} <= kinds
    guest = next(u for u in humans if u.meta_type == "guest")
    assert "#EXT#@" in guest.principal_name and guest.mail_address != guest.principal_name
    # Service accounts: the collection build service and one per project, in PCBSA.
    pcbsa = org.org_groups["project_collection_build_service_accounts"]
    svc = {u.display_name: u for u in org.users() if u.subject_type == "svc"}
    assert "Project Collection Build Service (fabrikam)" in svc
    for p in org.projects.values():
        assert f"{p.name} Build Service (fabrikam)" in svc
    assert all(u.descriptor in org.members(pcbsa) for u in svc.values())
    assert svc["Project Collection Build Service (fabrikam)"].principal_name == org.id
    sps = list(org.service_principals())
    assert sps and all(sp.subject_type == "aadsp" and sp.application_id for sp in sps)
    # Entra group: both sides agree and someone is in the org only through it.
    entra = [g for g in org.groups() if g.subject_type == "aadgp"]
    assert entra and world.entra_members[entra[0].origin_id]
    assert check_invariants(org) == []


@pytest.fixture(scope="module")
def small() -> OrgState:
    return generate(World(seed=3), "contoso", size="small", seed=3)


def test_small_has_realistic_users_and_entitlements(small: OrgState) -> None:
    org = small
    humans = [u for u in org.users() if u.origin in ("aad", "msa")]
    assert 180 <= len(humans) <= 260
    kinds = Counter((u.subject_type, u.meta_type) for u in humans)
    assert kinds[("aad", "member")] > kinds[("aad", "guest")] > 0 and kinds[("msa", "member")] > 0
    assert len({u.principal_name.lower() for u in humans}) == len(humans)  # UPNs are unique
    ents = [org.entitlements[u.storage_key] for u in humans]
    licences = Counter(e.license_display_name for e in ents)
    assert licences.most_common(1)[0][0] == "Basic"
    assert licences["Stakeholder"] > 0 and licences["Visual Studio Enterprise subscription"] > 0
    assert licences["None"] > 0
    statuses = Counter(e.status for e in ents)
    assert statuses.most_common(1)[0][0] == "active" and statuses["pending"] > 0 and statuses["disabled"] > 0
    now = max(e.timestamp for e in org.audit) + timedelta(hours=2)
    never = [e for e in ents if e.last_accessed == NEVER]
    stale = [e for e in ents if e.last_accessed != NEVER and now - e.last_accessed > timedelta(days=90)]
    recent = [e for e in ents if e.last_accessed != NEVER and now - e.last_accessed < timedelta(days=30)]
    assert never and stale and len(recent) > len(stale)
    assert all(e.status != "pending" or e.last_accessed == NEVER for e in ents)
    for e in ents:
        assert org.created <= e.date_created <= now
        assert e.last_accessed == NEVER or e.last_accessed >= e.date_created
    years = {e.date_created.year for e in ents}
    assert len(years) >= 2  # spread over the last years
    # Entitlements only for people (no service identities).
    assert all(org.by_storage_key(k).origin in ("aad", "msa") for k in org.entitlements)


def test_small_groups_memberships_and_nesting(small: OrgState) -> None:
    org = small
    assert check_invariants(org) == []  # acyclic, indexes consistent, Entra sides agree
    humans = [u for u in org.users() if u.origin in ("aad", "msa")]
    assert all(org.member_of(u.descriptor) for u in humans), "every user is in at least one group"
    entra_groups = {g.descriptor for g in org.groups() if g.subject_type == "aadgp"}
    only_entra = [u for u in humans if org.member_of(u.descriptor) and org.member_of(u.descriptor) <= entra_groups]
    assert only_entra
    assert all(org.member_of(g) for g in entra_groups), "every Entra group is granted somewhere"
    for u in only_entra:  # such users still reach a project group through the Entra group
        assert any(org.identities[c].project_id for c in org.transitive_groups(u.descriptor))
    sizes = sorted((len(org.members(g.descriptor)) for g in org.groups()), reverse=True)
    assert sizes[0] >= 5 * max(1, sizes[len(sizes) // 2])  # long tail
    custom = [g for g in org.groups() if g.role is None and not g.is_team and g.subject_type == "vssgp"]
    assert custom and any(not org.members(g.descriptor) for g in org.groups())  # some groups are empty
    assert any(g.project_id is None for g in custom) and any(g.project_id for g in custom)
    assert 3 <= max_nesting_depth(org) <= 5
    teams_per_project = Counter(t.project_id for t in org.teams.values())
    assert min(teams_per_project.values()) >= 1 and max(teams_per_project.values()) >= 2
    # Nearly every team has an administrator (removing a user can leave a team without one).
    assert sum(bool(t.admins) for t in org.teams.values()) >= 0.9 * len(org.teams)
    for t in org.teams.values():
        assert all(org.identities[a].subject_kind == "user" for a in t.admins)
    pca = org.org_groups["project_collection_administrators"]
    assert 2 <= len(org.members(pca)) <= 12


def test_small_audit_history_is_recent_retention_relevant_and_consistent(small: OrgState) -> None:
    org = small
    events = org.audit
    assert 150 <= len(events) <= 2000
    assert [e.timestamp for e in events] == sorted(e.timestamp for e in events)
    assert [e.id for e in events] == sorted((e.id for e in events), reverse=True)
    newest = events[-1].timestamp
    assert newest - events[0].timestamp > AUDIT_RETENTION  # some events fall out of the 90-day window
    assert newest - events[0].timestamp < timedelta(days=130)
    assert newest <= org.world.clock.now()
    assert 0 < len(org.audit_window()) < len(events)
    actions = Counter(e.action_id for e in events)
    for action in ("Group.UpdateGroupMembership.Add", "Group.UpdateGroupMembership.Remove",
                   "Licensing.Assigned", "Licensing.Modified", "Group.CreateGroups"):
        assert actions[action] > 0, action
    assert actions.most_common(1)[0][0] == "Group.UpdateGroupMembership.Add"
    # Membership events replay to the final state: the last event of each (group, member) pair whose ends
    # still exist matches whether the edge exists now.
    last: dict[tuple[str, str], bool] = {}
    for e in events:
        if e.action_id.startswith("Group.UpdateGroupMembership."):
            last[(e.data["GroupId"], e.data["MemberId"])] = e.action_id.endswith(".Add")
    checked = 0
    for (gid, mid), present in last.items():
        g, m = org.by_key.get(gid), org.by_key.get(mid)
        if g in org.identities and m in org.identities:
            assert org.is_member(g, m) == present
            checked += 1
    assert checked > 50
    # Licensing events replay to the final entitlements.
    lic: dict[str, tuple[str, str]] = {}
    for e in events:
        if e.action_id.startswith("Licensing."):
            lic[e.data["UserIdentifier"]] = (e.action_id, e.data["AccessLevel"])
    by_upn = {org.identities[d].principal_name: org.identities[d].storage_key for d in org.user_order}
    for upn, (action, level) in lic.items():
        if action == "Licensing.Removed":
            assert upn not in by_upn
        else:
            assert org.entitlements[by_upn[upn]].license_display_name == level
    # Created groups exist unless a later delete event says otherwise.
    deleted = {e.data["GroupName"] for e in events if e.action_id == "Group.UpdateGroups.Delete"}
    names = {g.principal_name for g in org.groups()}
    for e in events:
        if e.action_id == "Group.CreateGroups" and e.data["GroupName"] not in deleted and e.project_id in (
                None, *org.projects):
            assert e.data["GroupName"] in names
    # Actors are mostly people, and project events carry the project.
    assert sum(e.actor_upn != "" for e in events) > len(events) // 2
    assert all(e.project_name for e in events if e.scope_type == "project")


@pytest.mark.parametrize(("size", "users", "projects", "edges"),
                         [("medium", (1_800, 2_400), (55, 75), (5_000, 20_000)),
                          ("large", (18_000, 23_000), (480, 540), (130_000, 180_000))])
def test_medium_and_large_counts(size: str, users: tuple[int, int], projects: tuple[int, int],
                                 edges: tuple[int, int]) -> None:
    org = generate(World(seed=1), "fabrikam", size=size, seed=1)
    humans = sum(1 for u in org.users() if u.origin in ("aad", "msa"))
    assert users[0] <= humans <= users[1]
    assert projects[0] <= len(org.projects) <= projects[1]
    assert edges[0] <= org.membership_count() <= edges[1]
    assert 3 <= max_nesting_depth(org) <= 5
    assert len(org.audit_window()) > 500


def test_generation_restores_the_world_clock_and_coexists_with_other_orgs() -> None:
    start = datetime(2025, 3, 10, 15, 30, tzinfo=UTC)
    world = World(seed=2)
    world.clock = Clock(start=start)
    a = generate(world, "alpha", size="tiny", seed=2)
    b = generate(world, "beta", size="tiny", seed=3)
    assert isinstance(world.clock, Clock) and type(world.clock) is Clock
    assert abs(world.clock.now() - start) < timedelta(seconds=30)
    assert world.orgs == {"alpha": a, "beta": b} and a.tenant_id == b.tenant_id == world.tenant_id
    assert a.id != b.id and not set(a.by_key) & set(b.by_key)
    # The history ends before the (simulated) present and starts ~120 days earlier.
    for org in (a, b):
        assert org.audit and org.audit[-1].timestamp <= world.clock.now()
        assert start - org.audit[0].timestamp < timedelta(days=121)
        assert org.created < org.audit[0].timestamp
        assert check_invariants(org) == []
    # Entra users of both orgs are in the one tenant.
    for org in (a, b):
        assert all(world.entra_objects[u.origin_id] == "user" for u in org.users() if u.origin == "aad")
