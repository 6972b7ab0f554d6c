"""Simulator figures: organization generation time / peak memory per size, and request throughput.

    .venv/bin/python benchmarks/simulator.py                       # tiny..large, then throughput
    .venv/bin/python benchmarks/simulator.py --sizes xl --no-http  # xl only
    .venv/bin/python benchmarks/simulator.py --sizes small --http-size large --seconds 5

Every generation runs in a fresh subprocess, so its peak RSS (the child's own ru_maxrss) is not
inflated by earlier sizes; `base MB` is the child's RSS after imports, before generating.

Throughput is measured over real HTTP(S) on 127.0.0.1: a child process generates the organization
and serves it with `SimulatorServer` (TLS, uvicorn); this process drives it with one keep-alive
httpx client and a full-access PAT, so client and server do not share a GIL. Figures:
- a 500-user Graph users page (`GET vssps/{org}/_apis/graph/users`, first page),
- a membership list (`GET …/graph/memberships/{descriptor}?direction=down` on a big group,
  and `direction=up` on a user).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ORG = "fabrikam"
API = "7.1-preview.1"


def _rss_mb() -> float:
    """Current RSS of this process (Linux /proc), MB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


# ---- child: generate one size ---------------------------------------------------------------
def child_generate(size: str, seed: int) -> None:
    from azdo_sim.generator import generate, max_nesting_depth
    from azdo_sim.state import World

    base = _rss_mb()
    t0 = time.perf_counter()
    world = World(seed=seed)
    org = generate(world, ORG, size=size, seed=seed)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    humans = sum(1 for u in org.users() if u.origin in ("aad", "msa"))
    print(json.dumps({
        "size": size, "seconds": seconds, "peak_mb": peak, "base_mb": base,
        "users": humans, "svc": len(org.user_order) - humans, "sps": len(org.sp_order),
        "groups": len(org.group_order), "projects": len(org.projects), "teams": len(org.teams),
        "memberships": org.membership_count(), "audit": len(org.audit), "audit_90d": len(org.audit_window()),
        "depth": max_nesting_depth(org),
    }))


# ---- child: serve one size ------------------------------------------------------------------
def child_serve(size: str, seed: int, tls: bool) -> None:
    from azdo_sim.generator import generate
    from azdo_sim.server import SimulatorServer
    from azdo_sim.state import World

    world = World(seed=seed)
    org = generate(world, ORG, size=size, seed=seed)
    pat = world.issue_pat(ORG, org.owner_key, {"app_token"})
    # The biggest group (direct members) and a well-connected user, for the membership lists.
    big = max(org.group_order, key=lambda d: len(org.down.get(d, ())))
    user = max((d for d in org.user_order if org.identities[d].origin == "aad"),
               key=lambda d: len(org.up.get(d, ())))
    with SimulatorServer(world, tls=tls) as server:
        print(json.dumps({"base_url": server.base_url, "ca_file": server.ca_file, "pat": pat.token,
                          "big_group": big, "big_group_members": len(org.down.get(big, ())),
                          "user": user, "user_groups": len(org.up.get(user, ()))}), flush=True)
        sys.stdin.readline()  # the parent closes stdin when done


# ---- parent -----------------------------------------------------------------------------------
def run_child(args: list[str], timeout: float) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, timeout=timeout,
                         cwd=ROOT, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_generation(sizes: list[str], seed: int) -> None:
    cols = ("size", "seconds", "peak_mb", "base_mb", "users", "svc", "sps", "groups", "projects", "teams",
            "memberships", "audit", "audit_90d", "depth")
    print(f"Generation (fresh process per size; peak = child's ru_maxrss; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}):")
    print("  " + " ".join(f"{c:>11}" for c in cols))
    for size in sizes:
        row = run_child(["--child-generate", size, "--seed", str(seed)], timeout=3600)
        cells = []
        for c in cols:
            v = row[c]
            cells.append(f"{v:>11.2f}" if isinstance(v, float) else f"{v:>11}")
        print("  " + " ".join(cells), flush=True)


def _timed(client: Any, url: str, params: dict[str, str], seconds: float,
           rounds: int = 3) -> tuple[float, float, int]:
    """(best-round requests/s, median ms, bytes per response) for repeated GETs of url.

    The machine is shared (other test runs), so the best of `rounds` rounds is reported: it is the
    figure least disturbed by other load."""
    for _ in range(5):  # warm-up (connection, TLS, caches)
        client.get(url, params=params).raise_for_status()
    lat: list[float] = []
    size = 0
    best = 0.0
    for _ in range(rounds):
        n = 0
        start = time.perf_counter()
        end = start + seconds / rounds
        while time.perf_counter() < end:
            t = time.perf_counter()
            r = client.get(url, params=params)
            lat.append(time.perf_counter() - t)
            r.raise_for_status()
            size = len(r.content)
            n += 1
        best = max(best, n / (time.perf_counter() - start))
    return best, statistics.median(lat) * 1000, size


def bench_http(size: str, seed: int, seconds: float, tls: bool) -> None:
    import httpx

    proc = subprocess.Popen([sys.executable, __file__, "--child-serve", size, "--seed", str(seed),
                             *([] if tls else ["--no-tls"])],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("the serving child exited before it was ready")
        info = json.loads(line)
        auth = "Basic " + base64.b64encode(f":{info['pat']}".encode()).decode()
        headers = {"Authorization": auth, "X-TFS-FedAuthRedirect": "Suppress"}
        verify: Any = info["ca_file"] if tls else False
        graph = f"{info['base_url']}/vssps/{ORG}/_apis/graph"
        with httpx.Client(headers=headers, verify=verify, timeout=60) as client:
            first = client.get(f"{graph}/users", params={"api-version": API})
            first.raise_for_status()
            n_users = len(first.json()["value"])
            cases = [
                (f"Graph users page ({n_users} users)", f"{graph}/users", {"api-version": API}),
                (f"memberships down ({info['big_group_members']} members)",
                 f"{graph}/memberships/{info['big_group']}", {"api-version": API, "direction": "down"}),
                (f"memberships up ({info['user_groups']} groups)",
                 f"{graph}/memberships/{info['user']}", {"api-version": API, "direction": "up"}),
            ]
            print(f"Throughput over {'HTTPS' if tls else 'HTTP'} on 127.0.0.1, size {size}, one keep-alive "
                  f"client, server in another process ({seconds:.0f} s per case, best of 3 rounds; "
                  f"load average {os.getloadavg()[0]:.2f}):")
            print(f"  {'request':<44} {'req/s':>8} {'median ms':>10} {'KB/resp':>8}")
            for name, url, params in cases:
                rps, med, nbytes = _timed(client, url, params, seconds)
                print(f"  {name:<44} {rps:>8.1f} {med:>10.2f} {nbytes / 1024:>8.1f}", flush=True)
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="tiny,small,medium,large",
                   help="comma-separated sizes to generate (tiny,small,medium,large,xl)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--no-http", action="store_true", help="skip the HTTP throughput part")
    p.add_argument("--http-size", default="medium", help="organization size served for throughput")
    p.add_argument("--seconds", type=float, default=3.0, help="measuring time per throughput case")
    p.add_argument("--no-tls", action="store_true", help="plain HTTP instead of HTTPS for throughput")
    p.add_argument("--child-generate", help=argparse.SUPPRESS)
    p.add_argument("--child-serve", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child_generate:
        child_generate(a.child_generate, a.seed)
        return 0
    if a.child_serve:
        child_serve(a.child_serve, a.seed, tls=not a.no_tls)
        return 0
    sizes = [s.strip() for s in a.sizes.split(",") if s.strip()]
    if sizes:
        bench_generation(sizes, a.seed)
    if not a.no_http:
        print()
        bench_http(a.http_size, a.seed, a.seconds, tls=not a.no_tls)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
