"""audit_log table: appended per day partition, an overlapping re-read never duplicates an event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from azdo_pipeline import auditlog
from azdo_pipeline.schemas import AUDIT_LOG
from azdo_pipeline.sync.events import AuditEntry, parse_entry

T0 = datetime(2026, 3, 30, 23, 0, tzinfo=UTC)


def entry(i: int, at: datetime, action: str = "Group.UpdateGroupMembership.Add", **data: Any) -> AuditEntry:
    return parse_entry({"id": f"{10**9 - i};actor;{i:08d}", "timestamp": at.isoformat(), "actionId": action,
                        "category": "modify", "actorDisplayName": "Olivia", "data": data or {"GroupId": "g"}})


def test_events_land_in_day_partitions(tmp_path: Path) -> None:
    res = auditlog.append(tmp_path, "fabrikam", [entry(i, T0 + timedelta(minutes=40 * i)) for i in range(4)])
    assert res.new == 4 and res.duplicates == 0 and res.days == ["2026-03-30", "2026-03-31"]
    assert sorted(p.parent.name for p in res.files) == ["day=2026-03-30", "day=2026-03-31"]
    table = auditlog.read(tmp_path, "fabrikam")
    assert table.schema.equals(AUDIT_LOG, check_metadata=False)
    assert table.column("event_id").to_pylist() == [entry(i, T0).id for i in range(4)]


def test_overlapping_windows_never_duplicate(tmp_path: Path) -> None:
    first = [entry(i, T0 + timedelta(minutes=i)) for i in range(5)]
    auditlog.append(tmp_path, "fabrikam", first)
    again = [entry(i, T0 + timedelta(minutes=i)) for i in range(3, 8)]
    res = auditlog.append(tmp_path, "fabrikam", again + again[:1])
    assert (res.new, res.duplicates) == (3, 2)
    ids = auditlog.read(tmp_path, "fabrikam").column("event_id").to_pylist()
    assert len(ids) == len(set(ids)) == 8
    assert auditlog.append(tmp_path, "fabrikam", first).new == 0  # nothing to write: no new file
    assert len(list(auditlog.org_dir(tmp_path, "fabrikam").rglob("*.parquet"))) == 2


def test_organizations_are_kept_apart_and_duckdb_reads_org_and_day_from_folders(tmp_path: Path) -> None:
    auditlog.append(tmp_path, "fabrikam", [entry(1, T0)])
    auditlog.append(tmp_path, "contoso", [entry(1, T0), entry(2, T0 + timedelta(days=2))])
    rows = duckdb.sql(f"SELECT org, CAST(day AS VARCHAR) AS day, count(*) AS n FROM read_parquet("
                      f"'{tmp_path}/audit_log/*/*/*.parquet', hive_partitioning = true) GROUP BY ALL ORDER BY ALL"
                      ).fetchall()
    assert rows == [("contoso", "2026-03-30", 1), ("contoso", "2026-04-01", 1), ("fabrikam", "2026-03-30", 1)]


def test_no_half_written_file_is_left_or_read(tmp_path: Path) -> None:
    auditlog.append(tmp_path, "fabrikam", [entry(1, T0)])
    folder = auditlog.org_dir(tmp_path, "fabrikam") / "day=2026-03-30"
    (folder / ".part-x.parquet.tmp").write_bytes(b"partial")  # a killed writer's leftover
    assert auditlog.read(tmp_path, "fabrikam").num_rows == 1
    assert auditlog.stored_ids(folder) == {entry(1, T0).id}


def test_a_bad_organization_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="without slashes"):
        auditlog.append(tmp_path, "../x", [entry(1, T0)])
