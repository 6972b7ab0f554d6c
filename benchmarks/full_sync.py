"""Full-sync benchmark: our client vs a naive sequential one, against the simulator over HTTPS.

    python benchmarks/full_sync.py --size large            # no added latency, then 50-150 ms
    python benchmarks/full_sync.py --size medium --latency 0
    python benchmarks/full_sync.py --size large --latency 0 --repeat 5   # medians of 5 rounds

The simulator runs in its own process (so its memory is not counted); each sync runs in a fresh
process and reports its own peak RSS. Printed per setting: requests by endpoint, the minimum the
API allows for this organization (pages + batched membership reads at the API's batch limit),
wall time, peak RSS, rows per table, and the naive client's figures with the ratio.

The naive client is our own code configured the naive way: one request at a time
(max_concurrency=1) and a PAT without the Identities and Security scopes, so memberships are read
with one `graph/memberships/{group}` call per group and (with --sync-teams) team members with one
call per team — what most scripts and SDK-based tools do.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing as mp
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ORG = "fabrikam"
NAIVE_SCOPES = ["vso.graph", "vso.project", "vso.memberentitlementmanagement", "vso.profile"]


def _minimum_requests(org: Any, batch: int, sync_teams: bool) -> dict[str, int]:
    """Fewest requests the API allows for a full sync of `org` (reference §2 page sizes)."""
    from azdo_sim.truth import ground_truth

    truth = ground_truth(org)
    known = {u["storage_key"] for u in truth["users"]} | {g["storage_key"] for g in truth["groups"]}
    by_desc = {i.descriptor: i.storage_key for i in org.identities.values()}
    member_keys = {by_desc[m["member_descriptor"]] for m in truth["memberships"]}
    unknown = len(member_keys - known)  # service accounts, service principals, Entra groups
    teams = list(org.teams.values())
    n_teams = len(teams)
    minimum = {
        "discovery": 1,
        "graph/users (500/page)": max(1, math.ceil(len(org.user_order) / 500)),
        "graph/groups (500/page)": max(1, math.ceil(len(org.group_order) / 500)),
        "graph/serviceprincipals (500/page)": max(1, math.ceil(len(org.sp_order) / 500)),
        "userentitlements (100/page)": max(1, math.ceil(len(org.entitlements) / 100)),
        "projects (100/page)": max(1, math.ceil(len(org.projects) / 100)),
        "teams ($top=100 until a short page)": n_teams // 100 + 1,
        f"memberships (identitybatch, {batch} groups/call)": math.ceil(len(org.group_order) / batch),
        f"member ids resolved (identitybatch, {batch}/call)": math.ceil(unknown / batch),
    }
    if sync_teams:
        # Team members are the team groups' direct members (already read); administrators come from
        # one read of the Identity namespace's ACLs, their identities in batches.
        admins = {a for t in teams for a in t.admins}
        minimum["team administrators (security ACLs, one call)"] = 1
        minimum[f"team administrator identities (identitybatch, {batch}/call)"] = math.ceil(len(admins) / batch)
    return minimum


def serve(size: str, seed: int, sync_teams: bool, queue: Any, stop: Any) -> None:
    from azdo_sim.generator import generate
    from azdo_sim.routes_identities import IDENTITY_BATCH_MAX
    from azdo_sim.server import SimulatorServer
    from azdo_sim.state import World

    world = World(seed=seed)
    org = generate(world, ORG, size=size, seed=seed)
    full = world.issue_pat(ORG, org.owner_key, {"app_token"}).token
    naive = world.issue_pat(ORG, org.owner_key, set(NAIVE_SCOPES)).token
    with SimulatorServer(world) as server:
        queue.put({"base_url": server.base_url, "org_url": server.org_url(ORG), "ca_file": server.ca_file,
                   "full": full, "naive": naive,
                   "minimum": _minimum_requests(org, IDENTITY_BATCH_MAX, sync_teams=sync_teams),
                   "counts": {"users": len(org.user_order), "groups": len(org.group_order),
                              "projects": len(org.projects), "memberships": org.membership_count()}})
        stop.wait()


def _warm_imports() -> None:
    """Load what pyarrow loads lazily on first use (pandas shim, compute, acero, parquet: ~0.3 s).

    A sync runs in a long-lived Dagster process where these are loaded already; each benchmark
    child is a fresh process, so both clients load them before their clock starts.
    """
    import pyarrow as pa
    import pyarrow.parquet

    pa.table({"k": [1]}).group_by("k").aggregate([]).join(pa.table({"k": [1]}), keys="k")


def run_sync(info: dict, token: str, concurrency: int, sync_teams: bool, keep: str | None, queue: Any) -> None:
    from azdo_pipeline.auth import PatCredential
    from azdo_pipeline.client import AzureDevOpsClient, ClientSettings
    from azdo_pipeline.store import Store
    from azdo_pipeline.sync.full import SyncOptions, full_sync

    _warm_imports()

    tmp = tempfile.TemporaryDirectory()

    async def go() -> Any:
        settings = ClientSettings(ca_bundle=info["ca_file"], max_concurrency=concurrency)
        async with await AzureDevOpsClient.connect(info["org_url"], PatCredential(token), settings=settings) as c:
            return await full_sync(c, Store(Path(tmp.name)), ORG, "bench", SyncOptions(sync_teams=sync_teams))

    with tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        report = asyncio.run(go())
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if keep:  # the published tables, outside the clock, for benchmarks/compare_tables.py
            Path(keep).mkdir(parents=True, exist_ok=True)
            for name, t in report.tables.items():
                if t.path.exists():
                    shutil.copyfile(t.path, Path(keep) / f"{name}.parquet")
    queue.put({"wall": wall, "cpu": cpu, "requests": report.requests, "by_endpoint": report.requests_by_endpoint,
               "rows": {k: v.rows for k, v in report.tables.items()}, "streams": report.stream_seconds,
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process (Linux /proc), to show how busy the simulator was."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _child(target: Any, *args: Any) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q))
    p.start()
    out = q.get()
    p.join()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="large")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--latency", default="both", help="'0', 'MIN-MAX' in ms, or 'both' (0 and 50-150)")
    ap.add_argument("--concurrency", type=int, default=8, help="our client's requests in flight (default 8, "
                    "the product default)")
    ap.add_argument("--sync-teams", action="store_true",
                    help="also sync teams and team members with their administrators (off by default, as in "
                         "the product); the naive client reads them one request per team")
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--keep-tables", metavar="DIR",
                    help="copy our client's published tables (first round, first setting) into DIR, to "
                         "compare the runs of two commits with benchmarks/compare_tables.py")
    ap.add_argument("--repeat", type=int, default=1,
                    help="rounds per setting (ours, then naive, each round); prints the medians")
    args = ap.parse_args()
    settings = [(0, 0), (50, 150)] if args.latency == "both" else [
        tuple(int(x) for x in args.latency.split("-")) if "-" in args.latency else (0, 0)]

    ctx = mp.get_context("spawn")
    q, stop = ctx.Queue(), ctx.Event()
    t0 = time.perf_counter()
    server = ctx.Process(target=serve, args=(args.size, args.seed, args.sync_teams, q, stop), daemon=True)
    server.start()
    info = q.get()
    print(f"simulator: {args.size} org {info['counts']} ready in {time.perf_counter() - t0:.1f}s; "
          f"sync_teams={args.sync_teams}, our concurrency {args.concurrency}")
    minimum = info["minimum"]
    min_total = sum(minimum.values())
    print(f"minimum requests the API allows: {min_total}")
    for k, v in minimum.items():
        print(f"  {v:7d}  {k}")
    admin = httpx.Client(base_url=info["base_url"], verify=info["ca_file"])
    try:
        for lo, hi in settings:
            admin.put("/_sim/faults", json={"latency_ms": [lo, hi], "seed": 1}).raise_for_status()
            label = "no added latency" if hi == 0 else f"{lo}-{hi} ms added per request"
            print(f"\n=== {label} ===")
            ours_walls: list[float] = []
            naive_walls: list[float] = []
            for round_ in range(1, args.repeat + 1):
                # Ours then naive in each round, so a slow spell of the machine hits both.
                s0 = _cpu_seconds(server.pid)
                keep = args.keep_tables if round_ == 1 and (lo, hi) == settings[0] else None
                ours = _child(run_sync, info, info["full"], args.concurrency, args.sync_teams, keep)
                s1 = _cpu_seconds(server.pid)
                ours_walls.append(ours["wall"])
                tag = f"[{round_}/{args.repeat}] " if args.repeat > 1 else ""
                print(f"{tag}ours : {ours['wall']:8.2f}s  {ours['requests']:6d} requests "
                      f"({ours['requests'] / min_total:.3f}x minimum)  peak RSS {ours['peak_rss_mb']:.0f} MiB  "
                      f"CPU: client {ours['cpu']:.2f}s, simulator {s1 - s0:.2f}s")
                if round_ == 1:
                    for k, v in sorted(ours["by_endpoint"].items(), key=lambda kv: -kv[1]):
                        print(f"  {v:7d}  {k}")
                    print("  rows: " + ", ".join(f"{k}={v}" for k, v in ours["rows"].items()))
                print("  streams done at (s): " + ", ".join(f"{k} {v:.2f}" for k, v in
                                                             sorted(ours["streams"].items(), key=lambda kv: kv[1])))
                if args.skip_naive:
                    continue
                s0 = _cpu_seconds(server.pid)
                naive = _child(run_sync, info, info["naive"], 1, args.sync_teams, None)
                s1 = _cpu_seconds(server.pid)
                naive_walls.append(naive["wall"])
                print(f"{tag}naive: {naive['wall']:8.2f}s  {naive['requests']:6d} requests  "
                      f"peak RSS {naive['peak_rss_mb']:.0f} MiB  CPU: client {naive['cpu']:.2f}s, "
                      f"simulator {s1 - s0:.2f}s")
                # The naive PAT cannot read security ACLs, so it sees only the administrators who are
                # also team members; every other table must be identical.
                same = {k: v for k, v in naive["rows"].items() if k != "team_members"} == \
                    {k: v for k, v in ours["rows"].items() if k != "team_members"}
                extra = ""
                if args.sync_teams:
                    extra = (f"; team_members ours {ours['rows']['team_members']} vs naive "
                             f"{naive['rows']['team_members']} (administrators who are not members)")
                print(f"{tag}ratio: ours is {naive['wall'] / ours['wall']:.1f}x faster with "
                      f"{naive['requests'] / ours['requests']:.1f}x fewer requests (same rows: {same}{extra})")
            if args.repeat > 1:
                mo = statistics.median(ours_walls)
                line = f"median of {args.repeat}: ours {mo:.2f}s"
                if naive_walls:
                    mn = statistics.median(naive_walls)
                    ratios = [n / o for n, o in zip(naive_walls, ours_walls, strict=True)]
                    line += (f", naive {mn:.2f}s -> ours is {mn / mo:.1f}x faster "
                             f"(per round {min(ratios):.1f}x-{max(ratios):.1f}x)")
                print(line)
    finally:
        stop.set()
        server.join(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
