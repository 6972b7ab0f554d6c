"""No table of a full sync depends on which stream answers first (issue 9: the teams race).

Each case slows every answer of one route through the simulator's scripted faults (over real
HTTPS), so that stream finishes after all the others, and the sync must still give exactly the
ground truth. Before the streams were split, slowing Graph users left `team_members.display_name`
null: the team build waited only for memberships and administrators.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from azdo_sim.server import SimulatorServer

from azdo_pipeline.auth import PatCredential
from azdo_pipeline.client import AzureDevOpsClient, ClientSettings
from azdo_pipeline.store import Store
from azdo_pipeline.sync.full import SyncOptions, SyncReport, full_sync
from tests.conftest import make_tiny
from tests.integration.test_full_sync import assert_equals_truth

ORG = "fabrikam"
ALL = SyncOptions(sync_teams=True, sync_organizations=True)
DELAY_MS = 400  # longer than a whole undelayed sync of the tiny organization

# The route each stream reads (internal simulator paths, see azdo_sim.faults), in turn made the slowest.
STREAM_ROUTES = {
    "graph users": r"/vssps/[^/]+/_apis/graph/users$",
    "groups": r"/vssps/[^/]+/_apis/graph/groups$",
    "service principals": r"/_apis/graph/serviceprincipals$",
    "user entitlements": r"/vsaex/[^/]+/_apis/userentitlements$",
    "projects": r"/_apis/projects$",
    "teams": r"/_apis/teams$",
    "memberships and identity reads": r"/_apis/identitybatch$",
    "team administrators (ACLs)": r"/_apis/accesscontrollists/",
    "organizations (accounts)": r"/_apis/accounts$",
}


@pytest.fixture(scope="module")
def server() -> Iterator[SimulatorServer]:
    sim = make_tiny(seed=5)
    s = SimulatorServer(sim.world)
    # A PAT for all accessible organizations: the organizations table reads the caller's accounts.
    s.pat = sim.world.issue_pat(None, sim.org.owner_key, {"app_token"}).token  # type: ignore[attr-defined]
    s.start()
    try:
        yield s
    finally:
        s.stop()


def _sync(server: SimulatorServer, store: Store) -> SyncReport:
    async def run() -> SyncReport:
        async with await AzureDevOpsClient.connect(
                server.org_url(ORG), PatCredential(server.pat),  # type: ignore[attr-defined]
                settings=ClientSettings(ca_bundle=server.ca_file)) as client:
            return await full_sync(client, store, ORG, "s1", ALL)
    return asyncio.run(run())


@pytest.mark.parametrize("route", list(STREAM_ROUTES.values()), ids=list(STREAM_ROUTES))
def test_a_slow_stream_changes_no_table(server: SimulatorServer, tmp_path: Path, route: str) -> None:
    faults = server.world.faults
    assert faults is not None
    faults.configure({"rules": [{"path": route, "count": -1, "delay_ms": DELAY_MS}]})
    store = Store(tmp_path)
    try:
        report = _sync(server, store)
        hits = faults.to_json()["rules"][0]["hits"]
    finally:
        faults.configure({})
    assert hits > 0, f"no request matched {route}"
    assert_equals_truth(store, server.world)
    # The slowed stream really finished after the others it could race with.
    assert max(report.stream_seconds.values()) * 1000 >= DELAY_MS, report.stream_seconds
