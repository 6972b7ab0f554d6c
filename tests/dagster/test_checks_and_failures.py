"""Reconciliation as blocking ERROR asset checks, owners and code versions on every asset, and
known errors ending a run with a plain cause and what to do (dg.Failure), against the simulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest
import requests
import yaml
from azdo_sim.generator import generate
from azdo_sim.server import SimulatorServer
from azdo_sim.state import World

from assets import graph, provisioning, raw
from assets.graph import GRAPH_CHECK_SPECS, access_graph_build
from assets.raw import RAW_CHECKS, azdo_raw_sync, check_name
from azdo_pipeline import schemas
from azdo_pipeline.partitions import ORG_PARTITIONS_NAME
from azdo_pipeline.resources import AzdoPipeline
from azdo_pipeline.sync import reconcile

ORG = "fabrikam"


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[SimulatorServer, str]]:
    world = World(seed=5)
    state = generate(world, ORG, size="tiny", seed=5)
    pat = world.issue_pat(ORG, state.owner_key, {"app_token"}).token
    with SimulatorServer(world) as srv:
        yield srv, pat


def _config(tmp_path: Path, srv: SimulatorServer, monkeypatch: pytest.MonkeyPatch, pat: str) -> Path:
    monkeypatch.setenv("AZDO_PAT_CHECKS", pat)
    cfg = tmp_path / "azdo-pipeline.yaml"
    cfg.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), "organizations": [
        {"name": ORG, "url": srv.org_url(ORG), "ca_bundle": str(srv.ca_file), "simulated": True,
         "auth": {"method": "pat", "pat_env": "AZDO_PAT_CHECKS"}}]}))
    return cfg


def _faults(srv: SimulatorServer, config: dict) -> None:
    r = requests.put(f"{srv.base_url}/_sim/faults", json=config, verify=srv.ca_file, timeout=10)
    assert r.status_code == 200, r.text


def _materialize(cfg: Path) -> dg.ExecuteInProcessResult:
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(ORG_PARTITIONS_NAME, [ORG])
        return dg.materialize([azdo_raw_sync, access_graph_build], partition_key=ORG, instance=instance,
                              resources={"azdo": AzdoPipeline(config_path=str(cfg))}, raise_on_error=False)


def _failure(result: dg.ExecuteInProcessResult) -> tuple[str, str, dict]:
    [event] = [e for e in result.all_events if e.is_step_failure]
    data = event.step_failure_data
    assert data.error is not None and data.error.cls_name == "Failure"  # not an unexpected exception
    assert data.user_failure_data is not None
    meta = {k: getattr(v, "value", v) for k, v in data.user_failure_data.metadata.items()}
    return event.step_key or "", data.user_failure_data.description or "", meta


def test_every_asset_has_owners_and_a_code_version() -> None:
    # Every asset of the code location's modules, so an asset added later is covered too.
    specs = [spec for a in dg.load_assets_from_modules([raw, graph, provisioning])
             if isinstance(a, dg.AssetsDefinition) for spec in a.specs]
    assert {"provisioning_outcomes", "users", "effective_grants"} <= {s.key.to_user_string() for s in specs}
    for spec in specs:
        assert spec.owners and spec.code_version, spec.key


def test_every_reconciliation_rule_is_a_blocking_error_check() -> None:
    empty = {name: schema.empty_table() for name, schema in schemas.RAW_TABLES.items()}
    produced = {check_name(r.table, r.rule) for r in reconcile.reconcile(empty, reconcile.Facts())}
    declared = {spec.name: spec for spec in RAW_CHECKS}
    assert produced == set(declared)
    assert all(spec.blocking for name, spec in declared.items() if not name.endswith("graph_repeats_dropped"))
    assert all(spec.blocking for spec in GRAPH_CHECK_SPECS if spec.name != "membership_cycles")


def test_a_snapshot_that_does_not_add_up_fails_its_checks_and_the_graph_is_not_built(
        tmp_path: Path, server: tuple[SimulatorServer, str], monkeypatch: pytest.MonkeyPatch) -> None:
    srv, pat = server
    cfg = _config(tmp_path, srv, monkeypatch, pat)
    # the entitlement list answers no member but says there are 7: a short read
    _faults(srv, {"rules": [{"path": "userentitlements", "status": 200, "count": -1,
                             "body": {"members": [], "totalCount": 7, "continuationToken": None}}]})
    try:
        result = _materialize(cfg)
    finally:
        _faults(srv, {})
    assert not result.success
    step, description, meta = _failure(result)
    assert step == "azdo_raw_sync"
    assert description.startswith("reconciliation failure: the sync of fabrikam read data that does not add up")
    assert "What to do: " in description and "Traceback" not in description
    assert meta["failure"] == "reconciliation" and "total_count" in json.dumps(meta["failed rules"])
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["users_total_count"].passed is False
    assert checks["users_total_count"].severity == dg.AssetCheckSeverity.ERROR
    assert checks["memberships_members_known"].passed is True  # every rule reported, passes too
    assert result.get_asset_materialization_events() == []
    # the graph was not built on it, nothing was published, the snapshot is kept for inspection
    assert not [e for e in result.all_events if e.step_key == "access_graph_build" and e.is_step_start]
    assert not (tmp_path / "data" / "latest").exists()
    assert [p.name for p in (tmp_path / "data" / "_rejected" / f"org={ORG}").iterdir()]


def test_a_refused_credential_fails_with_the_cause_and_what_to_do(
        tmp_path: Path, server: tuple[SimulatorServer, str], monkeypatch: pytest.MonkeyPatch) -> None:
    srv, _pat = server
    cfg = _config(tmp_path, srv, monkeypatch, "x" * 52)  # a PAT the organization never issued
    result = _materialize(cfg)
    assert not result.success
    step, description, meta = _failure(result)
    assert step == "azdo_raw_sync" and meta["failure"] == "authentication"
    assert description.startswith("authentication failure: ") and "What to do: Renew the credential" in description
    assert "x" * 52 not in description + json.dumps(meta, default=str)


def test_a_good_sync_reports_every_rule_and_builds_the_graph(
        tmp_path: Path, server: tuple[SimulatorServer, str], monkeypatch: pytest.MonkeyPatch) -> None:
    srv, pat = server
    result = _materialize(_config(tmp_path, srv, monkeypatch, pat))
    assert result.success
    evaluated = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert set(evaluated) == {s.name for s in RAW_CHECKS} | {s.name for s in GRAPH_CHECK_SPECS}
    assert all(evaluated.values()), evaluated
    mats = {m.asset_key.to_user_string(): m.materialization.metadata for m in result.get_asset_materialization_events()}
    raw_snapshot = mats["users"]["snapshot"].value
    assert mats["effective_grants"]["raw snapshot"].value == raw_snapshot
    assert isinstance(mats["users"]["preview"].value, str)  # preview rendered from the snapshot


def test_a_graph_that_fails_its_checks_is_kept_aside_and_not_published(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from azdo_pipeline.store import Store
    from tests.unit import test_accessgraph_data as d

    monkeypatch.setenv("AZDO_PAT_CHECKS", "unused-no-request-is-made")
    cfg = tmp_path / "azdo-pipeline.yaml"
    cfg.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), "organizations": [
        {"name": ORG, "simulated": True, "auth": {"method": "pat", "pat_env": "AZDO_PAT_CHECKS"}}]}))
    store = Store(tmp_path / "data")
    raw = d.raw()
    raw["users"] = pa.concat_tables([raw["users"], raw["users"].slice(0, 1)])  # a user listed twice
    with store.begin(ORG, "20260101T000000Z-raw") as draft:
        for name, table in raw.items():  # the hand-built rows, types inferred (some declared non-null hold nulls)
            draft.write_table(name, pa.Table.from_pylist(table.to_pylist()) if table.num_rows else table)
        draft.commit()
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(ORG_PARTITIONS_NAME, [ORG])
        result = dg.materialize([access_graph_build], partition_key=ORG, instance=instance, raise_on_error=False,
                                resources={"azdo": AzdoPipeline(config_path=str(cfg))})
    assert not result.success
    _step, description, meta = _failure(result)
    assert "failed the checks keys_unique, counts_reconcile" in description and "What to do: " in description
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["keys_unique"] is False and checks["grant_references"] is True
    assert result.get_asset_materialization_events() == []
    # not published: latest holds the raw tables only; the graph is kept for inspection
    assert not (tmp_path / "data" / "latest" / "effective_grants").exists()
    kept = Path(meta["kept at"])
    assert kept.parent == tmp_path / "data" / "_rejected" / f"org={ORG}"
    assert (kept / "effective_grants.parquet").exists()
    assert "keys_unique" in json.loads((kept / "REJECTED.json").read_text())["problems"][0]
