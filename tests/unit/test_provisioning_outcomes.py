"""Outcome rows fit the provisioning_outcomes Arrow schema; statuses say which are final."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from azdo_pipeline.provisioning.outcomes import PROVISIONING_OUTCOMES, ApiCall, Outcome, Status, outcomes_table
from azdo_pipeline.provisioning.requests import parse_request


def test_outcome_rows_build_the_table_and_count_only_calls_made() -> None:
    req = parse_request(json.dumps({"id": "r1", "organization": "fab", "action": "grant",
                                    "principal": "a@b.c", "target": "[P]\\G",
                                    "requested_at": "2026-01-01T10:00:00+01:00"}))
    t0 = datetime(2026, 1, 1, 10, tzinfo=UTC)
    done = Outcome.for_request(req, Status.SUCCEEDED, "added", principal_descriptor="aad.x",
                               target_descriptor="vssgp.y", started_at=t0, finished_at=t0,
                               api_calls=(ApiCall("HEAD", "https://h/m", 404), ApiCall("PUT", "https://h/m", 201)))
    dry = Outcome.for_request(req, Status.SUCCEEDED, "would add", api_calls=(ApiCall("PUT", "https://h/m"),))
    table = outcomes_table([done, dry])
    assert table.schema.equals(PROVISIONING_OUTCOMES, check_metadata=True)
    rows = table.to_pylist()
    assert rows[0]["api_calls"] == ["HEAD https://h/m -> 404", "PUT https://h/m -> 201"]
    assert [r["api_call_count"] for r in rows] == [2, 0]
    assert rows[0]["requested_at"] == datetime(2026, 1, 1, 9, tzinfo=UTC)
    assert rows[0]["target"] == "[P]\\G" and rows[0]["status"] == "succeeded"


def test_only_pending_is_not_final() -> None:
    assert [s for s in Status if not s.is_final] == [Status.PENDING]
    assert not Status.FAILED.is_success and not Status.REFUSED.is_success and Status.ALREADY_DONE.is_success


def test_directory_of_an_organization_never_synced_is_empty(tmp_path) -> None:
    from azdo_pipeline.provisioning.requests import PrincipalRef
    from azdo_pipeline.provisioning.resolve import Directory
    from azdo_pipeline.store import Store

    d = Directory.from_store(Store(tmp_path / "data"), "fabrikam")
    assert d.by_descriptor == {} and d.principal(PrincipalRef(name="a@b.c")) is None


def test_rows_read_back_as_the_same_outcome() -> None:
    req = parse_request(json.dumps({"id": "r2", "organization": "fab", "action": "revoke", "principal": "a@b.c",
                                    "target": "aadgp.QUJD"}))
    t0 = datetime(2026, 1, 1, 10, tzinfo=UTC)
    o = Outcome.for_request(req, Status.PENDING, "removed in Entra", principal_descriptor="aad.x",
                            target_descriptor="aadgp.QUJD", started_at=t0, finished_at=t0, requested_at=t0,
                            api_calls=(ApiCall("DELETE", "https://g/v1.0/groups/1/members/2/$ref", 204),
                                       ApiCall("HEAD", "https://h/m")),
                            details={"entra_group_id": "1", "entra_member_id": "2"})
    assert Outcome.from_row(o.to_row()) == o
    assert Outcome.from_row(outcomes_table([o]).to_pylist()[0]) == o
    iso = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in o.to_row().items()}
    assert Outcome.from_row(iso) == o
