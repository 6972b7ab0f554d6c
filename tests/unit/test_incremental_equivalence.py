"""Incremental sync == full sync: random simulator mutations of every kind (memberships, groups, licences,
users, projects, Entra changes, team administrators, sign-ins) interleaved with incremental runs end
with raw AND access-graph tables equal, row for row after sorting, to a full sync taken at the same
moment. The incremental side's access graph is brought up to date from the previous graph
(accessgraph/incremental.py) run after run, never rebuilt; the full side's is built in full from the
full sync. A failure prints the seed and the smallest op sequence
that still fails.

The client talks to the simulator app in process (httpx ASGI transport), so many seeds stay quick.
"""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
from azdo_sim.app import create_app
from azdo_sim.generator import generate
from azdo_sim.mutations import apply_ops, random_ops
from azdo_sim.state import OrgState, World

from azdo_pipeline import schemas
from azdo_pipeline.accessgraph.build import build_access_graph
from azdo_pipeline.accessgraph.schemas import DERIVED_TABLES
from azdo_pipeline.auth import PatCredential
from azdo_pipeline.client import AzureDevOpsClient
from azdo_pipeline.graphwrite import write_graph
from azdo_pipeline.store import Store
from azdo_pipeline.sync import incremental
from azdo_pipeline.sync.full import SyncOptions, full_sync

ORG = "fabrikam"
# The incremental path whatever the changes cost (on tiny orgs a full sync is often cheaper, and the
# run would rightly do one): the property is about the incremental step.
OPTIONS = SyncOptions(sync_teams=True, sync_organizations=True, full_sync_above=float("inf"))
Script = list[list[dict[str, Any]]]  # ops per round; an incremental run after each round


def connect(world: World, pat: str) -> Any:
    transport = httpx.ASGITransport(app=create_app(world), client=("127.0.0.1", 50000))
    return AzureDevOpsClient.connect(f"https://dev.azure.com/{ORG}", PatCredential(pat), transport=transport)


def sorted_rows(table: pa.Table) -> list[tuple[str, ...]]:
    return sorted(tuple(repr(v) for v in r.values()) for r in table.to_pylist())


def raw_tables(store: Store, snapshot: str) -> dict[str, pa.Table]:
    tables, got = store.read_consistent(schemas.RAW_TABLES, ORG)
    assert got == snapshot
    return tables


def published_graph(store: Store, snapshot: str, raw: dict[str, pa.Table]) -> tuple[dict[str, pa.Table], str]:
    """The access graph of `snapshot` brought up to date from the previous one (shared when no raw table
    changed), read back from its files; and how it was written."""
    with store.begin(ORG, f"{snapshot}-graph", kind="access_graph") as draft:
        written = write_graph(draft, store, ORG, raw, snapshot, update=True, max_share=1.0)  # whatever its size
        draft.commit(extra={"raw_snapshot": snapshot})
    tables, _ = store.read_consistent(DERIVED_TABLES, ORG)
    return tables, written.built


def differences(inc: dict[str, pa.Table], full: dict[str, pa.Table]) -> list[str]:
    out = []
    for name in full:
        a, b = sorted_rows(inc[name]), sorted_rows(full[name])
        if a != b:
            extra, missing = sorted(set(a) - set(b))[:2], sorted(set(b) - set(a))[:2]
            out.append(f"{name}: {len(a)} rows vs {len(b)}; incremental only {extra}; full only {missing}")
    return out


def _extra_ops(org: OrgState, rng: random.Random, created: list[str], round_no: int) -> list[dict[str, Any]]:
    """Kinds random_ops draws rarely, so every run sees them: projects created and deleted, sign-ins,
    Entra changes and team administrators."""
    ops: list[dict[str, Any]] = []
    if round_no % 2 == 1:  # not every round: project changes re-read organization groups (Entra ones too)
        ops.append({"op": "create_project", "name": f"Proj-{round_no}-{rng.randrange(10**6)}"})
    if created and rng.random() < 0.5:
        ops.append({"op": "delete_project", "id": created.pop(0)})
    entra = [g for g in org.group_order if org.identities[g].subject_type == "aadgp"]
    people = [d for d in org.user_order if org.identities[d].subject_type == "aad"]
    if entra and people:
        g, u = org.identities[rng.choice(entra)], org.identities[rng.choice(people)]
        ops.append({"op": "entra_remove" if u.descriptor in org.down.get(g.descriptor, ()) else "entra_add",
                    "group_oid": g.origin_id, "member_oid": u.origin_id})
    return ops


def reader(org: OrgState) -> str:
    """A Project Collection Administrator (reading the audit log needs one): the token's user."""
    pca = org.org_groups["project_collection_administrators"]
    return sorted(d for d in org.down[pca] if org.identities[d].subject_type in ("aad", "msa"))[0]


def _safe(org: OrgState, ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The token's user keeps reading the audit log: no op takes it out of a group."""
    me = reader(org)
    return [o for o in ops if not (o["op"] == "remove_member" and o.get("member") == me)]


def run_case(seed: int, size: str, rounds: int, per_round: int, tmp: Path,
             script: Script | None = None) -> tuple[Script, str | None]:
    """Play a scenario; returns the ops played per round and the first difference (None: equal)."""
    world = World(seed=seed)
    org = generate(world, ORG, size=size, seed=seed)
    pat = world.issue_pat(None, org.identities[reader(org)].storage_key, {"app_token"}).token
    rng = random.Random(seed)
    inc, ref = Store(tmp / f"inc-{seed}"), Store(tmp / f"full-{seed}")
    played: Script = []
    created: list[str] = []

    async def sync_both(snapshot: str) -> str | None:
        async with await connect(world, pat) as c:
            report = await incremental.sync(c, inc, ORG, snapshot, OPTIONS)
        if snapshot != "s000" and report.mode != "incremental":
            return f"run {snapshot} fell back to a full sync: {report.fallback_reason}"
        async with await connect(world, pat) as c:
            await full_sync(c, ref, ORG, snapshot, OPTIONS)
        a, b = raw_tables(inc, snapshot), raw_tables(ref, snapshot)
        graph, built = published_graph(inc, snapshot, a)
        if snapshot != "s000" and not built.startswith(("updated from", "shared with")):
            return f"the graph of {snapshot} was not brought up to date: built {built}"
        diffs = differences(a, b) or differences(graph, build_access_graph(b, organization=ORG))
        return f"after {snapshot}: " + "; ".join(diffs) if diffs else None

    async def play() -> str | None:
        problem = await sync_both("s000")
        for r in range(rounds):
            if script is not None:
                ops = script[r]
            else:
                with world.lock:
                    ops = _safe(org, random_ops(org, rng, per_round)) + _extra_ops(org, rng, created, r)
            with world.lock:
                results = apply_ops(org, ops)
                created.extend(res["id"] for res in results if res.get("op") == "create_project" and res["ok"])
                # Entra changes show in Azure DevOps after the propagation delay.
                world.clock.advance(world.propagation_delay + timedelta(seconds=1))
                world.settle()
            played.append(ops)
            problem = problem or await sync_both(f"s{r + 1:03d}")
            if problem:
                return problem
        return problem

    return played, asyncio.run(play())


def shrink(seed: int, size: str, script: Script, tmp: Path) -> Script:
    """Drop ops one at a time while the scenario still fails (ops that no longer apply are skipped)."""
    flat = [(r, op) for r, ops in enumerate(script) for op in ops]
    i = 0
    while i < len(flat):
        trial = flat[:i] + flat[i + 1:]
        rounds = [[op for r, op in trial if r == k] for k in range(len(script))]
        _, problem = run_case(seed, size, len(script), 0, tmp / f"shrink-{len(flat)}-{i}", rounds)
        if problem:
            flat = trial
        else:
            i += 1
    return [[op for r, op in flat if r == k] for k in range(len(script))]


CASES = [(seed, "tiny", 4, 12) for seed in range(1, 13)] + [(seed, "small", 2, 40) for seed in (101, 102)]


@pytest.mark.parametrize(("seed", "size", "rounds", "per_round"), CASES)
def test_incremental_equals_full(seed: int, size: str, rounds: int, per_round: int, tmp_path: Path) -> None:
    script, problem = run_case(seed, size, rounds, per_round, tmp_path)
    if problem:
        minimal = shrink(seed, size, script, tmp_path)
        pytest.fail(f"seed {seed} ({size}): {problem}\nminimal ops per round: {minimal}")
