"""The production instance: Dagster on a real PostgreSQL (deploy/dagster.postgres.yaml as shipped),
runs queued by the run coordinator and launched by the daemon, three organizations at once.

`dagster dev` runs with DAGSTER_HOME holding the production instance file; against it:
- the `register_organizations` sensor (running by default, evaluated by the daemon) registers the
  three configured organizations as partitions, read back from Postgres;
- a tick of the daily schedule (the UI's "Test schedule" then "Launch all runs": GraphQL
  scheduleDryRun + launchMultipleRuns) queues one full sync + access graph run per organization,
  and a second run of one organization is queued beside them;
- the queued run coordinator starts runs of different organizations together and never two of one
  organization (tag limit on `dagster/partition`: 1); every run succeeds and writes its organization's tables.

Skipped, with the reason printed, only where PostgreSQL cannot be installed at all (.ci/run
installs Debian's package when it is missing).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from azdo_sim.generator import generate
from azdo_sim.server import SimulatorServer
from azdo_sim.state import World

from tests.postgres_server import PostgresServer, why_unavailable

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(480)]
ROOT = Path(__file__).resolve().parents[2]
ORGS = ["sim-fabrikam", "sim-contoso", "sim-northwind"]
REPO = {"repositoryLocationName": "azdo_pipeline", "repositoryName": "__repository__"}


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    reason = why_unavailable()
    try:
        import dagster_postgres  # noqa: F401
    except ImportError:
        reason = reason or "dagster-postgres is not installed (pip install 'azdo-pipeline[postgres]')"
    if reason:
        print(f"\nSKIPPED Postgres instance tests: {reason}", file=sys.stderr)
        pytest.skip(reason)
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _gql(port: int, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql",
                                 data=json.dumps({"query": query, "variables": variables or {}}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        body = json.loads(resp.read())
    assert "errors" not in body, body
    return dict(body["data"])


def _sql(pg: PostgresServer, query: str) -> list[tuple[Any, ...]]:
    import psycopg2

    with contextlib.closing(psycopg2.connect(host="127.0.0.1", port=pg.port, user=pg.user,
                                             password=pg.password, dbname=pg.db)) as conn, conn.cursor() as cur:
        cur.execute(query)
        return list(cur.fetchall())


def _until(what: str, check: Any, seconds: float = 180) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1)
    pytest.fail(f"{what} did not happen within {seconds:.0f} s")


@pytest.fixture
def dagster_on_postgres(postgres: PostgresServer, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    world = World(seed=12)
    env = dict(os.environ, **postgres.env())
    orgs = []
    for i, name in enumerate(ORGS):
        state = generate(world, name, size="tiny", seed=12 + i)
        var = f"AZDO_PG_PAT_{i}"
        env[var] = world.issue_pat(name, state.owner_key, {"app_token"}).token
        orgs.append((name, var))
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.postgres.yaml", home / "dagster.yaml")
    data = tmp_path / "data"
    port = _free_port()
    with SimulatorServer(world) as server:
        cfg = tmp_path / "azdo-pipeline.yaml"
        cfg.write_text(yaml.safe_dump({"data_dir": str(data), "organizations": [
            {"name": name, "url": server.org_url(name), "ca_bundle": str(server.ca_file), "simulated": True,
             "auth": {"method": "pat", "pat_env": var}} for name, var in orgs]}))
        env.update(DAGSTER_HOME=str(home), AZDO_PIPELINE_CONFIG=str(cfg))
        log = (tmp_path / "dagster-dev.log").open("w")
        proc = subprocess.Popen([sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-p", str(port)],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            def up() -> bool:
                if proc.poll() is not None:
                    pytest.fail(f"dagster dev exited: {(tmp_path / 'dagster-dev.log').read_text()[-3000:]}")
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5) as r:
                        return r.status == 200
                except OSError:
                    return False

            _until("dagster dev start", up)
            yield port, data
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()


def test_three_organizations_on_postgres_with_the_queued_coordinator(
        dagster_on_postgres: tuple[int, Path], postgres: PostgresServer) -> None:
    port, data = dagster_on_postgres

    # The sensor, run by the daemon, registers every configured organization (stored in Postgres).
    registered = _until("register_organizations adding the partitions", lambda: sorted(
        r[0] for r in _sql(postgres, "SELECT partition FROM dynamic_partitions "
                                     "WHERE partitions_def_name = 'azdo_org'")) == sorted(ORGS))
    assert registered

    # A tick of the daily schedule, evaluated by the code location against this instance.
    tick = datetime(2026, 12, 1, 2, 0, tzinfo=UTC).timestamp()
    dry = _gql(port, """mutation($s: ScheduleSelector!, $t: Float) { scheduleDryRun(selectorData: $s, timestamp: $t) {
        __typename ... on DryRunInstigationTick { evaluationResult { skipReason error { message }
          runRequests { runKey tags { key value } } } } ... on PythonError { message } } }""",
               {"s": {**REPO, "scheduleName": "daily_full_sync"}, "t": tick})["scheduleDryRun"]
    assert dry["__typename"] == "DryRunInstigationTick", dry
    requests = dry["evaluationResult"]["runRequests"]
    assert dry["evaluationResult"]["error"] is None, dry
    by_org = {next(t["value"] for t in r["tags"] if t["key"] == "azdo/org"): r for r in requests}
    assert sorted(by_org) == sorted(ORGS)
    assert all(r["runKey"] == f"full:{org}:20261201T0200" for org, r in by_org.items())

    def params(org: str, tags: list[dict[str, str]]) -> dict[str, Any]:
        tags = [t for t in tags if t["key"] != "dagster/partition"] + [{"key": "dagster/partition", "value": org}]
        return {"selector": {**REPO, "jobName": "full_sync_job"}, "executionMetadata": {"tags": tags}}

    # "Launch all runs", plus a second run of the first organization queued beside them.
    executions = [params(org, r["tags"]) for org, r in by_org.items()]
    executions.append(params(ORGS[0], []))  # as the UI launches it: only the partition tag
    launched = _gql(port, """mutation($l: [ExecutionParams!]!) { launchMultipleRuns(executionParamsList: $l) {
        __typename ... on LaunchMultipleRunsResult { launchMultipleRunsResult {
          __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }
        ... on PythonError { message } } }""", {"l": executions})["launchMultipleRuns"]
    results = launched["launchMultipleRunsResult"]
    assert [r["__typename"] for r in results] == ["LaunchRunSuccess"] * 4, launched
    run_ids = [r["run"]["runId"] for r in results]

    def finished() -> list[dict[str, Any]] | None:
        runs = _gql(port, """query($ids: [String!]) { runsOrError(filter: {runIds: $ids}) { ... on Runs {
            results { runId status startTime endTime tags { key value } } } } }""",
                    {"ids": run_ids})["runsOrError"]["results"]
        done = all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs)
        return runs if done and len(runs) == 4 else None

    runs = {r["runId"]: r for r in _until("the four runs finishing", finished, seconds=360)}
    assert {r["status"] for r in runs.values()} == {"SUCCESS"}, runs

    # Runs went through the queue (the coordinator's events are in Postgres' event log).
    queued = {r[0] for r in _sql(postgres, "SELECT run_id FROM event_logs WHERE dagster_event_type = "
                                           "'PIPELINE_ENQUEUED'")}
    assert set(run_ids) <= queued

    # One run per organization at a time: the first organization's two runs did not overlap ...
    first, second = sorted((runs[run_ids[0]], runs[run_ids[3]]), key=lambda r: r["startTime"])
    assert second["startTime"] >= first["endTime"]
    # ... while the three organizations' scheduled runs ran at once.
    spans = [(runs[i]["startTime"], runs[i]["endTime"]) for i in run_ids[:3]]
    assert max(s for s, _ in spans) < min(e for _, e in spans)

    for org in ORGS:
        for table in ("users", "memberships", "effective_grants"):
            path = data / "latest" / table / f"org={org}" / f"{table}.parquet"
            assert pq.read_table(path).num_rows > 0, path
