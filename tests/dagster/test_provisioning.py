"""The provisioning flow through a real Dagster instance: inbox file -> sensor tick -> run of
provisioning_job -> outcome rows, against the simulator over HTTPS on 127.0.0.1.

Exactly once: duplicate files run once; a run killed (SIGKILL) mid-batch and restarted leaves
every request carried out once (outcome rows, the simulator's audit log and membership state);
fuzzed malformed files are all rejected with reasons while valid ones beside them are carried out.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.parquet as pq
import pytest
import yaml
from azdo_sim.generator import generate
from azdo_sim.provisioning import Change, change_key, membership_changes, membership_events
from azdo_sim.server import SimulatorServer
from azdo_sim.state import OrgState, World
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from azdo_pipeline.partitions import ORG_PARTITIONS_NAME
from azdo_pipeline.provisioning.inbox import Inbox
from azdo_pipeline.provisioning.ledger import Ledger
from azdo_pipeline.resources import AzdoPipeline
from azdo_pipeline.store import Store

ORG = "sim-fabrikam"
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Env:
    world: World
    org: OrgState
    server: SimulatorServer
    config: Path
    data: Path
    inbox: Inbox
    pat_env: str

    @property
    def store(self) -> Store:
        return Store(self.data)

    def outcomes(self) -> list[dict[str, Any]]:
        path = self.store.latest_path("provisioning_outcomes", ORG)
        return pq.read_table(path).to_pylist() if path.exists() else []


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[World, OrgState, SimulatorServer, str]]:
    world = World(seed=5)
    org = generate(world, ORG, size="small", seed=5)
    pat = world.issue_pat(None, org.owner_key, {"app_token"}).token
    with SimulatorServer(world) as server:
        yield world, org, server, pat


@pytest.fixture
def env(tmp_path: Path, served: tuple[World, OrgState, SimulatorServer, str],
        monkeypatch: pytest.MonkeyPatch) -> Env:
    world, org, server, pat = served
    monkeypatch.setenv("AZDO_PROV_TEST_PAT", pat)
    data = tmp_path / "data"
    cfg = tmp_path / "azdo-pipeline.yaml"
    cfg.write_text(yaml.safe_dump({"data_dir": str(data), "organizations": [{
        "name": ORG, "url": server.org_url(ORG), "ca_bundle": str(server.ca_file), "simulated": True,
        "concurrency": 4, "auth": {"method": "pat", "pat_env": "AZDO_PROV_TEST_PAT"}}]}))
    monkeypatch.setenv("AZDO_PIPELINE_CONFIG", str(cfg))
    return Env(world, org, server, cfg, data, Inbox(data / "inbox"), "AZDO_PROV_TEST_PAT")


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        inst.add_dynamic_partitions(ORG_PARTITIONS_NAME, [ORG])
        yield inst


def _defs() -> dg.Definitions:
    from assets.definitions import defs

    return defs


def tick(env: Env, instance: dg.DagsterInstance, cursor: str | None = None) -> dg.SensorResult:
    sensor = _defs().resolve_sensor_def("provisioning_inbox")
    with dg.build_sensor_context(instance=instance, cursor=cursor,
                                 resources={"azdo": AzdoPipeline(config_path=str(env.config))}) as ctx:
        result = sensor(ctx)
    assert isinstance(result, dg.SensorResult)
    return result


def launch(env: Env, instance: dg.DagsterInstance, rr: dg.RunRequest) -> dg.ExecuteInProcessResult:
    job = _defs().resolve_job_def("provisioning_job")
    return job.execute_in_process(run_config=rr.run_config, partition_key=rr.partition_key, tags=rr.tags,
                                  instance=instance, resources={"azdo": AzdoPipeline(config_path=str(env.config))})


def drain(env: Env, instance: dg.DagsterInstance, max_ticks: int = 20) -> list[dg.RunRequest]:
    """Tick and run what the sensor asks until it asks for nothing (what the daemon does)."""
    cursor, launched = None, []
    for _ in range(max_ticks):
        result = tick(env, instance, cursor)
        cursor = result.cursor
        new = [rr for rr in result.run_requests if rr.run_key not in {r.run_key for r in launched}]
        if not new:
            return launched
        for rr in new:
            assert launch(env, instance, rr).success
            launched.append(rr)
    raise AssertionError("the sensor kept asking for runs")


def request_doc(c: Change, rid: str | None = None) -> dict[str, Any]:
    return {"id": rid or f"req-{uuid.uuid4().hex[:12]}", "organization": ORG, "action": c.action,
            "principal": {"descriptor": c.member}, "target": {"descriptor": c.group}}


# ---- malformed requests ------------------------------------------------------------------------------
_valid = {"id": "x-1", "organization": ORG, "action": "grant", "principal": "a@b.c", "target": "[P]\\G"}
_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
_json_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3)
                            | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)


def _mutate(field: str, value: Any) -> bytes:
    doc = dict(_valid, id=f"bad-{uuid.uuid4().hex[:8]}")
    doc[field] = value
    return json.dumps(doc).encode()


malformed = st.one_of(
    # broken JSON: a valid document cut short, or with garbage inserted
    st.integers(1, 60).map(lambda n: json.dumps(_valid).encode()[:n]),
    st.binary(min_size=1, max_size=40).map(lambda b: b"{" + b + b"\x00"),
    # wrong types for each field
    st.sampled_from(["organization", "action", "principal", "target", "dry_run"]).flatmap(
        lambda f: st.one_of(st.integers(), st.lists(st.integers(), max_size=2), st.booleans() if f != "dry_run"
                            else st.text(max_size=5)).map(lambda v, f=f: _mutate(f, v))),
    # unknown actions
    st.text(min_size=1, max_size=20).filter(
        lambda a: a not in ("grant", "revoke", "create_account", "deprovision_account")).map(
        lambda a: _mutate("action", a)),
    # not an object at all
    _json_values.filter(lambda v: not isinstance(v, dict)).map(lambda v: json.dumps(v).encode()),
    # huge files
    st.integers(65 * 1024, 200 * 1024).map(lambda n: b'{"id": "' + b"h" * n + b'"}'),
    # not UTF-8
    st.binary(min_size=1, max_size=30).map(lambda b: b'{"id": "\xff\xfe' + b + b'"}'),
)


@settings(max_examples=1, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(bad=st.lists(malformed, min_size=200, max_size=200))
def test_malformed_files_are_rejected_with_reasons_and_valid_ones_beside_them_carried_out(
        bad: list[bytes], env: Env, instance: dg.DagsterInstance) -> None:
    env.inbox.ensure()
    changes = membership_changes(env.org, 3, 2, seed=21)
    valid_ids = []
    for i, payload in enumerate(bad):
        (env.inbox.incoming / f"bad-{i:03d}.json").write_bytes(payload)
        if i % 40 == 0:  # valid requests interleaved with the bad ones
            c = changes[len(valid_ids)]
            valid_ids.append(request_doc(c)["id"])
            env.inbox.write_request(request_doc(c, valid_ids[-1]))
    drain(env, instance)
    rejected = sorted(p.name for p in env.inbox.rejected.glob("bad-*.json"))
    assert len(rejected) == 200
    for name in rejected:
        reason = (env.inbox.rejected / f"{name}.reason.txt").read_text()
        assert reason.startswith(f"{name}: ") and len(reason) > len(name) + 20
    assert list(env.inbox.incoming.iterdir()) == []
    rows = {r["request_id"]: r for r in env.outcomes()}
    assert set(rows) == set(valid_ids)
    assert {r["status"] for r in rows.values()} == {"succeeded"}
    for c in changes:
        assert env.org.is_member(c.group, c.member) == (c.action == "grant")


# ---- the path through Dagster ------------------------------------------------------------------------
def _run_tags(instance: dg.DagsterInstance) -> list[dict[str, str]]:
    return [dict(r.tags) for r in instance.get_runs(filters=dg.RunsFilter(job_name="provisioning_job"))]


def test_sensor_tick_launches_a_run_whose_outcomes_land_in_the_table(env: Env, instance: dg.DagsterInstance) -> None:
    changes = membership_changes(env.org, 2, 2, seed=1)
    docs = [request_doc(c) for c in changes]
    for d in docs:
        env.inbox.ensure().write_request(d)
    result = tick(env, instance)
    [rr] = result.run_requests
    assert rr.partition_key == ORG and rr.run_key == rr.tags["azdo/provisioning_batch"]
    assert rr.tags["azdo/request_ids"].split(",") == [d["id"] for d in docs]
    run = launch(env, instance, rr)
    assert run.success
    rows = {r["request_id"]: r for r in env.outcomes()}
    assert set(rows) == {d["id"] for d in docs}
    assert all(r["status"] == "succeeded" and r["api_call_count"] >= 1 for r in rows.values())
    for c in changes:
        assert env.org.is_member(c.group, c.member) == (c.action == "grant")
    # Each request is findable by id in the UI: the run's tags and the materialization's metadata.
    [mat] = run.asset_materializations_for_node("provisioning_outcomes")
    table = mat.metadata["requests"].value
    assert all(d["id"] in table for d in docs)
    assert mat.metadata["dagster/row_count"].value == 4
    # The run is known to the next tick: nothing more to launch.
    assert tick(env, instance, result.cursor).run_requests == []


def test_duplicate_and_redropped_files_are_carried_out_once(env: Env, instance: dg.DagsterInstance) -> None:
    [c] = membership_changes(env.org, 1, 0, seed=2)
    doc = request_doc(c)
    audit = len(env.org.audit)
    env.inbox.ensure().write_request(doc, name="first")
    env.inbox.write_request(doc, name="copy")
    drain(env, instance)
    env.inbox.write_request(doc, name="first")  # re-dropped after it was carried out
    drain(env, instance)
    assert [r["request_id"] for r in env.outcomes()] == [doc["id"]]
    assert membership_events(env.org, audit) == Counter({change_key(env.org, c): 1})
    notes = sorted(p.name for p in env.inbox.processed.glob("*.note.txt"))
    assert len(notes) == 2 and len(list(env.inbox.processed.glob("*.json"))) == 3
    assert len(_run_tags(instance)) == 1


def test_grant_then_revoke_of_one_membership_run_in_arrival_order(env: Env, instance: dg.DagsterInstance) -> None:
    [c] = membership_changes(env.org, 1, 0, seed=3)
    grant = request_doc(c)
    revoke = dict(request_doc(c), action="revoke")
    env.inbox.ensure().write_request(grant)
    first = tick(env, instance)  # the grant is batched; the revoke arrives before its run starts
    env.inbox.write_request(revoke)
    second = tick(env, instance, first.cursor)
    # The revoke is held back behind the unfinished grant: no new batch (the grant's is asked for
    # again as its run does not exist yet; the daemon launches a run key once).
    assert {r.run_key for r in second.run_requests} == {r.run_key for r in first.run_requests}
    for rr in first.run_requests:
        assert launch(env, instance, rr).success
    drain(env, instance)
    ordered = [e.action for e in Ledger(env.inbox.ledger_path).entries()]
    assert ordered == ["grant", "revoke"]
    events = [ev.action_id.rsplit(".", 1)[1] for ev in env.org.audit
              if ev.data.get("MemberId") == env.org.get(c.member).storage_key
              and ev.data.get("GroupId") == env.org.get(c.group).storage_key]
    assert events[-2:] == ["Add", "Remove"] and not env.org.is_member(c.group, c.member)


def test_dry_run_job_config_makes_no_call(env: Env, instance: dg.DagsterInstance) -> None:
    [c] = membership_changes(env.org, 1, 0, seed=4)
    doc = request_doc(c)
    env.inbox.ensure().write_request(doc)
    [rr] = tick(env, instance).run_requests
    before = sum(n for k, n in env.world.request_counts.items() if not k.startswith(("GET", "HEAD", "POST")))
    cfg = {"ops": {"provisioning_outcomes": {"config": dict(rr.run_config["ops"]["provisioning_outcomes"]["config"],
                                                            dry_run=True)}}}
    assert launch(env, instance, dg.RunRequest(run_key=rr.run_key, run_config=cfg, tags=rr.tags,
                                               partition_key=rr.partition_key)).success
    after = sum(n for k, n in env.world.request_counts.items() if not k.startswith(("GET", "HEAD", "POST")))
    [row] = env.outcomes()
    assert row["dry_run"] and row["api_call_count"] == 0 and after == before
    assert not env.org.is_member(c.group, c.member)


_KILLABLE_RUN = """
import os, sys, json
sys.path.insert(0, {root!r})
import dagster as dg
from azdo_pipeline.resources import AzdoPipeline
rr = json.loads(sys.argv[1])
from assets.definitions import defs
with dg.DagsterInstance.get() as instance:
    defs.resolve_job_def("provisioning_job").execute_in_process(
        run_config=rr["run_config"], partition_key=rr["partition_key"], tags=rr["tags"], instance=instance,
        resources={{"azdo": AzdoPipeline(config_path=os.environ["AZDO_PIPELINE_CONFIG"])}})
"""


def test_a_run_killed_mid_batch_is_finished_by_the_next_one_exactly_once(
        env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    changes = membership_changes(env.org, 8, 8, seed=5)
    docs = [request_doc(c) for c in changes]
    audit = len(env.org.audit)
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(ORG_PARTITIONS_NAME, [ORG])
        for d in docs:
            env.inbox.ensure().write_request(d)
        first = tick(env, instance)
        [rr] = first.run_requests
        env.world.faults.configure({"latency_ms": [60, 60]})  # slow enough to be caught midway
        try:
            child = subprocess.Popen(
                [sys.executable, "-c", _KILLABLE_RUN.format(root=str(ROOT)),
                 json.dumps({"run_config": rr.run_config, "partition_key": rr.partition_key, "tags": rr.tags})],
                cwd=ROOT, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                states = Counter(e.state for e in Ledger(env.inbox.ledger_path).entries())
                if states["done"] >= 3 and states["started"] >= 1:
                    break
                assert child.poll() is None, "the run ended before it could be killed"
                time.sleep(0.02)
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
        finally:
            env.world.faults.configure({})
        states = Counter(e.state for e in Ledger(env.inbox.ledger_path).entries())
        assert 3 <= states["done"] < len(docs)
        [killed] = instance.get_runs(filters=dg.RunsFilter(job_name="provisioning_job"))
        assert killed.status == dg.DagsterRunStatus.STARTED  # what a killed run looks like
        # Restart: the next tick sees the worker gone, fails that run and launches the rest.
        second = tick(env, instance, first.cursor)
        assert instance.get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.FAILURE  # type: ignore[union-attr]
        [retry] = second.run_requests
        assert retry.run_key != rr.run_key and len(retry.tags["azdo/request_ids"].split(",")) < len(docs)
        assert launch(env, instance, retry).success
        assert tick(env, instance, second.cursor).run_requests == []
    rows = env.outcomes()
    assert sorted(r["request_id"] for r in rows) == sorted(d["id"] for d in docs)
    assert {r["status"] for r in rows} <= {"succeeded", "already_done"}
    events = membership_events(env.org, audit)
    assert {change_key(env.org, c): events[change_key(env.org, c)] for c in changes} == {
        change_key(env.org, c): 1 for c in changes}
    for c in changes:
        assert env.org.is_member(c.group, c.member) == (c.action == "grant")


def test_a_change_is_read_back_into_a_new_snapshot_and_the_access_graph(env: Env, instance: dg.DagsterInstance) -> None:
    defs = _defs()
    resources = {"azdo": AzdoPipeline(config_path=str(env.config))}
    assert defs.resolve_job_def("full_sync_job").execute_in_process(
        partition_key=ORG, instance=instance, resources=resources).success
    base = env.store.latest_manifest(ORG)
    assert base is not None
    [c] = membership_changes(env.org, 1, 0, seed=6)
    env.inbox.ensure().write_request(request_doc(c))
    [rr] = tick(env, instance).run_requests
    run = launch(env, instance, rr)
    assert run.success
    after = env.store.latest_manifest(ORG)
    assert after is not None and after["snapshot"] != base["snapshot"] and after["derived_from"] == base["snapshot"]
    assert after["refreshed_groups"] == [c.group]
    edges = env.store.read_latest("memberships", ORG)
    assert (c.group, c.member) in set(zip(edges["container_descriptor"].to_pylist(),
                                          edges["member_descriptor"].to_pylist(), strict=True))
    # The old snapshot is still there, unchanged (a new snapshot, not an edit).
    old = pq.read_table(env.store.snapshot_path("memberships", ORG, base["snapshot"]))
    assert old.num_rows == base["tables"]["memberships"]["rows"] == edges.num_rows - 1
    # The run-status sensor asks for the access graph of that organization, built from it.
    sensor = defs.resolve_sensor_def("access_graph_after_provisioning")
    with dg.build_run_status_sensor_context(sensor_name=sensor.name, dagster_instance=instance,
                                            dagster_run=run.dagster_run,
                                            dagster_event=run.get_run_success_event()) as ctx:
        graph_rr = sensor(ctx)
    assert isinstance(graph_rr, dg.RunRequest) and graph_rr.partition_key == ORG
    assert defs.resolve_job_def("access_graph_job").execute_in_process(
        partition_key=ORG, instance=instance, resources=resources).success
    grants = env.store.read_latest("grants", ORG)
    assert c.member in set(grants.filter(pq_eq(grants, "resource_id", c.group))["principal_id"].to_pylist())


def pq_eq(table: Any, column: str, value: str) -> Any:
    import pyarrow.compute as pc

    return pc.equal(table[column].cast("string"), value)


def test_pending_entra_changes_are_rechecked_and_confirmed(env: Env, instance: dg.DagsterInstance) -> None:
    from datetime import UTC, datetime

    from azdo_pipeline.provisioning.flow import to_ledger
    from azdo_pipeline.provisioning.outcomes import Outcome, Status
    from azdo_pipeline.provisioning.requests import Action

    # A grant made through Microsoft Graph is recorded pending (the executor's part, tested with it);
    # here Azure DevOps already shows the membership, so the next check confirms it.
    [c] = membership_changes(env.org, 0, 1, seed=7)  # an existing direct membership
    pending = Outcome(request_id="entra-1", organization=ORG, action=Action.GRANT, status=Status.PENDING,
                      message="added in Microsoft Entra; waiting for Azure DevOps", principal=c.member_name,
                      target=c.group_name, principal_descriptor=c.member, target_descriptor=c.group,
                      started_at=datetime.now(UTC), finished_at=datetime.now(UTC))
    with Ledger(env.inbox.ensure().ledger_path) as ledger:
        ledger.receive(request_id="entra-1", org=ORG, action="grant", order_key="k", body={}, digest="d",
                       file_name=None)
        ledger.mark_started("entra-1", "earlier-run")
        ledger.record_outcome("entra-1", "pending", to_ledger(pending.to_row()))
    sensor = _defs().resolve_sensor_def("provisioning_pending_check")
    with dg.build_sensor_context(instance=instance,
                                 resources={"azdo": AzdoPipeline(config_path=str(env.config))}) as ctx:
        result = sensor(ctx)
    assert isinstance(result, dg.SensorResult)
    [rr] = result.run_requests
    assert rr.partition_key == ORG and rr.tags["azdo/provisioning_recheck"] == "true"
    assert launch(env, instance, rr).success
    [row] = env.outcomes()
    assert row["request_id"] == "entra-1" and row["status"] == "confirmed", row
    assert any(call.startswith("HEAD ") for call in row["api_calls"])
    # Nothing pending any more: the next evaluation asks for no run.
    with dg.build_sensor_context(instance=instance, cursor=result.cursor,
                                 resources={"azdo": AzdoPipeline(config_path=str(env.config))}) as ctx:
        assert isinstance(sensor(ctx), dg.SkipReason)
