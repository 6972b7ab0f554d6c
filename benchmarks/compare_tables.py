"""Are two folders of Parquet tables equal, whatever the row order? For "behaviour unchanged" checks.

    .venv/bin/python benchmarks/full_sync.py --size large --latency 0 --skip-naive --keep-tables /tmp/a
    (same at another commit into /tmp/b)
    .venv/bin/python benchmarks/compare_tables.py /tmp/a /tmp/b

Per table (`NAME.parquet` in either folder): the same column names and types, the same row count,
and the same rows as multisets (DuckDB `EXCEPT ALL` both ways: duplicates count, nulls compare
equal, list columns compare by value). Exits 1 naming every table that differs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq


def compare(a: Path, b: Path, name: str, con: duckdb.DuckDBPyConnection) -> str | None:
    pa_, pb = a / f"{name}.parquet", b / f"{name}.parquet"
    if not pa_.exists() or not pb.exists():
        return f"only in {a if pa_.exists() else b}"
    sa, sb = pq.read_schema(pa_), pq.read_schema(pb)
    if [(f.name, f.type) for f in sa] != [(f.name, f.type) for f in sb]:
        return f"schemas differ: {sa} vs {sb}"
    na, nb = pq.ParquetFile(pa_).metadata.num_rows, pq.ParquetFile(pb).metadata.num_rows
    if na != nb:
        return f"{na} rows vs {nb}"
    only = []
    for x, y in ((pa_, pb), (pb, pa_)):
        q = "SELECT count(*) FROM (SELECT * FROM read_parquet(?) EXCEPT ALL SELECT * FROM read_parquet(?))"
        n = con.execute(q, [str(x), str(y)]).fetchone()
        only.append(n[0] if n else -1)
    if any(only):
        return f"{only[0]} rows only in the first, {only[1]} only in the second"
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("first", type=Path)
    ap.add_argument("second", type=Path)
    args = ap.parse_args()
    names = sorted({p.stem for d in (args.first, args.second) for p in d.glob("*.parquet")})
    if not names:
        print(f"no Parquet tables in {args.first} or {args.second}")
        return 1
    con = duckdb.connect()
    bad = 0
    for name in names:
        problem = compare(args.first, args.second, name, con)
        rows = pq.ParquetFile(args.first / f"{name}.parquet").metadata.num_rows \
            if (args.first / f"{name}.parquet").exists() else 0
        print(f"  {name:28s} {rows:>10,} rows  " + ("equal" if problem is None else f"DIFFERENT: {problem}"))
        bad += problem is not None
    print(f"{len(names) - bad} of {len(names)} tables equal")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
