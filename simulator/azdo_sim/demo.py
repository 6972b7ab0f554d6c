"""The main job, end to end against the bundled simulator (what `make demo` runs).

Starts the simulator over TLS on 127.0.0.1, writes a configuration that points at it (the PAT
only through an environment variable), materializes every asset for the organization through
Dagster, and prints a summary and where the Parquet went; then carries out a few provisioning requests
(a grant, a revoke, an Entra no-op, a created account, a refused deprovision) through the inbox, the
provisioning sensor and the provisioning job, and prints their outcomes.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import yaml

from azdo_pipeline import runner
from azdo_pipeline.remote import is_remote
from azdo_pipeline.resources import AzdoPipeline
from azdo_pipeline.summary import print_summary

from .demo_provisioning import demo_requests, print_outcomes, provision_through_sensor
from .generator import generate
from .server import SimulatorServer
from .state import World

DEMO_PAT_ENV = "AZDO_DEMO_PAT"
DEFAULT_ORG = "sim-fabrikam"


def repo_root() -> Path:
    """The repository holding the Dagster code location (assets/ beside workspace.yaml)."""
    try:
        return runner.repo_root()
    except runner.LocationNotFound as e:
        raise SystemExit(f"azdo-pipeline demo/dev: {e}") from None


def write_demo_config(path: Path, *, org: str, url: str, ca_file: str, data_dir: Path | str) -> None:
    path.write_text(yaml.safe_dump({
        "data_dir": str(data_dir),
        "organizations": [{
            "name": org, "url": url, "ca_bundle": ca_file,
            "auth": {"method": "pat", "pat_env": DEMO_PAT_ENV},
            "sync_teams": True, "sync_organizations": True, "concurrency": 8, "simulated": True,
        }],
    }, sort_keys=False))


def no_proxy_with_loopback(environ: dict[str, str] | os._Environ[str]) -> str:
    """NO_PROXY plus the loopback simulator: behind a corporate HTTPS_PROXY the simulated runs must
    still reach 127.0.0.1 directly (the pipeline honours NO_PROXY, docs/configuration.md)."""
    current = environ.get("no_proxy") or environ.get("NO_PROXY") or ""
    entries = [e.strip() for e in current.split(",") if e.strip()]
    return ",".join([*entries, *(h for h in ("127.0.0.1", "localhost") if h not in entries)])


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


def run_demo(size: str = "small", seed: int = 42, org: str = DEFAULT_ORG, data_dir: str | None = None,
             prepare: Callable[[World], None] | None = None) -> int:
    root = repo_root()  # fail before generating anything when run outside the repository
    remote = bool(data_dir) and is_remote(str(data_dir))  # Azure storage: a local cache mirrored there
    out: Path | str = str(data_dir) if remote else (Path(data_dir).resolve() if data_dir
                                                  else default_data_dir("demo", size).resolve())
    world, token = _world(size, seed, org)
    if prepare is not None:
        prepare(world)
    with SimulatorServer(world) as server, tempfile.TemporaryDirectory() as tmp:
        print(f"simulator: serving {server.org_url(org)} over TLS (CA bundle {server.ca_file})")
        cfg = Path(tmp) / "azdo-pipeline.yaml"
        write_demo_config(cfg, org=org, url=server.org_url(org), ca_file=server.ca_file, data_dir=out)
        os.environ[DEMO_PAT_ENV] = token
        proxy_vars = {k: os.environ.get(k) for k in ("no_proxy", "NO_PROXY")}
        os.environ["no_proxy"] = os.environ["NO_PROXY"] = no_proxy_with_loopback(os.environ)
        try:
            defs = runner.load_definitions(root, cfg)  # the code location validates the file as it loads
            with dg.DagsterInstance.ephemeral() as instance:
                run = runner.run_full_sync(defs, org, config_path=cfg, data_dir=out, instance=instance,
                                           tags={"azdo/run": f"demo-{secrets.token_hex(3)}"})
                azdo = AzdoPipeline(config_path=str(cfg), data_dir=str(out))
                store = azdo.store()
                provisioned = None
                if run.result.success:
                    # Then a few requests through the inbox, the sensor and the provisioning job.
                    run_id = f"demo-{secrets.token_hex(3)}"
                    docs = demo_requests(world, world.orgs[org], run_id)
                    ok = provision_through_sensor(defs, instance, azdo, None, docs)
                    provisioned = [d["id"] for d in docs] if ok else []
        finally:
            os.environ.pop(DEMO_PAT_ENV, None)
            for key, value in proxy_vars.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        counts = dict(world.request_counts)
    if not run.result.success:
        print("demo: the run FAILED:")
        for cause in runner.failure_causes(run.result):
            print(f"  {cause}")
        return 1
    print_summary(store, org, run.seconds, run.result, requests_by_route=counts,
                  requests_label="requests served by the simulator")
    if not provisioned:
        print("demo: the provisioning run FAILED; see the log above")
        return 1
    print_outcomes(store, org, provisioned)
    return 0


def default_data_dir(mode: str, size: str) -> Path:
    """Where a simulated run writes when no --data-dir is given: one folder per command and size
    (./data/demo-small, ./data/dev-medium, ...), so a medium demo is not overwritten by the next
    small one, nor by the UI's runs; the user's own configuration names its own data_dir."""
    return Path("data") / f"{mode}-{size}"


def run_dev(size: str = "small", seed: int = 42, org: str = DEFAULT_ORG, data_dir: str | None = None, *,
            ui_port: int = 3000, host: str = "127.0.0.1") -> int:
    """A simulator over TLS on `host` (loopback by default) and `dagster dev` against it, until Ctrl-C.

    The Dagster instance lives in a temporary DAGSTER_HOME outside the repository (with the
    repository's dagster.yaml: run queue, concurrency limits), removed on exit: `dagster dev`
    would otherwise make a `.tmp_dagster_home_*` folder in the repository, which it leaves behind
    when it is killed. On Ctrl-C `dagster dev` gets the interrupt too and is given time to stop
    its webserver, daemon and runs before anything is cleaned up.
    """
    import shutil
    import signal
    import subprocess
    import sys

    root = repo_root()
    out = Path(data_dir).resolve() if data_dir else default_data_dir("dev", size).resolve()
    world, token = _world(size, seed, org)
    home = Path(tempfile.mkdtemp(prefix="azdo-pipeline-dev-"))
    try:
        shutil.copy(root / "dagster.yaml", home / "dagster.yaml")
        with SimulatorServer(world, host=host) as server:
            cfg = home / "azdo-pipeline.yaml"
            write_demo_config(cfg, org=org, url=server.org_url(org), ca_file=str(server.ca_file), data_dir=out)
            loopback = no_proxy_with_loopback(os.environ)
            env = dict(os.environ, AZDO_PIPELINE_CONFIG=str(cfg), DAGSTER_HOME=str(home), no_proxy=loopback,
                       NO_PROXY=loopback, **{DEMO_PAT_ENV: token})
            print(f"simulator: {server.org_url(org)}; Dagster UI on http://127.0.0.1:{ui_port}; Parquet in {out}")
            print("the register_organizations sensor adds the partition; materialize from the UI (Ctrl-C stops)")
            proc = subprocess.Popen([sys.executable, "-m", "dagster", "dev", "-w", str(root / "workspace.yaml"),
                                     "-p", str(ui_port)], env=env, cwd=root)
            try:
                return proc.wait()
            except KeyboardInterrupt:
                # The terminal sent SIGINT to dagster dev as well; let it shut down cleanly.
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
                return 130
    finally:
        shutil.rmtree(home, ignore_errors=True)
