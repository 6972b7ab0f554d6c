"""Dagster wiring: definitions load, raw assets materialize for two organizations (partitions), the
organization sensor and the daily schedule."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
import yaml

from azdo_pipeline import schemas
from azdo_pipeline.definitions import defs
from azdo_pipeline.partitions import ORG_PARTITIONS_NAME
from azdo_pipeline.resources import AzdoPipeline
from azdo_pipeline.schedules import daily_full_sync
from azdo_pipeline.sensors import register_organizations
from azdo_pipeline.simulator.embedded import embedded
from azdo_pipeline.simulator.truth import ground_truth
from azdo_pipeline.store import Store

ORGS = ["fabrikam", "contoso"]


@pytest.fixture
def two_org_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "azdo-pipeline.yaml"
    cfg.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / "data"),
        "simulator": {"size": "tiny", "seed": 3, "embedded": True},
        "organizations": [{"name": o, "url": f"https://dev.azure.com/{o}", "sync_teams": True,
                           "auth": {"method": "pat", "pat_env": "AZDO_PAT"}} for o in ORGS],
    }))
    return cfg


def test_definitions_load() -> None:
    dg.Definitions.validate_loadable(defs)
    defs.resolve_job_def("full_sync_job")
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys >= set(schemas.RAW_TABLES)


def test_raw_assets_for_two_organizations(two_org_config: Path, tmp_path: Path) -> None:
    resource = AzdoPipeline(config_path=str(two_org_config))
    raw = [a for a in dg.load_assets_from_modules([__import__("assets.raw").raw])]
    checks_ok: dict[str, bool] = {}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(ORG_PARTITIONS_NAME, ORGS)
        for org in ORGS:
            result = dg.materialize(raw, partition_key=org, instance=instance, resources={"azdo": resource})
            assert result.success
            mats = {m.asset_key.to_user_string(): m for m in result.get_asset_materialization_events()}
            assert set(mats) == set(schemas.RAW_TABLES)
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
        world = embedded(org, "tiny", 3).world
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


def test_resource_repr_holds_no_secret(two_org_config: Path) -> None:
    pat = embedded("fabrikam", "tiny", 3).pat
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
