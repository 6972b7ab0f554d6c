"""The fault-injection harness: a tiny simulated organization over real HTTPS on 127.0.0.1, a
snapshot published before each case, one fault scripted through the simulator, then a sync.

Each case ends one of two ways, and `run_case` says which:
- correct: the sync published a new snapshot whose every table equals the simulator's ground truth;
- clear failure: the sync raised an error whose message names the route (or the setting) and the
  cause, and `latest/` still holds the previous snapshot, unchanged.
Anything else (a sync that succeeds with other data, a bare exception) fails the test.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from azdo_sim.server import SimulatorServer

from azdo_pipeline import schemas
from azdo_pipeline.auth import PatCredential
from azdo_pipeline.client import AzureDevOpsClient, ClientSettings
from azdo_pipeline.client.errors import AzureDevOpsError
from azdo_pipeline.store import Store
from azdo_pipeline.sync.full import SyncOptions, SyncReport, full_sync
from tests.integration.test_full_sync import assert_equals_truth

ORG = "fabrikam"
BEFORE, AFTER = "20260101T000000Z-before", "20260101T000001Z-after"  # ids sort in time order
ALL = SyncOptions(sync_teams=True, sync_organizations=True)
# Quick retries: the cases script at most a few damaged or throttled answers.
FAST = {"backoff_base": 0.01, "backoff_cap": 0.05, "max_retries": 3}

# How each case ended, for the closing count (test_zz_summary prints it).
OUTCOMES: Counter[str] = Counter()


@dataclass
class Case:
    name: str
    rules: list[dict[str, Any]]
    ends: str  # "correct" | "failure"
    message: tuple[str, ...] = ()  # parts the failure's message must hold (route, cause, fix)
    error: type[BaseException] = AzureDevOpsError
    settings: dict[str, Any] = field(default_factory=dict)  # ClientSettings of the faulted sync
    url_org: str = ORG  # the organization named in the URL of the faulted sync


def rule(path: str, **kw: Any) -> dict[str, Any]:
    return {"path": path, "count": kw.pop("count", -1), **kw}


def sync(server: SimulatorServer, store: Store, snapshot: str, url_org: str = ORG, credential: Any = None,
         **settings: Any) -> SyncReport:
    async def run() -> SyncReport:
        cfg = {"ca_bundle": server.ca_file, **FAST, **settings}
        cred = credential or PatCredential(server.pat)  # type: ignore[attr-defined]
        async with await AzureDevOpsClient.connect(server.org_url(url_org), cred,
                                                   settings=ClientSettings(**cfg)) as client:
            return await full_sync(client, store, ORG, snapshot, ALL)
    return asyncio.run(run())


def latest_tables(store: Store) -> dict[str, pa.Table]:
    return {t: store.read_latest(t, ORG) for t in schemas.RAW_TABLES}


def baseline(server: SimulatorServer, tmp_path: Path) -> tuple[Store, dict[str, pa.Table]]:
    """A store whose latest snapshot is a correct sync made before the fault."""
    server.world.faults.configure({})  # type: ignore[union-attr]
    store = Store(tmp_path / "data")
    sync(server, store, BEFORE)
    assert_equals_truth(store, server.world)
    return store, latest_tables(store)


def _reset_and_check_hits(server: SimulatorServer, case: Case) -> None:
    faults = server.world.faults
    assert faults is not None
    hits = [r["hits"] for r in faults.to_json()["rules"]]
    faults.configure({})
    assert all(hits), f"{case.name}: a scripted fault never matched a request (rules hit {hits})"


def run_case(server: SimulatorServer, tmp_path: Path, case: Case) -> BaseException | None:
    store, before = baseline(server, tmp_path)
    server.world.faults.configure({"rules": case.rules})  # type: ignore[union-attr]
    try:
        sync(server, store, AFTER, case.url_org, **case.settings)
    except Exception as exc:  # judged below: only a clear failure of the expected kind passes
        _reset_and_check_hits(server, case)
        assert case.ends == "failure", f"{case.name}: expected a correct sync, got {type(exc).__name__}: {exc}"
        assert isinstance(exc, case.error), f"{case.name}: {type(exc).__name__}: {exc}"
        for part in case.message:
            assert part in str(exc), f"{case.name}: {part!r} not in the message: {exc}"
        assert latest_tables(store) == before, f"{case.name}: latest/ changed after a failed sync"
        assert (store.latest_manifest(ORG) or {}).get("snapshot") == BEFORE
        OUTCOMES["clear failure"] += 1
        return exc
    _reset_and_check_hits(server, case)
    assert case.ends == "correct", f"{case.name}: the sync succeeded although the fault should stop it"
    assert_equals_truth(store, server.world)  # never a silent wrong result
    OUTCOMES["correct"] += 1
    return None
