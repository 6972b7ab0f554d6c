"""Provisioning benchmark: 1,000 mixed grant/revoke requests dropped into the inbox at once,
carried out through the provisioning sensor and the Dagster daemon as a user runs it.

    python benchmarks/provisioning.py                      # large organization, no added latency
    python benchmarks/provisioning.py --latency 50-150     # 50-150 ms added to every API call
    python benchmarks/provisioning.py --size medium --requests 200

The simulator serves a generated organization over TLS on 127.0.0.1 from this process;
`dagster-daemon run -w workspace.yaml` runs in its own process with a fresh DAGSTER_HOME (the
repository's dagster.yaml), exactly as in production. Printed: requests per second end to end
(first file written -> last outcome row published), API calls per request (the outcome rows'
count and the simulator's), runs and batches, and the proof of exactly once: every request has
one outcome row, and the simulator's audit log has exactly one membership event per request
(0 lost, 0 repeated) with the membership state matching.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parents[1]
ORG = "sim-fabrikam"
PAT_ENV = "AZDO_BENCH_PAT"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="large")
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--latency", default="0", help="added latency per API call in ms: 0, 100 or 50-150")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--timeout", type=float, default=900)
    args = ap.parse_args()

    from azdo_sim.cli import configure_faults, parse_latency
    from azdo_sim.generator import generate
    from azdo_sim.provisioning import change_key, membership_changes, membership_events
    from azdo_sim.server import SimulatorServer
    from azdo_sim.state import World

    from azdo_pipeline.provisioning.inbox import Inbox

    t = time.monotonic()
    world = World(seed=args.seed)
    org = generate(world, ORG, size=args.size, seed=args.seed)
    pat = world.issue_pat(None, org.owner_key, {"app_token"}).token
    grants = args.requests // 2
    changes = membership_changes(org, grants, args.requests - grants, seed=args.seed)
    print(f"simulator: {args.size} organization ({len(org.user_order)} users, {len(org.group_order)} groups, "
          f"{org.membership_count()} memberships) in {time.monotonic() - t:.1f}s; "
          f"{grants} grants + {args.requests - grants} revokes on distinct memberships")
    latency = parse_latency(args.latency)
    with SimulatorServer(world) as server, tempfile.TemporaryDirectory(prefix="azdo-bench-prov-") as tmp:
        home, data = Path(tmp) / "dagster_home", Path(tmp) / "data"
        home.mkdir()
        shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
        cfg = Path(tmp) / "azdo-pipeline.yaml"
        cfg.write_text(yaml.safe_dump({"data_dir": str(data), "organizations": [{
            "name": ORG, "url": server.org_url(ORG), "ca_bundle": str(server.ca_file), "simulated": True,
            "concurrency": 16, "auth": {"method": "pat", "pat_env": PAT_ENV}}]}))
        env = dict(os.environ, DAGSTER_HOME=str(home), AZDO_PIPELINE_CONFIG=str(cfg), **{PAT_ENV: pat})
        log = open(os.environ.get("AZDO_BENCH_DAEMON_LOG", Path(tmp) / "daemon.log"), "wb")  # noqa: SIM115
        daemon_cmd = [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-w", "workspace.yaml"]
        daemon = subprocess.Popen(daemon_cmd,
                                  cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                  stderr=log, start_new_session=True)
        inbox = Inbox(data / "inbox").ensure()
        try:
            # Let the daemon load the code location and the sensor make the inbox's ledger first,
            # so the clock measures provisioning, not the daemon's start.
            wait_for(lambda: inbox.ledger_path.exists(), 180, "the provisioning sensor's first tick")
            configure_faults(world, latency_ms=latency if latency != (0, 0) else None)
            counts_before = sum(world.request_counts.values())
            audit_before = len(org.audit)
            ids = []
            t0 = time.monotonic()
            for c in changes:
                rid = str(uuid.uuid4())
                ids.append(rid)
                inbox.write_request({"id": rid, "organization": ORG, "action": c.action,
                                     "principal": c.member, "target": c.group})
            dropped = time.monotonic() - t0
            done = wait_for(lambda: _finished(inbox.ledger_path) >= len(ids), args.timeout, "every outcome")
            table = data / "latest" / "provisioning_outcomes" / f"org={ORG}" / "provisioning_outcomes.parquet"
            wait_for(lambda: table.exists() and pq.ParquetFile(table).metadata.num_rows >= len(ids),
                     args.timeout, "the published outcome table")
            elapsed = time.monotonic() - t0
            wait_for(lambda: _all_runs_ended(home), 120, "the provisioning runs to end")
        finally:
            os.killpg(daemon.pid, signal.SIGTERM)
            try:
                daemon.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
        del done
        api_calls = sum(world.request_counts.values()) - counts_before
        rows = pq.read_table(table).to_pylist()
        by_id = Counter(r["request_id"] for r in rows)
        statuses = Counter(r["status"] for r in rows if r["request_id"] in set(ids))
        events = membership_events(org, audit_before)
        expected = Counter(change_key(org, c) for c in changes)
        lost = [c for c in changes if events[change_key(org, c)] == 0]
        repeated = [c for c in changes if events[change_key(org, c)] > 1]
        state_wrong = [c for c in changes if org.is_member(c.group, c.member) != (c.action == "grant")]
        runs = _runs(home)
    n = len(ids)
    print(f"\nlatency per API call: {args.latency} ms; {n} requests written in {dropped:.1f}s")
    print(f"end to end (first file written -> last outcome published): {elapsed:.1f}s = {n / elapsed:.1f} requests/s")
    print(f"provisioning runs: {runs}")
    print(f"statuses: {dict(statuses)}")
    calls = sum(r["api_call_count"] or 0 for r in rows)
    print(f"API calls per request: {calls / n:.2f} (outcome rows), "
          f"{api_calls / n:.2f} (simulator, including name resolution and membership re-reads)")
    missing, duplicated = sum(1 for i in ids if by_id[i] == 0), sum(1 for i in ids if by_id[i] > 1)
    print(f"outcome rows: {sum(by_id[i] for i in ids)} for {n} requests; missing {missing}, duplicated {duplicated}")
    print(f"simulator audit log: {sum(events[k] for k in expected)} membership events for {n} requests; "
          f"lost {len(lost)}, repeated {len(repeated)}; membership state wrong for {len(state_wrong)}")
    ok = not lost and not repeated and not state_wrong and all(by_id[i] == 1 for i in ids)
    print("exactly once: " + ("yes (0 lost, 0 repeated)" if ok else "NO"))
    return 0 if ok else 1


def _finished(ledger: Path) -> int:
    try:
        with sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=5) as db:
            return int(db.execute("SELECT COUNT(*) FROM requests WHERE state = 'done'").fetchone()[0])
    except sqlite3.Error:
        return 0


def _all_runs_ended(home: Path) -> bool:
    db = home / "history" / "runs.db"
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            return not con.execute("SELECT COUNT(*) FROM runs WHERE pipeline_name = 'provisioning_job' AND status "
                                   "NOT IN ('SUCCESS', 'FAILURE', 'CANCELED')").fetchone()[0]
    except sqlite3.Error:
        return False


def _runs(home: Path) -> str:
    db = home / "history" / "runs.db"
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            rows = con.execute("SELECT status, COUNT(*) FROM runs WHERE pipeline_name = 'provisioning_job' "
                               "GROUP BY status").fetchall()
        return ", ".join(f"{n} {s}" for s, n in rows) or "none"
    except sqlite3.Error as e:
        return f"unknown ({e})"


def wait_for(cond, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.25)
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")


if __name__ == "__main__":
    sys.exit(main())
