"""Dagster wiring of the incremental sync: runs tagged incremental patch the previous snapshot for an
organization with `incremental_sync` on (a full sync the first time, saying why), a plain full sync
for one with it off; the audit_log asset; the 15-minute schedule (off by default) honours the setting."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from azdo_sim.generator import generate
from azdo_sim.mutations import apply_ops, random_ops
from azdo_sim.server import SimulatorServer
from azdo_sim.state import World

from azdo_pipeline import auditlog, schemas
from azdo_pipeline.partitions import ORG_PARTITIONS_NAME
from azdo_pipeline.resources import AzdoPipeline
from azdo_pipeline.schedules import incremental_sync_every_15_minutes
from tests.unit.test_incremental_equivalence import reader

ORGS = {"fabrikam": True, "contoso": False}  # name -> incremental_sync


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[SimulatorServer, dict[str, str]]]:
    world = World(seed=5)
    pats = {}
    for org in ORGS:
        state = generate(world, org, size="tiny", seed=5)
        pats[org] = world.issue_pat(org, state.identities[reader(state)].storage_key, {"app_token"}).token
    with SimulatorServer(world) as s:
        yield s, pats


@pytest.fixture
def config(tmp_path: Path, server: tuple[SimulatorServer, dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> Path:
    srv, pats = server
    for org, pat in pats.items():
        monkeypatch.setenv(f"AZDO_PAT_{org.upper()}", pat)
    cfg = tmp_path / "azdo-pipeline.yaml"
    cfg.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), "organizations": [
        {"name": o, "url": srv.org_url(o), "sync_teams": True, "incremental_sync": inc, "simulated": True,
         "ca_bundle": str(srv.ca_file), "auth": {"method": "pat", "pat_env": f"AZDO_PAT_{o.upper()}"}}
        for o, inc in ORGS.items()]}))
    return cfg


def _materialize(cfg: Path, instance: dg.DagsterInstance, org: str, mode: str) -> dict[str, Any]:
    raw = dg.load_assets_from_modules([__import__("assets.raw").raw])
    result = dg.materialize(raw, partition_key=org, instance=instance, tags={"azdo/sync_mode": mode},
                            resources={"azdo": AzdoPipeline(config_path=str(cfg))})
    assert result.success
    assert all(ev.passed for ev in result.get_asset_check_evaluations())
    return {m.asset_key.to_user_string(): m.materialization.metadata for m in result.get_asset_materialization_events()}


def test_incremental_runs_patch_the_previous_snapshot(config: Path, server: tuple[SimulatorServer, Any]) -> None:
    world = server[0].world
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(ORG_PARTITIONS_NAME, list(ORGS))
        first = _materialize(config, instance, "fabrikam", "incremental")
        assert set(first) == set(schemas.RAW_TABLES) | {auditlog.TABLE}
        assert first["users"]["sync mode"].value == "full"
        assert first["users"]["full sync because"].value == "there is no previous snapshot"
        assert first[auditlog.TABLE]["enabled"].value is True
        assert first[auditlog.TABLE]["events appended"].value > 0
        with world.lock:
            org = world.org("fabrikam")
            import random

            me = reader(org)
            apply_ops(org, [o for o in random_ops(org, random.Random(2), 8)
                            if not (o["op"] == "remove_member" and o.get("member") == me)])
        second = _materialize(config, instance, "fabrikam", "incremental")
        assert second["users"]["sync mode"].value == "incremental"
        assert second["users"]["full sync because"].value == "-"
        assert second["service_principals"]["shared with the previous snapshot"].value is True


def test_organization_with_the_setting_off_gets_a_full_sync(config: Path) -> None:
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(ORG_PARTITIONS_NAME, list(ORGS))
        mats = _materialize(config, instance, "contoso", "incremental")
        assert mats["users"]["sync mode"].value == "full"
        assert mats["users"]["full sync because"].value == "-"
        assert mats[auditlog.TABLE]["enabled"].value is False
        assert mats[auditlog.TABLE]["events appended"].value == 0


def test_schedule_every_15_minutes_honours_the_setting(config: Path) -> None:
    assert incremental_sync_every_15_minutes.cron_schedule == "*/15 * * * *"
    assert incremental_sync_every_15_minutes.default_status == dg.DefaultScheduleStatus.STOPPED
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(ORG_PARTITIONS_NAME, list(ORGS))
        with dg.build_schedule_context(instance=instance, scheduled_execution_time=datetime(2026, 11, 27, 2, 15),
                                       resources={"azdo": AzdoPipeline(config_path=str(config))}) as ctx:
            reqs = incremental_sync_every_15_minutes(ctx)
    assert isinstance(reqs, list)
    modes = {r.partition_key: r.tags["azdo/sync_mode"] for r in reqs}
    assert modes == {"fabrikam": "incremental", "contoso": "full"}
    assert len({r.run_key for r in reqs}) == 2


def test_definitions_hold_both_schedules(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZDO_PIPELINE_CONFIG", str(config))
    from assets.definitions import defs

    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_job_def("incremental_sync_job").tags["azdo/sync_mode"] == "incremental"
    assert {s.name for s in defs.schedules or []} >= {"daily_full_sync", "incremental_sync_every_15_minutes"}
