"""The demo's provisioning part: a few requests dropped into the inbox and carried out through the
provisioning sensor and job, as the Dagster daemon would (one sensor tick, then the runs it asks
for), then their outcomes printed.

The requests name people and groups the way a governance tool would: principal names and
`[Project]\\Group` names, resolved through the tables the sync just wrote.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.parquet as pq

from azdo_pipeline.provisioning.flow import provisioning_settings
from azdo_pipeline.provisioning.inbox import Inbox
from azdo_pipeline.resources import AzdoPipeline
from azdo_pipeline.store import Store

from .state import OrgState, World


def demo_requests(world: World, org: OrgState, run: str) -> list[dict[str, Any]]:
    """A grant, a revoke, an Entra no-op, a created account and a refused deprovision."""
    with world.lock:
        groups = [g for g in org.groups() if g.subject_type == "vssgp" and not g.is_team and g.project_id]
        users = [u for u in org.users() if u.subject_type == "aad" and u.active and u.principal_name]
        grant_g, grant_u = next((g, u) for g in groups for u in users if not org.is_member(g.descriptor, u.descriptor))
        revoke_g, revoke_u = next((g, org.get(m)) for g in groups for m in sorted(org.down.get(g.descriptor, ()))
                                  if org.get(m).subject_type == "aad" and (g, m) != (grant_g, grant_u.descriptor))
        entra = next(g for g in org.groups() if g.subject_type == "aadgp")
        domain = grant_u.principal_name.split("@", 1)[1]
    name = org.name
    return [
        {"id": f"{run}-grant", "organization": name, "action": "grant", "principal": grant_u.principal_name,
         "target": grant_g.principal_name, "requested_by": "demo"},
        {"id": f"{run}-revoke", "organization": name, "action": "revoke", "principal": revoke_u.principal_name,
         "target": revoke_g.principal_name, "requested_by": "demo"},
        {"id": f"{run}-entra", "organization": name, "action": "grant", "principal": grant_u.principal_name,
         "target": {"descriptor": entra.descriptor}, "requested_by": "demo"},
        {"id": f"{run}-account", "organization": name, "action": "create_account",
         "principal": f"new.hire.{run}@{domain}", "license": "express", "requested_by": "demo"},
        {"id": f"{run}-deprovision", "organization": name, "action": "deprovision_account",
         "principal": revoke_u.principal_name, "requested_by": "demo"},
    ]


def provision_through_sensor(defs: dg.Definitions, instance: dg.DagsterInstance, resource: AzdoPipeline,
                             inbox_dir: Path | None, docs: list[dict[str, Any]], max_ticks: int = 10) -> bool:
    """Drop `docs` into the inbox (the configuration's when `inbox_dir` is None), then tick the sensor
    and run what it asks until it asks for nothing."""
    inbox = (Inbox(inbox_dir) if inbox_dir is not None else
             provisioning_settings(resource.config(), data_dir=resource.data_dir).inbox()).ensure()
    for doc in docs:
        inbox.write_request(doc)
    sensor = defs.resolve_sensor_def("provisioning_inbox")
    job = defs.resolve_job_def("provisioning_job")
    cursor, launched = None, set()
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    for _ in range(max_ticks):
        with dg.build_sensor_context(instance=instance, cursor=cursor, resources={"azdo": resource}) as ctx:
            result = sensor(ctx)
        assert isinstance(result, dg.SensorResult)
        cursor = result.cursor
        new = [rr for rr in result.run_requests if rr.run_key not in launched]
        if not new:
            return True
        for rr in new:
            launched.add(rr.run_key)
            run = job.execute_in_process(run_config={**(rr.run_config or {}), **quiet}, partition_key=rr.partition_key,
                                         tags=rr.tags, instance=instance, resources={"azdo": resource})
            if not run.success:
                return False
    return False


def print_outcomes(store: Store, org: str, ids: list[str]) -> None:
    path = store.latest_path("provisioning_outcomes", org)
    rows = {r["request_id"]: r for r in pq.read_table(path).to_pylist()} if path.exists() else {}
    print(f"\nprovisioning: {len(ids)} requests through the inbox, the provisioning_inbox sensor and provisioning_job")
    for rid in ids:
        r = rows.get(rid)
        if r is None:
            print(f"  {rid:28s} NO OUTCOME")
            continue
        msg = str(r["message"]).replace("\n", " ")
        print(f"  {r['action']:19s} {r['status']:22s} {r['api_call_count']} call(s)  {msg[:110]}")
    print(f"outcomes: {path}")
