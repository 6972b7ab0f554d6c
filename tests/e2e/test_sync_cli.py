"""`azdo-pipeline sync --config FILE` end to end: a configured organization served by the simulator
over HTTPS on 127.0.0.1, synced through Dagster in-process; the summary is printed, the tables equal
the simulator's truth, and failures name their cause instead of a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from azdo_sim.generator import generate
from azdo_sim.server import SimulatorServer
from azdo_sim.state import World
from azdo_sim.truth import ground_truth

from azdo_pipeline import cli
from azdo_pipeline.store import Store

pytestmark = pytest.mark.timeout(300)
REPO = Path(__file__).resolve().parents[2]
ORG = "sim-contoso"
PAT_ENV = "AZDO_TEST_SYNC_CLI_PAT"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[World, SimulatorServer, str]]:
    world = World(seed=5)
    state = generate(world, ORG, size="tiny", seed=5)
    pat = world.issue_pat(ORG, state.owner_key, {"app_token"}).token
    with SimulatorServer(world) as server:
        yield world, server, pat


def _config(tmp_path: Path, server: SimulatorServer) -> Path:
    cfg = tmp_path / "azdo-pipeline.yaml"
    cfg.write_text(yaml.safe_dump({"data_dir": "from-config", "organizations": [
        {"name": ORG, "url": server.org_url(ORG), "ca_bundle": str(server.ca_file), "sync_teams": True,
         "simulated": True, "auth": {"method": "pat", "pat_env": PAT_ENV}}]}))
    return cfg


def test_sync_prints_the_summary_and_writes_the_tables(served: tuple[World, SimulatorServer, str], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    world, server, pat = served
    monkeypatch.chdir(REPO)
    monkeypatch.setenv(PAT_ENV, pat)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    with world.lock:
        world.request_counts.clear()
    out_dir = tmp_path / "out"
    assert cli.main(["sync", "--config", str(_config(tmp_path, server)), "--data-dir", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert f"full sync + access graph of '{ORG}' through Dagster" in out
    with world.lock:
        served_requests = sum(world.request_counts.values())
        truth = ground_truth(world.org(ORG))
    assert f"requests to Azure DevOps: {served_requests}\n" in out
    checks = out.split("asset checks: ")[1].split(" passed")[0]
    passed, total = checks.split("/")
    assert passed == total and int(total) > 0
    store = Store(out_dir)
    for table in ("users", "groups", "memberships", "projects", "team_members"):
        rows = pq.read_table(store.latest_path(table, ORG)).num_rows
        assert rows == len(truth[table]), table
        assert f"{table:22s} {rows:9d} rows" in out
    assert (store.latest_path("effective_grants", ORG)).exists()
    assert not (tmp_path / "from-config").exists()  # --data-dir overrides the file's data_dir
    assert pat not in out


def test_sync_failures_name_the_cause(served: tuple[World, SimulatorServer, str], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _, server, pat = served
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    cfg = _config(tmp_path, server)

    monkeypatch.delenv(PAT_ENV, raising=False)
    assert cli.main(["sync", "--config", str(cfg)]) == 2
    assert f"environment variable {PAT_ENV} is not set" in capsys.readouterr().err

    monkeypatch.setenv(PAT_ENV, pat)
    assert cli.main(["sync", "--config", str(cfg), "--org", "nope"]) == 2
    assert "organization 'nope' is not in the configuration" in capsys.readouterr().err

    # A revoked or wrong PAT: the run fails in Dagster; the cause is printed, not a traceback.
    monkeypatch.setenv(PAT_ENV, "x" * 52)
    assert cli.main(["sync", "--config", str(cfg), "--data-dir", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert f"the run for '{ORG}' FAILED" in err and "azdo_raw_sync:" in err
    assert "Traceback" not in err
    assert not Store(tmp_path / "out").latest_path("users", ORG).exists()
