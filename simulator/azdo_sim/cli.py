"""Commands the simulator adds to `azdo-pipeline` (entry point `azdo_pipeline.commands`).

    azdo-pipeline simulate [--size small] [--seed 0] [--port 8765] [--org sim-fabrikam]
                           [--throttle] [--latency-ms 20-80]     serve the simulator until Ctrl-C
    azdo-pipeline demo [--size small] [--data-dir DIR]            the main job against the simulator
    azdo-pipeline tour [--size small]                             the simulator answering a few routes
    azdo-pipeline dev [--size small] [--ui-port 3000]             Dagster UI against its own simulator

`azdo-sim` is the same set as a console script of its own.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from .generator import SIZES

# A name nobody takes for their own organization: simulated data must never pass for real.
DEFAULT_ORG = "sim-fabrikam"


def parse_latency(text: str) -> tuple[int, int]:
    """`"50"` → (50, 50); `"20-80"` → (20, 80) milliseconds."""
    try:
        lo, _, hi = text.partition("-")
        a, b = int(lo), int(hi or lo)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MS or MIN-MAX milliseconds, got {text!r}") from None
    if a < 0 or b < a:
        raise argparse.ArgumentTypeError("latency must be 0 <= MIN <= MAX")
    return a, b


# ---- simulator set-up shared by simulate and demo ---------------------------------------------


def build_world(org_name: str, size: str, seed: int) -> tuple[Any, Any]:
    """A World with one generated organization: (world, org)."""
    from .generator import generate
    from .state import World

    world = World(seed=seed)
    org = generate(world, org_name, size=size, seed=seed)
    return world, org


def register_default_app(world: Any) -> Any | None:
    """The default Entra app registration (simulator/entra.py), when that module offers it."""
    try:
        from . import entra
    except ImportError:
        return None
    fn = getattr(entra, "register_app", None)
    if fn is None:
        return None
    try:
        return fn(world, display_name="azdo-pipeline")
    except TypeError:
        return fn(world)


def configure_faults(world: Any, *, throttle: bool = False, latency_ms: tuple[int, int] | None = None) -> None:
    from .faults import faults_of

    config: dict[str, Any] = {}
    if latency_ms:
        config["latency_ms"] = list(latency_ms)
    if throttle:
        config["throttle"] = {"budget": 200, "window_seconds": 300}
    faults_of(world).configure(config)


def _sim_arguments(p: argparse.ArgumentParser, *, default_size: str = "small", port: int | None = 8765) -> None:
    p.add_argument("--size", choices=tuple(SIZES), default=default_size, help="organization size")
    p.add_argument("--seed", type=int, default=0, help="generator seed (same seed, same organization)")
    p.add_argument("--org", default=DEFAULT_ORG, help="organization name")
    if port is not None:
        p.add_argument("--port", type=int, default=port, help="TCP port on --host (0 = any free port)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback by default)")
    p.add_argument("--throttle", action="store_true",
                   help="enable TSTU throttling (200 TSTUs per 5 minutes per identity)")
    p.add_argument("--latency-ms", type=parse_latency, default=None, metavar="A-B",
                   help="add uniform random latency between A and B milliseconds")


def _simulate_arguments(p: argparse.ArgumentParser) -> None:
    _sim_arguments(p)
    p.add_argument("--no-tls", action="store_true", help="serve plain HTTP (msal needs TLS)")
    p.add_argument("--cert-dir", default=None, help="where to write the CA bundle (default: a temp dir)")
    p.add_argument("--access-log", action="store_true", help="log every request")


def run_simulate(args: argparse.Namespace) -> int:
    from .server import serve_forever

    world, org = build_world(args.org, args.size, args.seed)
    app = register_default_app(world)
    configure_faults(world, throttle=args.throttle, latency_ms=args.latency_ms)
    pat = world.issue_pat(org.name, org.owner_key, {"app_token"})
    all_orgs_pat = world.issue_pat(None, org.owner_key, {"app_token"})

    def ready(server: Any) -> None:
        owner = org.by_storage_key(org.owner_key)
        lines = [
            f"Azure DevOps simulator: {args.size} organization '{org.name}' (seed {args.seed})",
            f"  organization URL : {server.org_url(org.name)}",
            f"  PAT (org owner {owner.principal_name if owner else org.owner_key}): {pat.token}",
            f"  PAT (all organizations, for the accounts API): {all_orgs_pat.token}",
            f"  Entra tenant id  : {getattr(app, 'tenant_id', world.tenant_id)}",
        ]
        if app is not None:
            lines += [f"  client id        : {getattr(app, 'client_id', '?')}",
                      f"  client secret    : {getattr(app, 'client_secret', '?')}"]
        lines += [
            f"  authority        : {server.base_url}/{world.tenant_id}",
            f"  Microsoft Graph  : {server.base_url}/v1.0",
            f"  CA bundle        : {server.ca_file or '(plain HTTP)'}",
            f"  admin API        : {server.admin_url}  (e.g. {server.admin_url}/orgs)",
            f"  faults           : throttle={'on' if args.throttle else 'off'}, "
            f"latency={args.latency_ms or 'none'}",
            "Press Ctrl-C to stop.",
        ]
        print("\n".join(lines), flush=True)

    try:
        serve_forever(world, args.host, args.port, not args.no_tls, cert_dir=args.cert_dir, on_ready=ready,
                      access_log=args.access_log)
    except OSError as e:  # typically: the port is taken
        print(f"azdo-pipeline simulate: cannot listen on {args.host}:{args.port}: {e.strerror or e}",
              file=sys.stderr)
        return 2
    return 0


def _demo_arguments(p: argparse.ArgumentParser) -> None:
    _sim_arguments(p, port=None)


def run_tour(args: argparse.Namespace) -> int:
    """Start the simulator over TLS and call a few real routes, printing what it serves."""
    import httpx

    from .server import SimulatorServer

    world, org = build_world(args.org, args.size, args.seed)
    configure_faults(world, throttle=args.throttle, latency_ms=args.latency_ms)
    pat = world.issue_pat(org.name, org.owner_key, {"app_token"})
    headers = {"X-TFS-FedAuthRedirect": "Suppress", "Accept": "application/json"}
    with SimulatorServer(world, host=args.host) as server, httpx.Client(
            verify=server.ssl_context(), auth=("", pat.token), headers=headers, timeout=30) as http:
        base = server.org_url(org.name)
        print(f"simulator: {args.size} organization '{org.name}' at {base} (CA {server.ca_file})")
        r = http.get(f"{base}/_apis/resourceAreas")
        r.raise_for_status()
        areas = {a["name"]: a["locationUrl"] for a in r.json()["value"]}
        for name, url in areas.items():
            print(f"  area {name:<28} {url}")
        graph = areas.get("Graph", f"{server.base_url}/vssps/{org.name}/").rstrip("/")
        r = http.get(f"{graph}/_apis/graph/users", params={"api-version": "7.1-preview.1"})
        users = r.json().get("value", []) if r.headers.get("content-type", "").startswith(
            "application/json") else []
        print(f"  GET graph/users  → {r.status_code}, {len(users)} users on the first page, continuation "
              f"{'yes' if r.headers.get('X-MS-ContinuationToken') else 'no'}")
        for u in users[:5]:
            print(f"    {u.get('subjectKind', '?'):<6} {u.get('principalName', '')}")
        r = http.get(f"{base}/_apis/projects", params={"api-version": "7.1"})
        projects = r.json().get("value", []) if r.headers.get("content-type", "").startswith(
            "application/json") else []
        print(f"  GET projects     → {r.status_code}, {len(projects)} projects")
        for p in projects[:5]:
            print(f"    {p.get('name')}")
        counts = http.get(f"{server.admin_url}/counters").json()
        print(f"  requests served  : {counts['total']}")
    return 0




def _main_job_arguments(p: argparse.ArgumentParser) -> None:
    _sim_arguments(p, port=None)
    p.set_defaults(seed=42)
    p.add_argument("--data-dir", default=None,
                   help="where the Parquet goes (default ./data/<command>-<size>, e.g. ./data/demo-small: "
                        "simulated runs of different commands and sizes never overwrite each other)")


def run_demo(args: argparse.Namespace) -> int:
    """The main job: simulator, full sync, access graph through Dagster; prints a summary."""
    from .demo import run_demo as main_job

    return main_job(args.size, args.seed, args.org, args.data_dir,
                    prepare=lambda world: configure_faults(world, throttle=args.throttle,
                                                           latency_ms=args.latency_ms))




def _dev_arguments(p: argparse.ArgumentParser) -> None:
    _main_job_arguments(p)
    p.add_argument("--ui-port", type=int, default=3000, help="port of the Dagster UI")


def run_dev(args: argparse.Namespace) -> int:
    """The Dagster UI (dagster dev) against a simulator served over TLS on 127.0.0.1."""
    from .demo import run_dev as dev

    return dev(args.size, args.seed, args.org, args.data_dir, ui_port=args.ui_port, host=args.host)


def register(sub: Any) -> None:
    """Add the simulator's commands to a parser's subparsers (azdo-pipeline's or azdo-sim's)."""
    commands = [
        ("simulate", "serve the Azure DevOps / Entra / Microsoft Graph simulator until Ctrl-C",
         _simulate_arguments, run_simulate),
        ("demo", "the main job against the bundled simulator: full sync + access graph, with a summary",
         _main_job_arguments, run_demo),
        ("tour", "start the simulator and show a few real routes answering", _demo_arguments, run_tour),
        ("dev", "start a bundled simulator of its own and the Dagster UI (dagster dev) against it; "
                "materialize from the UI; Ctrl-C stops both", _dev_arguments, run_dev),
    ]
    for name, help_, add_arguments, run in commands:
        p = sub.add_parser(name, help=help_, description=help_)
        add_arguments(p)
        p.set_defaults(run=run)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="azdo-sim", description="The azdo-pipeline simulator.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    register(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
