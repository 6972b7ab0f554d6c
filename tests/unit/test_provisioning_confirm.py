"""Pending Entra changes settle to confirmed when Azure DevOps shows them, unconfirmed after the wait."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from azdo_pipeline import schemas
from azdo_pipeline.provisioning.confirm import present_in_memberships, settle
from azdo_pipeline.provisioning.outcomes import Outcome, Status
from azdo_pipeline.provisioning.requests import parse_request

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def _pending(action: str) -> Outcome:
    req = parse_request(json.dumps({"id": "p", "organization": "o", "action": action, "principal": "a@b.c",
                                    "target": "aadgp.QUJD"}))
    return Outcome.for_request(req, Status.PENDING, "changed in Entra", principal_descriptor="aad.X",
                               target_descriptor="aadgp.QUJD", started_at=T0, finished_at=T0)


def test_grant_confirmed_when_present_revoke_when_absent() -> None:
    grant, revoke = _pending("grant"), _pending("revoke")
    assert settle(grant, True, now=T0 + timedelta(minutes=1)).status is Status.CONFIRMED
    assert settle(revoke, False, now=T0 + timedelta(minutes=1)).status is Status.CONFIRMED
    assert settle(grant, False, now=T0 + timedelta(minutes=1)) is grant
    assert settle(revoke, True, now=T0 + timedelta(minutes=1)) is revoke


def test_unconfirmed_only_after_the_wait() -> None:
    grant = _pending("grant")
    wait = timedelta(minutes=30)
    assert settle(grant, False, now=T0 + wait - timedelta(seconds=1), wait=wait) is grant
    late = settle(grant, None, now=T0 + wait, wait=wait)
    assert late.status is Status.UNCONFIRMED and late.finished_at == T0 + wait and "unconfirmed" in late.message


def test_final_outcomes_never_change() -> None:
    done = _pending("grant").settled(Status.CONFIRMED, "ok", T0)
    assert settle(done, False, now=T0 + timedelta(days=9)) is done


def test_a_later_sync_memberships_table_settles_it() -> None:
    grant = _pending("grant")
    table = pa.Table.from_pylist([{"container_descriptor": "aadgp.QUJD", "member_descriptor": "aad.X",
                                   "member_kind": "user"}], schema=schemas.MEMBERSHIPS)
    assert present_in_memberships(grant, table) is True
    assert present_in_memberships(grant, table.slice(0, 0)) is False
    assert settle(grant, present_in_memberships(grant, table), now=T0).status is Status.CONFIRMED
