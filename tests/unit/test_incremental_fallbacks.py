"""When an incremental run cannot be proven equal to a full sync it does a full sync and says why; the
cursor lives in the manifest of its snapshot, so a failed or killed run never advances it."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from azdo_sim.faults import faults_of
from azdo_sim.generator import generate
from azdo_sim.mutations import apply_ops, random_ops
from azdo_sim.state import World

from azdo_pipeline import auditlog, schemas
from azdo_pipeline.client.errors import AzureDevOpsError
from azdo_pipeline.store import Store
from azdo_pipeline.sync import incremental
from azdo_pipeline.sync.full import SyncOptions, SyncReport, full_sync
from tests.unit.test_incremental_equivalence import (
    OPTIONS,
    ORG,
    connect,
    differences,
    raw_tables,
    reader,
)

READ_SCOPES = {"vso.graph", "vso.identity", "vso.project", "vso.memberentitlementmanagement", "vso.security_manage",
               "vso.profile"}


class Env:
    def __init__(self, tmp: Path, seed: int = 3, scopes: set[str] | None = None) -> None:
        self.world = World(seed=seed)
        self.org = generate(self.world, ORG, size="tiny", seed=seed)
        self.user = self.org.identities[reader(self.org)].storage_key
        self.pat = self.world.issue_pat(None, self.user, scopes or {"app_token"}, lifetime=timedelta(days=400)).token
        self.store = Store(tmp / "data")
        self.tmp = tmp
        faults_of(self.world)

    def run(self, snapshot: str, *, incremental_mode: bool = True, options: SyncOptions = OPTIONS) -> SyncReport:
        async def go() -> SyncReport:
            async with await connect(self.world, self.pat) as c:
                return await incremental.sync(c, self.store, ORG, snapshot, options, incremental=incremental_mode)
        return asyncio.run(go())

    def full(self, store: Store, snapshot: str) -> None:
        async def go() -> None:
            async with await connect(self.world, self.pat) as c:
                await full_sync(c, store, ORG, snapshot, OPTIONS)
        asyncio.run(go())

    def mutate(self, n: int = 10, seed: int = 1) -> None:
        import random

        with self.world.lock:
            me = reader(self.org)
            ops = [o for o in random_ops(self.org, random.Random(seed), n)
                   if not (o["op"] == "remove_member" and o.get("member") == me)]
            apply_ops(self.org, ops)

    def manifest(self) -> dict[str, Any]:
        m = self.store.latest_manifest(ORG)
        assert m is not None
        return m

    def assert_equals_full(self, snapshot: str) -> None:
        ref = Store(self.tmp / f"ref-{snapshot}")
        self.full(ref, snapshot)
        assert not differences(raw_tables(self.store, snapshot), raw_tables(ref, snapshot))


def test_first_run_is_a_full_sync_that_keeps_a_cursor(tmp_path: Path) -> None:
    env = Env(tmp_path)
    report = env.run("s1")
    assert (report.mode, report.fallback_reason) == ("full", "there is no previous snapshot")
    state = env.manifest()["incremental"]
    assert state["mode"] == "full" and state["fallback_reason"] == "there is no previous snapshot"
    assert state["audit_cursor"] and state["events_read"] > 0
    assert auditlog.read(env.store.data_dir, ORG).num_rows == state["audit_log_appended"] > 0
    env.mutate()
    report = env.run("s2")
    assert report.mode == "incremental" and report.fallback_reason is None
    assert env.manifest()["incremental"]["previous_snapshot"] == "s1"
    env.assert_equals_full("s2")


def test_changes_costing_more_than_a_full_sync_make_a_full_sync(tmp_path: Path) -> None:
    env = Env(tmp_path)
    product = SyncOptions(sync_teams=True, sync_organizations=True)  # the default cost rule
    env.run("s1", options=product)
    with env.world.lock:  # new projects: their rows, teams and every group of the organization to list
        apply_ops(env.org, [{"op": "create_project", "name": f"Cost-{i}"} for i in range(3)])
    report = env.run("s2", options=product)
    assert report.mode == "full"
    assert "more than a full sync's" in str(report.fallback_reason)
    assert env.manifest()["incremental"]["fallback_reason"] == report.fallback_reason
    # The plan is priced before any re-read: none of the incremental step's single-object reads went out.
    assert not [e for e in report.requests_by_endpoint if e == "GET projects/{p}"]
    env.assert_equals_full("s2")
    # A change that costs less stays incremental under the same rule.
    env.mutate(n=3, seed=5)
    assert env.run("s3", options=product).mode == "incremental"


def test_a_snapshot_taken_with_incremental_sync_off_has_no_cursor(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.full(env.store, "s1")
    report = env.run("s2")
    assert report.mode == "full" and "no audit cursor" in str(report.fallback_reason)


def test_cursor_older_than_the_retention(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.run("s1")
    env.world.clock.advance(timedelta(days=91))
    report = env.run("s2")
    assert report.mode == "full" and "90-day retention" in str(report.fallback_reason)
    assert "90-day retention" in env.manifest()["incremental"]["fallback_reason"]


def test_auditing_disabled(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.run("s1")
    env.org.auditing_enabled = False
    report = env.run("s2")
    assert report.mode == "full" and "Log Audit Events" in str(report.fallback_reason)
    # The snapshot is right but has no cursor: the next run cannot be incremental either.
    assert env.manifest()["incremental"]["audit_cursor"] is not None  # the old one is kept, never advanced
    env.org.auditing_enabled = True


def test_audit_scope_missing(tmp_path: Path) -> None:
    env = Env(tmp_path, scopes=READ_SCOPES)
    env.run("s1")
    report = env.run("s2")
    assert report.mode == "full" and "Audit Log (Read)" in str(report.fallback_reason)
    assert "vso.auditlog" in str(report.fallback_reason)


def test_an_audit_read_that_fails_midway_could_hide_events(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.run("s1")
    env.mutate(20)
    # The second page of the log keeps failing: what it held is unknown.
    env.world.faults.configure({"rules": [{"path": "/_apis/audit/auditlog", "count": 1000, "status": 500}]})
    cursor = env.manifest()["incremental"]["audit_cursor"]
    report = env.run("s2")
    env.world.faults.configure({})
    assert report.mode == "full" and "reading the audit log failed" in str(report.fallback_reason)
    assert env.manifest()["incremental"]["audit_cursor"] == cursor  # not advanced: nothing was read


def test_a_failed_incremental_run_leaves_the_previous_snapshot_and_cursor(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.run("s1")
    before = env.manifest()
    env.mutate()
    env.world.faults.configure({"rules": [{"path": "/_apis/identitybatch", "count": 1000, "status": 500}]})
    with pytest.raises(AzureDevOpsError):
        env.run("s2")
    env.world.faults.configure({})
    assert env.manifest() == before
    report = env.run("s3")
    assert report.mode == "incremental"
    env.assert_equals_full("s3")


def _killable_run(env: Env, snapshot: str) -> None:  # runs in a forked child
    env.run(snapshot)
    os._exit(0)


def test_sigkill_during_an_incremental_run(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.run("s1")
    before = env.manifest()
    env.mutate(15)
    # In the child the membership read hangs, after the audit log was read and appended.
    env.world.faults.configure({"rules": [{"path": "/_apis/identitybatch", "count": 1000, "delay_ms": 600_000}]})
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=_killable_run, args=(env, "s2"))
    child.start()
    env.world.faults.configure({})
    appended = auditlog.org_dir(env.store.data_dir, ORG)
    files_before = set(appended.rglob("*.parquet"))
    try:
        for _ in range(600):  # the child appends the new events, then blocks in the membership read
            if set(appended.rglob("*.parquet")) - files_before:
                break
            child.join(0.1)
            assert child.exitcode is None, "the child finished before it could be killed"
        else:
            pytest.fail("the child never reached the audit log append")
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.join(30)
    assert child.exitcode == -signal.SIGKILL
    assert env.manifest() == before  # previous snapshot and cursor intact
    for name in schemas.RAW_TABLES:
        assert env.store.latest_path(name, ORG).samefile(env.store.snapshot_path(name, ORG, "s1"))
    report = env.run("s3")
    assert report.mode == "incremental"
    env.assert_equals_full("s3")
    ids = auditlog.read(env.store.data_dir, ORG).column("event_id").to_pylist()
    assert len(ids) == len(set(ids))  # the killed run's append and the re-read did not duplicate


def test_a_quiet_run_shares_every_table_and_the_graph(tmp_path: Path) -> None:
    from azdo_pipeline.accessgraph.build import reusable_graph, write_access_graph

    env = Env(tmp_path)
    env.run("s1")
    env.mutate()
    env.run("s2")
    raw, snap = env.store.read_consistent(schemas.RAW_TABLES, ORG)
    with env.store.begin(ORG, "s2-graph", kind="access_graph") as draft:
        write_access_graph(raw, draft.writer, organization=ORG)
        draft.commit(extra={"raw_snapshot": snap})
    graph = env.store.latest_manifest(ORG, kind="access_graph")
    assert reusable_graph(env.manifest(), graph) is None  # s2 changed tables: its graph was built in full
    report = env.run("s3")  # nothing changed since s2
    assert report.mode == "incremental" and sorted(report.tables_linked) == sorted(schemas.RAW_TABLES)
    for name in schemas.RAW_TABLES:
        assert env.store.snapshot_path(name, ORG, "s3").samefile(env.store.snapshot_path(name, ORG, "s2"))
    assert reusable_graph(env.manifest(), graph) == "s2-graph"
    env.mutate(5, seed=9)
    env.run("s4")
    assert reusable_graph(env.manifest(), graph) is None  # built from s2, not s3


def test_a_snapshot_derived_by_provisioning_keeps_the_cursor(tmp_path: Path) -> None:
    """Provisioning re-reads the groups it changed into a derived snapshot (provisioning/refresh.py):
    the cursor carries over, so the next run is still incremental, and right."""
    from azdo_pipeline.sync.incremental import carried_cursor

    env = Env(tmp_path)
    env.run("s1")
    base = env.manifest()
    with env.store.begin(ORG, "s1-refresh") as draft:
        for name in schemas.RAW_TABLES:
            draft.link(name, "s1")
        draft.commit(extra={"derived_from": "s1", **carried_cursor(base)})
    assert env.manifest()["incremental"]["audit_cursor"] == base["incremental"]["audit_cursor"]
    env.mutate()
    report = env.run("s2")
    assert report.mode == "incremental"
    env.assert_equals_full("s2")


def test_a_step_that_falls_back_leaves_no_early_read_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The step starts reads early (every-run reads, members of known groups). When it falls back, none
    of them may still run beside the full sync on the same client (request slots, member look-ups)."""
    from azdo_pipeline.sync import patch

    env = Env(tmp_path)
    env.run("s1")
    env.mutate()
    seen: list[str] = []

    async def refuse(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.05)  # the early reads are under way by now
        raise patch.FullSyncNeeded("a test refusal")

    real_full_sync = incremental.full_sync

    async def full_then_look(*args: Any, **kwargs: Any) -> SyncReport:
        await asyncio.sleep(0)  # let cancellations land
        early = ("_read_members", "_admin_identities", "_entitlements_down_to", "_team_admins",
                 "_service_principals", "_organizations")
        seen.extend(name for t in asyncio.all_tasks() if not t.done()
                    and (name := t.get_coro().__name__) in early)  # type: ignore[union-attr]
        return await real_full_sync(*args, **kwargs)

    monkeypatch.setattr(patch, "_patch_groups", refuse)
    monkeypatch.setattr(incremental, "full_sync", full_then_look)
    # The early member read's first answer comes late: it is still in flight when the step gives up.
    env.world.faults.configure({"rules": [{"path": "/_apis/identitybatch", "count": 1, "delay_ms": 1500}]})
    report = env.run("s2")
    env.world.faults.configure({})
    assert report.mode == "full" and report.fallback_reason == "a test refusal"
    assert seen == []
    env.assert_equals_full("s2")


def test_a_created_project_is_read_in_its_own_scope(tmp_path: Path) -> None:
    """A new project's groups come from a listing of its scope (a page), not of every group of the
    organization (one page per 500 groups), and the snapshot still equals a full sync's."""
    env = Env(tmp_path)
    with env.world.lock:  # enough groups that listing them all costs more pages than the project's scope
        for i in range(1200):
            env.org.create_group(display_name=f"Bulk {i}", audit=False)
    env.run("s1")
    with env.world.lock:
        apply_ops(env.org, [{"op": "create_project", "name": "Scoped"}])
    report = env.run("s2")
    assert report.mode == "incremental", report.fallback_reason
    assert report.requests_by_endpoint.get("GET graph/descriptors/{id}") == 1
    assert report.requests_by_endpoint.get("GET graph/groups", 0) <= 2  # the project's scope, not 3+ pages
    env.assert_equals_full("s2")


@pytest.mark.parametrize("chunk", [1, 500])
def test_members_read_early_or_after_give_the_same_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            chunk: int) -> None:
    """The members of groups known before any read are read early when they fit one round of half the
    request slots (chunk 500), else all after the groups are patched (chunk 1): either way the
    snapshot equals a full sync's."""
    import dataclasses

    from azdo_pipeline.sync import patch

    real = patch.start_member_reads
    early: list[bool] = []

    def spy(client: Any, touched: Any, prev: Any) -> Any:
        client.settings = dataclasses.replace(client.settings, membership_chunk_size=chunk)
        future = real(client, touched, prev)
        early.append(future is not None)
        return future

    monkeypatch.setattr(patch, "start_member_reads", spy)
    env = Env(tmp_path)
    env.run("s1")
    env.mutate(n=15, seed=4)
    report = env.run("s2")
    assert report.mode == "incremental", report.fallback_reason
    assert early == [chunk == 500]
    env.assert_equals_full("s2")
