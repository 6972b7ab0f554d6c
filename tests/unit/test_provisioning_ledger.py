"""The ledger and the batch runner: once per request id, arrival order per membership, resumable."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from azdo_pipeline.provisioning.inbox import Inbox
from azdo_pipeline.provisioning.ledger import DONE, STARTED, Entry, Ledger
from azdo_pipeline.provisioning.runner import chains, run_batch


def _receive(ledger: Ledger, rid: str, key: str, org: str = "o", body: dict[str, Any] | None = None) -> str:
    b = body or {"id": rid, "key": key}
    return ledger.receive(request_id=rid, org=org, action="grant", order_key=key, body=b,
                          digest=str(sorted(b.items())), file_name=f"{rid}.json").kind


def test_same_id_twice_is_a_duplicate_or_a_conflict(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db") as ledger:
        assert _receive(ledger, "r1", "k") == "new"
        assert _receive(ledger, "r1", "k") == "duplicate"
        assert _receive(ledger, "r1", "k", body={"id": "r1", "other": 1}) == "conflict"
        assert [e.request_id for e in ledger.entries()] == ["r1"]


def test_batches_hold_back_a_membership_with_an_earlier_unfinished_request(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db") as ledger:
        _receive(ledger, "grant-a", "g|alice")
        _receive(ledger, "grant-b", "g|bob")
        [first] = ledger.form_batches(max_batch=10)
        assert first.request_ids == ("grant-a", "grant-b")
        _receive(ledger, "revoke-a", "g|alice")  # same membership as an unfinished request
        _receive(ledger, "grant-c", "g|carol")
        [second] = ledger.form_batches(max_batch=10)
        assert second.request_ids == ("grant-c",)  # revoke-a waits for grant-a
        ledger.claim(first.batch_id, "run1", os.getpid(), "h")
        for rid in first.request_ids:
            assert ledger.mark_started(rid, "run1")
            assert ledger.record_outcome(rid, "succeeded", {"request_id": rid})
        [third] = ledger.form_batches(max_batch=10)
        assert third.request_ids == ("revoke-a",)


def test_batches_split_by_org_and_size_in_arrival_order(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db") as ledger:
        for i in range(5):
            _receive(ledger, f"x{i}", f"k{i}", org="x")
            _receive(ledger, f"y{i}", f"k{i}", org="y")
        batches = ledger.form_batches(max_batch=2)
        assert [(b.org, b.request_ids) for b in batches] == [
            ("x", ("x0", "x1")), ("x", ("x2", "x3")), ("x", ("x4",)),
            ("y", ("y0", "y1")), ("y", ("y2", "y3")), ("y", ("y4",))]
        assert ledger.form_batches(max_batch=2) == []


def test_a_finished_request_is_never_recorded_twice(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db") as ledger:
        _receive(ledger, "r1", "k")
        ledger.form_batches(10)
        assert ledger.mark_started("r1", "run1")
        assert ledger.record_outcome("r1", "succeeded", {"n": 1})
        assert not ledger.mark_started("r1", "run2")
        assert not ledger.record_outcome("r1", "failed", {"n": 2})
        entry = ledger.get("r1")
        assert entry is not None and entry.status == "succeeded" and entry.outcome == {"n": 1}


def test_chains_keep_arrival_order_per_key(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db") as ledger:
        for rid, key in [("a1", "a"), ("b1", "b"), ("a2", "a"), ("c1", "c"), ("b2", "b")]:
            _receive(ledger, rid, key)
        [batch] = ledger.form_batches(10)
        entries = ledger.claim(batch.batch_id, "run", os.getpid(), "h")
        assert [[e.request_id for e in c] for c in chains(entries)] == [["a1", "a2"], ["b1", "b2"], ["c1"]]


def test_run_batch_resumes_a_killed_run_without_redoing_finished_requests(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    for i in range(6):
        _receive(ledger, f"r{i}", f"k{i % 3}")
    [batch] = ledger.form_batches(10)
    # A first run finished r0 and r1 and had started r2 when it was killed.
    ledger.claim(batch.batch_id, "run1", 1, "h")
    for rid in ("r0", "r1", "r2"):
        ledger.mark_started(rid, "run1")
    ledger.record_outcome("r0", "succeeded", {})
    ledger.record_outcome("r1", "succeeded", {})
    retry = ledger.requeue(batch.batch_id)
    assert retry is not None and retry.request_ids == ("r2", "r3", "r4", "r5") and retry.attempt == 2
    calls: list[tuple[str, bool]] = []

    async def act(e: Entry, resumed: bool) -> tuple[str, dict[str, Any]]:
        calls.append((e.request_id, resumed))
        return "succeeded", {"request_id": e.request_id}

    report = asyncio.run(run_batch(ledger, retry.batch_id, "run2", act, concurrency=2))
    assert sorted(calls) == [("r2", True), ("r3", False), ("r4", False), ("r5", False)]
    assert sorted(r for r, _, _ in report.done) == ["r2", "r3", "r4", "r5"]
    assert {e.request_id: e.state for e in ledger.entries()} == {f"r{i}": DONE for i in range(6)}
    assert ledger.open_batches() == []
    ledger.close()


def test_an_unexpected_error_ends_one_request_not_the_batch(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db") as ledger:
        for rid in ("ok1", "boom", "ok2"):
            _receive(ledger, rid, rid)
        [batch] = ledger.form_batches(10)

        async def act(e: Entry, resumed: bool) -> tuple[str, dict[str, Any]]:
            if e.request_id == "boom":
                raise RuntimeError("service unreachable")
            return "succeeded", {}

        report = asyncio.run(run_batch(ledger, batch.batch_id, "run", act,
                                       failure_row=lambda e, exc: {"message": str(exc)}))
        assert report.statuses() == {"succeeded": 2, "failed": 1}
        boom = ledger.get("boom")
        assert boom is not None and boom.outcome == {"message": "service unreachable"}


def test_claimed_batch_refuses_a_second_run(tmp_path: Path) -> None:
    import pytest

    from azdo_pipeline.provisioning.ledger import ClaimError

    with Ledger(tmp_path / "l.db") as ledger:
        _receive(ledger, "r", "k")
        [batch] = ledger.form_batches(10)
        ledger.claim(batch.batch_id, "run1", 1, "h")
        ledger.claim(batch.batch_id, "run1", 1, "h")  # the same run again (a retried step) is fine
        with pytest.raises(ClaimError, match="already claimed by run run1"):
            ledger.claim(batch.batch_id, "run2", 1, "h")
        assert ledger.get("r") is not None and ledger.get("r").state != STARTED  # type: ignore[union-attr]


def test_inbox_moves_and_reasons(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "inbox").ensure()
    p = inbox.write_request({"id": "abc", "action": "grant"})
    assert p.parent == inbox.incoming and p.name == "abc.json"
    assert not [x for x in inbox.incoming.iterdir() if x.name.startswith(".")]  # no temporary left
    (inbox.incoming / ".half-written.json").write_text("{")
    (inbox.incoming / "notes.txt").write_text("x")
    [f] = inbox.scan()
    dest = inbox.move_rejected(f, "abc.json: action: bad")
    assert dest == inbox.rejected / "abc.json"
    assert (inbox.rejected / "abc.json.reason.txt").read_text().startswith("abc.json: action: bad\n")
    # The same name rejected again keeps both files and both reasons.
    inbox.write_request({"id": "abc"})
    [f] = inbox.scan()
    dest2 = inbox.move_rejected(f, "again")
    assert dest2 != dest and (dest2.parent / (dest2.name + ".reason.txt")).exists()


def test_an_org_with_a_running_batch_gathers_its_new_requests_for_the_next(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db") as ledger:
        _receive(ledger, "a1", "k1")
        [first] = ledger.form_batches(10)
        _receive(ledger, "a2", "k2")
        _receive(ledger, "a3", "k3")
        _receive(ledger, "b1", "other|k1", org="other")
        busy = {b.org for b in ledger.open_batches()}
        assert [(b.org, b.request_ids) for b in ledger.form_batches(10, skip_orgs=busy)] == [("other", ("b1",))]
        ledger.claim(first.batch_id, "run1", os.getpid(), "h")
        ledger.mark_started("a1", "run1")
        ledger.record_outcome("a1", "succeeded", {})
        busy = {b.org for b in ledger.open_batches()}
        assert [b.request_ids for b in ledger.form_batches(10, skip_orgs=busy)] == [("a2", "a3")]
