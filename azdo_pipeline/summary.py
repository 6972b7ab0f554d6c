"""The summary printed after a full-sync run (`azdo-pipeline sync`, the demo): requests, the rows of
every table of the latest snapshot, asset checks, and where the Parquet is."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import dagster as dg
import pyarrow.parquet as pq

from . import schemas
from .accessgraph.schemas import DERIVED_TABLES
from .store import Store

REQUESTS_KEY = "requests (whole sync)"  # the raw assets' materialization metadata
NOTES_KEY = "notes (whole sync)"


def print_summary(store: Store, org: str, seconds: float, result: dg.ExecuteInProcessResult, *,
                  requests_by_route: Mapping[str, int] | None = None, requests_label: str = "requests",
                  say: Callable[[str], object] = print) -> None:
    """requests_by_route: counted by the server (the simulator's); without it, the sync's own total."""
    say(f"\nfull sync + access graph of '{org}' through Dagster in {seconds:.1f}s")
    if requests_by_route is not None:
        say(f"{requests_label}: {sum(requests_by_route.values())}")
        for route, n in sorted(requests_by_route.items(), key=lambda kv: -kv[1])[:12]:
            say(f"  {n:7d}  {route}")
    else:
        say(f"{requests_label}: {_requests_made(result)}")
    say("\ntables (latest snapshot):")
    for name in [*schemas.RAW_TABLES, *DERIVED_TABLES]:
        path = store.latest_path(name, org)
        if path.exists():
            say(f"  {name:22s} {pq.ParquetFile(path).metadata.num_rows:9d} rows  {path}")
    notes = _metadata(result, NOTES_KEY)
    if isinstance(notes, str) and notes != "none":
        say(f"\nnotes: {notes}")
    checks = result.get_asset_check_evaluations()
    failed = [c.check_name for c in checks if not c.passed]
    say(f"\nasset checks: {len(checks) - len(failed)}/{len(checks)} passed" +
        (f"; failed: {', '.join(failed)}" if failed else ""))
    say(f"\nParquet: {store.data_dir}  (read all organizations and snapshots with e.g. duckdb: SELECT * FROM "
        f"read_parquet('{store.data_dir}/latest/users/*/*.parquet', hive_partitioning=1))")
    if store.mirror is not None:
        pointer = store.mirror.pointer(org)
        say(f"mirrored to {store.mirror.loc.url}: pointer _latest/org={org}.json names "
            + ", ".join(f"{k} {v}" for k, v in sorted((pointer.get('kinds') or {}).items()))
            + " (docs/queries.md: reading it from DuckDB and Polars)")


def _requests_made(result: dg.ExecuteInProcessResult) -> int | str:
    value = _metadata(result, REQUESTS_KEY)
    return value if isinstance(value, int) else "unknown"


def _metadata(result: dg.ExecuteInProcessResult, key: str) -> object:
    """The first materialization's metadata value under `key` (the raw assets repeat whole-sync figures)."""
    for event in result.get_asset_materialization_events():
        entry = event.materialization.metadata.get(key)
        if entry is not None:
            return entry.value
    return None
