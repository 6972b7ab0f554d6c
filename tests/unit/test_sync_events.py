"""Audit events → touched objects, on entries as the simulator's audit route serves them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from azdo_sim.mutations import apply_ops
from azdo_sim.state import OrgState, World

from azdo_pipeline.sync.events import MalformedEntry, Touched, parse_entry, touched_by
from tests.unit.test_sim_core import BASE, pat

URL = "/auditservice/fabrikam/_apis/audit/auditlog"


@pytest.fixture
def env(tiny: Any, asgi_client_for: Callable[..., httpx.Client]) -> tuple[World, OrgState, Callable[..., Touched]]:
    w, org = tiny.world, tiny.org
    client = asgi_client_for(w, base_url=BASE)
    h = pat(w, org, org.owner_key, {"vso.auditlog"})
    start = w.clock.now()

    def touched(ops: list[dict]) -> Touched:
        results = apply_ops(org, ops)
        assert all(r["ok"] for r in results), results
        r = client.get(URL, params={"api-version": "7.1-preview.1", "startTime": start.isoformat(),
                                    "skipAggregation": "true", "batchSize": "1000"}, headers=h)
        assert r.status_code == 200, r.text
        return touched_by(parse_entry(e) for e in r.json()["decoratedAuditLogEntries"])

    return w, org, touched


def _user(org: OrgState, n: int = 0) -> Any:
    people = [org.identities[d] for d in org.user_order if org.identities[d].subject_type == "aad"
              and org.identities[d].storage_key in org.entitlements and org.identities[d].storage_key != org.owner_key]
    return people[n]


def _vssgp(org: OrgState) -> Any:
    return next(org.identities[d] for d in org.group_order if org.identities[d].subject_type == "vssgp"
                and org.identities[d].role == "contributors")


def test_membership_add_and_remove_name_container_and_member_storage_keys(env: Any) -> None:
    _w, org, touched = env
    g, u = _vssgp(org), _user(org)
    org.remove_membership(g.descriptor, u.descriptor, audit=False)
    t = touched([{"op": "add_member", "container": g.descriptor, "member": u.descriptor},
                 {"op": "remove_member", "container": g.descriptor, "member": u.descriptor}])
    assert t.containers == {g.storage_key.lower()}
    assert t.members == {u.storage_key.lower()}
    assert not t.full_resync and t.mapped == 2
    assert t.ignored == 1  # reading the log wrote one AuditLog.AccessLog event


def test_group_create_and_delete(env: Any) -> None:
    _w, org, touched = env
    pid = org.project_order[0]
    res = apply_ops(org, [{"op": "create_group", "name": "Old", "project_id": pid}])
    t = touched([{"op": "create_group", "name": "Reviewers", "project_id": pid},
                 {"op": "delete_group", "descriptor": res[0]["descriptor"]}])
    assert (pid.lower(), f"[{org.projects[pid].name}]\\Reviewers") in t.groups_created
    assert t.groups_deleted == {res[0]["storage_key"].lower()}


def test_licences_and_user_removal(env: Any) -> None:
    _w, org, touched = env
    a, b = _user(org, 0), _user(org, 1)
    other = "stakeholder" if org.entitlements[a.storage_key].account_license_type != "stakeholder" else "express"
    t = touched([{"op": "add_user", "principal_name": "new.person@contoso.com", "license": "express"},
                 {"op": "change_license", "user": a.descriptor, "license": other},
                 {"op": "remove_user", "user": b.descriptor}])
    assert t.users_licensed == {"new.person@contoso.com", a.principal_name.lower()}
    assert t.users_removed == {b.principal_name.lower()}


def test_removed_then_added_again_is_re_read_not_dropped(env: Any) -> None:
    _w, org, touched = env
    b = _user(org, 1)
    t = touched([{"op": "remove_user", "user": b.descriptor},
                 {"op": "add_user", "principal_name": b.principal_name, "license": "express"}])
    assert t.users_licensed == {b.principal_name.lower()} and not t.users_removed


def test_project_create_and_delete(env: Any) -> None:
    _w, org, touched = env
    old = org.project_order[-1]
    t = touched([{"op": "create_project", "name": "Skylark"}, {"op": "delete_project", "id": old}])
    new = next(p for p in org.project_order if org.projects[p].name == "Skylark")
    assert t.projects_created == {new.lower()} and t.projects_deleted == {old.lower()}


def test_unaudited_changes_touch_nothing(env: Any) -> None:
    """Team administrators, Entra membership and sign-ins never reach the audit log: the incremental
    step re-reads them every run (docs/operations.md)."""
    _w, org, touched = env
    team = next(iter(org.teams.values()))
    u = _user(org)
    entra_group = next(org.identities[d] for d in org.group_order if org.identities[d].subject_type == "aadgp")
    t = touched([{"op": "add_team_admin", "team_id": team.id, "member": u.descriptor},
                 {"op": "entra_add", "group_oid": entra_group.origin_id, "member_oid": u.origin_id},
                 {"op": "set_last_access", "user": u.descriptor}])
    assert t.mapped == 0 and not t.containers and not t.users_licensed


def _entry(action: str, **data: Any) -> dict[str, Any]:
    return {"id": f"1;x;{action}", "timestamp": "2026-01-02T03:04:05.1234567+00:00", "actionId": action,
            "data": data}


def test_shapes_the_simulator_does_not_write() -> None:
    t = touched_by(parse_entry(e) for e in [
        _entry("Group.UpdateGroupMembership", Updates=[{"GroupId": "G1", "MemberId": "M1", "Active": True},
                                                       {"GroupId": "G2", "MemberId": "M2", "Active": False}]),
        _entry("Group.UpdateGroups.Modify", GroupId="G3", GroupName="[P]\\X"),
        _entry("Licensing.GroupRuleModified", GroupIdentifier="x"),
        _entry("Project.UpdateRenameCompleted", ProjectId="P1", ProjectName="New", PreviousProjectName="Old"),
        _entry("Project.CreateQueued", ProjectId="P2"),
        _entry("Token.PatCreateEvent", DisplayName="x"),
        _entry("Security.ModifyPermission", NamespaceId="n"),
        _entry("Organization.Update.Owner", OldOwnerName="a", NewOwnerName="b"),
    ])
    assert t.containers == {"g1", "g2"} and t.members == {"m1", "m2"}
    assert t.groups_changed == {"g3"} and t.all_entitlements and t.organizations
    assert t.projects_changed == {"p1"} and not t.projects_created
    assert t.ignored == 3 and not t.full_resync


@pytest.mark.parametrize("entry", [
    _entry("Group.SomethingNew", GroupId="G"),
    _entry("Organization.UnlinkFromAAD"),
    _entry("Group.UpdateGroups.Delete"),
    _entry("Project.HardDeleteCompleted"),
])
def test_what_cannot_be_mapped_asks_for_a_full_sync(entry: dict[str, Any]) -> None:
    t = touched_by([parse_entry(entry)])
    assert len(t.full_resync) == 1 and entry["id"] in t.full_resync[0]


def test_an_entry_without_id_or_time_is_refused() -> None:
    with pytest.raises(MalformedEntry, match="actionId"):
        parse_entry({"id": "1", "timestamp": "2026-01-02T03:04:05Z"})
    with pytest.raises(MalformedEntry):
        parse_entry({"id": "1", "actionId": "Group.CreateGroups", "timestamp": "yesterday"})


def test_row_keeps_data_as_json_and_the_day() -> None:
    row = parse_entry(_entry("Group.CreateGroups", GroupName="[P]\\X")).row()
    assert row["event_id"] == "1;x;Group.CreateGroups" and row["data"] == '{"GroupName": "[P]\\\\X"}'
    assert str(row["day"]) == "2026-01-02"
