"""Parquet layout, atomic writes and snapshots.

Layout under the data directory (Hive-style, so DuckDB, Polars, pandas and Spark read many
organizations and snapshots at once):

    {data_dir}/{table}/org={org}/snapshot={snapshot}/{table}.parquet   every snapshot, kept
    {data_dir}/latest/{table}/org={org}/{table}.parquet                 the latest complete table
    {data_dir}/_snapshots/org={org}/{snapshot}.json                     manifest: rows, schema, time

A table is written to a temporary file in its final directory and renamed into place only when
complete, so a reader never sees half a file; a failed write leaves nothing behind. The `latest`
copy is a hard link (a copy where links are not possible), replaced atomically, table by table;
the manifest is written last, so `read_consistent` (the newest manifest's snapshot files) gives
tables of one snapshot even while a sync is publishing.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

BATCH_ROWS = 8192  # rows buffered before a record batch is written (bounds memory)


def _safe_part(value: str, what: str) -> str:
    if not value or "/" in value or "\\" in value or value in (".", ".."):
        raise ValueError(f"invalid {what} {value!r}: it must be a non-empty name without slashes")
    return value


def new_snapshot_id(now: datetime | None = None, run_id: str | None = None) -> str:
    ts = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{ts}-{(run_id or uuid.uuid4().hex)[:8]}"


@dataclass
class Store:
    data_dir: Path

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)

    def snapshot_path(self, table: str, org: str, snapshot: str) -> Path:
        return (self.data_dir / _safe_part(table, "table") / f"org={_safe_part(org, 'organization')}"
                / f"snapshot={_safe_part(snapshot, 'snapshot')}" / f"{table}.parquet")

    def latest_path(self, table: str, org: str) -> Path:
        return self.data_dir / "latest" / table / f"org={_safe_part(org, 'organization')}" / f"{table}.parquet"

    def writer(self, table: str, schema: pa.Schema, org: str, snapshot: str) -> TableWriter:
        return TableWriter(self.snapshot_path(table, org, snapshot), schema)

    def write_table(self, table: str, data: pa.Table, org: str, snapshot: str) -> Path:
        with self.writer(table, data.schema, org, snapshot) as w:
            w.write_table(data)
        return w.path

    def publish(self, table: str, org: str, snapshot: str) -> Path:
        """Make a written snapshot table the stable `latest` one (atomic replace)."""
        src = self.snapshot_path(table, org, snapshot)
        if not src.exists():
            raise FileNotFoundError(f"snapshot table {src} does not exist; write it before publishing")
        dst = self.latest_path(table, org)
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex}.tmp")
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
        return dst

    def read_latest(self, table: str, org: str) -> pa.Table:
        path = self.latest_path(table, org)
        if not path.exists():
            raise FileNotFoundError(
                f"no synced '{table}' table for organization '{org}' at {path}: materialize the raw "
                "assets for this organization first")
        return pq.read_table(path)

    def latest_manifest(self, org: str) -> dict[str, Any] | None:
        """The newest complete snapshot's manifest (written after all its tables were), or None."""
        folder = self.data_dir / "_snapshots" / f"org={_safe_part(org, 'organization')}"
        # Snapshot ids start with a UTC timestamp, so name order is time order.
        for path in sorted(folder.glob("*.json"), reverse=True) if folder.is_dir() else []:
            try:
                manifest = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(manifest, dict) and manifest.get("snapshot"):
                return manifest
        return None

    def read_consistent(self, tables: Iterable[str], org: str) -> tuple[dict[str, pa.Table], str | None]:
        """Tables of one snapshot: the newest manifest's snapshot files, so a sync publishing
        `latest` meanwhile cannot mix two snapshots; `latest` where there is no manifest (or a file
        of it is gone). Returns the tables and the snapshot id (None when read from `latest`)."""
        names = list(tables)
        manifest = self.latest_manifest(org)
        if manifest is not None:
            snapshot = str(manifest["snapshot"])
            paths = {n: self.snapshot_path(n, org, snapshot) for n in names}
            if all(p.exists() for p in paths.values()):
                return {n: pq.read_table(p) for n, p in paths.items()}, snapshot
        return {n: self.read_latest(n, org) for n in names}, None

    def write_manifest(self, org: str, snapshot: str, tables: Mapping[str, Any], *,
                       simulated: bool = False) -> Path:
        path = self.data_dir / "_snapshots" / f"org={org}" / f"{snapshot}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps({"org": org, "snapshot": snapshot, "simulated": simulated,
                                   "completed_at": datetime.now(UTC).isoformat(),
                                   "tables": dict(tables)}, indent=2, default=str))
        os.replace(tmp, path)
        return path


@dataclass
class TableWriter:
    """Streams rows into one Parquet file: temp file while writing, rename on success."""

    path: Path
    schema: pa.Schema
    rows: int = 0
    _buffer: list[dict[str, Any]] = field(default_factory=list)
    _writer: pq.ParquetWriter | None = None
    _tmp: Path | None = None

    def __enter__(self) -> TableWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
        self._writer = pq.ParquetWriter(self._tmp, self.schema, compression="zstd")
        return self

    def write_rows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        self._buffer.extend(rows)
        if len(self._buffer) >= BATCH_ROWS:
            self._flush()

    def write_table(self, table: pa.Table) -> None:
        self._flush()
        assert self._writer is not None
        self._writer.write_table(table.cast(self.schema))
        self.rows += table.num_rows

    def _flush(self) -> None:
        if not self._buffer:
            return
        assert self._writer is not None
        batch = pa.RecordBatch.from_pylist(self._buffer, schema=self.schema)
        self._writer.write_batch(batch)
        self.rows += batch.num_rows
        self._buffer.clear()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self._writer is not None and self._tmp is not None
        try:
            if exc_type is None:
                self._flush()
            self._writer.close()
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            raise
        if exc_type is None:
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)
