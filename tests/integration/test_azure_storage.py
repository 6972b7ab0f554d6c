"""Parquet on Azure storage, for real against Azurite: a full sync and the access graph mirrored to the
storage account read back equal to a local run; a new machine's empty cache pulls what the pointer
names; a run that dies before its pointer leaves readers on the previous snapshot, whole."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from azdo_sim.server import SimulatorServer

from azdo_pipeline import schemas
from azdo_pipeline.accessgraph.build import write_access_graph
from azdo_pipeline.accessgraph.schemas import DERIVED_TABLES
from azdo_pipeline.auth import PatCredential
from azdo_pipeline.remote import Mirror, filesystem, parse_url
from azdo_pipeline.store import Store
from azdo_pipeline.sync.full import SyncOptions
from tests.azurite_server import AzuriteServer, install
from tests.conftest import ORG
from tests.integration.test_full_sync import _rows, _sync

OPTIONS = SyncOptions(sync_teams=True)  # the tiny PAT is for one organization


@pytest.fixture(scope="module")
def azurite() -> Iterator[AzuriteServer]:
    binary, why = install()
    if binary is None:
        pytest.skip(f"Azurite unavailable: {why}")
    server = AzuriteServer(binary).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def account(azurite: AzuriteServer, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> str:
    """A fresh container per test; the credentials only in the environment, as in production."""
    for k, v in azurite.env().items():
        monkeypatch.setenv(k, v)
    return f"az://t{abs(hash(request.node.name)) % 10**8}/azdo"


def _mirror(url: str) -> Mirror:
    return Mirror(parse_url(url))


def _graph(store: Store, snapshot: str) -> None:
    raw, raw_snapshot = store.read_consistent(schemas.RAW_TABLES, ORG)
    with store.begin(ORG, snapshot, kind="access_graph") as draft:
        write_access_graph(raw, draft.writer, organization=ORG)
        draft.commit(extra={"raw_snapshot": raw_snapshot})


def _remote_tables(url: str) -> dict[str, pa.Table]:
    """What an analyst reads from the account: the pointer, then the objects it names."""
    loc = parse_url(url)
    fs = filesystem(loc)
    with fs.open_input_stream(loc.path("_latest", f"org={ORG}.json")) as f:
        pointer = json.loads(f.read())
    return {t: pq.read_table(loc.path(t, f"org={ORG}", f"snapshot={s}", f"{t}.parquet"), filesystem=fs)
            for t, s in pointer["tables"].items()}


def _same(a: pa.Table, b: pa.Table, table: str) -> bool:
    return _rows(a.to_pylist(), table) == _rows(b.to_pylist(), table) if table in schemas.RAW_TABLES \
        else sorted(map(repr, a.to_pylist())) == sorted(map(repr, b.to_pylist()))


def test_a_sync_and_its_graph_on_azure_read_back_equal_to_a_local_run(
        sim_server: SimulatorServer, account: str, tmp_path: Path) -> None:
    cred = PatCredential(sim_server.pat)  # type: ignore[attr-defined]
    local = Store(tmp_path / "local")
    _sync(sim_server, cred, local, "s1", OPTIONS)
    _graph(local, "s1-graph")
    remote = Store(tmp_path / "cache", mirror=_mirror(account))
    _sync(sim_server, cred, remote, "s1", OPTIONS)
    _graph(remote, "s1-graph")
    got = _remote_tables(account)
    assert set(got) == set(schemas.RAW_TABLES) | set(DERIVED_TABLES)
    for table, t in got.items():
        assert t.num_rows == pq.read_table(local.latest_path(table, ORG)).num_rows, table
        assert _same(t, pq.read_table(local.latest_path(table, ORG)), table), table
    assert got["users"].num_rows > 0 and got["effective_grants"].num_rows > 0


def test_an_empty_cache_pulls_what_the_pointer_names(sim_server: SimulatorServer, account: str,
                                                     tmp_path: Path) -> None:
    cred = PatCredential(sim_server.pat)  # type: ignore[attr-defined]
    first = Store(tmp_path / "machine-a", mirror=_mirror(account))
    _sync(sim_server, cred, first, "s1", OPTIONS)
    other = Store(tmp_path / "machine-b", mirror=_mirror(account))  # another worker: nothing local
    with pytest.raises(FileNotFoundError):
        other.read_consistent(["users"], ORG)
    assert other.refresh(ORG) == ["s1"]
    got, snapshot = other.read_consistent(schemas.RAW_TABLES, ORG)
    want, _ = first.read_consistent(schemas.RAW_TABLES, ORG)
    assert snapshot == "s1"
    for table in schemas.RAW_TABLES:
        assert got[table].equals(want[table]), table
    assert other.latest_manifest(ORG) == first.latest_manifest(ORG)
    assert other.refresh(ORG) == []  # current: nothing pulled again


class _Wrapped(pafs.FileSystemHandler):
    """The account through pyarrow's filesystem, calling `before(kind, path)` ahead of every step that
    changes it: "open" (an output stream), "write" and "close" (on that stream), "copy", "delete"."""

    def __init__(self, real: pafs.FileSystem, before: Callable[[str, str], None]) -> None:
        self.fs, self.before = real, before

    def __eq__(self, other: object) -> bool:
        return self is other

    def __ne__(self, other: object) -> bool:
        return self is not other

    def get_type_name(self) -> str:
        return "wrapped"

    def normalize_path(self, path: str) -> str:
        return path

    def get_file_info(self, paths: Any) -> Any:
        return self.fs.get_file_info(paths)

    def get_file_info_selector(self, selector: Any) -> Any:
        return self.fs.get_file_info(selector)

    def create_dir(self, path: str, recursive: bool) -> None:
        self.fs.create_dir(path, recursive=recursive)

    def delete_dir(self, path: str) -> None:
        self.fs.delete_dir(path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self.fs.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        raise NotImplementedError

    def delete_file(self, path: str) -> None:
        self.before("delete", path)
        self.fs.delete_file(path)

    def move(self, src: str, dest: str) -> None:
        raise NotImplementedError  # Azurite has no rename; the product never moves

    def copy_file(self, src: str, dest: str) -> None:
        self.before("copy", dest)
        self.fs.copy_file(src, dest)

    def open_input_stream(self, path: str) -> Any:
        return self.fs.open_input_stream(path)

    def open_input_file(self, path: str) -> Any:
        return self.fs.open_input_file(path)

    def open_output_stream(self, path: str, metadata: Any = None) -> Any:
        self.before("open", path)
        return pa.PythonFile(_Stream(self.fs.open_output_stream(path), path, self.before), mode="w")

    def open_append_stream(self, path: str, metadata: Any = None) -> Any:
        raise NotImplementedError


class _Stream:
    def __init__(self, out: Any, path: str, before: Callable[[str, str], None]) -> None:
        self.out, self.path, self.before = out, path, before

    @property
    def closed(self) -> bool:
        return bool(self.out.closed)

    def write(self, data: Any) -> int:
        self.before("write", self.path)
        return int(self.out.write(data))

    def flush(self) -> None:
        self.out.flush()

    def close(self) -> None:
        if not self.out.closed:
            self.before("close", self.path)
            self.out.close()


def _dying(mirror: Mirror, fatal: str) -> Mirror:
    """The account, except that the process 'dies' (SystemExit) when it starts writing a path
    containing `fatal`: what a SIGKILL at that moment leaves in the account."""

    def before(kind: str, path: str) -> None:
        if kind == "open" and fatal in path:
            raise SystemExit(f"killed while writing {path}")

    return Mirror(mirror.loc, fs=pafs.PyFileSystem(_Wrapped(mirror.fs, before)))


def _watched(mirror: Mirror, on_write: Callable[[str], None]) -> Mirror:
    """The account, calling `on_write(path)` before each object is written."""

    def before(kind: str, path: str) -> None:
        if kind == "open":
            on_write(path)

    return Mirror(mirror.loc, fs=pafs.PyFileSystem(_Wrapped(mirror.fs, before)))


@pytest.mark.parametrize("dies_at", ["_manifests/", "_latest/"])
def test_a_run_that_dies_before_its_pointer_leaves_the_previous_snapshot(
        sim_server: SimulatorServer, account: str, tmp_path: Path, dies_at: str) -> None:
    cred = PatCredential(sim_server.pat)  # type: ignore[attr-defined]
    a = Store(tmp_path / "a", mirror=_mirror(account))
    _sync(sim_server, cred, a, "s1", OPTIONS)
    before = _remote_tables(account)
    b = Store(tmp_path / "b", mirror=_dying(_mirror(account), dies_at))
    with pytest.raises(SystemExit):
        _sync(sim_server, cred, b, "s2", OPTIONS)
    mirror = _mirror(account)
    assert mirror.pointer(ORG)["kinds"] == {"raw": "s1"}
    after = _remote_tables(account)  # readers: the previous snapshot, whole
    assert set(after) == set(before)
    for table in before:
        assert after[table].equals(before[table]), table
    # The dead run's objects: never named by a pointer. Killed before its manifest, they are removed
    # once older than the grace period; with a manifest they are history, kept.
    gone = mirror.clean(ORG, grace=timedelta(0))
    if dies_at == "_manifests/":
        assert gone and all("snapshot=s2" in p for p in gone)
    else:
        assert gone == []
    assert _remote_tables(account).keys() == before.keys()


def test_the_inbox_in_the_account(account: str, tmp_path: Path) -> None:
    """Requests dropped as objects (by another tool, or `azdo-pipeline request`) are taken once; a
    malformed one is rejected with its reason beside it; a re-dropped one is noted, not taken again."""
    from azdo_pipeline.provisioning.flow import parse_request
    from azdo_pipeline.provisioning.inbox import RemoteInbox
    from azdo_pipeline.provisioning.intake import ingest
    from azdo_pipeline.provisioning.ledger import Ledger

    inbox = RemoteInbox(tmp_path / "local-inbox", _mirror(account)).ensure()
    assert isinstance(inbox, RemoteInbox)
    doc = {"id": "r-1", "organization": ORG, "action": "grant", "principal": "alice@example.com",
           "target": "[Alpha]\\Readers"}
    inbox.write_request(doc)
    inbox.write_request({"id": "bad", "action": "fly"}, name="bad")
    with Ledger(inbox.ledger_path) as ledger:
        first = ingest(inbox, ledger, parse_request)
        inbox.write_request(doc, name="again")  # the same request dropped twice
        second = ingest(inbox, ledger, parse_request)
        assert [e.request_id for e in ledger.entries()] == ["r-1"]
    assert first.received == ["r-1"] and [n for n, _ in first.rejected] == ["bad.json"]
    assert second.duplicates == ["r-1"] and second.received == []
    fs = inbox.fs
    names = {i.base_name for i in fs.get_file_info(pafs.FileSelector(inbox.base, recursive=True))
             if i.type == pafs.FileType.File}
    assert {"r-1.json", "again.json", "again.json.note.txt", "bad.json", "bad.json.reason.txt"} <= names
    assert inbox.scan() == []  # incoming/ is empty
    with fs.open_input_stream(f"{inbox.base}/rejected/bad.json.reason.txt") as f:
        assert b"action" in f.read()
    assert inbox.ledger_path.is_relative_to(tmp_path)  # the ledger stays on local disk


def test_make_demo_with_an_azure_data_dir(account: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """What `make demo DATA_DIR=az://…` runs: sync, graph and provisioning, mirrored to the account."""
    from azdo_pipeline import cli

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert cli.main(["demo", "--size", "tiny", "--data-dir", account]) == 0
    out = capsys.readouterr().out
    assert f"mirrored to {account}" in out and "provisioning: 5 requests" in out
    mirror = _mirror(account)
    pointer = mirror.pointer("sim-fabrikam")
    assert set(pointer["kinds"]) == {"raw", "access_graph", "provisioning"}
    assert "provisioning_outcomes" in pointer["tables"] and "effective_grants" in pointer["tables"]


def test_a_table_shared_with_the_previous_snapshot_is_copied_in_the_account_not_uploaded(
        sim_server: SimulatorServer, account: str, tmp_path: Path) -> None:
    cred = PatCredential(sim_server.pat)  # type: ignore[attr-defined]
    plain = Store(tmp_path / "cache", mirror=_mirror(account))
    _sync(sim_server, cred, plain, "s1", OPTIONS)
    written: list[str] = []
    store = Store(tmp_path / "cache", mirror=_watched(_mirror(account), written.append))
    with store.begin(ORG, "s2") as draft:  # as an incremental run does: users patched, the rest shared
        for table in schemas.RAW_TABLES:
            if table == "users":
                draft.write_table(table, store.read_latest(table, ORG))
            else:
                draft.link(table, "s1")
        draft.commit()
    uploaded = [p for p in written if p.endswith(".parquet")]
    assert len(uploaded) == 1 and "users/org=" in uploaded[0] and "snapshot=s2" in uploaded[0]
    assert _mirror(account).pointer(ORG)["kinds"] == {"raw": "s2"}
    got = _remote_tables(account)
    for table in schemas.RAW_TABLES:
        assert got[table].equals(store.read_latest(table, ORG)), table


# ---- a real SIGKILL at every step of a push ----------------------------------------------------------
KILL_TABLES = ("users", "groups", "memberships")


def _local_snapshot(store: Store, snapshot: str) -> None:
    """A committed local snapshot whose rows name it (one row more per table, so tables differ)."""
    with store.begin(ORG, snapshot) as draft:
        for i, name in enumerate(KILL_TABLES):
            draft.write_table(name, pa.table({"snapshot": [snapshot] * (i + 2)}))
        draft.commit()


def _push_killed(env: dict[str, str], url: str, cache: str, snapshot: str, kill_at: int) -> None:
    """Push `snapshot` of the local store `cache` to `url`, SIGKILLing this process just before its
    `kill_at`-th step that changes the account (0: never). Exit code 100 + steps when it got through."""
    os.environ.update(env)
    store = Store(Path(cache))
    steps = 0

    def before(kind: str, path: str) -> None:
        nonlocal steps
        steps += 1
        if steps == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    loc = parse_url(url)
    mirror = Mirror(loc, fs=pafs.PyFileSystem(_Wrapped(filesystem(loc), before)))
    mirror.push(ORG, "raw", snapshot, {t: store.snapshot_path(t, ORG, snapshot) for t in KILL_TABLES},
                store.manifest_path(ORG, snapshot))
    os._exit(100 + min(steps, 150))


def _whole(mirror: Mirror, snapshot: str) -> None:
    """Every table the snapshot's manifest names is in the account, whole: its rows are the manifest's."""
    manifest = mirror._get_json(mirror.manifest_path(ORG, snapshot))
    assert manifest is not None and set(manifest["tables"]) == set(KILL_TABLES), snapshot
    for table, meta in manifest["tables"].items():
        got = pq.read_table(mirror.table_path(table, ORG, snapshot), filesystem=mirror.fs)
        assert got.num_rows == meta["rows"] and set(got["snapshot"].to_pylist()) == {snapshot}, (snapshot, table)


def test_sigkill_at_every_step_of_a_push_leaves_the_previous_latest_whole(
        azurite: AzuriteServer, account: str, tmp_path: Path) -> None:
    """A push killed (SIGKILL, a real one) before any of its steps — a table object half written, the
    manifest or the pointer written to its temporary object or copied — leaves the pointer naming the
    previous snapshot or the new one, both whole; the listing of committed snapshots never shows an
    unfinished one; pushing again completes it, and the clean-up leaves no orphan or temporary object."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["pandas", "pyarrow.parquet", "azdo_pipeline.store", __name__])
    local = Store(tmp_path / "cache")
    _local_snapshot(local, "s1")
    _local_snapshot(local, "s2")
    n, finished, outcomes = 0, False, []
    while not finished:  # kill before step 1, 2, … until a push gets through all its steps
        n += 1
        url = f"{account}/k{n}"
        mirror = Mirror(parse_url(url), grace=timedelta(0))  # its clean-up takes any orphan
        mirror.push(ORG, "raw", "s1", {t: local.snapshot_path(t, ORG, "s1") for t in KILL_TABLES},
                    local.manifest_path(ORG, "s1"))
        p = ctx.Process(target=_push_killed, args=(azurite.env(), url, str(local.data_dir), "s2", n))
        p.start()
        p.join()
        assert p.exitcode == -signal.SIGKILL or (p.exitcode or 0) >= 100, f"the push failed: exit code {p.exitcode}"
        finished = p.exitcode != -signal.SIGKILL
        assert finished or n < 100, "the push never finished"
        pointer = mirror.pointer(ORG)  # always a whole pointer, naming one whole snapshot
        assert pointer["kinds"]["raw"] in ("s1", "s2"), n
        assert set(pointer["tables"].values()) == {pointer["kinds"]["raw"]}, n
        _whole(mirror, pointer["kinds"]["raw"])
        listed = mirror.snapshots(ORG)
        assert listed in (["s1"], ["s2", "s1"]), (n, listed)
        for snap in listed:  # no unfinished snapshot is listed
            _whole(mirror, snap)
        outcomes.append(pointer["kinds"]["raw"])
        # pushing again (the next run, or a retry) completes it and cleans what the dead one left
        mirror.push(ORG, "raw", "s2", {t: local.snapshot_path(t, ORG, "s2") for t in KILL_TABLES},
                    local.manifest_path(ORG, "s2"))
        assert mirror.pointer(ORG)["kinds"]["raw"] == "s2"
        _whole(mirror, "s2")
        names = [i.path for i in mirror._list(mirror.loc.path(), recursive=True) if i.type == pafs.FileType.File]
        assert not [x for x in names if x.endswith(".tmp")], (n, names)
        assert {x.split("snapshot=")[1].split("/")[0] for x in names if "snapshot=" in x} == {"s1", "s2"}
    # 3 tables (open, write, close), manifest and pointer (open, write, close, copy, delete each)
    assert p.exitcode - 100 == n - 1 >= 3 * 3 + 2 * 5, (n, p.exitcode)
    assert outcomes.count("s1") == n - 1 - 1 and outcomes[-1] == "s2", outcomes  # switched by the last step only


def test_a_request_object_appears_in_incoming_whole(account: str, tmp_path: Path) -> None:
    """`azdo-pipeline request` on Azure storage: at every step of writing the object, a scan of
    incoming/ (the sensor) sees nothing or the whole request, never an empty or partial one."""
    from azdo_pipeline.provisioning.inbox import RemoteInbox

    sensor = RemoteInbox(tmp_path / "sensor", _mirror(account))
    sensor.ensure()
    seen: list[tuple[str, str, bytes]] = []

    def before(kind: str, path: str) -> None:
        seen.extend((kind, f.name, sensor.read(f)) for f in sensor.scan())

    loc = parse_url(account)
    writer = RemoteInbox(tmp_path / "writer", Mirror(loc, fs=pafs.PyFileSystem(_Wrapped(filesystem(loc), before))))
    doc = {"id": "r-9", "organization": ORG, "action": "grant", "principal": "a@example.com", "target": "[P]\\R"}
    writer.write_request(doc)
    assert seen and all(name == "r-9.json" and json.loads(data) == doc for _, name, data in seen), seen
    assert [kind for kind, _, _ in seen] == ["delete"]  # there only once copied whole, as its temporary goes
    (got,) = sensor.scan()
    assert got.name == "r-9.json" and json.loads(sensor.read(got)) == doc


def test_audit_log_part_files_appear_whole(account: str, tmp_path: Path) -> None:
    """The audit_log part files an incremental run appends are mirrored so that an analyst reading the
    folder (pyarrow's dataset skips names starting with '.') sees no part file or a whole one."""
    root = tmp_path / "cache"
    part = root / "audit_log" / f"org={ORG}" / "day=2026-12-04" / "part-1.parquet"
    part.parent.mkdir(parents=True)
    pq.write_table(pa.table({"id": ["e1", "e2", "e3"]}), part)
    loc = parse_url(account)
    fs = filesystem(loc)
    folder = loc.path("audit_log", f"org={ORG}")
    rows: list[int] = []

    def before(kind: str, path: str) -> None:
        if fs.get_file_info(folder).type == pafs.FileType.Directory:
            rows.append(pq.read_table(folder, filesystem=fs).num_rows)  # raises on an empty object

    Mirror(loc, fs=pafs.PyFileSystem(_Wrapped(fs, before))).push_files(root, [part])
    assert pq.read_table(folder, filesystem=fs)["id"].to_pylist() == ["e1", "e2", "e3"]
    assert set(rows) <= {0, 3} and rows, rows
    _mirror(account).push_files(root, [part])  # again: already there whole, nothing written
    assert [i.base_name for i in fs.get_file_info(pafs.FileSelector(folder, recursive=True))
            if i.type == pafs.FileType.File] == ["part-1.parquet"]


def test_the_retention_applies_to_the_account(account: str, tmp_path: Path) -> None:
    """`snapshots: {keep_last: 1}` holds in the account too: older snapshots go once replaced longer
    than the reader grace ago; never one the pointer still names for a table; readers stay whole."""
    from azdo_pipeline.store import Retention

    loc = parse_url(account)
    store = Store(tmp_path / "cache", retention=Retention(keep_last=1), mirror=Mirror(loc))
    for snap in ("s1", "s2", "s3"):
        _local_snapshot(store, snap)
    assert _mirror(account).snapshots(ORG) == ["s3", "s2", "s1"]  # replaced just now: readers may hold them
    store.mirror = Mirror(loc, reader_grace=timedelta(0))
    _local_snapshot(store, "s4")
    mirror = _mirror(account)
    assert mirror.snapshots(ORG) == ["s4"]
    names = [i.path for i in mirror._list(loc.path(), recursive=True) if i.type == pafs.FileType.File]
    assert {x.split("snapshot=")[1].split("/")[0] for x in names if "snapshot=" in x} == {"s4"}
    with store.begin(ORG, "s5") as draft:  # a snapshot without memberships: the pointer keeps s4's
        for name in KILL_TABLES[:2]:
            draft.write_table(name, pa.table({"snapshot": ["s5"]}))
        draft.commit()
    assert mirror.pointer(ORG)["tables"] == {"users": "s5", "groups": "s5", "memberships": "s4"}
    assert mirror.snapshots(ORG) == ["s5", "s4"]
    got = _remote_tables(account)
    assert {t: set(v["snapshot"].to_pylist()) for t, v in got.items()} == {
        "users": {"s5"}, "groups": {"s5"}, "memberships": {"s4"}}
