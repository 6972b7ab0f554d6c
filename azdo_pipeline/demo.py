"""The main job, end to end against the bundled simulator (what `make demo` runs).

Starts the simulator over TLS on 127.0.0.1, writes a configuration that points at it (the PAT
only through an environment variable), materializes every asset for the organization through
Dagster, and prints a summary and where the Parquet went.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import yaml

from . import schemas
from .partitions import ORG_PARTITIONS_NAME
from .resources import AzdoPipeline
from .simulator.generator import generate
from .simulator.server import SimulatorServer
from .simulator.state import World
from .store import Store

DEMO_PAT_ENV = "AZDO_DEMO_PAT"


def write_demo_config(path: Path, *, org: str, url: str, ca_file: str, data_dir: Path) -> None:
    path.write_text(yaml.safe_dump({
        "data_dir": str(data_dir),
        "organizations": [{
            "name": org, "url": url, "ca_bundle": ca_file,
            "auth": {"method": "pat", "pat_env": DEMO_PAT_ENV},
            "sync_teams": True, "sync_organizations": True, "concurrency": 8,
        }],
    }, sort_keys=False))


def _world(size: str, seed: int, org: str) -> tuple[World, str]:
    """A generated organization and an all-organizations PAT for its owner."""
    t0 = time.monotonic()
    world = World(seed=seed)
    state = generate(world, org, size=size, seed=seed)
    print(f"simulator: generated a {size} organization '{org}' in {time.monotonic() - t0:.1f}s "
          f"({len(state.user_order)} user identities, {len(state.group_order)} groups, "
          f"{len(state.projects)} projects, {state.membership_count()} direct memberships)")
    # All-organizations PAT: the accounts API (sync organizations) refuses org-bound PATs.
    return world, world.issue_pat(None, state.owner_key, {"app_token"}).token


def run_demo(size: str = "small", seed: int = 42, org: str = "fabrikam", data_dir: str | None = None,
             prepare: Callable[[World], None] | None = None) -> int:
    from .definitions import defs

    out = Path(data_dir or "data").resolve()
    world, token = _world(size, seed, org)
    if prepare is not None:
        prepare(world)
    with SimulatorServer(world) as server, tempfile.TemporaryDirectory() as tmp:
        print(f"simulator: serving {server.org_url(org)} over TLS (CA bundle {server.ca_file})")
        cfg = Path(tmp) / "azdo-pipeline.yaml"
        write_demo_config(cfg, org=org, url=server.org_url(org), ca_file=server.ca_file, data_dir=out)
        os.environ[DEMO_PAT_ENV] = token
        try:
            with dg.instance_for_test() as instance:
                instance.add_dynamic_partitions(ORG_PARTITIONS_NAME, [org])
                job = defs.resolve_job_def("full_sync_job")
                started = time.monotonic()
                result = job.execute_in_process(
                    partition_key=org, instance=instance,
                    resources={"azdo": AzdoPipeline(config_path=str(cfg), data_dir=str(out))},
                    tags={"azdo/org": org, "azdo/run": f"demo-{secrets.token_hex(3)}"},
                    run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
                elapsed = time.monotonic() - started
        finally:
            os.environ.pop(DEMO_PAT_ENV, None)
        counts = dict(world.request_counts)
    if not result.success:
        print("demo: the run FAILED; see the log above")
        return 1
    print_summary(Store(out), org, elapsed, counts, result)
    return 0


def print_summary(store: Store, org: str, elapsed: float, counts: dict[str, int],
                  result: dg.ExecuteInProcessResult) -> None:
    print(f"\nfull sync + access graph of '{org}' through Dagster in {elapsed:.1f}s")
    print(f"requests served by the simulator: {sum(counts.values())}")
    for route, n in sorted(counts.items(), key=lambda kv: -kv[1])[:12]:
        print(f"  {n:7d}  {route}")
    print("\ntables (latest snapshot):")
    names = list(schemas.RAW_TABLES)
    try:
        from .accessgraph.schemas import DERIVED_TABLES

        names += list(DERIVED_TABLES)
    except ImportError:
        pass
    for name in names:
        path = store.latest_path(name, org)
        if path.exists():
            print(f"  {name:22s} {pq.ParquetFile(path).metadata.num_rows:9d} rows  {path}")
    checks = result.get_asset_check_evaluations()
    failed = [c.check_name for c in checks if not c.passed]
    print(f"\nasset checks: {len(checks) - len(failed)}/{len(checks)} passed" +
          (f"; failed: {', '.join(failed)}" if failed else ""))
    print(f"\nParquet: {store.data_dir}  (read all organizations and snapshots with e.g. "
          f"duckdb: SELECT * FROM read_parquet('{store.data_dir}/latest/users/*/*.parquet', hive_partitioning=1))")


def run_dev(size: str = "small", seed: int = 42, org: str = "fabrikam", data_dir: str | None = None, *,
            ui_port: int = 3000) -> int:
    """`dagster dev` against a simulator served over TLS on 127.0.0.1 (until Ctrl-C)."""
    import subprocess
    import sys

    out = Path(data_dir or "data").resolve()
    world, token = _world(size, seed, org)
    home = Path(".azdo-sim").resolve()
    home.mkdir(exist_ok=True)
    with SimulatorServer(world) as server:
        cfg = home / "azdo-pipeline.yaml"
        write_demo_config(cfg, org=org, url=server.org_url(org), ca_file=str(server.ca_file), data_dir=out)
        env = dict(os.environ, AZDO_PIPELINE_CONFIG=str(cfg), **{DEMO_PAT_ENV: token})
        print(f"simulator: {server.org_url(org)}; configuration {cfg}; Dagster UI on http://127.0.0.1:{ui_port}")
        print("the register_organizations sensor adds the partition; materialize from the UI (Ctrl-C stops)")
        try:
            return subprocess.call([sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml",
                                    "-p", str(ui_port)], env=env)
        except KeyboardInterrupt:
            return 130
