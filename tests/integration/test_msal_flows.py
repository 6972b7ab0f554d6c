"""msal (unmodified, the installed package) against the simulated Entra over real TLS on 127.0.0.1.

Wiring every client of the simulator needs (msal refuses http authorities):
    session = requests.Session(); session.trust_env = False; session.verify = server.ca_file
    msal.ConfidentialClientApplication(client_id, client_credential=secret,
        authority=f"{server.base_url}/{tenant_id}", instance_discovery=False, azure_region=False,
        http_client=session)
The tokens then go to Azure DevOps and Microsoft Graph routes of the same server as `Bearer`.
"""

from __future__ import annotations

import html
import re
import threading
import time
from datetime import timedelta
from urllib.parse import parse_qsl, urlsplit

import msal
import pytest
import requests
from azdo_sim import entra
from azdo_sim.tokens import ADO_RESOURCE, store_of

ADO_SCOPE = f"{ADO_RESOURCE}/user_impersonation"
ADO_DEFAULT = f"{ADO_RESOURCE}/.default"
GRAPH_DEFAULT = "https://graph.microsoft.com/.default"
REDIRECT = "http://localhost:8400/callback"
ORG = "fabrikam"

pytestmark = pytest.mark.timeout(60)


def session(server) -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # REQUESTS_CA_BUNDLE would override verify (reference §1.2)
    s.verify = server.ca_file
    return s


def authority(server) -> str:
    return f"{server.base_url}/{server.world.tenant_id}"


def cca(server, app: entra.EntraApp, secret: str | None = None, cache=None) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        app.client_id, client_credential=secret or app.client_secret, authority=authority(server),
        instance_discovery=False, azure_region=False, http_client=session(server), token_cache=cache)


def pca(server, app: entra.EntraApp) -> msal.PublicClientApplication:
    return msal.PublicClientApplication(app.client_id, authority=authority(server), instance_discovery=False,
                                        http_client=session(server))


def new_app(server, **kw) -> entra.EntraApp:
    return entra.register_app(server.world, **kw)


def sp_app(server) -> entra.EntraApp:
    """An app whose service principal is an `aadsp` identity of the org (so ADO resolves it)."""
    org = server.world.org(ORG)
    with server.world.lock:
        sp = next(org.service_principals())
    return new_app(server, client_id=sp.application_id)


def login(server, app: entra.EntraApp, scopes: list[str]) -> tuple[msal.ConfidentialClientApplication, dict]:
    """Authorization code + PKCE, playing the browser: GET auth_uri, read the 302 Location."""
    client = cca(server, app)
    flow = client.initiate_auth_code_flow(scopes, redirect_uri=REDIRECT)
    assert "code_challenge_method=S256" in flow["auth_uri"]
    resp = session(server).get(flow["auth_uri"], allow_redirects=False)
    assert resp.status_code == 302, resp.text
    loc = urlsplit(resp.headers["Location"])
    assert f"{loc.scheme}://{loc.netloc}{loc.path}" == REDIRECT
    result = client.acquire_token_by_auth_code_flow(flow, dict(parse_qsl(loc.query)))
    return client, result


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "X-TFS-FedAuthRedirect": "Suppress"}


def ado_users(server, token: str) -> requests.Response:
    return session(server).get(f"{server.base_url}/vssps/{ORG}/_apis/graph/users?api-version=7.1-preview.1",
                               headers=bearer(token))


def entra_group(server) -> str:
    org = server.world.org(ORG)
    with server.world.lock:
        return next(g.origin_id for g in org.groups() if g.subject_type == "aadgp")


# ---- client credentials -----------------------------------------------------------------------


def test_client_credentials_graph_token_reads_and_writes_members(sim_server) -> None:
    app = new_app(sim_server)
    client = cca(sim_server, app)
    r = client.acquire_token_for_client(scopes=[GRAPH_DEFAULT])
    assert "access_token" in r, r
    assert r["token_type"] == "Bearer" and 3000 < r["expires_in"] <= 3600
    again = client.acquire_token_for_client(scopes=[GRAPH_DEFAULT])
    assert again["token_source"] == "cache" and again["access_token"] == r["access_token"]

    gid = entra_group(sim_server)
    s = session(sim_server)
    base = f"{sim_server.base_url}/v1.0/groups/{gid}"
    listed = s.get(f"{base}/members", headers=bearer(r["access_token"]))
    assert listed.status_code == 200, listed.text
    before = {m["id"] for m in listed.json()["value"]}
    world = sim_server.world
    with world.lock:
        candidate = next(u.origin_id for u in world.org(ORG).users()
                         if u.origin == "aad" and u.origin_id not in before)
    ref = {"@odata.id": f"{sim_server.base_url}/v1.0/directoryObjects/{candidate}"}
    added = s.post(f"{base}/members/$ref", json=ref, headers=bearer(r["access_token"]))
    assert added.status_code == 204, added.text
    assert added.headers["request-id"]
    assert candidate in {m["id"] for m in s.get(f"{base}/members", headers=bearer(r["access_token"])).json()["value"]}
    removed = s.delete(f"{base}/members/{candidate}/$ref", headers=bearer(r["access_token"]))
    assert removed.status_code == 204


def test_simulator_origin_works_as_the_graph_host(sim_server) -> None:
    """A client configured with graph_host = the simulator's base URL asks for `<base>/.default`."""
    app = new_app(sim_server)
    r = cca(sim_server, app).acquire_token_for_client(scopes=[f"{sim_server.base_url}/.default"])
    assert "access_token" in r, r
    resp = session(sim_server).get(f"{sim_server.base_url}/v1.0/groups/{entra_group(sim_server)}/members",
                                   headers=bearer(r["access_token"]))
    assert resp.status_code == 200, resp.text


def test_client_credentials_ado_token_is_accepted_by_azure_devops(sim_server) -> None:
    app = sp_app(sim_server)
    r = cca(sim_server, app).acquire_token_for_client(scopes=[ADO_DEFAULT])
    assert "access_token" in r, r
    resp = ado_users(sim_server, r["access_token"])
    assert resp.status_code == 200, resp.text
    assert resp.json()["count"] >= 1


def test_tokens_for_one_audience_are_rejected_by_the_other(sim_server) -> None:
    app = sp_app(sim_server)
    client = cca(sim_server, app)
    graph = client.acquire_token_for_client(scopes=[GRAPH_DEFAULT])["access_token"]
    ado = client.acquire_token_for_client(scopes=[ADO_DEFAULT])["access_token"]
    assert ado_users(sim_server, graph).status_code == 401
    resp = session(sim_server).get(f"{sim_server.base_url}/v1.0/groups/{entra_group(sim_server)}",
                                   headers=bearer(ado))
    assert resp.status_code == 401
    assert resp.json()["error"]["message"] == "Access token validation failure. Invalid audience."


def test_wrong_secret_is_invalid_client_7000215(sim_server) -> None:
    app = new_app(sim_server)
    r = cca(sim_server, app, secret="not-the-secret").acquire_token_for_client(scopes=[GRAPH_DEFAULT])
    assert r["error"] == "invalid_client"
    assert r["error_codes"] == [7000215]
    assert r["error_description"].startswith("AADSTS7000215: ")
    assert "\r\nTrace ID: " in r["error_description"] and "\r\nCorrelation ID: " in r["error_description"]


def test_unknown_tenant_fails_in_the_msal_constructor(sim_server) -> None:
    with pytest.raises(ValueError, match="Unable to get authority configuration"):
        msal.ConfidentialClientApplication("x", client_credential="y",
                                           authority=f"{sim_server.base_url}/not-a-tenant",
                                           instance_discovery=False, azure_region=False,
                                           http_client=session(sim_server))


def test_throttled_token_endpoint_then_recovers(sim_server) -> None:
    app = new_app(sim_server)
    client = cca(sim_server, app)
    with sim_server.world.lock:
        t = store_of(sim_server.world).token_throttle
        t.count, t.retry_after = 1, 1
    r = client.acquire_token_for_client(scopes=[GRAPH_DEFAULT])
    assert r["error"] == "temporarily_unavailable", r
    time.sleep(1.2)  # msal replays a response with Retry-After for that many seconds
    r = client.acquire_token_for_client(scopes=[GRAPH_DEFAULT])
    assert "access_token" in r, r


# ---- authorization code + PKCE, refresh ---------------------------------------------------------


def test_auth_code_with_pkce_gives_a_delegated_ado_token(sim_server) -> None:
    app = new_app(sim_server)
    client, r = login(sim_server, app, [ADO_SCOPE])
    assert "access_token" in r, r
    assert r["scope"] == ADO_SCOPE and "refresh_token" in r
    assert r["id_token_claims"]["aud"] == app.client_id
    world = sim_server.world
    org = world.org(ORG)
    owner = org.by_storage_key(org.owner_key)
    assert r["id_token_claims"]["oid"] == owner.origin_id
    accounts = client.get_accounts()
    assert [a["home_account_id"] for a in accounts] == [f"{owner.origin_id}.{world.tenant_id}"]
    resp = ado_users(sim_server, r["access_token"])
    assert resp.status_code == 200, resp.text


def test_auth_code_with_form_post_response_mode(sim_server) -> None:
    """What `azdo-pipeline login` uses: the browser POSTs code and state to the redirect URI."""
    app = new_app(sim_server)
    client = cca(sim_server, app)
    flow = client.initiate_auth_code_flow([ADO_SCOPE], redirect_uri=REDIRECT, response_mode="form_post")
    page = session(sim_server).get(flow["auth_uri"], allow_redirects=False)
    assert page.status_code == 200, page.text
    assert html.unescape(re.search(r'action="([^"]+)"', page.text).group(1)) == REDIRECT
    posted = {html.unescape(k): html.unescape(v) for k, v in re.findall(r'name="([^"]+)" value="([^"]*)"', page.text)}
    r = client.acquire_token_by_auth_code_flow(flow, posted)
    assert "access_token" in r, r
    assert ado_users(sim_server, r["access_token"]).status_code == 200


def test_silent_refresh_rotates_the_refresh_token(sim_server) -> None:
    app = new_app(sim_server)
    client, first = login(sim_server, app, [ADO_SCOPE])
    account = client.get_accounts()[0]
    cached = client.acquire_token_silent([ADO_SCOPE], account=account)
    assert cached["access_token"] == first["access_token"] and cached["token_source"] == "cache"
    fresh = client.acquire_token_silent([ADO_SCOPE], account=account, force_refresh=True)
    assert fresh["token_source"] == "identity_provider"
    assert fresh["access_token"] != first["access_token"]
    assert ado_users(sim_server, fresh["access_token"]).status_code == 200
    # The old refresh token was retired by the rotation.
    old = cca(sim_server, app).acquire_token_by_refresh_token(first["refresh_token"], [ADO_SCOPE])
    assert old["error"] == "invalid_grant", old


def test_expired_access_token_is_refused_and_refreshed(sim_server) -> None:
    app = new_app(sim_server)
    client, first = login(sim_server, app, [ADO_SCOPE])
    sim_server.world.clock.advance(timedelta(hours=2))
    assert ado_users(sim_server, first["access_token"]).status_code == 401
    fresh = client.acquire_token_silent([ADO_SCOPE], account=client.get_accounts()[0], force_refresh=True)
    assert "access_token" in fresh, fresh
    assert ado_users(sim_server, fresh["access_token"]).status_code == 200


def test_revoked_consent_makes_refresh_fail_with_65001(sim_server) -> None:
    app = new_app(sim_server)
    client, _ = login(sim_server, app, [ADO_SCOPE])
    with sim_server.world.lock:
        app.delegated_consent.clear()
    r = client.acquire_token_silent_with_error([ADO_SCOPE], account=client.get_accounts()[0], force_refresh=True)
    assert r["error"] == "invalid_grant" and r["error_codes"] == [65001]
    assert r["suberror"] == "consent_required"


def test_refresh_token_expires_after_90_days(sim_server) -> None:
    app = new_app(sim_server)
    client, _ = login(sim_server, app, [ADO_SCOPE])
    sim_server.world.clock.advance(timedelta(days=91))
    r = client.acquire_token_silent_with_error([ADO_SCOPE], account=client.get_accounts()[0], force_refresh=True)
    assert r["error"] == "invalid_grant" and r["error_codes"] == [70008], r


# ---- device code -----------------------------------------------------------------------------------


def test_device_code_flow_approved_through_the_admin_api(sim_server) -> None:
    app = new_app(sim_server)
    with sim_server.world.lock:
        store_of(sim_server.world).device_poll_interval = 1
    client = pca(sim_server, app)
    flow = client.initiate_device_flow(scopes=[ADO_SCOPE])
    assert "user_code" in flow, flow
    assert flow["verification_uri"].startswith(sim_server.base_url)

    def approve() -> None:
        # msal polls every `interval` s: approve once it has been told authorization_pending
        deadline = time.monotonic() + 60  # only keeps a failed flow from leaving this thread behind
        while time.monotonic() < deadline:
            with sim_server.world.lock:
                if store_of(sim_server.world).device_by_user_code(flow["user_code"]).polls >= 1:
                    break
            time.sleep(0.02)
        s = session(sim_server)
        resp = s.post(f"{sim_server.base_url}/_sim/entra/devicecodes/{flow['user_code']}",
                      json={"action": "approve"})
        assert resp.status_code == 200, resp.text

    t = threading.Thread(target=approve, daemon=True)
    t.start()
    r = client.acquire_token_by_device_flow(flow)
    t.join()
    assert "access_token" in r, r
    with sim_server.world.lock:
        assert store_of(sim_server.world).device_codes[flow["device_code"]].polls >= 1  # told to wait first
    assert client.get_accounts()
    assert ado_users(sim_server, r["access_token"]).status_code == 200
    with sim_server.world.lock:
        store_of(sim_server.world).device_poll_interval = 5
