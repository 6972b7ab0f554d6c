"""Simulated Entra: discovery, /authorize, every token grant and its Entra-shaped errors, device flow,
token store and verify_bearer, admin API. In-process through the simulator app (ASGI)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from azdo_sim import entra, tokens
from azdo_sim.http import FULL_ACCESS
from azdo_sim.state import World
from azdo_sim.tokens import ADO_RESOURCE, GRAPH_RESOURCE, store_of

LOGIN = "https://login.microsoftonline.com"
ADO_SCOPE = f"{ADO_RESOURCE}/user_impersonation"
REDIRECT = "http://localhost:8400/callback"


@pytest.fixture
def world(tiny_world: World) -> World:
    return tiny_world


@pytest.fixture
def app(world: World) -> entra.EntraApp:
    return entra.register_app(world, client_id="0a1b2c3d-0000-4000-8000-000000000001", client_secret="s3cret")


@pytest.fixture
def client(world: World, asgi_client_for) -> httpx.Client:
    return asgi_client_for(world, None, base_url=LOGIN, suppress=False)


def claims(token: str) -> dict:
    c = tokens.decode_claims(token)
    assert c is not None
    return c


def token_req(client: httpx.Client, world: World, **form: str) -> httpx.Response:
    return client.post(f"/{world.tenant_id}/oauth2/v2.0/token", data=form)


def assert_entra_error(resp: httpx.Response, status: int, error: str, code: int) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["error"] == error
    assert body["error_codes"] == [code]
    desc = body["error_description"]
    assert re.match(rf"^AADSTS{code}: .+\r\nTrace ID: [0-9a-f-]{{36}}\r\nCorrelation ID: [0-9a-f-]{{36}}\r\n"
                    rf"Timestamp: \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\dZ$", desc, re.S), desc
    assert body["trace_id"] in desc and body["correlation_id"] in desc and body["timestamp"] in desc
    assert body["error_uri"].endswith(f"/error?code={code}")
    return body


def pkce() -> tuple[str, str]:
    verifier = "v" * 43
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


def authorize(client: httpx.Client, world: World, app: entra.EntraApp, **params: str) -> httpx.Response:
    q = {"client_id": app.client_id, "response_type": "code", "redirect_uri": REDIRECT,
         "scope": f"{ADO_SCOPE} offline_access openid profile", "state": "st-1", **params}
    return client.get(f"/{world.tenant_id}/oauth2/v2.0/authorize", params=q, follow_redirects=False)


def location_params(resp: httpx.Response) -> dict[str, str]:
    assert resp.status_code == 302, resp.text
    return {k: v[0] for k, v in parse_qs(urlsplit(resp.headers["location"]).query).items()}


def get_code(client: httpx.Client, world: World, app: entra.EntraApp, **params: str) -> str:
    return location_params(authorize(client, world, app, **params))["code"]


def redeem(client: httpx.Client, world: World, app: entra.EntraApp, code: str, **extra: str) -> httpx.Response:
    form = {"grant_type": "authorization_code", "client_id": app.client_id, "client_secret": app.client_secret,
            "code": code, "redirect_uri": REDIRECT, "scope": f"{ADO_SCOPE} offline_access openid profile",
            "client_info": "1", **extra}
    return token_req(client, world, **form)


# ---- discovery ---------------------------------------------------------------------------------------


def test_discovery_advertises_https_endpoints_on_the_request_host(client: httpx.Client, world: World) -> None:
    r = client.get(f"/{world.tenant_id}/v2.0/.well-known/openid-configuration")
    assert r.status_code == 200
    body = r.json()
    for key in ("token_endpoint", "authorization_endpoint", "device_authorization_endpoint", "jwks_uri"):
        assert body[key].startswith(f"{LOGIN}/{world.tenant_id}/"), key
    assert body["issuer"] == f"{LOGIN}/{world.tenant_id}/v2.0"
    common = client.get("/common/v2.0/.well-known/openid-configuration").json()
    assert common["issuer"] == f"{LOGIN}/{{tenantid}}/v2.0"
    assert common["token_endpoint"] == f"{LOGIN}/common/oauth2/v2.0/token"
    # over plain http the advertised endpoints are still https (msal accepts nothing else)
    plain = client.get(f"http://127.0.0.1:9999/{world.tenant_id}/v2.0/.well-known/openid-configuration").json()
    assert plain["token_endpoint"] == f"https://127.0.0.1:9999/{world.tenant_id}/oauth2/v2.0/token"


def test_unknown_tenant_is_aadsts90002(client: httpx.Client) -> None:
    r = client.get("/contoso-nope/v2.0/.well-known/openid-configuration")
    assert_entra_error(r, 400, "invalid_tenant", 90002)


# ---- authorize ------------------------------------------------------------------------------------------


def test_authorize_redirects_with_code_and_remembers_nonce_and_pkce(client, world, app) -> None:
    _, challenge = pkce()
    params = location_params(authorize(client, world, app, nonce="n-123", code_challenge=challenge,
                                       code_challenge_method="S256"))
    assert params["state"] == "st-1"
    rec = store_of(world).codes[params["code"]]
    owner = world.org("fabrikam").by_storage_key(world.org("fabrikam").owner_key)
    assert (rec.client_id, rec.redirect_uri, rec.nonce) == (app.client_id, REDIRECT, "n-123")
    assert (rec.code_challenge, rec.code_challenge_method, rec.oid) == (challenge, "S256", owner.origin_id)
    assert rec.expires - rec.issued == timedelta(minutes=10)


def test_authorize_accepts_any_loopback_port(client, world, app) -> None:
    for uri in ("http://localhost:51234", "http://127.0.0.1:8765/cb"):
        r = authorize(client, world, app, redirect_uri=uri)
        assert r.headers["location"].startswith(uri + "?code="), r.headers["location"]


def test_authorize_unknown_client_and_bad_redirect_are_shown_not_redirected(client, world, app) -> None:
    r = client.get(f"/{world.tenant_id}/oauth2/v2.0/authorize",
                   params={"client_id": "99999999-0000-4000-8000-000000000000", "response_type": "code",
                           "redirect_uri": REDIRECT, "scope": ADO_SCOPE}, follow_redirects=False)
    assert_entra_error(r, 400, "unauthorized_client", 700016)
    r = authorize(client, world, app, redirect_uri="https://evil.example/cb")
    assert_entra_error(r, 400, "invalid_request", 50011)


def test_authorize_errors_are_redirects(client, world, app) -> None:
    p = location_params(authorize(client, world, app, response_type="token"))
    assert p["error"] == "unsupported_response_type" and p["state"] == "st-1"
    p = location_params(authorize(client, world, app, scope=f"{ADO_RESOURCE}/not_a_scope"))
    assert p["error"] == "invalid_scope" and p["error_description"].startswith("AADSTS70011: ")
    with world.lock:
        app.auto_consent = False
    p = location_params(authorize(client, world, app, scope=f"{ADO_RESOURCE}/vso.graph"))
    assert p["error"] == "access_denied" and p["error_description"].startswith("AADSTS65004: ")
    p = location_params(authorize(client, world, app, scope=f"{ADO_RESOURCE}/vso.graph", prompt="none"))
    assert p["error"] == "consent_required"


def test_authorize_consents_dynamically(client, world, app) -> None:
    assert f"{ADO_RESOURCE}/vso.graph" not in app.delegated_consent
    code = get_code(client, world, app, scope=f"{ADO_RESOURCE}/vso.graph offline_access")
    assert f"{ADO_RESOURCE}/vso.graph" in app.delegated_consent
    r = redeem(client, world, app, code, scope=f"{ADO_RESOURCE}/vso.graph offline_access")
    assert r.status_code == 200, r.text
    assert claims(r.json()["access_token"])["scp"] == "vso.graph"


def test_signed_in_user_can_be_set(client, world, app) -> None:
    org = world.org("fabrikam")
    other = next(u for u in org.users() if u.origin == "aad" and u.storage_key != org.owner_key)
    r = client.put(f"/_sim/entra/apps/{app.client_id}/user", json={"user": other.principal_name})
    assert r.status_code == 200 and r.json()["signed_in_user"] == other.origin_id
    code = get_code(client, world, app)
    body = redeem(client, world, app, code).json()
    assert claims(body["access_token"])["oid"] == other.origin_id
    assert json.loads(base64.urlsafe_b64decode(body["client_info"] + "==")) == \
        {"uid": other.origin_id, "utid": world.tenant_id}


# ---- authorization_code grant ---------------------------------------------------------------------------


def test_auth_code_redeems_once_with_pkce_and_nonce(client, world, app) -> None:
    verifier, challenge = pkce()
    code = get_code(client, world, app, nonce="abc", code_challenge=challenge, code_challenge_method="S256")
    r = redeem(client, world, app, code, code_verifier=verifier)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer" and body["scope"] == ADO_SCOPE
    assert 3500 < body["expires_in"] <= 3600 and body["ext_expires_in"] == body["expires_in"]
    assert claims(body["id_token"])["nonce"] == "abc"
    assert claims(body["id_token"])["aud"] == app.client_id
    at = claims(body["access_token"])
    assert at["aud"] == ADO_RESOURCE and at["scp"] == "user_impersonation" and at["appid"] == app.client_id
    assert at["tid"] == world.tenant_id and at["exp"] - at["iat"] == 3600 and at["nbf"] == at["iat"]
    assert json.loads(base64.urlsafe_b64decode(body["access_token"].split(".")[0] + "=="))["alg"] == "none"
    again = redeem(client, world, app, code, code_verifier=verifier)
    assert_entra_error(again, 400, "invalid_grant", 54005)


def test_auth_code_pkce_mismatch(client, world, app) -> None:
    _, challenge = pkce()
    code = get_code(client, world, app, code_challenge=challenge, code_challenge_method="S256")
    assert_entra_error(redeem(client, world, app, code, code_verifier="w" * 43), 400, "invalid_grant", 501481)
    code = get_code(client, world, app, code_challenge=challenge, code_challenge_method="S256")
    assert_entra_error(redeem(client, world, app, code), 400, "invalid_grant", 501481)


def test_auth_code_redirect_mismatch_expiry_and_garbage(client, world, app) -> None:
    code = get_code(client, world, app)
    assert_entra_error(redeem(client, world, app, code, redirect_uri="http://localhost:1/other"),
                       400, "invalid_grant", 50011)
    code = get_code(client, world, app)
    world.clock.advance(timedelta(minutes=11))
    assert_entra_error(redeem(client, world, app, code), 400, "invalid_grant", 70008)
    assert_entra_error(redeem(client, world, app, "1.Anot-a-code"), 400, "invalid_grant", 70000)


def test_auth_code_without_consent_is_65001(client, world, app) -> None:
    code = get_code(client, world, app)
    with world.lock:
        app.delegated_consent.clear()
    body = assert_entra_error(redeem(client, world, app, code), 400, "invalid_grant", 65001)
    assert body["suberror"] == "consent_required"
    assert app.client_id in body["error_description"]


def test_public_client_redeems_without_secret_unless_disabled(client, world, app) -> None:
    code = get_code(client, world, app)
    assert redeem(client, world, app, code, client_secret="").status_code == 200
    with world.lock:
        app.allow_public_client = False
    code = get_code(client, world, app)
    assert_entra_error(redeem(client, world, app, code, client_secret=""), 401, "invalid_client", 7000218)


# ---- client credentials and client authentication ---------------------------------------------------


def cc(client, world, app, scope: str = f"{GRAPH_RESOURCE}/.default", **kw: str) -> httpx.Response:
    form = {"grant_type": "client_credentials", "client_id": app.client_id, "client_secret": app.client_secret,
            "scope": scope, **kw}
    return token_req(client, world, **form)


def test_client_credentials_graph_token_carries_granted_roles(client, world, app) -> None:
    r = cc(client, world, app)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"token_type", "expires_in", "ext_expires_in", "access_token"}
    c = claims(body["access_token"])
    assert c["aud"] == GRAPH_RESOURCE and c["roles"] == ["GroupMember.ReadWrite.All"] and "scp" not in c
    assert c["oid"] == app.sp_object_id and c["appidacr"] == "1"
    ado = claims(cc(client, world, app, f"{ADO_RESOURCE}/.default").json()["access_token"])
    assert ado["aud"] == ADO_RESOURCE and "roles" not in ado
    # Basic client authentication works too
    r = client.post(f"/{world.tenant_id}/oauth2/v2.0/token", auth=(app.client_id, app.client_secret),
                    data={"grant_type": "client_credentials", "scope": f"{GRAPH_RESOURCE}/.default"})
    assert r.status_code == 200


def test_client_credentials_roles_follow_admin_changes(client, world, app) -> None:
    r = client.put(f"/_sim/entra/apps/{app.client_id}/roles", json={"roles": []})
    assert r.status_code == 200 and r.json()["app_roles"] == []
    assert "roles" not in claims(cc(client, world, app).json()["access_token"])


def test_client_credentials_errors(client, world, app) -> None:
    body = assert_entra_error(cc(client, world, app, client_secret="wrong"), 401, "invalid_client", 7000215)
    assert app.client_id in body["error_description"]
    r = token_req(client, world, grant_type="client_credentials", client_id=app.client_id,
                  scope=f"{GRAPH_RESOURCE}/.default")
    assert_entra_error(r, 401, "invalid_client", 7000218)
    r = token_req(client, world, grant_type="client_credentials", client_id="12345678-0000-4000-8000-00000000dead",
                  client_secret="x", scope=f"{GRAPH_RESOURCE}/.default")
    assert_entra_error(r, 400, "unauthorized_client", 700016)
    assert_entra_error(cc(client, world, app, scope=f"{GRAPH_RESOURCE}/User.Read"), 400, "invalid_scope", 1002012)
    assert_entra_error(cc(client, world, app, scope=f"{ADO_RESOURCE}/nope"), 400, "invalid_scope", 70011)
    assert_entra_error(cc(client, world, app, scope="api://unknown/.default"), 400, "invalid_resource", 500011)
    assert_entra_error(cc(client, world, app, scope=f"{ADO_RESOURCE}/.default {GRAPH_RESOURCE}/.default"),
                       400, "invalid_scope", 28000)
    r = token_req(client, world, grant_type="password", client_id=app.client_id, client_secret=app.client_secret)
    assert_entra_error(r, 400, "unsupported_grant_type", 70003)
    r = token_req(client, world, client_id=app.client_id)
    assert_entra_error(r, 400, "invalid_request", 900144)


def test_expired_secret_is_7000222_and_rotation_fixes_it(client, world, app) -> None:
    r = client.post(f"/_sim/entra/apps/{app.client_id}/secret", json={"expire": True})
    assert r.status_code == 200
    assert_entra_error(cc(client, world, app), 401, "invalid_client", 7000222)
    r = client.post(f"/_sim/entra/apps/{app.client_id}/secret", json={})
    new_secret = r.json()["client_secret"]
    assert new_secret != "s3cret" and app.client_secret == new_secret
    assert cc(client, world, app).status_code == 200


def test_secret_expires_with_the_clock(client, world) -> None:
    app = entra.register_app(world, secret_lifetime=timedelta(days=1))
    assert cc(client, world, app).status_code == 200
    world.clock.advance(timedelta(days=2))
    assert_entra_error(cc(client, world, app), 401, "invalid_client", 7000222)


def test_correlation_id_echoes_client_request_id(client, world, app) -> None:
    r = client.post(f"/{world.tenant_id}/oauth2/v2.0/token",
                    headers={"client-request-id": "11111111-2222-4333-8444-555555555555"},
                    data={"grant_type": "client_credentials", "client_id": app.client_id,
                          "client_secret": "bad", "scope": f"{GRAPH_RESOURCE}/.default"})
    assert r.json()["correlation_id"] == "11111111-2222-4333-8444-555555555555"


def test_throttle_knob_answers_429_with_retry_after(client, world, app) -> None:
    r = client.post("/_sim/entra/throttle", json={"count": 2, "retry_after": 7})
    assert r.status_code == 200
    for _ in range(2):
        resp = cc(client, world, app)
        assert_entra_error(resp, 429, "temporarily_unavailable", 50196)
        assert resp.headers["retry-after"] == "7"
    assert cc(client, world, app).status_code == 200


# ---- refresh tokens ------------------------------------------------------------------------------------


def refresh(client, world, app, rt: str, scope: str = f"{ADO_SCOPE} offline_access openid profile"):
    return token_req(client, world, grant_type="refresh_token", client_id=app.client_id,
                     client_secret=app.client_secret, refresh_token=rt, scope=scope)


def test_refresh_token_rotates_and_lasts_90_days(client, world, app) -> None:
    first = redeem(client, world, app, get_code(client, world, app)).json()
    r = refresh(client, world, app, first["refresh_token"])
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"] and second["access_token"] != first["access_token"]
    assert_entra_error(refresh(client, world, app, first["refresh_token"]), 400, "invalid_grant", 70000)
    rec = store_of(world).refresh_tokens[second["refresh_token"]]
    assert rec.expires - rec.issued == timedelta(days=90)
    # one refresh token serves another consented resource (Entra RTs are multi-resource)
    g = refresh(client, world, app, second["refresh_token"], scope="User.Read offline_access")
    assert g.status_code == 200 and claims(g.json()["access_token"])["aud"] == GRAPH_RESOURCE
    world.clock.advance(timedelta(days=91))
    assert_entra_error(refresh(client, world, app, g.json()["refresh_token"]), 400, "invalid_grant", 70008)


def test_revoked_refresh_token_and_access_token(client, world, app) -> None:
    body = redeem(client, world, app, get_code(client, world, app)).json()
    org = world.org("fabrikam")
    owner = org.by_storage_key(org.owner_key)
    assert tokens.verify_bearer(world, body["access_token"], "azure_devops", org="fabrikam") is not None
    r = client.post("/_sim/entra/revoke", json={"user": owner.principal_name})
    assert r.status_code == 200 and r.json()["revoked"] >= 2
    assert_entra_error(refresh(client, world, app, body["refresh_token"]), 400, "invalid_grant", 50173)
    assert tokens.verify_bearer(world, body["access_token"], "azure_devops", org="fabrikam") is None
    assert tokens.diagnose(world, body["access_token"], "azure_devops") == "revoked"


def test_refresh_without_consent_is_65001(client, world, app) -> None:
    body = redeem(client, world, app, get_code(client, world, app)).json()
    r = client.put(f"/_sim/entra/apps/{app.client_id}/consent", json={"scopes": []})
    assert r.status_code == 200
    err = assert_entra_error(refresh(client, world, app, body["refresh_token"]), 400, "invalid_grant", 65001)
    assert err["suberror"] == "consent_required"


# ---- device code ---------------------------------------------------------------------------------------


def start_device(client, world, app, scope: str = f"{ADO_SCOPE} offline_access openid profile") -> dict:
    r = client.post(f"/{world.tenant_id}/oauth2/v2.0/devicecode", data={"client_id": app.client_id, "scope": scope})
    assert r.status_code == 200, r.text
    return r.json()


def poll(client, world, app, device_code: str) -> httpx.Response:
    return token_req(client, world, grant_type="urn:ietf:params:oauth:grant-type:device_code",
                     client_id=app.client_id, device_code=device_code, client_info="1")


def test_device_code_pending_then_approved_on_the_verification_page(client, world, app) -> None:
    flow = start_device(client, world, app)
    assert re.fullmatch(r"[A-Z0-9]{9}", flow["user_code"])
    assert flow["verification_uri"] == f"{LOGIN}/common/oauth2/deviceauth"
    assert flow["user_code"] in flow["message"] and flow["expires_in"] == 900 and flow["interval"] == 5
    assert_entra_error(poll(client, world, app, flow["device_code"]), 400, "authorization_pending", 70016)
    page = client.get(flow["verification_uri"], params={"otc": flow["user_code"]})
    assert page.status_code == 200 and "You have signed in" in page.text
    r = poll(client, world, app, flow["device_code"])
    assert r.status_code == 200, r.text
    assert "refresh_token" in r.json() and "client_info" in r.json()
    assert_entra_error(poll(client, world, app, flow["device_code"]), 400, "invalid_grant", 54005)


def test_device_code_auto_approve_decline_and_expiry(client, world, app) -> None:
    r = client.put("/_sim/entra/config", json={"device_auto_approve_after": 2})
    assert r.json()["device_auto_approve_after"] == 2
    flow = start_device(client, world, app)
    assert poll(client, world, app, flow["device_code"]).json()["error"] == "authorization_pending"
    assert poll(client, world, app, flow["device_code"]).status_code == 200
    client.put("/_sim/entra/config", json={"device_auto_approve_after": None})

    flow = start_device(client, world, app)
    listed = client.get("/_sim/entra/devicecodes").json()
    assert flow["user_code"] in {d["user_code"] for d in listed}
    r = client.post(f"/_sim/entra/devicecodes/{flow['user_code']}", json={"action": "decline"})
    assert r.status_code == 200
    assert_entra_error(poll(client, world, app, flow["device_code"]), 400, "authorization_declined", 70000)

    flow = start_device(client, world, app)
    world.clock.advance(timedelta(minutes=16))
    assert_entra_error(poll(client, world, app, flow["device_code"]), 400, "expired_token", 70020)
    assert client.post("/_sim/entra/devicecodes/NOPE12345", json={}).status_code == 404


def test_devicecode_endpoint_errors(client, world, app) -> None:
    r = client.post(f"/{world.tenant_id}/oauth2/v2.0/devicecode", data={"client_id": "nope", "scope": ADO_SCOPE})
    assert_entra_error(r, 400, "unauthorized_client", 700016)
    r = client.post(f"/{world.tenant_id}/oauth2/v2.0/devicecode",
                    data={"client_id": app.client_id, "scope": f"{ADO_RESOURCE}/bogus"})
    assert_entra_error(r, 400, "invalid_scope", 70011)


# ---- verify_bearer --------------------------------------------------------------------------------------


def issue(world: World, app: entra.EntraApp, audience: str, oid: str, *, delegated: bool = True,
          scopes: frozenset[str] = frozenset(), roles: frozenset[str] = frozenset()) -> str:
    with world.lock:
        return store_of(world).issue_access_token(world, audience=audience, client_id=app.client_id, oid=oid,
                                                  delegated=delegated, scopes=scopes, roles=roles).token


def test_verify_bearer_maps_subjects_and_scopes(world, app) -> None:
    org = world.org("fabrikam")
    owner = org.by_storage_key(org.owner_key)
    full = issue(world, app, "azure_devops", owner.origin_id, scopes=frozenset({"user_impersonation"}))
    c = tokens.verify_bearer(world, full, "azure_devops", org="fabrikam")
    assert c is not None and c.kind == "bearer" and c.user_key == owner.storage_key
    assert c.scopes == {FULL_ACCESS} and c.org is None
    assert tokens.verify_bearer(world, full, "azure_devops", org=None).user_key == owner.storage_key
    granular = issue(world, app, "azure_devops", owner.origin_id, scopes=frozenset({"vso.graph", "vso.project"}))
    c = tokens.verify_bearer(world, granular, "azure_devops", org="fabrikam")
    assert c.scopes == {"vso.graph", "vso.project"} and c.has("vso.graph") and not c.has("vso.graph_manage")
    stranger = issue(world, app, "azure_devops", world.new_guid(), scopes=frozenset({"user_impersonation"}))
    assert tokens.verify_bearer(world, stranger, "azure_devops", org="fabrikam").user_key is None
    sp = next(org.service_principals())
    app_only = issue(world, app, "azure_devops", sp.origin_id, delegated=False)
    c = tokens.verify_bearer(world, app_only, "azure_devops", org="fabrikam")
    assert c.user_key == sp.storage_key and c.scopes == {FULL_ACCESS}
    graph = issue(world, app, "msgraph", app.sp_object_id, delegated=False,
                  roles=frozenset({"GroupMember.ReadWrite.All"}))
    c = tokens.verify_bearer(world, graph, "msgraph")
    assert c.roles == {"GroupMember.ReadWrite.All"} and c.user_key is None
    assert tokens.verify_bearer(world, graph, "azure_devops", org="fabrikam") is None
    assert tokens.verify_bearer(world, full, "msgraph") is None


def test_verify_bearer_rejects_expired_forged_and_garbage(world, app) -> None:
    org = world.org("fabrikam")
    owner = org.by_storage_key(org.owner_key)
    tok = issue(world, app, "azure_devops", owner.origin_id, scopes=frozenset({"user_impersonation"}))
    forged = tokens.unsigned_jwt({**claims(tok), "exp": claims(tok)["exp"] + 86400})
    assert tokens.verify_bearer(world, forged, "azure_devops", org="fabrikam") is None
    assert tokens.diagnose(world, forged, "azure_devops") == "unknown"
    assert tokens.diagnose(world, "garbage", "azure_devops") == "malformed"
    world.clock.advance(timedelta(minutes=59))
    assert tokens.verify_bearer(world, tok, "azure_devops", org="fabrikam") is not None
    world.clock.advance(timedelta(minutes=2))
    assert tokens.verify_bearer(world, tok, "azure_devops", org="fabrikam") is None
    assert tokens.diagnose(world, tok, "azure_devops") == "expired"


def test_bearer_against_azure_devops_routes(world, app, asgi_client_for) -> None:
    org = world.org("fabrikam")
    owner = org.by_storage_key(org.owner_key)
    tok = issue(world, app, "azure_devops", owner.origin_id, scopes=frozenset({"user_impersonation"}))
    ado = asgi_client_for(world, None, base_url="https://vssps.dev.azure.com")
    url = "/fabrikam/_apis/graph/users?api-version=7.1-preview.1"
    assert ado.get(url, headers={"Authorization": f"Bearer {tok}"}).status_code == 200
    graph_tok = issue(world, app, "msgraph", owner.origin_id, scopes=frozenset({"User.Read"}))
    assert ado.get(url, headers={"Authorization": f"Bearer {graph_tok}"}).status_code == 401


# ---- admin API ------------------------------------------------------------------------------------------


def test_admin_registers_and_lists_apps_without_secrets(client, world) -> None:
    r = client.post("/_sim/entra/apps", json={"display_name": "other", "app_roles": ["Group.Read.All"]})
    assert r.status_code == 201
    created = r.json()
    assert created["client_secret"] and created["app_roles"] == ["Group.Read.All"]
    listed = client.get("/_sim/entra/apps").json()
    assert created["client_id"] in {a["client_id"] for a in listed}
    assert all("client_secret" not in a for a in listed)
    assert client.get(f"/_sim/entra/apps/{created['client_id']}").json()["display_name"] == "other"
    assert client.get("/_sim/entra/apps/nope").status_code == 404
    dup = client.post("/_sim/entra/apps", json={"client_id": created["client_id"]})
    assert dup.status_code == 400
    assert "s3cret" not in repr(entra.register_app(world, client_secret="s3cret"))


def test_register_app_reuses_an_existing_service_principal(world) -> None:
    sp = next(world.org("fabrikam").service_principals())
    app = entra.register_app(world, client_id=sp.application_id)
    assert app.sp_object_id == sp.origin_id
    assert world.entra_apps[app.client_id] is app


def test_authorize_form_post_and_logout(client, world, app) -> None:
    r = authorize(client, world, app, response_mode="form_post")
    assert r.status_code == 200
    assert f'action="{REDIRECT}"' in r.text and 'name="state" value="st-1"' in r.text
    code = re.search(r'name="code" value="([^"]+)"', r.text).group(1)
    assert redeem(client, world, app, code).status_code == 200
    out = client.get(f"/{world.tenant_id}/oauth2/v2.0/logout", params={"post_logout_redirect_uri": REDIRECT},
                     follow_redirects=False)
    assert out.status_code == 302 and out.headers["location"] == REDIRECT


def test_non_ascii_secret_and_verifier_are_plain_mismatches(client, world, app) -> None:
    assert_entra_error(cc(client, world, app, client_secret="sécret"), 401, "invalid_client", 7000215)
    code = get_code(client, world, app, code_challenge="défi", code_challenge_method="plain")
    assert_entra_error(redeem(client, world, app, code, code_verifier="vérifier"), 400, "invalid_grant", 501481)
