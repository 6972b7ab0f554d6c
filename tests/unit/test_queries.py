"""The worked queries of docs/queries.md, run as written in DuckDB and in pandas on Parquet of the
hand-built organization (and an audit log with known events): both engines give the same rows, and
the rows are the known answers."""

from __future__ import annotations

import math
import re
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from azdo_pipeline import auditlog
from azdo_pipeline.accessgraph.build import build_access_graph
from azdo_pipeline.sync.events import parse_entry
from tests.unit import test_accessgraph_data as d

QUERIES_MD = Path(__file__).resolve().parents[2] / "docs" / "queries.md"
DEMO_PROJECT = "Horizon.Ops"  # the project Query 1 asks about (the demo organization's); here: Alpha


def _queries() -> list[tuple[str, str, str]]:
    text = QUERIES_MD.read_text(encoding="utf-8")
    out = []
    for section in re.split(r"^## ", text, flags=re.M)[1:]:
        if not section.startswith("Query"):
            continue
        title = section.splitlines()[0]
        sql = re.search(r"```sql\n(.*?)```", section, re.S)
        py = re.search(r"```python\n(.*?)```", section, re.S)
        assert sql and py, f"{title}: needs one sql and one python block"
        out.append((title, sql.group(1), py.group(1)))
    return out


@pytest.fixture(scope="module")
def parquet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("graph")
    for name, table in build_access_graph(d.raw()).items():
        pq.write_table(table, out / f"{name}.parquet")
    pq.write_table(auditlog.read(_audit_events(out / "audit"), "fabrikam"), out / "audit_log.parquet")
    return out


def _audit_events(data_dir: Path) -> Path:
    """Membership events in the middle of last quarter, this quarter and the one before."""
    this_q = pd.Timestamp.now(tz="UTC").tz_localize(None).to_period("Q").start_time.tz_localize("UTC")
    mid_last = this_q - pd.DateOffset(months=2) + pd.Timedelta(days=14)
    cases = [  # (when, action, actor, member, group)
        (mid_last, "Add", "Olivia", "Bob", "[Alpha]\\Project Administrators"),
        (mid_last + pd.Timedelta(days=1), "Remove", "Olivia", "Carol", "[Alpha]\\Project Administrators"),
        (mid_last + pd.Timedelta(days=2), "Add", "Dave", "Carol", "[Alpha]\\Readers"),
        (mid_last + pd.Timedelta(days=3), "Add", "Dave", "Erin", "[fabrikam]\\Project Collection Administrators"),
        (mid_last + pd.Timedelta(days=20), "Add", "Dave", "Alice", "[Beta]\\Project Administrators"),
        (this_q + pd.Timedelta(hours=1), "Add", "Olivia", "Frank", "[Alpha]\\Project Administrators"),
        (this_q - pd.DateOffset(months=3) - pd.Timedelta(days=5), "Add", "Olivia", "Gina",
         "[Alpha]\\Project Administrators"),
    ]
    entries = [parse_entry({
        "id": f"{i};actor;{i}", "timestamp": when.isoformat(), "actionId": f"Group.UpdateGroupMembership.{op}",
        "actorDisplayName": actor,
        "data": {"GroupName": group, "MemberDisplayName": member, "GroupId": "g", "MemberId": "m"}})
        for i, (when, op, actor, member, group) in enumerate(cases)]
    auditlog.append(data_dir, "fabrikam", entries)
    return data_dir


def _norm(value: object) -> object:
    if value is pd.NaT or value is None:
        return None
    if isinstance(value, np.ndarray | list | tuple):
        return tuple(_norm(v) for v in value)
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.to_pydatetime()
    if isinstance(value, datetime):
        return value
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _rows(df: pd.DataFrame) -> list[tuple]:
    return [tuple(_norm(v) for v in row) for row in df.astype(object).itertuples(index=False, name=None)]


def run_duckdb(sql: str, parquet_dir: Path) -> pd.DataFrame:
    con = duckdb.connect()
    for p in parquet_dir.glob("*.parquet"):
        con.execute(f"CREATE VIEW {p.stem} AS SELECT * FROM read_parquet('{p}')")
    return con.sql(sql).df()


def run_pandas(code: str, parquet_dir: Path) -> pd.DataFrame:
    ns: dict[str, object] = {"pd": pd}
    for p in parquet_dir.glob("*.parquet"):
        ns[p.stem] = pd.read_parquet(p)
    exec(code, ns)
    return ns["result"]  # type: ignore[return-value]


EXPECTED = {
    # who can reach Alpha: (principal_name, via, path_names, source_name)
    1: [("Alice", "direct", (), "Alpha Team"), ("Bob", "direct", (), "Project Administrators"),
        ("Carol", "entra_group", ("Operations", "Engineering"), "Contributors")],
    2: [(d.CAROL, "Carol", "Operations")],
    3: [("Bob", "project", "project_administrators", "Alpha"), ("Bob", "team", "admin", "Alpha Team"),
        ("Dave", "group", "member", "Project Collection Administrators")],
    4: [("Bob", "Basic licence"), ("Dave", "Basic + Test Plans licence")],
    5: sorted([d.g("a", "re"), d.g("a", "ba"), d.g("b", "pa"), d.TEAM_B, d.AUDITORS]),
    6: [("Olivia", "Bob", "[Alpha]\\Project Administrators"), ("Dave", "Alice", "[Beta]\\Project Administrators")],
}


def _answer(i: int, rows: list[tuple]) -> list:
    if i == 1:
        return [(r[2], r[3], r[5], r[6]) for r in rows]
    if i == 2:
        return rows
    if i == 3:
        return [(r[0], *r[2:5]) for r in rows]
    if i == 4:
        return [(r[1], r[3]) for r in rows]
    if i == 6:
        return [r[1:] for r in rows]
    return [r[0] for r in rows]


def test_docs_hold_six_queries() -> None:
    assert len(_queries()) == 6


@pytest.mark.parametrize("i", range(1, 7))
def test_query_gives_the_same_known_answer_in_duckdb_and_pandas(i: int, parquet_dir: Path) -> None:
    title, sql, code = (part.replace(DEMO_PROJECT, "Alpha") for part in _queries()[i - 1])
    duck = _rows(run_duckdb(sql, parquet_dir))
    pand = _rows(run_pandas(code, parquet_dir))
    assert duck == pand, title
    assert _answer(i, duck) == EXPECTED[i], title
