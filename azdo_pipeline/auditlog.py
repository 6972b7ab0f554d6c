"""The audit_log Parquet table: appended per run, partitioned by organization and day, never pruned.

Layout (Hive-style, so DuckDB, Polars, pandas and Spark read every organization and day at once):

    {data_dir}/audit_log/org={org}/day={YYYY-MM-DD}/part-{run}.parquet

Each append writes, per day it touches, one new part file holding only the events not already
stored for that day (the event id is the key), through a temporary file renamed into place: a
re-read of an overlapping window, or a run killed after writing and retried, never duplicates an
event, and a reader never sees half a file.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from .schemas import AUDIT_LOG
from .sync.events import AuditEntry

TABLE = "audit_log"


@dataclass
class AppendResult:
    new: int = 0
    duplicates: int = 0
    days: list[str] = field(default_factory=list)  # the day partitions written to
    files: list[Path] = field(default_factory=list)


def org_dir(data_dir: Path, org: str) -> Path:
    if not org or "/" in org or "\\" in org or org in (".", ".."):
        raise ValueError(f"invalid organization {org!r}: it must be a non-empty name without slashes")
    return Path(data_dir) / TABLE / f"org={org}"


def _day_dir(data_dir: Path, org: str, day: date) -> Path:
    return org_dir(data_dir, org) / f"day={day.isoformat()}"


def stored_ids(folder: Path) -> set[str]:
    """Event ids already stored in one day folder."""
    files = sorted(p for p in folder.glob("*.parquet")) if folder.is_dir() else []
    if not files:
        return set()
    return set(ds.dataset(files, format="parquet").to_table(columns=["event_id"]).column("event_id").to_pylist())


def append(data_dir: Path, org: str, entries: Iterable[AuditEntry], run: str | None = None) -> AppendResult:
    """Store the entries not stored yet; returns how many were new and how many already there."""
    by_day: dict[date, dict[str, AuditEntry]] = {}
    for e in entries:
        by_day.setdefault(e.row()["day"], {})[e.id] = e
    result = AppendResult()
    part = f"part-{(run or uuid.uuid4().hex)[:32]}-{uuid.uuid4().hex[:8]}.parquet"
    for day in sorted(by_day):
        folder = _day_dir(data_dir, org, day)
        have = stored_ids(folder)
        fresh = [e for eid, e in by_day[day].items() if eid not in have]
        result.duplicates += len(by_day[day]) - len(fresh)
        if not fresh:
            continue
        rows = [{k: v for k, v in e.row().items() if k != "day"} for e in sorted(fresh, key=lambda e: e.timestamp)]
        table = pa.Table.from_pylist(rows, schema=AUDIT_LOG)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / part
        tmp = folder / f".{part}.tmp"
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
        result.new += len(fresh)
        result.days.append(day.isoformat())
        result.files.append(path)
    return result


def read(data_dir: Path, org: str) -> pa.Table:
    """Every stored event of one organization (AUDIT_LOG columns), oldest first."""
    folder = org_dir(data_dir, org)
    files = sorted(folder.glob("day=*/*.parquet")) if folder.is_dir() else []
    if not files:
        return AUDIT_LOG.empty_table()
    table = ds.dataset(files, format="parquet", schema=AUDIT_LOG).to_table()
    return table.sort_by([("timestamp", "ascending"), ("event_id", "ascending")])


__all__ = ["TABLE", "AppendResult", "append", "org_dir", "read", "stored_ids"]
