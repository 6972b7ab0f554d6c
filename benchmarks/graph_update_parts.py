"""What bringing the access graph up to date costs, part by part, apart from rewriting kept rows.

    python benchmarks/graph_update_parts.py                 # xl, 100 changes, two rounds
    python benchmarks/graph_update_parts.py --size large --changes 1000

The published graph is one Parquet file per table, so an update re-encodes every kept row and is no
cheaper than a full build (benchmarks/incremental.py prints both). This script times what an update
would still pay if kept rows were never rewritten (a base file plus per-run files of the replaced
principals' rows): the diff that finds the affected principals, the graph index, their rows, writing
them, and the small tables (grants among them) built and written in full. The simulator runs in its
own process: a full sync and its graph, then random mutations and an incremental raw sync, then the
parts, timed in this process (`--rounds` times: the first round also pays first-touch allocations).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from azdo_pipeline import schemas
from azdo_pipeline.accessgraph import incremental as graph_update
from azdo_pipeline.accessgraph.build import compile_graph, small_tables
from azdo_pipeline.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parent))
from incremental import ORG, _child, run, simulator  # the incremental benchmark's helpers


def raw_sync(info: dict[str, Any], data_dir: str, snapshot: str, queue: Any) -> None:
    """An incremental raw sync only (the published graph stays the previous snapshot's)."""
    from azdo_pipeline.auth import PatCredential
    from azdo_pipeline.client import AzureDevOpsClient, ClientSettings
    from azdo_pipeline.sync import incremental
    from azdo_pipeline.sync.full import SyncOptions

    async def go() -> Any:
        async with await AzureDevOpsClient.connect(info["org_url"], PatCredential(info["token"]),
                                                   settings=ClientSettings(ca_bundle=info["ca_file"])) as c:
            return await incremental.sync(c, Store(Path(data_dir)), ORG, snapshot, SyncOptions(sync_teams=True),
                                          incremental=True)  # the options of the full run before it

    report = asyncio.run(go())
    queue.put({"mode": report.mode, "requests": report.requests, "fallback": report.fallback_reason})


def parts(store: Store, out: Path) -> tuple[dict[str, float], str]:
    raw, _snap = store.read_consistent(schemas.RAW_TABLES, ORG)
    raw_manifest, graph_manifest = store.latest_manifest(ORG), store.latest_manifest(ORG, kind="access_graph")
    prev = graph_update.previous_graph(raw_manifest, graph_manifest)
    if prev is None or raw_manifest is None:
        raise SystemExit("the published graph is not the previous raw snapshot's: nothing to update")
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    old_raw = {n: pq.read_table(store.snapshot_path(n, ORG, prev.raw_snapshot)) for n in schemas.RAW_TABLES}
    t["read the previous raw snapshot"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    affected = graph_update.affected_principals(old_raw, raw, unchanged=graph_update.unchanged_tables(raw_manifest))
    t["find the affected principals (diff of the raw tables)"] = time.perf_counter() - t0
    if affected is None:
        raise SystemExit("the organization row changed: a full build")
    t0 = time.perf_counter()
    ix = compile_graph(raw, ORG)
    t["compile the graph index"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    rows: dict[str, list[pa.RecordBatch]] = {}
    for name, batch in graph_update.iter_affected_batches(ix, affected.principals):
        rows.setdefault(name, []).append(batch)
    t["their rows of the three large tables"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for name, batches in rows.items():
        pq.write_table(pa.Table.from_batches(batches), out / f"delta-{name}.parquet", compression="zstd")
    t["write those rows"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    small = small_tables(ix)
    t["small tables built (resources, entitlements, grants, cycles)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for name, table in small.items():
        pq.write_table(table, out / f"{name}.parquet", compression="zstd")
    t["small tables written"] = time.perf_counter() - t0
    counts = {name: sum(b.num_rows for b in batches) for name, batches in rows.items()}
    return t, (f"{len(affected.principals)} principals affected ({100 * affected.share:.2f}%); their rows "
               f"{counts}; grants {small['grants'].num_rows} rows")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="xl")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--changes", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    with simulator(args.size, args.seed) as (info, admin), tempfile.TemporaryDirectory() as data:
        _child(run, info, data, "s000-full", False)  # full sync + audit cursor, then its graph
        admin.post(f"/_sim/{ORG}/mutations/random", json={"count": args.changes, "seed": 1001}).raise_for_status()
        admin.post("/_sim/clock/advance", json={"seconds": 301}).raise_for_status()
        synced = _child(raw_sync, info, data, "s001-inc")
        print(f"{args.size}, {args.changes} changes: raw sync {synced['mode']}, {synced['requests']} requests"
              + (f" ({synced['fallback']})" if synced["fallback"] else ""))
        for k in range(args.rounds):
            with tempfile.TemporaryDirectory() as out:
                times, what = parts(Store(Path(data)), Path(out))
            print(f"round {k + 1}: {what}")
            for label, seconds in times.items():
                print(f"  {seconds:6.2f} s  {label}")
            print(f"  {sum(times.values()):6.2f} s  in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
