"""Per-route latency of the simulator on big organizations, in process (no sockets).

    .venv/bin/python benchmarks/simulator_routes.py                   # large and xl
    .venv/bin/python benchmarks/simulator_routes.py --sizes large --repeat 20
    .venv/bin/python benchmarks/simulator_routes.py --profile userentitlements_p1

Each route is called `--repeat` times through `server.in_process_client` (the full app: host mapping,
auth, counters, faults, settle) and the median / p90 wall time in ms is printed with the body size.
Pages after the first are fetched with the continuation token of the first page, so a route that
costs O(organization) per page shows up at any offset. `trivial` is `GET _apis/resourceAreas`-like
overhead: the smallest authenticated route (connectionData), i.e. the fixed per-request cost.
`--profile NAME` runs cProfile over that route and prints the top functions.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ORG = "fabrikam"


def _setup(size: str) -> tuple[Any, Any, Any]:
    from azdo_sim.generator import generate
    from azdo_sim.server import in_process_client
    from azdo_sim.state import World

    w = World(seed=1)
    org = generate(w, ORG, size=size, seed=1)
    pat = w.issue_pat(ORG, org.owner_key, {"app_token"}).token
    auth = "Basic " + base64.b64encode(f":{pat}".encode()).decode()
    client = in_process_client(w, base_url="https://dev.azure.com",
                               headers={"Authorization": auth, "X-TFS-FedAuthRedirect": "Suppress"})
    return w, org, client


def _routes(org: Any, client: Any) -> dict[str, str]:
    vsaex = f"https://vsaex.dev.azure.com/{ORG}/_apis"
    vssps = f"https://vssps.dev.azure.com/{ORG}/_apis"
    core = f"https://dev.azure.com/{ORG}/_apis"
    ent = f"{vsaex}/userentitlements?api-version=7.1"
    gu = f"{vssps}/graph/users?api-version=7.1-preview.1"
    r = client.get(ent)
    r.raise_for_status()
    ent_tok = r.json()["continuationToken"]
    r = client.get(gu)
    gu_tok = r.headers.get("x-ms-continuationtoken")
    # a mid-organization page: walk ~half way with tokens would take long; one hop is enough to
    # exercise the token path, and the offset-based work is what we measure.
    proj = next(iter(org.projects.values()))
    team = next(t for t in org.teams.values() if t.project_id == proj.id)
    big_group = max(org.down, key=lambda g: len(org.down[g]))
    user = next(org.users())
    routes = {
        "trivial_connectiondata": f"{core}/connectiondata",
        "userentitlements_p1": ent,
        "userentitlements_p2": f"{ent}&continuationToken={quote(ent_tok, safe='')}",
        "userentitlements_projects": f"{ent}&select=Projects",
        "userentitlements_filter": f"{ent}&$filter=" + quote("licenseId eq 'Account-Express'"),
        "userentitlements_orderby": f"{ent}&$orderBy=name%20desc",
        "userentitlement_one": f"{vsaex}/userentitlements/{user.storage_key}?api-version=7.1",
        "graph_users_p1": gu,
        "graph_users_p2": f"{gu}&continuationToken={quote(gu_tok or '', safe='')}",
        "graph_groups_p1": f"{vssps}/graph/groups?api-version=7.1-preview.1",
        "graph_sps_p1": f"{vssps}/graph/serviceprincipals?api-version=7.1-preview.1",
        "graph_memberships_down": f"{vssps}/graph/Memberships/{big_group}?direction=down"
                                  "&api-version=7.1-preview.1",
        "graph_memberships_up": f"{vssps}/graph/Memberships/{user.descriptor}?direction=up"
                                "&api-version=7.1-preview.1",
        "identities_by_descriptor": f"{vssps}/identities?subjectDescriptors={user.descriptor}"
                                    "&queryMembership=Direct&api-version=7.1",
        "identities_by_legacy": f"{vssps}/identities?descriptors={quote(user.identity_descriptor, safe='')}"
                                "&api-version=7.1",
        "projects": f"{core}/projects?api-version=7.1",
        "project_teams": f"{core}/projects/{proj.id}/teams?api-version=7.1",
        "teams_all": f"{core}/teams?api-version=7.1-preview.3",
        "team_members": f"{core}/projects/{proj.id}/teams/{team.id}/members?api-version=7.1",
    }
    return routes


def _time(client: Any, url: str, repeat: int) -> tuple[float, float, int, int]:
    times = []
    size = status = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = client.get(url)
        times.append((time.perf_counter() - t0) * 1000)
        size, status = len(r.content), r.status_code
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.9) - 1 if len(times) > 1 else 0], size, status


def _profile(world: Any, client: Any, url: str, repeat: int) -> None:
    """cProfile the app itself: the in-process client runs it on another thread, so drive the ASGI app
    on this thread with httpx's async transport instead."""
    import asyncio

    import httpx
    from azdo_sim.app import create_app

    async def run() -> None:
        transport = httpx.ASGITransport(app=create_app(world), client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, headers=client.headers) as ac:
            (await ac.get(url)).raise_for_status()
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(repeat):
                await ac.get(url)
            prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(35)

    asyncio.run(run())


def _raw_asgi_ms(world: Any, client: Any, url: str, repeat: int) -> float:
    """Median server-side time of one request: the ASGI app called directly (no httpx, no thread hop)."""
    import asyncio

    import httpx
    from azdo_sim.app import create_app

    app = create_app(world)
    u = httpx.URL(url)
    headers = [(k.lower().encode(), v.encode()) for k, v in client.headers.items()]
    headers.append((b"host", u.host.encode()))

    async def one() -> float:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                 "scheme": "https", "path": u.path, "raw_path": u.raw_path.split(b"?")[0],
                 "query_string": u.query, "root_path": "", "headers": headers,
                 "client": ("127.0.0.1", 50000), "server": (u.host, 443)}

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        t0 = time.perf_counter()
        await app(scope, receive, send)
        return (time.perf_counter() - t0) * 1000

    statuses: list[int] = []

    async def run() -> float:
        await one()
        times = [await one() for _ in range(repeat)]
        assert set(statuses) == {200}, set(statuses)
        return statistics.median(times)

    return asyncio.run(run())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="large,xl")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--profile", default="")
    ap.add_argument("--only", default="", help="comma-separated route names")
    args = ap.parse_args()
    for size in args.sizes.split(","):
        t0 = time.perf_counter()
        _w, org, client = _setup(size)
        print(f"== {size}: {sum(1 for _ in org.users())} users, generated in {time.perf_counter() - t0:.1f}s")
        routes = _routes(org, client)
        if args.profile:
            _profile(_w, client, routes[args.profile], args.repeat)
            continue
        raw = _raw_asgi_ms(_w, client, routes["trivial_connectiondata"], max(args.repeat, 200))
        print(f"server-side per-request overhead (connectionData, ASGI direct): {raw:.3f} ms")
        only = set(filter(None, args.only.split(",")))
        print(f"{'route':28s} {'median ms':>10s} {'p90 ms':>8s} {'KB':>8s} status")
        for name, url in routes.items():
            if only and name not in only:
                continue
            client.get(url)  # warm
            med, p90, size_b, status = _time(client, url, args.repeat)
            print(f"{name:28s} {med:10.2f} {p90:8.2f} {size_b / 1024:8.1f} {status}")
        client.close()


if __name__ == "__main__":
    main()
