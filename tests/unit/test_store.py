"""The Parquet store: drafts written aside, commit and one atomic switch of latest, reject, clean-up
of dead runs, retention."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from azdo_pipeline import schemas
from azdo_pipeline.store import Retention, Store


def _row(i: int) -> dict:
    return {"container_descriptor": f"vssgp.{i}", "member_descriptor": f"aad.{i}", "member_kind": "user"}


def _commit(store: Store, org: str, snap: str, values: dict[str, int], **kw: object) -> None:
    with store.begin(org, snap) as draft:
        for name, value in values.items():
            draft.write_table(name, pa.table({"a": [value]}))
        draft.commit(**kw)  # type: ignore[arg-type]


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and ".lock" not in p.name)


def test_stream_write_commit_and_read_latest(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with store.begin("fabrikam", "s1") as draft:
        with draft.writer("memberships", schemas.MEMBERSHIPS) as w:
            for i in range(0, 20000, 1000):
                w.write_rows(_row(j) for j in range(i, i + 1000))
        assert w.rows == 20000 and draft.read("memberships").num_rows == 20000
        # written aside: neither the history nor latest has it before the commit
        assert not store.snapshot_path("memberships", "fabrikam", "s1").exists()
        assert not (tmp_path / "latest").exists()
        draft.commit({"memberships": {"enabled": True}}, simulated=True, extra={"requests": 3})
    assert (tmp_path / "latest").is_symlink()
    assert store.read_latest("memberships", "fabrikam").num_rows == 20000
    manifest = json.loads(store.manifest_path("fabrikam", "s1").read_text())
    assert manifest["tables"] == {"memberships": {"rows": 20000, "enabled": True}}
    assert manifest["simulated"] is True and manifest["requests"] == 3 and manifest["kind"] == "raw"
    # a second snapshot replaces latest, the first stays in the history
    with store.begin("fabrikam", "s2") as draft:
        draft.write_table("memberships", pa.Table.from_pylist([_row(1)], schema=schemas.MEMBERSHIPS))
        draft.commit()
    assert store.read_latest("memberships", "fabrikam").num_rows == 1
    assert pq.read_table(store.snapshot_path("memberships", "fabrikam", "s1")).num_rows == 20000
    assert store.snapshots("fabrikam") == ["s2", "s1"] and store.latest_manifest("fabrikam")["snapshot"] == "s2"
    assert [p.name for p in (tmp_path / "_staging" / "org=fabrikam").iterdir()] == [".lock"]  # drafts gone


def test_a_failed_run_publishes_nothing_and_leaves_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path)
    _commit(store, "o", "s1", {"x": 1})
    before = _files(tmp_path / "latest")
    with pytest.raises(RuntimeError), store.begin("o", "s2") as draft:
        draft.write_table("x", pa.table({"a": [2]}))
        with draft.writer("y", pa.schema([("a", pa.int64())])) as w:
            w.write_rows([{"a": 1}] * 10000)
            raise RuntimeError("boom")
    assert _files(tmp_path / "latest") == before and store.read_latest("x", "o")["a"].to_pylist() == [1]
    assert [p.name for p in (tmp_path / "_staging" / "org=o").iterdir()] == [".lock"]
    assert not store.snapshot_path("x", "o", "s2").parent.exists()


def test_schema_violation_is_an_error_and_leaves_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError, TypeError)), store.begin("o", "s1") as draft, \
            draft.writer("memberships", schemas.MEMBERSHIPS) as w:
        w.write_rows([{"container_descriptor": 1, "member_descriptor": None, "member_kind": "user"}])
        w._flush()
    assert [p.name for p in (tmp_path / "_staging" / "org=o").iterdir()] == [".lock"]


def test_names_with_slashes_or_of_the_store_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="organization"):
        Store(tmp_path).latest_path("users", "../etc")
    with pytest.raises(ValueError, match="store's own"):
        Store(tmp_path).snapshot_path("_staging", "o", "s")


def test_publishing_one_organization_keeps_every_other_table_and_organization(tmp_path: Path) -> None:
    store = Store(tmp_path)
    _commit(store, "a", "s1", {"x": 1, "y": 1})
    _commit(store, "b", "s2", {"x": 2, "y": 2})
    with store.begin("a", "s3", kind="access_graph") as draft:
        draft.write_table("g", pa.table({"a": [3]}))
        draft.commit()
    _commit(store, "a", "s4", {"x": 4, "y": 4})
    assert _files(tmp_path / "latest") == ["_published.json", "g/org=a/g.parquet", "x/org=a/x.parquet",
                                           "x/org=b/x.parquet", "y/org=a/y.parquet", "y/org=b/y.parquet"]
    assert store.published()["orgs"] == {"a": {"raw": "s4", "access_graph": "s3"}, "b": {"raw": "s2"}}
    tables, snap = store.read_consistent(["x", "y"], "a")
    assert snap == "s4" and tables["x"]["a"].to_pylist() == [4]
    assert store.read_consistent(["x", "g"], "a")[1] is None  # two snapshots: no single id
    assert store.latest_manifest("a", "access_graph")["snapshot"] == "s3"


def test_a_rejected_snapshot_is_kept_for_inspection_and_never_published(tmp_path: Path) -> None:
    store = Store(tmp_path)
    _commit(store, "o", "s1", {"x": 1})
    with store.begin("o", "s2") as draft:
        draft.write_table("x", pa.table({"a": [2]}))
        where = draft.reject(["users: 3 duplicate descriptors"])
    assert where == tmp_path / "_rejected" / "org=o" / "s2"
    assert pq.read_table(where / "x.parquet")["a"].to_pylist() == [2]
    assert json.loads((where / "REJECTED.json").read_text())["problems"] == ["users: 3 duplicate descriptors"]
    assert store.read_latest("x", "o")["a"].to_pylist() == [1]
    assert store.snapshots("o") == ["s1"] and not store.snapshot_path("x", "o", "s2").parent.exists()


def test_an_unchanged_table_is_linked_from_the_previous_snapshot(tmp_path: Path) -> None:
    store = Store(tmp_path)
    _commit(store, "o", "s1", {"x": 1, "y": 1})
    with store.begin("o", "s2") as draft:
        draft.link("x", "s1")
        draft.write_table("y", pa.table({"a": [2]}))
        draft.commit()
    assert os.path.samefile(store.snapshot_path("x", "o", "s1"), store.snapshot_path("x", "o", "s2"))
    assert store.read_latest("x", "o")["a"].to_pylist() == [1] and store.read_latest("y", "o")["a"].to_pylist() == [2]


def test_the_next_run_removes_what_dead_runs_left(tmp_path: Path) -> None:
    store = Store(tmp_path)
    _commit(store, "o", "20260101T000000Z-a", {"x": 1})
    # a dead run's draft (no process holds its lock) and an earlier layout's leftovers: temp files
    # and a snapshot folder without manifest of a table that has manifests
    dead = tmp_path / "_staging" / "org=o" / "20260102T000000Z-b"
    dead.mkdir(parents=True)
    pq.write_table(pa.table({"a": [9]}), dead / "x.parquet")
    half = store.snapshot_path("x", "o", "20260103T000000Z-c")
    half.parent.mkdir(parents=True)
    pq.write_table(pa.table({"a": [9]}), half)
    (half.parent / ".x.parquet.123.tmp").write_bytes(b"partial")
    audit_tmp = tmp_path / "audit_log" / "org=o" / "day=2026-01-02" / ".part-run-1.parquet.tmp"
    audit_tmp.parent.mkdir(parents=True)
    audit_tmp.write_bytes(b"partial")
    # a derived table committed before manifests existed is history, not a leftover
    legacy = store.snapshot_path("g", "o", "20251201T000000Z-d")
    legacy.parent.mkdir(parents=True)
    pq.write_table(pa.table({"a": [1]}), legacy)
    removed = store.clean("o")
    assert dead in removed and half.parent in removed and not dead.exists() and not half.parent.exists()
    assert not audit_tmp.exists()
    assert legacy.exists() and store.snapshot_path("x", "o", "20260101T000000Z-a").exists()


def test_retention_keeps_the_newest_and_the_recent_and_the_published(tmp_path: Path) -> None:
    store = Store(tmp_path, retention=Retention(keep_last=2, keep_days=None))
    snaps = [f"2026010{d}T000000Z-x" for d in range(1, 6)]
    for i, s in enumerate(snaps):
        _commit(store, "o", s, {"x": i})
    assert store.snapshots("o") == [snaps[4], snaps[3]]
    assert not store.snapshot_path("x", "o", snaps[0]).parent.exists()
    # keep_days keeps what is recent beyond keep_last; ids without a time are never aged out
    store = Store(tmp_path / "d", retention=Retention(keep_last=1, keep_days=3650))
    for i, s in enumerate(snaps):
        _commit(store, "o", s, {"x": i})
    assert len(store.snapshots("o")) == 5
    store = Store(tmp_path / "r", retention=Retention(keep_last=1, keep_days=None))
    _commit(store, "o", snaps[0], {"x": 0})
    for s in snaps[1:4]:
        with store.begin("o", s) as draft:
            draft.write_table("x", pa.table({"a": [1]}))
            draft.reject(["bad"])
    assert [p.name for p in (tmp_path / "r" / "_rejected" / "org=o").iterdir()] == [snaps[3]]
    assert store.snapshots("o") == [snaps[0]]  # published: kept whatever the retention


def test_an_old_latest_folder_becomes_the_first_generation(tmp_path: Path) -> None:
    old = tmp_path / "latest" / "x" / "org=b" / "x.parquet"
    old.parent.mkdir(parents=True)
    pq.write_table(pa.table({"a": [7]}), old)
    store = Store(tmp_path)
    _commit(store, "a", "s1", {"x": 1})
    assert (tmp_path / "latest").is_symlink()
    assert store.read_latest("x", "b")["a"].to_pylist() == [7] and store.read_latest("x", "a")["a"].to_pylist() == [1]


def test_replaced_generations_go_after_the_reader_grace(tmp_path: Path) -> None:
    store = Store(tmp_path, reader_grace_s=0)
    for i in range(4):
        _commit(store, "o", f"s{i}", {"x": i})
    gens = sorted(p.name for p in (tmp_path / "_published").iterdir() if p.is_dir())
    assert gens == [store.published()["generation"]]
    kept = Store(tmp_path / "k")  # the default grace keeps replaced generations for readers
    for i in range(3):
        _commit(kept, "o", f"s{i}", {"x": i})
    assert len([p for p in (tmp_path / "k" / "_published").iterdir() if p.is_dir()]) == 3
