"""Dagster wiring: definitions load, raw assets materialize for two organizations (partitions), the
organization sensor and the daily schedule."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
import yaml
from azdo_sim.generator import generate
from azdo_sim.server import SimulatorServer
from azdo_sim.state import World
from azdo_sim.truth import ground_truth

from azdo_pipeline import schemas
from azdo_pipeline.partitions import ORG_PARTITIONS_NAME
from azdo_pipeline.resources import AzdoPipeline
from azdo_pipeline.schedules import daily_full_sync
from azdo_pipeline.sensors import register_organizations
from azdo_pipeline.store import Store

ORGS = ["fabrikam", "contoso"]


@pytest.fixture(scope="module")
def two_org_server() -> Iterator[tuple[SimulatorServer, dict[str, str]]]:
    """Two tiny organizations served over TLS on 127.0.0.1, with one PAT each."""
    world = World(seed=3)
    pats = {}
    for org in ORGS:
        state = generate(world, org, size="tiny", seed=3)
        pats[org] = world.issue_pat(org, state.owner_key, {"app_token"}).token
    with SimulatorServer(world) as server:
        yield server, pats


@pytest.fixture
def two_org_config(tmp_path: Path, two_org_server: tuple[SimulatorServer, dict[str, str]],
                   monkeypatch: pytest.MonkeyPatch) -> Path:
    server, pats = two_org_server
    cfg = tmp_path / "azdo-pipeline.yaml"
    for org, pat in pats.items():
        monkeypatch.setenv(f"AZDO_PAT_{org.upper()}", pat)
    cfg.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / "data"),
        "organizations": [{"name": o, "url": server.org_url(o), "sync_teams": True, "ca_bundle": str(server.ca_file),
                           "simulated": True, "auth": {"method": "pat", "pat_env": f"AZDO_PAT_{o.upper()}"}}
                          for o in ORGS],
    }))
    return cfg


def test_definitions_load(two_org_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZDO_PIPELINE_CONFIG", str(two_org_config))
    from assets.definitions import defs

    dg.Definitions.validate_loadable(defs)
    defs.resolve_job_def("full_sync_job")
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys >= set(schemas.RAW_TABLES)


def test_raw_assets_for_two_organizations(two_org_config: Path, tmp_path: Path,
                                          two_org_server: tuple[SimulatorServer, dict[str, str]]) -> None:
    resource = AzdoPipeline(config_path=str(two_org_config))
    raw = [a for a in dg.load_assets_from_modules([__import__("assets.raw").raw])]
    checks_ok: dict[str, bool] = {}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(ORG_PARTITIONS_NAME, ORGS)
        for org in ORGS:
            result = dg.materialize(raw, partition_key=org, instance=instance, resources={"azdo": resource})
            assert result.success
            mats = {m.asset_key.to_user_string(): m for m in result.get_asset_materialization_events()}
            assert set(mats) == set(schemas.RAW_TABLES) | {"audit_log"}
            assert all(m.materialization.metadata["simulated"].value is True for m in mats.values())
            for ev in result.get_asset_check_evaluations():
                checks_ok[f"{org}:{ev.check_name}"] = ev.passed
        # materializations are recorded per partition
        for org in ORGS:
            rec = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey("memberships"), asset_partitions=[org]), limit=1)
            assert rec.records, org
    assert checks_ok and all(checks_ok.values()), checks_ok
    store = Store(tmp_path / "data")
    for org in ORGS:
        world = two_org_server[0].world
        with world.lock:
            truth = ground_truth(world.org(org))
        for table in ("users", "groups", "memberships", "projects", "team_members"):
            assert pq.read_table(store.latest_path(table, org)).num_rows == len(truth[table]), (org, table)
    # each organization is its own partition folder; both readable at once, Hive-style
    import pyarrow.dataset as ds

    users = ds.dataset(tmp_path / "data" / "latest" / "users", format="parquet", partitioning="hive").to_table()
    assert sorted(set(users["org"].to_pylist())) == sorted(ORGS)


def test_sensor_registers_configured_organizations(two_org_config: Path) -> None:
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(ORG_PARTITIONS_NAME, ["retired"])
        ctx = dg.build_sensor_context(instance=instance,
                                      resources={"azdo": AzdoPipeline(config_path=str(two_org_config))})
        result = register_organizations(ctx)
        add, remove = result.dynamic_partitions_requests
        assert sorted(add.partition_keys) == sorted(ORGS)
        assert list(remove.partition_keys) == ["retired"]


def test_daily_schedule_fans_out_one_run_per_organization() -> None:
    with dg.instance_for_test() as instance:
        with dg.build_schedule_context(instance=instance,
                                       scheduled_execution_time=datetime(2026, 11, 27, 2)) as ctx:
            assert isinstance(daily_full_sync(ctx), dg.SkipReason)
        instance.add_dynamic_partitions(ORG_PARTITIONS_NAME, ORGS)
        with dg.build_schedule_context(instance=instance,
                                       scheduled_execution_time=datetime(2026, 11, 27, 2)) as ctx:
            reqs = daily_full_sync(ctx)
    assert sorted(r.partition_key for r in reqs) == sorted(ORGS)
    assert len({r.run_key for r in reqs}) == len(ORGS)
    assert daily_full_sync.default_status == dg.DefaultScheduleStatus.STOPPED


def test_unknown_organization_is_a_clear_failure(two_org_config: Path) -> None:
    with pytest.raises(dg.Failure, match="not in the configuration"):
        AzdoPipeline(config_path=str(two_org_config)).org("nope")


def test_resource_repr_holds_no_secret(two_org_config: Path,
                                       two_org_server: tuple[SimulatorServer, dict[str, str]]) -> None:
    pat = two_org_server[1]["fabrikam"]
    assert pat not in repr(AzdoPipeline(config_path=str(two_org_config)))


def test_missing_pat_variable_fails_before_any_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "azdo-pipeline.yaml"
    cfg.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), "organizations": [
        {"name": "fabrikam", "url": "https://dev.azure.com/fabrikam",
         "auth": {"method": "pat", "pat_env": "AZDO_TEST_UNSET_PAT"}}]}))
    monkeypatch.delenv("AZDO_TEST_UNSET_PAT", raising=False)
    with pytest.raises(dg.Failure, match="AZDO_TEST_UNSET_PAT"):
        AzdoPipeline(config_path=str(cfg)).full_sync("fabrikam", "s1")
    assert not (tmp_path / "data").exists()


def test_code_location_without_configuration_fails_naming_the_fix(tmp_path: Path) -> None:
    """A production install with no configuration must not silently target anything."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in __import__("os").environ.items() if k != "AZDO_PIPELINE_CONFIG"}
    proc = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(root)!r}); "
                           "import assets.definitions"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0
    assert "AZDO_PIPELINE_CONFIG" in proc.stderr and "azdo-pipeline dev" in proc.stderr
