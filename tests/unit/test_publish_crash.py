"""Crash safety of publishing: a run SIGKILLed at every file-system step of writing, committing and
publishing a snapshot leaves `latest` one whole snapshot (the old one or the new one), and the next
run publishes correctly and removes what the dead one left. A reader resolving `latest` while 50
snapshots are published never sees two snapshots.

The kill comes from inside the run: an audit hook (sys.addaudithook, PEP 578) counts the run's
file-system mutations (open for writing, mkdir, rename, link, symlink, remove, rmtree) and sends
SIGKILL to its own process at the Nth. Runs are forked from a server that has already imported
pyarrow, so each costs milliseconds."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from azdo_pipeline.store import Store

TABLES = ("users", "groups", "memberships")
ORG, OTHER = "fabrikam", "contoso"
_MUTATIONS = {"os.rename", "os.link", "os.symlink", "os.remove", "os.rmdir", "os.mkdir", "shutil.rmtree"}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _is_mutation(event: str, args: tuple[Any, ...]) -> bool:
    if event in _MUTATIONS:
        return True
    if event == "open" and len(args) >= 3:
        mode, flags = args[1], args[2]
        return bool((isinstance(mode, str) and set(mode) & set("wax+")) or (isinstance(flags, int)
                                                                             and flags & _WRITE_FLAGS))
    return False


def _run(data_dir: str, org: str, snapshot: str, kill_at: int, reject: bool = False) -> None:
    """One run: write every table (rows name the snapshot), then commit (or reject). With kill_at > 0
    the process SIGKILLs itself at that file-system mutation; it reports how many it made."""
    store = Store(Path(data_dir))
    count = 0

    def hook(event: str, args: tuple[Any, ...]) -> None:
        nonlocal count
        if kill_at and _is_mutation(event, args):
            count += 1
            if count == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    sys.addaudithook(hook)
    with store.begin(org, snapshot) as draft:
        for i, name in enumerate(TABLES):
            draft.write_table(name, pa.table({"snapshot": [snapshot] * (i + 2)}))
        if reject:
            draft.reject(["reconciliation failed (test)"])
        else:
            draft.commit()
    os._exit(100 + min(count, 150) if kill_at else 0)


def _published_snapshots(data_dir: Path) -> dict[str, set[str]]:
    """Per organization, the snapshots its latest tables hold (read through one resolution)."""
    root = Path(os.path.realpath(data_dir / "latest"))
    out: dict[str, set[str]] = {}
    for path in root.glob("*/org=*/*.parquet"):
        out.setdefault(path.parent.name.removeprefix("org="), set()).update(
            pq.read_table(path)["snapshot"].to_pylist())
        assert path.parent.parent.name in TABLES
    for org, tables in ((o, {p.parent.parent.name for p in root.glob(f"*/org={o}/*.parquet")}) for o in out):
        assert tables == set(TABLES), (org, tables)  # whole: every table of the organization
    return out


def _assert_clean(data_dir: Path, org: str) -> None:
    """Nothing a dead run left: no draft, no temp file, no snapshot folder without its manifest, no
    unfinished generation; every manifest's tables exist."""
    drafts = [p.name for p in (data_dir / "_staging" / f"org={org}").iterdir() if p.name != ".lock"]
    assert drafts == []
    assert [p for p in data_dir.rglob("*.tmp")] == []
    manifests = {p.stem for p in (data_dir / "_snapshots" / f"org={org}").glob("*.json")}
    for name in TABLES:
        folders = {p.name.removeprefix("snapshot=") for p in (data_dir / name / f"org={org}").iterdir()}
        assert folders == manifests, name
    for gen in (data_dir / "_published").iterdir():
        if gen.is_dir():
            assert (gen / "_published.json").exists(), gen


@pytest.fixture(scope="module")
def ctx() -> mp.context.BaseContext:
    ctx = mp.get_context("forkserver")
    # pyarrow imports pandas lazily: preloaded, a forked run costs milliseconds instead of a second
    ctx.set_forkserver_preload(["pandas", "pyarrow.parquet", "azdo_pipeline.store", __name__])
    return ctx


@pytest.mark.parametrize("reject", [False, True], ids=["commit", "reject"])
def test_sigkill_at_every_step_leaves_latest_whole_and_the_next_run_cleans_up(
        tmp_path: Path, ctx: mp.context.BaseContext, reject: bool) -> None:
    data = tmp_path / "data"
    store = Store(data)
    for org in (ORG, OTHER):  # a published snapshot of each organization
        p = ctx.Process(target=_run, args=(str(data), org, f"20260101T000000Z-{org[:4]}", 0))
        p.start()
        p.join()
        assert p.exitcode == 0
    previous = f"20260101T000000Z-{ORG[:4]}"
    n, finished, new, published_kills = 0, False, [], []
    while not finished:  # kill at step 1, 2, … until a run gets through all its steps
        n += 1
        snap = f"20260102T{n:06d}Z-kill"
        p = ctx.Process(target=_run, args=(str(data), ORG, snap, n, reject))
        p.start()
        p.join()
        finished = p.exitcode != -signal.SIGKILL
        published = _published_snapshots(data)
        assert published[OTHER] == {f"20260101T000000Z-{OTHER[:4]}"}, n
        assert published[ORG] in ({previous}, {snap}), (n, published)  # one whole snapshot, old or new
        assert not (reject and published[ORG] == {snap}), n  # a rejected snapshot is never published
        new.append(published[ORG] == {snap})
        if new[-1]:
            published_kills.append(snap)
        # the next run is correct and removes what the dead one left
        previous = f"20260103T{n:06d}Z-next"
        p = ctx.Process(target=_run, args=(str(data), ORG, previous, 0))
        p.start()
        p.join()
        assert p.exitcode == 0, n
        assert _published_snapshots(data)[ORG] == {previous}, n
        _assert_clean(data, ORG)
        assert store.latest_manifest(ORG)["snapshot"] == previous
        # a killed run's snapshot is in the history only if it was published before the kill
        assert {s for s in store.snapshots(ORG) if s.endswith("-kill")} <= set(published_kills), n
    assert n > 20  # every write, rename and link of the run was a kill point
    # killed before the switch: the old snapshot; from the switch on: the new one (never a mix)
    switch = new.index(True) if True in new else n
    assert new == [False] * switch + [True] * (n - switch)
    assert switch == n if reject else 0 < switch < n - 1
    rejected = sorted(p.name for p in (data / "_rejected" / f"org={ORG}").iterdir()) if reject else []
    assert all((data / "_rejected" / f"org={ORG}" / r / "REJECTED.json").exists() for r in rejected)


def test_a_reader_through_50_publishes_never_sees_two_snapshots(tmp_path: Path) -> None:
    store = Store(tmp_path)
    for org in (ORG, OTHER):
        with store.begin(org, "20260101T000000Z-0") as draft:
            for name in TABLES:
                draft.write_table(name, pa.table({"snapshot": ["20260101T000000Z-0"] * 3}))
            draft.commit()
    done = threading.Event()
    seen: list[set[str]] = []
    problems: list[str] = []

    def read_python() -> None:
        # the documented line: resolve `latest` once, then read every table from it
        while not done.is_set():
            root = os.path.realpath(tmp_path / "latest")
            snaps = {v for name in TABLES for v in pq.read_table(f"{root}/{name}/org={ORG}/{name}.parquet")
                     ["snapshot"].to_pylist()}
            seen.append(snaps)
            if len(snaps) != 1:
                problems.append(f"python read {snaps}")

    def read_duckdb() -> None:
        # the documented DuckDB lines (docs/queries.md): pin the generation, then query the views
        con = duckdb.connect()
        while not done.is_set():
            con.execute(f"SET VARIABLE latest = '{tmp_path}/_published/' || "
                        f"(SELECT generation FROM read_json('{tmp_path}/latest/_published.json'))")
            for name in TABLES:
                con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM "
                            f"read_parquet(getvariable('latest') || '/{name}/*/*.parquet', hive_partitioning = true)")
            rows = con.sql("SELECT DISTINCT snapshot FROM (SELECT snapshot, org FROM users UNION ALL "
                           "SELECT snapshot, org FROM groups UNION ALL SELECT snapshot, org FROM memberships) "
                           f"WHERE org = '{ORG}'").fetchall()
            seen.append({r[0] for r in rows})
            if len(rows) != 1:
                problems.append(f"duckdb read {rows}")

    readers = [threading.Thread(target=read_python), threading.Thread(target=read_duckdb)]
    for r in readers:
        r.start()
    for i in range(1, 51):
        snap = f"20260102T{i:06d}Z-{i}"
        with store.begin(ORG, snap) as draft:
            for name in TABLES:
                draft.write_table(name, pa.table({"snapshot": [snap] * (i % 7 + 1)}))
            draft.commit()
        if i % 10 == 0:  # let both readers read between publishes now and then
            target = len(seen) + 2
            while len(seen) < target and not problems:
                threading.Event().wait(0.001)
    done.set()
    for r in readers:
        r.join()
    assert problems == []
    assert len({s for snaps in seen for s in snaps}) > 2  # the readers did see publishes go by
