"""Full sync over real HTTPS on 127.0.0.1: every Parquet table equals the simulator's ground truth.

The ground truth (azdo_sim.truth) reads the simulator's state directly, so a bug
shared by the client and the routes cannot hide here.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import requests
from azdo_sim import entra
from azdo_sim.generator import generate
from azdo_sim.server import SimulatorServer
from azdo_sim.state import World
from azdo_sim.truth import ground_truth

from azdo_pipeline import schemas
from azdo_pipeline.auth import OAuthCredential, OAuthSettings, PatCredential, login
from azdo_pipeline.client import AzureDevOpsClient, ClientSettings
from azdo_pipeline.client.secrets import Secret
from azdo_pipeline.store import Store
from azdo_pipeline.sync.errors import ReconciliationError
from azdo_pipeline.sync.full import SyncOptions, SyncReport, full_sync

pytestmark = pytest.mark.timeout(240)
ORG = "fabrikam"
ALL = SyncOptions(sync_teams=True, sync_organizations=True)


def _norm(v: Any) -> Any:
    if isinstance(v, datetime):  # Parquet keeps microseconds; the API prints up to 7 digits
        return v.replace(microsecond=v.microsecond - v.microsecond % 1000)
    return v


def _rows(rows: list[dict[str, Any]], table: str) -> list[tuple]:
    schema = schemas.RAW_TABLES[table]
    key = schemas.key_columns(schema)
    cols = schema.names
    return sorted((tuple(_norm(r.get(c)) for c in cols) for r in rows),
                  key=lambda t: tuple(str(t[cols.index(k)]) for k in key))


def assert_equals_truth(store: Store, world: World, *, admins_beyond_members: bool = True) -> None:
    """Every table equals the ground truth. Without the Security scope team administrators who are
    not members cannot be seen (admins_beyond_members=False drops them from the truth)."""
    with world.lock:
        truth = ground_truth(world.org(ORG))
    if not admins_beyond_members:
        truth["team_members"] = [r for r in truth["team_members"] if r["is_member"]]
    for table, expected in truth.items():
        got = pq.read_table(store.latest_path(table, ORG)).to_pylist()
        assert len(got) == len(expected), f"{table}: {len(got)} rows, ground truth has {len(expected)}"
        assert _rows(got, table) == _rows(expected, table), f"{table} differs from the ground truth"


def _sync(server: SimulatorServer, credential: Any, store: Store, snapshot: str = "s1",
          options: SyncOptions = ALL, **settings: Any) -> SyncReport:
    async def run() -> SyncReport:
        async with await AzureDevOpsClient.connect(
                server.org_url(ORG), credential,
                settings=ClientSettings(ca_bundle=server.ca_file, **settings)) as client:
            return await full_sync(client, store, ORG, snapshot, options)
    return asyncio.run(run())


def _server(size: str, seed: int) -> SimulatorServer:
    world = World(seed=seed)
    generate(world, ORG, size=size, seed=seed)
    return SimulatorServer(world).start()


@pytest.fixture(params=["tiny", "medium"])
def server(request: pytest.FixtureRequest) -> Iterator[SimulatorServer]:
    s = _server(request.param, seed=11)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def tiny_server() -> Iterator[SimulatorServer]:
    s = _server("tiny", seed=5)
    try:
        yield s
    finally:
        s.stop()


def _all_orgs_token(server: SimulatorServer) -> str:
    world = server.world
    with world.lock:
        return world.issue_pat(None, world.org(ORG).owner_key, {"app_token"}).token


def _all_orgs_pat(server: SimulatorServer) -> PatCredential:
    return PatCredential(_all_orgs_token(server))


def test_pat_full_sync_equals_ground_truth(server: SimulatorServer, tmp_path: Path) -> None:
    store = Store(tmp_path)
    report = _sync(server, _all_orgs_pat(server), store)
    assert_equals_truth(store, server.world)
    orgs = pq.read_table(store.latest_path("organizations", ORG)).to_pylist()
    assert [o["name"] for o in orgs] == [ORG]
    # requests counted by the client agree with what the simulator served (no faults, no retries)
    assert report.requests == sum(server.world.request_counts.values())
    # memberships were read in far fewer requests than there are groups
    with server.world.lock:
        n_groups = len(server.world.org(ORG).group_order)
    membership_reads = sum(n for k, n in report.requests_by_endpoint.items()
                           if "identit" in k or "memberships" in k)
    if n_groups > 100:
        assert membership_reads * 10 < n_groups, report.requests_by_endpoint


def test_team_administrators_come_from_one_acl_read(tiny_server: SimulatorServer, tmp_path: Path) -> None:
    store = Store(tmp_path)
    report = _sync(tiny_server, _all_orgs_pat(tiny_server), store)
    with tiny_server.world.lock:
        org = tiny_server.world.org(ORG)
        n_teams = len(org.teams)
        outside = sum(len(t.admins - set(org.members(t.group_descriptor))) for t in org.teams.values())
    assert n_teams > 1 and outside > 0  # the generator makes administrators who are not members
    assert report.requests_by_endpoint.get("GET accesscontrollists") == 1
    assert not any(k.endswith("members") and "teams" in k for k in report.requests_by_endpoint), \
        report.requests_by_endpoint
    rows = pq.read_table(store.latest_path("team_members", ORG)).to_pylist()
    assert sum(1 for r in rows if not r["is_member"]) == outside


def test_without_the_security_scope_team_members_are_read_per_team(tiny_server: SimulatorServer,
                                                                   tmp_path: Path) -> None:
    scopes = {"vso.graph", "vso.identity", "vso.project", "vso.memberentitlementmanagement", "vso.profile"}
    with tiny_server.world.lock:
        pat = tiny_server.world.issue_pat(None, tiny_server.world.org(ORG).owner_key, scopes).token
    store = Store(tmp_path)
    async def run() -> tuple[SyncReport, list[str]]:
        async with await AzureDevOpsClient.connect(
                tiny_server.org_url(ORG), PatCredential(pat),
                settings=ClientSettings(ca_bundle=tiny_server.ca_file)) as client:
            report = await full_sync(client, store, ORG, "s1", ALL)
            return report, list(client.stats.notes)
    report, notes = asyncio.run(run())
    assert_equals_truth(store, tiny_server.world, admins_beyond_members=False)
    assert report.requests_by_endpoint.get("GET accesscontrollists") == 1  # the refused try
    with tiny_server.world.lock:
        n_teams = len(tiny_server.world.org(ORG).teams)
    per_team = sum(n for k, n in report.requests_by_endpoint.items() if "members" in k and "team" in k)
    assert per_team >= n_teams, report.requests_by_endpoint
    assert any("Security (Manage)" in n and "one request per team" in n for n in notes), notes
    assert report.notes == notes  # the report (and so the Dagster metadata) carries them


def test_the_briefs_minimal_read_scopes_sync_everything_but_licences(tiny_server: SimulatorServer,
                                                                     tmp_path: Path) -> None:
    """Graph (Read) + Project and Team (Read) only: every table is synced (memberships one group at a
    time, team members one team at a time); the users lack what only entitlements know; notes say why."""
    with tiny_server.world.lock:
        pat = tiny_server.world.issue_pat(None, tiny_server.world.org(ORG).owner_key,
                                          {"vso.graph", "vso.project"}).token
        truth = ground_truth(tiny_server.world.org(ORG))
    store = Store(tmp_path)
    report = _sync(tiny_server, PatCredential(pat), store, options=SyncOptions(sync_teams=True))
    entitlement_only = ("storage_key", "license", "licensing_source", "msdn_license_type", "license_display_name",
                        "status", "last_accessed", "date_created")
    users = pq.read_table(store.latest_path("users", ORG)).to_pylist()
    assert len(users) == len(truth["users"]) > 0
    assert all(u[c] is None for u in users for c in entitlement_only)
    strip = [{**u, **dict.fromkeys(entitlement_only)} for u in truth["users"]]
    assert _rows(users, "users") == _rows(strip, "users")
    for table in ("service_accounts", "service_principals", "groups", "memberships", "projects", "teams"):
        got = pq.read_table(store.latest_path(table, ORG)).to_pylist()
        assert _rows(got, table) == _rows(truth[table], table), table
    got = pq.read_table(store.latest_path("team_members", ORG)).to_pylist()
    assert _rows(got, "team_members") == _rows([r for r in truth["team_members"] if r["is_member"]], "team_members")
    text = " ".join(report.notes)
    for scope in ("vso.memberentitlementmanagement", "vso.identity", "vso.security_manage"):
        assert scope in text, report.notes


def _browser(server: SimulatorServer):
    def open_url(url: str) -> None:
        s = requests.Session()
        s.trust_env = False
        s.verify = server.ca_file
        resp = s.get(url, allow_redirects=False)
        action = html.unescape(re.search(r'action="([^"]+)"', resp.text).group(1))
        fields = {html.unescape(k): html.unescape(v)
                  for k, v in re.findall(r'name="([^"]+)" value="([^"]*)"', resp.text)}
        requests.post(action, data=fields, timeout=10)
    return open_url


def test_oauth_full_sync_equals_ground_truth(server: SimulatorServer, tmp_path: Path) -> None:
    app = entra.register_app(server.world)
    settings = OAuthSettings(tenant_id=server.world.tenant_id, client_id=app.client_id,
                             client_secret=Secret(app.client_secret), authority_host=server.base_url,
                             token_cache=tmp_path / "cache.msal.json", ca_bundle=server.ca_file)
    login(settings, ORG, open_url=_browser(server), say=lambda _m: None, timeout=30)
    store = Store(tmp_path / "data")
    _sync(server, OAuthCredential(settings, ORG), store)
    assert_equals_truth(store, server.world)


def _set_faults(server: SimulatorServer, config: dict) -> None:
    r = requests.put(f"{server.base_url}/_sim/faults", json=config, verify=server.ca_file, timeout=10)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("faults", [
    {"error_rate": 0.15, "seed": 3},
    {"drop_rate": 0.1, "seed": 4},
    {"throttle": {"budget": 4, "window_seconds": 1, "delay_band": 0.25}, "seed": 5},
], ids=["5xx", "dropped-connections", "throttling"])
def test_faults_end_in_a_correct_sync(tiny_server: SimulatorServer, tmp_path: Path, faults: dict) -> None:
    _set_faults(tiny_server, faults)
    store = Store(tmp_path)
    report = _sync(tiny_server, _all_orgs_pat(tiny_server), store, backoff_base=0.01, backoff_cap=0.2)
    _set_faults(tiny_server, {})
    assert_equals_truth(store, tiny_server.world)
    assert report.retries + report.throttled > 0, "the faults were never hit: the test proves nothing"


def test_persistent_failure_leaves_nothing_half_written(tiny_server: SimulatorServer, tmp_path: Path) -> None:
    store = Store(tmp_path)
    token = _all_orgs_token(tiny_server)
    pat = PatCredential(token)
    _sync(tiny_server, pat, store, snapshot="good")
    before = {t: store.latest_path(t, ORG).read_bytes() for t in schemas.RAW_TABLES}
    _set_faults(tiny_server, {"error_rate": 1.0, "seed": 1})
    try:
        with pytest.raises(Exception) as err:
            _sync(tiny_server, pat, store, snapshot="bad", max_retries=2, backoff_base=0.01, backoff_cap=0.05)
    finally:
        _set_faults(tiny_server, {})
    assert token not in str(err.value)
    # the failed snapshot left no files (not even temp files); latest is the previous snapshot, intact
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and "snapshot=bad" in str(p)]
    assert leftovers == []
    assert {t: store.latest_path(t, ORG).read_bytes() for t in schemas.RAW_TABLES} == before


def test_expired_token_is_a_clear_failure(tiny_server: SimulatorServer, tmp_path: Path) -> None:
    world = tiny_server.world
    from datetime import timedelta
    with world.lock:
        token = world.issue_pat(None, world.org(ORG).owner_key, {"app_token"},
                                lifetime=timedelta(seconds=-1)).token
    store = Store(tmp_path)
    with pytest.raises(Exception, match=r"(?i)expired") as err:
        _sync(tiny_server, PatCredential(token), store)
    assert token not in str(err.value)
    assert not any(p.is_file() for p in tmp_path.rglob("*.parquet"))


def test_missing_scope_names_the_scope(tiny_server: SimulatorServer, tmp_path: Path) -> None:
    world = tiny_server.world
    with world.lock:  # everything except Graph (Read)
        token = world.issue_pat(None, world.org(ORG).owner_key,
                                {"vso.project", "vso.memberentitlementmanagement", "vso.identity",
                                 "vso.profile"}).token
    with pytest.raises(Exception, match=r"vso\.graph") as err:
        _sync(tiny_server, PatCredential(token), Store(tmp_path))
    assert token not in str(err.value)


def test_a_snapshot_that_does_not_add_up_is_rejected_and_latest_kept(tiny_server: SimulatorServer,
                                                                       tmp_path: Path) -> None:
    store = Store(tmp_path)
    pat = _all_orgs_pat(tiny_server)
    _sync(tiny_server, pat, store, snapshot="20260101T000000Z-good")
    before = {t: store.latest_path(t, ORG).read_bytes() for t in schemas.RAW_TABLES}
    # the entitlement list answers no member but says there are 7: a short read
    _set_faults(tiny_server, {"rules": [{"path": "userentitlements", "status": 200, "count": -1,
                                         "body": {"members": [], "totalCount": 7, "continuationToken": None}}]})
    try:
        with pytest.raises(ReconciliationError, match="total_count") as err:
            _sync(tiny_server, pat, store, snapshot="20260102T000000Z-bad")
    finally:
        _set_faults(tiny_server, {})
    kept = tmp_path / "_rejected" / f"org={ORG}" / "20260102T000000Z-bad"
    assert str(kept) in str(err.value)
    assert json.loads((kept / "REJECTED.json").read_text())["problems"][0].startswith("users: total_count failed")
    assert (kept / "users.parquet").exists()  # kept for inspection
    assert {t: store.latest_path(t, ORG).read_bytes() for t in schemas.RAW_TABLES} == before
    assert store.snapshots(ORG) == ["20260101T000000Z-good"]
    assert not list(tmp_path.glob("*/org=*/snapshot=20260102T000000Z-bad"))
