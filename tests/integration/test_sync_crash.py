"""A real full sync (over HTTPS against the simulator) SIGKILLed at chosen file-system steps, from
its first write to the last step of its publish: `latest` is always one whole snapshot (every raw
table of the organization a hard link of the same committed snapshot's file), and the next run is
correct (equal to the ground truth) and leaves nothing of the dead ones behind.

The kill comes from inside the run, at its Nth file-system mutation (tests/unit/test_publish_crash.py
explains the audit hook); runs are forked from a server that has already imported the pipeline."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azdo_sim.generator import generate
from azdo_sim.server import SimulatorServer
from azdo_sim.state import World

from azdo_pipeline import schemas
from azdo_pipeline.store import Store
from tests.integration.test_full_sync import ORG, assert_equals_truth
from tests.unit.test_publish_crash import _is_mutation


def _sync_run(data_dir: str, org_url: str, ca_file: str, token: str, snapshot: str, kill_at: int) -> None:
    from azdo_pipeline.auth import PatCredential
    from azdo_pipeline.client import AzureDevOpsClient, ClientSettings
    from azdo_pipeline.sync.full import SyncOptions, full_sync

    count = 0  # mutations so far; kill_at < 0 counts from the commit's journal on instead
    in_commit = kill_at > 0

    def hook(event: str, args: tuple[Any, ...]) -> None:
        nonlocal count, in_commit
        if not in_commit and event == "open" and "COMMIT.json" in str(args[0]) and _is_mutation(event, args):
            in_commit, count = True, 0
        if in_commit and _is_mutation(event, args):
            count += 1
            if count == abs(kill_at):
                os.kill(os.getpid(), signal.SIGKILL)

    async def run() -> None:
        settings = ClientSettings(ca_bundle=ca_file)
        async with await AzureDevOpsClient.connect(org_url, PatCredential(token), settings=settings) as client:
            await full_sync(client, Store(Path(data_dir)), ORG, snapshot,
                            SyncOptions(sync_teams=True, sync_organizations=True))

    sys.addaudithook(hook)
    asyncio.run(run())
    os._exit(100 + min(count, 150) if kill_at else 0)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[SimulatorServer, str]]:
    world = World(seed=5)
    state = generate(world, ORG, size="tiny", seed=5)
    token = world.issue_pat(None, state.owner_key, {"app_token"}).token
    with SimulatorServer(world) as srv:
        yield srv, token


@pytest.fixture(scope="module")
def ctx() -> mp.context.BaseContext:
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["pandas", "pyarrow.parquet", "azdo_pipeline.sync.full", "azdo_pipeline.client",
                                "azdo_pipeline.auth", __name__])
    return ctx


def _run(ctx: mp.context.BaseContext, srv: SimulatorServer, token: str, data: Path, snapshot: str,
         kill_at: int) -> int:
    p = ctx.Process(target=_sync_run, args=(str(data), srv.org_url(ORG), str(srv.ca_file), token, snapshot, kill_at))
    p.start()
    p.join()
    assert p.exitcode is not None
    return p.exitcode


def _published_snapshot(store: Store) -> str:
    """The one snapshot every raw table of the organization in `latest` is (fails on a mix)."""
    root = store.latest_root()
    assert root is not None
    published = store.published()["tables"]
    snaps = {published[t][ORG] for t in schemas.RAW_TABLES}
    assert len(snaps) == 1, snaps
    snap = snaps.pop()
    for table in schemas.RAW_TABLES:
        assert os.path.samefile(root / table / f"org={ORG}" / f"{table}.parquet",
                                store.snapshot_path(table, ORG, snap)), table
    return str(snap)


def test_a_sync_killed_anywhere_leaves_latest_whole_and_the_next_run_is_correct(
        tmp_path: Path, server: tuple[SimulatorServer, str], ctx: mp.context.BaseContext) -> None:
    srv, token = server
    data = tmp_path / "data"
    store = Store(data)
    assert _run(ctx, srv, token, data, "20260101T000000Z-good", 0) == 0
    # steps from the commit's journal to the end of the publish (a run that is never killed)
    steps = _run(ctx, srv, token, data, "20260101T000001Z-prob", -10_000) - 100
    assert steps > 20
    # kill points while the tables are written, then every third step of the commit and publish and
    # each of its last four (after the switch)
    seen, previous = set(), "20260101T000001Z-prob"
    commit_points = sorted(set(range(1, steps + 1, 3)) | set(range(steps - 3, steps + 1)))
    for n in [1, 20, 40, *(-k for k in commit_points)]:
        snap = f"20260102T{abs(n):06d}Z-{'commit' if n < 0 else 'sync'}"
        code = _run(ctx, srv, token, data, snap, n)
        assert code == -signal.SIGKILL, (n, code)
        published = _published_snapshot(store)
        assert published in (previous, snap), (n, published)
        seen.add(published == snap)
        previous = published
    assert seen == {False, True}  # kills before the switch kept the old snapshot, after it the new
    assert _run(ctx, srv, token, data, "20260103T000000Z-next", 0) == 0
    assert _published_snapshot(store) == "20260103T000000Z-next"
    assert_equals_truth(store, srv.world)
    assert [p.name for p in (data / "_staging" / f"org={ORG}").iterdir()] == [".lock"]
    assert list(data.rglob("*.tmp")) == []
    manifests = set(store.snapshots(ORG))
    for table in schemas.RAW_TABLES:
        assert {p.name.removeprefix("snapshot=") for p in (data / table / f"org={ORG}").iterdir()} == manifests
