"""Answers that are well-formed page by page but do not add up: the sync reconciles the snapshot
before publishing it (azdo_pipeline.sync.reconcile), so each case ends in a correct sync (a repeat
the API is known to make, dropped and counted) or a ReconciliationError naming the table, the rule
and the count, with latest/ untouched (harness.run_case). Real HTTPS against the simulator.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from azdo_sim.server import SimulatorServer

from azdo_pipeline.sync.errors import ReconciliationError
from tests.integration.test_full_sync import assert_equals_truth

from .harness import Case, baseline, rule, run_case, sync

USERS = r"/vssps/[^/]+/_apis/graph/users$"
GROUPS = r"/vssps/[^/]+/_apis/graph/groups$"
SPS = r"/_apis/graph/serviceprincipals$"
PROJECTS = r"/_apis/projects$"
TEAMS = r"/_apis/teams$"
ENTS = r"/vsaex/[^/]+/_apis/userentitlements$"
BATCH = r"/_apis/identitybatch$"
NOT_PUBLISHED = "was not published"

CASES = [
    # Graph lists may repeat a subject across pages while the organization changes: kept once.
    Case("a Graph user repeated on a page", [rule(USERS, mutate={"duplicate_item": {"index": 0}})], "correct"),
    Case("a group repeated on a page", [rule(GROUPS, mutate={"duplicate_item": {"index": 1}})], "correct"),
    Case("a service principal repeated on a page", [rule(SPS, mutate={"duplicate_item": {"index": 0}})], "correct"),
    # Lists not known to repeat: a repeated key is an error, never a duplicate row.
    Case("a project repeated on a page", [rule(PROJECTS, mutate={"duplicate_item": {"index": 0}})],
         "failure", ("projects: unique_key failed for 1 key", NOT_PUBLISHED), ReconciliationError),
    Case("a team repeated on a page", [rule(TEAMS, mutate={"duplicate_item": {"index": 0}})],
         "failure", ("teams: unique_key failed for 1 key", NOT_PUBLISHED), ReconciliationError),
    # A short list: the entitlements (and memberships) know the user the Graph page left out.
    Case("a Graph user left out of its page", [rule(USERS, mutate={"drop_item": {"index": 0}})],
         "failure", ("users: entitlements_matched failed for 1 entitlement", NOT_PUBLISHED), ReconciliationError),
    Case("entitlements short of their totalCount", [rule(ENTS, mutate={"set": {"totalCount": 99}})],
         "failure", ("users: total_count failed", "the list's totalCount is 99"), ReconciliationError),
    Case("a group without its display name",
         [rule(GROUPS, mutate={"set_item": {"index": 0, "key": "displayName", "value": None}})],
         "failure", ("groups: required_values failed for 1 row", "null display_name in 1"), ReconciliationError),
    # Every identity batch's first group names a member id nobody knows (only membership reads use
    # memberIds; the tiny organization's groups fit in one chunk).
    Case("a membership naming a member id no identity has",
         [rule(BATCH, mutate={"set_item": {"index": 0, "key": "memberIds",
                                           "value": ["0badbeef-0000-4000-8000-000000000000"]}})],
         "failure", ("memberships: member_ids_resolved failed for 1 member id", NOT_PUBLISHED), ReconciliationError),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_reconciliation(fault_server: SimulatorServer, tmp_path: Path, case: Case) -> None:
    run_case(fault_server, tmp_path, case)


def test_graph_repeats_are_counted_in_the_report(fault_server: SimulatorServer, tmp_path: Path) -> None:
    store, _before = baseline(fault_server, tmp_path)
    faults = fault_server.world.faults
    assert faults is not None
    faults.configure({"rules": [rule(USERS, mutate={"duplicate_item": {"index": 0}}),
                                rule(GROUPS, mutate={"duplicate_item": {"index": 0}}),
                                rule(SPS, mutate={"duplicate_item": {"index": 0}})]})
    try:
        report = sync(fault_server, store, "20260101T000002Z-again")
    finally:
        faults.configure({})
    assert_equals_truth(store, fault_server.world)
    got = {(r.table, r.rule): r for r in report.reconciliation}
    assert all(r.passed for r in report.reconciliation)
    assert got[("users", "graph_repeats_dropped")].count == 1
    assert got[("groups", "graph_repeats_dropped")].count == 1
    assert got[("service_principals", "graph_repeats_dropped")].count == 1
    assert got[("users", "unique_key")].count == 0
