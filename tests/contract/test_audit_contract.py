"""Audit log (auditservice) against audit/7.1/audit.json + its example, asserting the REAL top-level
body (D1 / E1 in docs/spec-deviations.md: the example wraps it in `value`)."""

from __future__ import annotations

from . import spec
from .conftest import AUDIT, ContractWorld, Sim
from .helpers import assert_contract

V = "api-version=7.1-preview.1"
OP = "Audit Log_Query"
DATA = "$.decoratedAuditLogEntries[*].data"  # action-specific bag (R13): compared by type only
# D14: declared by DecoratedAuditLogEntry and listed as entry fields in behaviour doc §5; the 2019
# example lacks them.
D14 = {f"$.decoratedAuditLogEntries[*].{k}": "D14 docs/spec-deviations.md"
       for k in ("actorClientId", "actorUPN", "projectId", "projectName")}


def _real_example() -> list[dict]:
    (ex,) = spec.examples_for("audit", OP)
    return [ex.body["value"]]  # D1: the real body is what the example has under `value`


def test_audit_log_first_page(sim_rw: Sim, cw_rw: ContractWorld) -> None:
    body = sim_rw.json_ok("GET", f"{AUDIT}/_apis/audit/auditlog?batchSize=3&{V}")
    assert set(body) == {"decoratedAuditLogEntries", "continuationToken", "hasMore"}  # no "value" wrapper
    assert_contract("audit", OP, body, example_bodies=_real_example(), opaque={DATA}, allow_extra=D14)
    entries = body["decoratedAuditLogEntries"]
    assert len(entries) == 3 and body["hasMore"] is True
    assert body["continuationToken"] == entries[-1]["id"]
    stamps = [e["timestamp"] for e in entries]
    assert stamps == sorted(stamps, reverse=True)  # newest first


def test_audit_log_paging_to_the_end(sim_rw: Sim, cw_rw: ContractWorld) -> None:
    ids: list[str] = []
    token = None
    for _ in range(50):
        params = {"batchSize": "4", "skipAggregation": "true", "api-version": "7.1-preview.1"}
        if token:
            params["continuationToken"] = token
        body = sim_rw.json_ok("GET", f"{AUDIT}/_apis/audit/auditlog", params=params)
        assert_contract("audit", OP, body, example_bodies=_real_example(), opaque={DATA}, allow_extra=D14)
        ids += [e["id"] for e in body["decoratedAuditLogEntries"]]
        if not body["hasMore"]:
            break
        token = body["continuationToken"]
    assert len(ids) == len(set(ids))
    recorded = {e.id for e in cw_rw.org.audit_window()}
    assert set(ids) <= recorded and {e.id for e in cw_rw.org.audit if e.action_id != "AuditLog.AccessLog"} <= set(ids)


def test_audit_membership_event_carries_identity_ids(sim_rw: Sim, cw_rw: ContractWorld) -> None:
    """Group.UpdateGroupMembership.* data: GroupId / MemberId are storage keys (behaviour doc §5)."""
    body = sim_rw.json_ok("GET", f"{AUDIT}/_apis/audit/auditlog?batchSize=200&skipAggregation=true&{V}")
    adds = [e for e in body["decoratedAuditLogEntries"] if e["actionId"] == "Group.UpdateGroupMembership.Add"]
    assert adds
    keys = set(cw_rw.org.by_key)
    for e in adds:
        assert e["data"]["GroupId"] in keys and e["data"]["MemberId"] in keys
        assert e["category"] == "modify"  # area: test_entry_areas_agree_with_the_actions


def test_audit_actions(sim: Sim) -> None:
    body = sim.json_ok("GET", f"{AUDIT}/_apis/audit/actions?{V}")
    assert_contract("audit", "Actions_List", body)
    ids = {a["actionId"] for a in body["value"]}
    # the actions the sync reads (behaviour doc §5); there is no Group.DeleteGroups
    assert {"Group.UpdateGroupMembership.Add", "Group.UpdateGroupMembership.Remove", "Group.CreateGroups",
            "Group.UpdateGroups.Delete", "Licensing.Assigned", "Licensing.Removed",
            "Project.CreateCompleted"} <= ids
    assert "Group.DeleteGroups" not in ids
    security = sim.json_ok("GET", f"{AUDIT}/_apis/audit/actions?areaName=Security&{V}")
    assert_contract("audit", "Actions_List", security)
    assert security["value"] and {a["area"] for a in security["value"]} == {"Security"}


def test_entry_areas_agree_with_the_actions(sim_rw: Sim, cw_rw: ContractWorld) -> None:
    """An entry's area is the area audit/actions lists for its actionId and the examples' area (was F5)."""
    log = sim_rw.json_ok("GET", f"{AUDIT}/_apis/audit/auditlog?batchSize=200&skipAggregation=true&{V}")
    actions = {a["actionId"]: a for a in sim_rw.json_ok("GET", f"{AUDIT}/_apis/audit/actions?{V}")["value"]}
    (log_ex,) = spec.examples_for("audit", OP)
    (act_ex,) = spec.examples_for("audit", "Actions_List")
    official = {a["actionId"]: a["area"] for a in act_ex.body["value"]}
    official.update({e["actionId"]: e["area"] for e in log_ex.body["value"]["decoratedAuditLogEntries"]})
    wrong = sorted({(e["actionId"], e["area"], actions.get(e["actionId"], {}).get("area"),
                     official.get(e["actionId"])) for e in log["decoratedAuditLogEntries"]
                    if e["area"] != actions.get(e["actionId"], {}).get("area")
                    or e["area"] != official.get(e["actionId"], e["area"])})
    assert not wrong, f"(actionId, entry area, actions area, official area): {wrong}"
