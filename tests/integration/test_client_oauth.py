"""OAuth through msal against the simulated Entra (TLS on 127.0.0.1): login once (auth code with the
loopback listener, or device code), silent refresh from the 0600 cache file, 401 -> refresh, and
Microsoft Graph writes with a client-credentials token. Only base URLs and the CA bundle differ from
a real tenant."""

from __future__ import annotations

import asyncio
import html
import logging
import re
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from azdo_sim import entra
from azdo_sim.generator import generate
from azdo_sim.server import SimulatorServer
from azdo_sim.state import World
from azdo_sim.tokens import store_of

from azdo_pipeline.auth import GraphAppCredential, OAuthCredential, OAuthSettings, login
from azdo_pipeline.client import AzureDevOpsClient, ClientSettings, MicrosoftGraphClient, PermissionDeniedError
from azdo_pipeline.client.secrets import Secret

pytestmark = pytest.mark.timeout(120)
ORG = "fabrikam"


@pytest.fixture
def server() -> Iterator[SimulatorServer]:
    world = World(seed=3)
    generate(world, ORG, size="tiny", seed=3)
    s = SimulatorServer(world)
    s.start()
    try:
        yield s
    finally:
        s.stop()


def _settings(server: SimulatorServer, app: entra.EntraApp, cache: Path, secret: bool = True) -> OAuthSettings:
    return OAuthSettings(tenant_id=server.world.tenant_id, client_id=app.client_id,
                         client_secret=Secret(app.client_secret) if secret else None,
                         authority_host=server.base_url, token_cache=cache, ca_bundle=server.ca_file)


def _browser(server: SimulatorServer):
    """Plays the user's browser: follow the authorize redirect to the loopback listener."""
    def open_url(url: str) -> None:
        s = requests.Session()
        s.trust_env = False
        s.verify = server.ca_file
        resp = s.get(url, allow_redirects=False)
        assert resp.status_code == 200, resp.text  # response_mode=form_post: an auto-submitting form
        action = html.unescape(re.search(r'action="([^"]+)"', resp.text).group(1))
        fields = {html.unescape(k): html.unescape(v)
                  for k, v in re.findall(r'name="([^"]+)" value="([^"]*)"', resp.text)}
        assert "code" in fields and action.startswith("http://localhost:")
        requests.post(action, data=fields, timeout=10)  # plain http to our own listener
    return open_url


async def _users(server: SimulatorServer, cred) -> tuple[int, object]:
    async with await AzureDevOpsClient.connect(server.org_url(ORG), cred,
                                               settings=ClientSettings(ca_bundle=server.ca_file)) as c:
        n = sum([len(p) async for p in c.graph.iter_users()])
        return n, c.stats


def test_login_with_auth_code_then_silent_refresh(server: SimulatorServer, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    app = entra.register_app(server.world)
    cache = tmp_path / "home" / ".azdo-pipeline" / f"{ORG}.msal.json"
    said: list[str] = []
    path = login(_settings(server, app, cache), ORG, open_url=_browser(server), say=said.append, timeout=30)
    assert path == cache and cache.exists()
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert any("authorize" in s for s in said)

    # A later run: a new credential object that only has the cache file.
    cred = OAuthCredential(_settings(server, app, cache), ORG)
    n, _ = asyncio.run(_users(server, cred))
    with server.world.lock:
        assert n == len(list(server.world.org(ORG).users()))
    # An access token the service no longer accepts: one 401, a refresh through the refresh token, success.
    before = cache.read_text()
    cred._token = Secret("expired-or-revoked-token-value-123")
    n2, stats2 = asyncio.run(_users(server, cred))
    assert n2 == n and stats2.by_endpoint["GET graph/users"] >= 2
    assert cache.read_text() != before  # the rotated refresh token was written back
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    token = cred._token.reveal()
    assert token not in repr(cred) and app.client_secret not in repr(cred)
    for r in caplog.records:
        assert token not in r.getMessage() and app.client_secret not in r.getMessage()


def _wait_for_pending_poll(world: World, user_code: str) -> None:
    """Until the device code has been polled and answered authorization_pending (msal polls every
    `interval` s); the deadline only keeps a failed login from leaving this thread behind."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with world.lock:
            rec = store_of(world).device_by_user_code(user_code)
            if rec is not None and rec.polls >= 1:
                return
        time.sleep(0.02)


def test_device_code_login(server: SimulatorServer, tmp_path: Path) -> None:
    app = entra.register_app(server.world)
    with server.world.lock:
        store_of(server.world).device_poll_interval = 1
    cache = tmp_path / "device.msal.json"
    codes: list[str] = []
    said = threading.Event()

    def say(message: str) -> None:
        codes.append(message)
        said.set()

    def approve() -> None:
        said.wait(60)
        user_code = next(w for w in codes[0].replace(".", " ").split() if w.isupper() and len(w) >= 6)
        _wait_for_pending_poll(server.world, user_code)  # the login has been told to wait once
        s = requests.Session()
        s.trust_env = False
        s.verify = server.ca_file
        assert s.post(f"{server.base_url}/_sim/entra/devicecodes/{user_code}",
                      json={"action": "approve"}).status_code == 200

    t = threading.Thread(target=approve, daemon=True)
    t.start()
    login(_settings(server, app, cache, secret=False), ORG, device_code=True, say=say, timeout=30)
    t.join()
    with server.world.lock:
        assert [d.polls >= 1 for d in store_of(server.world).device_codes.values()] == [True]  # told to wait first
    cred = OAuthCredential(_settings(server, app, cache, secret=False), ORG)
    n, _ = asyncio.run(_users(server, cred))
    assert n > 0


def test_no_login_yet_says_how_to_log_in(server: SimulatorServer, tmp_path: Path) -> None:
    app = entra.register_app(server.world)
    cred = OAuthCredential(_settings(server, app, tmp_path / "none.json"), ORG)
    with pytest.raises(Exception, match=f"azdo-pipeline login --org {ORG}"):
        asyncio.run(_users(server, cred))


def test_graph_group_membership_with_client_credentials(server: SimulatorServer, tmp_path: Path) -> None:
    world = server.world
    with world.lock:
        org = world.org(ORG)
        group = next(g for g in org.groups() if g.subject_type == "aadgp")
        user = next(u for u in org.users() if u.origin == "aad" and u.origin_id not in
                    world.entra_members.get(group.origin_id, set()))
    app = entra.register_app(world)
    settings = _settings(server, app, tmp_path / "unused.json")

    async def go(cred) -> list[bool]:
        async with MicrosoftGraphClient(cred, graph_host=settings.graph_host, base_url=server.base_url,
                                        settings=ClientSettings(ca_bundle=server.ca_file)) as g:
            return [await g.add_group_member(group.origin_id, user.origin_id),
                    await g.add_group_member(group.origin_id, user.origin_id),
                    await g.remove_group_member(group.origin_id, user.origin_id),
                    await g.remove_group_member(group.origin_id, user.origin_id)]

    assert asyncio.run(go(GraphAppCredential(settings))) == [True, False, True, False]

    weak = entra.register_app(world, app_roles=())
    with pytest.raises(PermissionDeniedError, match=r"GroupMember\.ReadWrite\.All"):
        asyncio.run(go(GraphAppCredential(_settings(server, weak, tmp_path / "u.json"))))
