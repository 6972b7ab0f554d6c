"""The Dagster UI path: `dagster dev` loads the code location, and a run launched through its
GraphQL API (what the UI's Materialize button does) syncs an organization and builds its graph."""

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
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from azdo_sim.generator import generate
from azdo_sim.server import SimulatorServer
from azdo_sim.state import World

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
ROOT = Path(__file__).resolve().parents[2]
ORG = "sim-fabrikam"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gql(port: int, query: str, variables: dict | None = None) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql",
                                 data=json.dumps({"query": query, "variables": variables or {}}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        body = json.loads(resp.read())
    assert "errors" not in body, body
    return body["data"]


@pytest.fixture(params=["dagster dev", "azdo-pipeline dev"])
def dagster_dev(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[int, Path]]:
    """`dagster dev` with a configuration naming a simulator this test serves over TLS, or
    `azdo-pipeline dev` (the README's command: a simulator over TLS on 127.0.0.1 plus `dagster dev`)."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    data = tmp_path / "data"
    port = _free_port()
    env = dict(os.environ, DAGSTER_HOME=str(home))
    stack = contextlib.ExitStack()
    if request.param == "dagster dev":
        world = World(seed=9)
        state = generate(world, ORG, size="tiny", seed=9)
        server = stack.enter_context(SimulatorServer(world))
        cfg = tmp_path / "azdo-pipeline.yaml"
        cfg.write_text(yaml.safe_dump({
            "data_dir": str(data),
            "organizations": [{"name": ORG, "url": server.org_url(ORG), "ca_bundle": str(server.ca_file),
                               "simulated": True, "auth": {"method": "pat", "pat_env": "AZDO_E2E_PAT"}}]}))
        env["AZDO_PIPELINE_CONFIG"] = str(cfg)
        env["AZDO_E2E_PAT"] = world.issue_pat(ORG, state.owner_key, {"app_token"}).token
        cmd = [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-p", str(port)]
    else:
        cmd = [sys.executable, "-m", "azdo_pipeline.cli", "dev", "--org", ORG,
               "--size", "tiny", "--data-dir", str(data), "--ui-port", str(port)]
    leftovers_before = set(ROOT.glob(".tmp_dagster_home_*"))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(1)
        else:
            pytest.fail("dagster dev did not start within 120 s")
        yield port, data
    finally:
        # What Ctrl-C in a terminal does: SIGINT to the whole process group.
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        stack.close()
    # Ctrl-C leaves no Dagster instance folder in the repository.
    assert set(ROOT.glob(".tmp_dagster_home_*")) - leftovers_before == set()


def test_ui_launches_a_sync_that_writes_the_graph(dagster_dev: tuple[int, Path]) -> None:
    port, data = dagster_dev
    loc = _gql(port, "{ workspaceOrError { ... on Workspace { locationEntries { name "
                     "locationOrLoadError { __typename } } } } }")
    entries = loc["workspaceOrError"]["locationEntries"]
    assert [(e["name"], e["locationOrLoadError"]["__typename"]) for e in entries] == [
        ("azdo_pipeline", "RepositoryLocation")]
    repo = {"repositoryLocationName": "azdo_pipeline", "repositoryName": "__repository__"}
    added = _gql(port, "mutation($r: RepositorySelector!, $k: String!) { addDynamicPartition(repositorySelector: $r, "
                       "partitionsDefName: \"azdo_org\", partitionKey: $k) { __typename } }", {"r": repo, "k": ORG})
    # the register_organizations sensor (running by default) may have added it already
    assert added["addDynamicPartition"]["__typename"] in ("AddDynamicPartitionSuccess",
                                                          "DuplicateDynamicPartitionError")
    launched = _gql(port, """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
        __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }""",
                    {"p": {"selector": {**repo, "jobName": "full_sync_job"},
                           "executionMetadata": {"tags": [{"key": "dagster/partition", "value": ORG}]}}})
    assert launched["launchRun"]["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["launchRun"]["run"]["runId"]
    status = None
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        status = _gql(port, "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }",
                      {"id": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(2)
    assert status == "SUCCESS"
    for table in ("users", "memberships", "effective_grants"):
        assert (data / "latest" / table / f"org={ORG}" / f"{table}.parquet").exists(), table

    # Provisioning with the daemon running: a request file dropped into the inbox (as a governance
    # tool would write it) ends as an outcome row, through the provisioning_inbox sensor and a run.
    users = pq.read_table(data / "latest" / "users" / f"org={ORG}" / "users.parquet").to_pylist()
    groups = pq.read_table(data / "latest" / "groups" / f"org={ORG}" / "groups.parquet").to_pylist()
    edges = pq.read_table(data / "latest" / "memberships" / f"org={ORG}" / "memberships.parquet")
    member = set(zip(edges["container_descriptor"].to_pylist(), edges["member_descriptor"].to_pylist(), strict=True))
    user, group = next((u, g) for g in groups if g["descriptor"].startswith("vssgp.") and not g["is_team"]
                       for u in users if u["principal_name"] and "@" in u["principal_name"]
                       and (g["descriptor"], u["descriptor"]) not in member)
    incoming = data / "inbox" / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    request = {"id": "e2e-grant-1", "organization": ORG, "action": "grant", "principal": user["principal_name"],
               "target": group["principal_name"]}
    (incoming / ".e2e-grant-1.json.tmp").write_text(json.dumps(request))
    (incoming / ".e2e-grant-1.json.tmp").rename(incoming / "e2e-grant-1.json")
    outcomes = data / "latest" / "provisioning_outcomes" / f"org={ORG}" / "provisioning_outcomes.parquet"
    rows: list[dict] = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not rows:
        if outcomes.exists():
            rows = [r for r in pq.read_table(outcomes).to_pylist() if r["request_id"] == "e2e-grant-1"]
        time.sleep(1)
    assert [(r["status"], r["target_descriptor"], r["principal_descriptor"]) for r in rows] == [
        ("succeeded", group["descriptor"], user["descriptor"])]
    assert (data / "inbox" / "processed" / "e2e-grant-1.json").exists()


@pytest.mark.parametrize("dagster_dev", ["dagster dev"], indirect=True)
def test_two_runs_of_one_organization_launched_at_once_from_the_ui_run_one_after_the_other(
        dagster_dev: tuple[int, Path]) -> None:
    """The UI's Materialize button (and a backfill) tags a run with `dagster/partition` only: the
    one-run-per-organization limit (dagster.yaml) must hold for such runs, so the second waits in
    the queue until the first ends."""
    port, data = dagster_dev
    repo = {"repositoryLocationName": "azdo_pipeline", "repositoryName": "__repository__"}
    _gql(port, "mutation($r: RepositorySelector!, $k: String!) { addDynamicPartition(repositorySelector: $r, "
               "partitionsDefName: \"azdo_org\", partitionKey: $k) { __typename } }", {"r": repo, "k": ORG})
    params = {"selector": {**repo, "jobName": "full_sync_job"},
              "executionMetadata": {"tags": [{"key": "dagster/partition", "value": ORG}]}}
    launched = _gql(port, """mutation($l: [ExecutionParams!]!) { launchMultipleRuns(executionParamsList: $l) {
        __typename ... on LaunchMultipleRunsResult { launchMultipleRunsResult {
          __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }
        ... on PythonError { message } } }""", {"l": [params, params]})["launchMultipleRuns"]
    results = launched["launchMultipleRunsResult"]
    assert [r["__typename"] for r in results] == ["LaunchRunSuccess"] * 2, launched
    run_ids = [r["run"]["runId"] for r in results]
    runs: list[dict] = []
    deadline = time.monotonic() + 200
    while time.monotonic() < deadline:
        runs = _gql(port, """query($ids: [String!]) { runsOrError(filter: {runIds: $ids}) { ... on Runs {
            results { runId status startTime endTime tags { key value } } } } }""",
                    {"ids": run_ids})["runsOrError"]["results"]
        if len(runs) == 2 and all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs):
            break
        time.sleep(2)
    assert [r["status"] for r in runs] == ["SUCCESS", "SUCCESS"], runs
    assert all({t["key"] for t in r["tags"]} & {"azdo/org"} == set() for r in runs)  # only the partition tag
    first, second = sorted(runs, key=lambda r: r["startTime"])
    assert second["startTime"] >= first["endTime"], runs  # the second waited for the first to end
    assert (data / "latest" / "users" / f"org={ORG}" / "users.parquet").exists()
