"""Reconciliation rules of a snapshot before it is published (azdo_pipeline.sync.reconcile)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from azdo_pipeline import schemas
from azdo_pipeline.sync import reconcile
from azdo_pipeline.sync.errors import ReconciliationError, SyncError
from azdo_pipeline.sync.reconcile import Facts, RuleResult


def _table(name: str, rows: list[dict[str, Any]]) -> pa.Table:
    schema = schemas.RAW_TABLES[name]
    return pa.Table.from_pylist([{c: r.get(c) for c in schema.names} for r in rows], schema=schema)


def _snapshot(**over: list[dict[str, Any]]) -> dict[str, pa.Table]:
    base: dict[str, list[dict[str, Any]]] = {
        "users": [{"descriptor": "aad.u1", "subject_type": "aad", "display_name": "Ann"},
                  {"descriptor": "msa.u2", "subject_type": "msa", "display_name": "Bob"}],
        "service_accounts": [{"descriptor": "svc.s1", "display_name": "Build"}],
        "service_principals": [{"descriptor": "aadsp.p1", "display_name": "bot"}],
        "groups": [{"descriptor": "vssgp.g1", "kind": "vssgp", "display_name": "Readers"},
                   {"descriptor": "vssgp.t1", "kind": "vssgp", "display_name": "Team One", "is_team": True}],
        "memberships": [{"container_descriptor": "vssgp.g1", "member_descriptor": "aad.u1", "member_kind": "user"},
                        {"container_descriptor": "vssgp.g1", "member_descriptor": "vssgp.t1", "member_kind": "group"},
                        {"container_descriptor": "vssgp.t1", "member_descriptor": "aadsp.p1",
                         "member_kind": "service_principal"}],
        "projects": [{"id": "p1", "name": "Apollo"}],
        "teams": [{"id": "t1", "name": "Team One", "project_id": "p1"}],
        "team_members": [{"team_id": "t1", "member_descriptor": "aadsp.p1", "display_name": "bot",
                          "is_team_admin": False, "is_member": True}],
        "organizations": [],
    }
    base.update(over)
    return {name: _table(name, rows) for name, rows in base.items()}


FACTS = Facts(entitlements_read=2, entitlements_total=2, groups_requested=["vssgp.g1", "vssgp.t1"],
              groups_answered={"vssgp.g1": 1, "vssgp.t1": 1})


def _failed(tables: dict[str, pa.Table], facts: Facts = FACTS) -> dict[tuple[str, str], RuleResult]:
    return {(r.table, r.rule): r for r in reconcile.failures(reconcile.reconcile(tables, facts))}


def test_a_consistent_snapshot_passes_every_rule() -> None:
    results = reconcile.reconcile(_snapshot(), FACTS)
    assert results and all(r.passed and r.count == 0 for r in results)
    # every table gets the key and required-value rules, the report lists passes too
    for name in schemas.RAW_TABLES:
        assert {(name, "unique_key"), (name, "required_values")} <= {(r.table, r.rule) for r in results}


def test_entitlements_short_of_the_total_count_fail() -> None:
    bad = _failed(_snapshot(), Facts(**{**FACTS.__dict__, "entitlements_read": 9, "entitlements_total": 10}))
    r = bad[("users", "total_count")]
    assert r.count == 1 and "9 user entitlements read, the list's totalCount is 10" in r.detail
    assert list(bad) == [("users", "total_count")]


def test_an_entitlement_whose_user_was_not_listed_fails() -> None:
    r = _failed(_snapshot(), Facts(**{**FACTS.__dict__, "entitlements_without_user": 1}))[("users",
                                                                                          "entitlements_matched")]
    assert r.count == 1


def test_without_a_total_count_there_is_nothing_to_compare() -> None:
    assert not _failed(_snapshot(), Facts(**{**FACTS.__dict__, "entitlements_read": 5, "entitlements_total": None}))


@pytest.mark.parametrize(("answered", "count", "words"), [
    ({"vssgp.g1": 1}, 1, "1 not answered"),
    ({"vssgp.g1": 2, "vssgp.t1": 1}, 1, "1 answered twice"),
    ({"vssgp.g1": 1, "vssgp.t1": 1, "vssgp.zz": 1}, 1, "1 answered unasked"),
])
def test_every_requested_group_is_answered_once(answered: dict[str, int], count: int, words: str) -> None:
    r = _failed(_snapshot(), Facts(**{**FACTS.__dict__, "groups_answered": answered}))[("memberships",
                                                                                        "groups_answered")]
    assert r.count == count and words in r.detail and r.examples


def test_member_ids_that_did_not_resolve_fail() -> None:
    r = _failed(_snapshot(), Facts(**{**FACTS.__dict__, "unresolved_member_ids": 3}))[("memberships",
                                                                                      "member_ids_resolved")]
    assert r.count == 3


def test_an_edge_to_a_subject_that_was_not_synced_fails() -> None:
    edges = [{"container_descriptor": "vssgp.g1", "member_descriptor": "aad.gone", "member_kind": "user"},
             {"container_descriptor": "vssgp.nope", "member_descriptor": "aad.u1", "member_kind": "user"}]
    r = _failed(_snapshot(memberships=edges))[("memberships", "members_known")]
    assert r.count == 2 and "vssgp.g1 -> aad.gone" in r.examples


def test_a_repeated_key_fails_and_names_it() -> None:
    projects = [{"id": "p1", "name": "Apollo"}, {"id": "p1", "name": "Apollo"}, {"id": "p2", "name": "Zephyr"}]
    r = _failed(_snapshot(projects=projects))[("projects", "unique_key")]
    assert r.count == 1 and r.examples == ("p1",)


def test_a_null_in_a_column_the_api_always_fills_fails() -> None:
    members = [{"team_id": "t1", "member_descriptor": "aadsp.p1", "display_name": None, "is_team_admin": False,
                "is_member": True}]
    r = _failed(_snapshot(team_members=members))[("team_members", "required_values")]
    assert r.count == 1 and "display_name in 1" in r.detail and r.examples == ("t1 / aadsp.p1",)


def test_graph_users_listed_without_a_descriptor_are_not_dropped_silently() -> None:
    r = _failed(_snapshot(), Facts(**{**FACTS.__dict__, "listed_without_descriptor": 2}))[("users",
                                                                                          "listed_with_descriptor")]
    assert r.count == 2


def test_graph_repeats_are_counted_but_pass() -> None:
    results = reconcile.reconcile(_snapshot(), Facts(**{**FACTS.__dict__, "graph_repeats": {"users": 4}}))
    r = next(r for r in results if (r.table, r.rule) == ("users", "graph_repeats_dropped"))
    assert r.passed and r.count == 4


def test_the_error_names_table_rule_count_and_examples() -> None:
    failed = list(_failed(_snapshot(projects=[{"id": "p1", "name": "A"}, {"id": "p1", "name": "A"}])).values())
    err = ReconciliationError("fabrikam", "s2", failed, kept_at="/data/projects/org=fabrikam/snapshot=s2")
    assert isinstance(err, SyncError)
    text = str(err)
    for part in ("projects: unique_key failed for 1 key", "e.g. p1", "snapshot s2 was not published",
                 "latest/ still holds the previous one", "run the sync again", "snapshot=s2"):
        assert part in text, text


def test_a_graph_subject_listed_again_is_kept_once_and_counted() -> None:
    from azdo_pipeline.sync.columns import first_sight

    seen: set[str] = set()
    page1 = pa.table({"descriptor": ["aad.a", "aad.b", None]})
    page2 = pa.table({"descriptor": ["aad.b", "aad.c", "aad.c", None]})
    assert first_sight(page1, seen).column("descriptor").to_pylist() == ["aad.a", "aad.b", None]
    # rows without a descriptor stay: split_graph_users drops them and the sync counts them
    assert first_sight(page2, seen).column("descriptor").to_pylist() == ["aad.c", None]
    assert seen == {"aad.a", "aad.b", "aad.c"}
