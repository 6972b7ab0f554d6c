"""Corporate proxies: the Azure DevOps client, the Microsoft Graph client and msal go through a real
forwarding CONNECT proxy on 127.0.0.1 (tests/connect_proxy.py) that counts the tunnels it carried.

The client is pointed at a port nothing listens on, which only the proxy maps to the simulator:
a request that bypassed the proxy would be refused, so a successful sync proves every request
went through it. TLS runs end to end inside the tunnels (the proxy sees a TLS handshake, and a
client that does not trust the simulator's CA fails through the proxy too).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azdo_sim import entra
from azdo_sim.generator import generate
from azdo_sim.server import SimulatorServer
from azdo_sim.state import World

from azdo_pipeline.auth import GraphAppCredential, OAuthSettings, PatCredential
from azdo_pipeline.client import AzureDevOpsClient, AzureDevOpsError, ClientSettings, MicrosoftGraphClient
from azdo_pipeline.client.secrets import Secret
from azdo_pipeline.store import Store
from azdo_pipeline.sync.full import SyncReport, full_sync
from tests.connect_proxy import ConnectProxy
from tests.integration.test_full_sync import ALL, assert_equals_truth

pytestmark = pytest.mark.timeout(120)
ORG = "fabrikam"
TLS_HANDSHAKE = 0x16  # first byte of a TLS record carrying a ClientHello
PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy",
              "NO_PROXY", "no_proxy")


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[SimulatorServer]:
    world = World(seed=4)
    generate(world, ORG, size="tiny", seed=4)
    s = SimulatorServer(world).start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A loopback port that refuses connections (bound, never listening) for the test's length."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@pytest.fixture
def proxy(server: SimulatorServer, dead_port: int) -> Iterator[ConnectProxy]:
    with ConnectProxy(routes={("127.0.0.1", dead_port): ("127.0.0.1", server.port)}) as p:
        yield p


def _pat(server: SimulatorServer) -> PatCredential:
    world = server.world
    with world.lock:
        return PatCredential(world.issue_pat(None, world.org(ORG).owner_key, {"app_token"}).token)


def _sync(org_url: str, credential: Any, store: Store, **settings: Any) -> SyncReport:
    async def run() -> SyncReport:
        async with await AzureDevOpsClient.connect(org_url, credential,
                                                   settings=ClientSettings(**settings)) as client:
            return await full_sync(client, store, ORG, "s1", ALL)
    return asyncio.run(run())


def _served(server: SimulatorServer) -> int:
    return sum(server.world.request_counts.values())


def _only_tls_tunnels_to(proxy: ConnectProxy, port: int) -> None:
    assert proxy.tunnels, "no request went through the proxy"
    assert {t.target for t in proxy.tunnels} == {("127.0.0.1", port)}
    assert {t.first_byte for t in proxy.tunnels} == {TLS_HANDSHAKE}, "the proxy saw something other than TLS"
    assert proxy.plain == []


@pytest.mark.parametrize("backend", ["asyncio", "anyio"])
def test_full_sync_goes_through_https_proxy_from_the_environment(
        server: SimulatorServer, proxy: ConnectProxy, dead_port: int, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    store = Store(tmp_path)
    report = _sync(f"https://127.0.0.1:{dead_port}/{ORG}", _pat(server), store, ca_bundle=server.ca_file,
                   network_backend=backend, max_concurrency=4)
    _only_tls_tunnels_to(proxy, dead_port)
    # one connection per slot at most: the pool kept its tunnels alive
    assert len(proxy.tunnels) <= 4 + 1
    assert report.requests == _served(server)  # every request the client sent reached the simulator
    assert_equals_truth(store, server.world)


def test_organization_proxy_setting_wins_over_the_environment(
        server: SimulatorServer, proxy: ConnectProxy, dead_port: int, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    with ConnectProxy() as other:  # the environment's proxy, which must not be used
        monkeypatch.setenv("HTTPS_PROXY", other.url)
        _sync(f"https://127.0.0.1:{dead_port}/{ORG}", _pat(server), Store(tmp_path), ca_bundle=server.ca_file,
              proxy=proxy.url)
        assert other.tunnels == []
    _only_tls_tunnels_to(proxy, dead_port)


def test_proxy_credentials_from_the_environment(server: SimulatorServer, dead_port: int, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    with ConnectProxy(routes={("127.0.0.1", dead_port): ("127.0.0.1", server.port)},
                      credentials="corp\\svc:p@ss w0rd") as p:
        monkeypatch.setenv("HTTPS_PROXY", f"http://corp%5Csvc:p%40ss%20w0rd@127.0.0.1:{p.port}")
        _sync(f"https://127.0.0.1:{dead_port}/{ORG}", _pat(server), Store(tmp_path), ca_bundle=server.ca_file)
        assert p.refused == 0
        _only_tls_tunnels_to(p, dead_port)


def test_tls_is_verified_through_the_tunnel(server: SimulatorServer, proxy: ConnectProxy, dead_port: int,
                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Without the simulator's CA the handshake inside the tunnel must fail: the proxy neither
    # terminates TLS nor lets the client skip verification.
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    with pytest.raises(AzureDevOpsError, match=r"TLS certificate of 127\.0\.0\.1 was not accepted"):
        _sync(f"https://127.0.0.1:{dead_port}/{ORG}", _pat(server), Store(tmp_path), max_retries=0)
    assert proxy.tunnels and proxy.tunnels[0].first_byte == TLS_HANDSHAKE
    assert _served(server) == 0


def test_no_proxy_hosts_are_reached_directly(server: SimulatorServer, proxy: ConnectProxy, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "example.com, 127.0.0.0/8")
    report = _sync(server.org_url(ORG), _pat(server), Store(tmp_path), ca_bundle=server.ca_file)
    assert report.requests == _served(server) > 0
    assert proxy.tunnels == []


def test_msal_and_microsoft_graph_go_through_the_proxy(server: SimulatorServer, proxy: ConnectProxy,
                                                       dead_port: int, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # ca_bundle set: the case where a plain requests session (trust_env off) ignored HTTPS_PROXY.
    # The authority goes through the proxy; Graph is reached directly as NO_PROXY says ("localhost").
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "localhost")
    world = server.world
    with world.lock:
        org = world.org(ORG)
        group = next(g for g in org.groups() if g.subject_type == "aadgp")
        user = next(u for u in org.users() if u.origin == "aad" and u.origin_id not in
                    world.entra_members.get(group.origin_id, set()))
    app = entra.register_app(world)
    settings = OAuthSettings(tenant_id=world.tenant_id, client_id=app.client_id,
                             client_secret=Secret(app.client_secret),
                             authority_host=f"https://127.0.0.1:{dead_port}", token_cache=tmp_path / "c.json",
                             ca_bundle=server.ca_file)

    async def go() -> bool:
        async with MicrosoftGraphClient(GraphAppCredential(settings), graph_host=settings.graph_host,
                                        base_url=f"https://localhost:{server.port}",
                                        settings=ClientSettings(ca_bundle=server.ca_file)) as g:
            return await g.add_group_member(group.origin_id, user.origin_id)

    assert asyncio.run(go()) is True
    _only_tls_tunnels_to(proxy, dead_port)  # msal's discovery and token requests
    with world.lock:
        assert user.origin_id in world.entra_members[group.origin_id]


def test_graph_client_through_the_proxy(server: SimulatorServer, proxy: ConnectProxy, dead_port: int,
                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    world = server.world
    with world.lock:
        org = world.org(ORG)
        group = next(g for g in org.groups() if g.subject_type == "aadgp")
        member = next(iter(world.entra_members.get(group.origin_id, set())), None)
    assert member is not None
    app = entra.register_app(world)
    base = f"https://127.0.0.1:{dead_port}"
    settings = OAuthSettings(tenant_id=world.tenant_id, client_id=app.client_id,
                             client_secret=Secret(app.client_secret), authority_host=base,
                             token_cache=tmp_path / "c.json", ca_bundle=server.ca_file)

    async def go() -> bool:
        async with MicrosoftGraphClient(GraphAppCredential(settings), graph_host=settings.graph_host,
                                        base_url=base, settings=ClientSettings(ca_bundle=server.ca_file)) as g:
            return await g.remove_group_member(group.origin_id, member)

    assert asyncio.run(go()) is True
    _only_tls_tunnels_to(proxy, dead_port)
