"""How tables are written: which columns carry Parquet statistics, and that the access graph's
background writer neither loses a chunk nor hides a failed write."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from azdo_pipeline import schemas
from azdo_pipeline.accessgraph import build
from azdo_pipeline.accessgraph.schemas import DERIVED_TABLES
from azdo_pipeline.store import TableWriter, statistics_columns


def test_statistics_only_for_columns_that_are_not_strings(tmp_path: Path) -> None:
    schema = pa.schema([("id", pa.string()), ("code", pa.dictionary(pa.int32(), pa.string())),
                        ("path", pa.list_(pa.string())), ("n", pa.int32()), ("ok", pa.bool_()),
                        ("at", pa.timestamp("us", tz="UTC"))])
    assert statistics_columns(schema) == ["n", "ok", "at"]
    assert statistics_columns(pa.schema([("id", pa.string())])) is False
    path = tmp_path / "t.parquet"
    with TableWriter(path, schema) as w:
        w.write_table(pa.table({"id": ["b", "a"], "code": pa.array(["x", "y"]).dictionary_encode(),
                                "path": [["p"], []], "n": [2, 1], "ok": [True, False],
                                "at": pa.array([0, 1], pa.timestamp("us", tz="UTC"))}, schema=schema))
    rg = pq.ParquetFile(path).metadata.row_group(0)
    stats = {rg.column(i).path_in_schema.split(".")[0]: rg.column(i).is_stats_set for i in range(rg.num_columns)}
    assert stats == {"id": False, "code": False, "path": False, "n": True, "ok": True, "at": True}
    assert pq.read_table(path).column("n").to_pylist() == [2, 1]


def test_raw_users_keep_statistics_on_their_timestamps() -> None:
    cols = statistics_columns(schemas.USERS)
    assert isinstance(cols, list) and "last_accessed" in cols and "descriptor" not in cols


class _Sink:
    def __init__(self, name: str, written: dict[str, int], fail_on: str | None) -> None:
        self.name, self.written, self.fail_on = name, written, fail_on

    def write_table(self, table: pa.Table) -> None:
        if self.name == self.fail_on and table.num_rows:
            raise OSError(f"disk full writing {self.name}")
        self.written[self.name] = self.written.get(self.name, 0) + table.num_rows


def _graph_index() -> Any:
    raw = {name: schema.empty_table() for name, schema in schemas.RAW_TABLES.items()}
    raw["organizations"] = pa.Table.from_pylist([{"id": "o1", "name": "org"}], schema=schemas.ORGANIZATIONS)
    return build.compile_graph(raw, "org")


@pytest.mark.parametrize("fail_on", [None, "effective_grants"])
def test_background_writes_reach_every_sink_and_failures_surface(fail_on: str | None) -> None:
    written: dict[str, int] = {}

    @contextmanager
    def open_writer(name: str, _schema: pa.Schema) -> Iterator[_Sink]:
        yield _Sink(name, written, fail_on)

    schema = DERIVED_TABLES["effective_grants"]
    chunks = [("effective_grants", pa.Table.from_pylist([], schema=schema)),
              *(("effective_grants", pa.table({f.name: pa.nulls(3, f.type) for f in schema}, schema=schema))
                for _ in range(5))]
    ix = _graph_index()
    if fail_on:
        with pytest.raises(OSError, match="disk full writing effective_grants"):
            build.write_tables(ix, open_writer, chunks)
    else:
        counts = build.write_tables(ix, open_writer, chunks)
        assert counts["effective_grants"] == written["effective_grants"] == 15
