"""The Parquet store: atomic writes, snapshots, latest."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from azdo_pipeline import schemas
from azdo_pipeline.store import Store


def _row(i: int) -> dict:
    return {"container_descriptor": f"vssgp.{i}", "member_descriptor": f"aad.{i}", "member_kind": "user"}


def test_stream_write_publish_and_read_latest(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with store.writer("memberships", schemas.MEMBERSHIPS, "fabrikam", "s1") as w:
        for i in range(0, 20000, 1000):
            w.write_rows(_row(j) for j in range(i, i + 1000))
    assert w.rows == 20000
    assert pq.read_table(store.snapshot_path("memberships", "fabrikam", "s1")).num_rows == 20000
    store.publish("memberships", "fabrikam", "s1")
    assert store.read_latest("memberships", "fabrikam").num_rows == 20000
    # a second snapshot replaces latest, the first stays
    store.write_table("memberships", pa.Table.from_pylist([_row(1)], schema=schemas.MEMBERSHIPS),
                      "fabrikam", "s2")
    store.publish("memberships", "fabrikam", "s2")
    assert store.read_latest("memberships", "fabrikam").num_rows == 1
    assert pq.read_table(store.snapshot_path("memberships", "fabrikam", "s1")).num_rows == 20000


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with pytest.raises(RuntimeError), store.writer("memberships", schemas.MEMBERSHIPS, "fabrikam", "s1") as w:
        w.write_rows([_row(1)] * 10000)
        raise RuntimeError("boom")
    folder = store.snapshot_path("memberships", "fabrikam", "s1").parent
    assert list(folder.iterdir()) == []


def test_schema_violation_is_an_error_and_leaves_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError, TypeError)), \
            store.writer("memberships", schemas.MEMBERSHIPS, "fabrikam", "s1") as w:
        w.write_rows([{"container_descriptor": 1, "member_descriptor": None, "member_kind": "user"}])
        w._flush()
    assert list(store.snapshot_path("memberships", "fabrikam", "s1").parent.iterdir()) == []


def test_names_with_slashes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="organization"):
        Store(tmp_path).latest_path("users", "../etc")


def test_publish_requires_written_snapshot(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="write it before publishing"):
        Store(tmp_path).publish("users", "fabrikam", "nope")


def test_read_consistent_takes_the_newest_manifests_snapshot(tmp_path: Path) -> None:
    import pyarrow as pa

    store = Store(tmp_path)
    for snap, value in (("20260101T000000Z-aaaa", 1), ("20260102T000000Z-bbbb", 2)):
        for name in ("x", "y"):
            store.write_table(name, pa.table({"a": [value]}), "org1", snap)
        store.write_manifest("org1", snap, {"x": {}, "y": {}})
    # latest holds a third, unfinished sync's x (published, no manifest yet): not used
    store.write_table("x", pa.table({"a": [3]}), "org1", "20260103T000000Z-cccc")
    store.publish("x", "org1", "20260103T000000Z-cccc")
    tables, snap = store.read_consistent(["x", "y"], "org1")
    assert snap == "20260102T000000Z-bbbb"
    assert tables["x"]["a"].to_pylist() == [2] and tables["y"]["a"].to_pylist() == [2]


def test_read_consistent_falls_back_to_latest_without_a_manifest(tmp_path: Path) -> None:
    import pyarrow as pa

    store = Store(tmp_path)
    store.write_table("x", pa.table({"a": [7]}), "org1", "s1")
    store.publish("x", "org1", "s1")
    tables, snap = store.read_consistent(["x"], "org1")
    assert snap is None and tables["x"]["a"].to_pylist() == [7]
