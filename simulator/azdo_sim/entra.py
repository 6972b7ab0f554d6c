"""Simulated Microsoft Entra ID (login.microsoftonline.com): app registrations and the OAuth 2.0 v2 endpoints.

Served at the root of the simulator, as on the real authority host:

    GET  /{tenant}/v2.0/.well-known/openid-configuration   discovery (msal fetches it in its constructor)
    GET  /{tenant}/discovery/v2.0/keys                     JWKS (empty: tokens are unsigned)
    GET  /{tenant}/oauth2/v2.0/authorize                   auto sign-in + consent → 302 redirect_uri?code&state
                                                           (response_mode query | fragment | form_post)
    GET  /{tenant}/oauth2/v2.0/logout                      end session (→ post_logout_redirect_uri)
    POST /{tenant}/oauth2/v2.0/token                       client_credentials | authorization_code |
                                                           refresh_token | device_code grants
    POST /{tenant}/oauth2/v2.0/devicecode                  device authorization (user_code, device_code)
    GET|POST /{tenant}/oauth2/deviceauth                   the "enter code" page (verification_uri);
                                                           `?otc=CODE` or a form post approves the code

`{tenant}` is the world's tenant id, `common` or `organizations`; anything else is AADSTS90002.
Advertised endpoints are always `https://<request host>/…`: msal accepts only https authorities and
canonicalizes the discovered token endpoint, and the simulator is served over TLS.

Sign-in: /authorize signs in the app's `signed_in_user` (default: the owner of the first organization)
without a page, consents dynamically (`auto_consent`), and redirects with a single-use code (10 min)
that remembers client, redirect_uri, scope, nonce and the PKCE challenge. Device codes stay
`authorization_pending` until approved (admin route, the deviceauth page, or automatically on the
n-th poll when `device_auto_approve_after` is set).

Admin API (no auth, loopback only; not a real route):

    GET    /_sim/entra/apps                        registrations (secrets hidden)
    POST   /_sim/entra/apps                        register: {client_id?, client_secret?, display_name?,
                                                   app_roles?, delegated_consent?, signed_in_user?,
                                                   redirect_uris?, secret_expires_in_seconds?,
                                                   allow_public_client?, auto_consent?} → app incl. secret
    GET    /_sim/entra/apps/{client_id}            one registration
    PUT    /_sim/entra/apps/{client_id}/consent    {scopes: [full scope strings], auto_consent?}
    PUT    /_sim/entra/apps/{client_id}/roles      {roles: [...]} application roles granted on Graph
    PUT    /_sim/entra/apps/{client_id}/user       {user: Entra oid | UPN | ADO storage key | null}
    POST   /_sim/entra/apps/{client_id}/secret     {expire: true} expires it; otherwise rotates → new secret
    GET    /_sim/entra/devicecodes                 pending device codes
    POST   /_sim/entra/devicecodes/{user_code}     {action: approve|decline, user?}
    POST   /_sim/entra/revoke                      {client_id?, user?, token?, access_tokens?, refresh_tokens?}
    POST   /_sim/entra/throttle                    {count, retry_after}: next token requests answer 429
    PUT    /_sim/entra/config                      {device_auto_approve_after, device_poll_interval,
                                                   access_token_lifetime_seconds}
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from . import tokens
from .http import world as world_of
from .state import SimError, World, b64url
from .tokens import ADO_RESOURCE, GRAPH_APP_ID, GRAPH_RESOURCE, TokenStore, store_of

OIDC_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})
DEFAULT_APP_ROLES = ("GroupMember.ReadWrite.All",)
DEFAULT_DELEGATED = (f"{ADO_RESOURCE}/user_impersonation", f"{GRAPH_RESOURCE}/User.Read")
GENERIC_TENANTS = ("common", "organizations")
# Microsoft Graph delegated permissions the simulator knows (unknown names are AADSTS70011).
GRAPH_DELEGATED = frozenset({
    "User.Read", "User.ReadBasic.All", "User.Read.All", "Group.Read.All", "Group.ReadWrite.All",
    "GroupMember.Read.All", "GroupMember.ReadWrite.All", "Directory.Read.All",
    "Directory.ReadWrite.All", "Application.Read.All",
})
_VSO = re.compile(r"^vso\.[a-z_]+$")


# ---------------------------------------------------------------------------------------------
# app registrations
# ---------------------------------------------------------------------------------------------


@dataclass
class EntraApp:
    """An Entra app registration together with its service principal in the world's tenant."""

    tenant_id: str
    client_id: str
    client_secret: str = field(repr=False)
    secret_expires: datetime
    display_name: str
    sp_object_id: str  # the service principal's object id: `oid` of app-only tokens
    # Application permissions on Microsoft Graph with admin consent (the `roles` claim).
    app_roles: set[str] = field(default_factory=set)
    # Delegated permissions consented, as full scope strings "<resource>/<name>".
    delegated_consent: set[str] = field(default_factory=set)
    # Dynamic consent: /authorize consents to requested scopes (the user clicks "Accept").
    auto_consent: bool = True
    signed_in_user: str | None = None  # Entra object id; None: the first organization's owner
    redirect_uris: list[str] = field(default_factory=lambda: ["http://localhost"])
    # Device flow and secretless auth-code redemption need "Allow public client flows".
    allow_public_client: bool = True
    secret_id: str = ""

    def public(self) -> dict[str, Any]:
        """Admin API view: never the secret, only its first characters (as the portal shows)."""
        return {"tenant_id": self.tenant_id, "client_id": self.client_id, "display_name": self.display_name,
                "secret_hint": self.client_secret[:3], "secret_id": self.secret_id,
                "secret_expires": self.secret_expires.isoformat(),
                "service_principal_id": self.sp_object_id, "app_roles": sorted(self.app_roles),
                "delegated_consent": sorted(self.delegated_consent), "auto_consent": self.auto_consent,
                "signed_in_user": self.signed_in_user, "redirect_uris": list(self.redirect_uris),
                "allow_public_client": self.allow_public_client}


def normalize_scope(scope: str, graph_aliases: tuple[str, ...] = ()) -> str:
    """Full form "<resource>/<name>" with canonical resource spelling (Graph's app id → its URI).

    `graph_aliases`: other resource URIs that mean Microsoft Graph here, i.e. the simulator's own
    https origin, since it serves Graph too (a client may configure it as its Graph host)."""
    res, _, name = scope.rpartition("/")
    if not res:
        return f"{GRAPH_RESOURCE}/{scope}"
    low = res.lower().rstrip("/")
    if low in (GRAPH_RESOURCE, GRAPH_APP_ID, *graph_aliases):
        return f"{GRAPH_RESOURCE}/{name}"
    if low == ADO_RESOURCE:
        return f"{ADO_RESOURCE}/{name}"
    return scope


def resolve_user(world: World, ref: str) -> str:
    """Entra object id of a user given by object id, UPN or Azure DevOps storage key."""
    if world.entra_objects.get(ref) == "user":
        return ref
    for org in world.orgs.values():
        ident = org.by_storage_key(ref)
        if ident is not None and ident.origin == "aad" and ident.subject_kind == "user":
            return ident.origin_id
        for u in org.users():
            if u.origin == "aad" and u.principal_name.lower() == ref.lower():
                return u.origin_id
    raise SimError("not_found", f"No Entra user {ref!r} in the tenant.")


def default_user(world: World) -> str | None:
    """The owner of the first organization (if an Entra user), who 'signs in' by default."""
    for org in world.orgs.values():
        owner = org.by_storage_key(org.owner_key) if org.owner_key else None
        if owner is not None and owner.origin == "aad":
            return owner.origin_id
        return None
    return None


def register_app(world: World, *, client_id: str | None = None, client_secret: str | None = None,
                 display_name: str = "azdo-pipeline", app_roles: tuple[str, ...] | list[str] = DEFAULT_APP_ROLES,
                 signed_in_user: str | None = None,
                 delegated_consent: tuple[str, ...] | list[str] = DEFAULT_DELEGATED,
                 redirect_uris: tuple[str, ...] | list[str] = ("http://localhost",),
                 secret_lifetime: timedelta = timedelta(days=180), auto_consent: bool = True,
                 allow_public_client: bool = True, sp_object_id: str | None = None) -> EntraApp:
    """Register an app (and its service principal) in the world's tenant; returns it.

    When an organization already has an `aadsp` service principal whose application id is this
    client id, its object id is reused, so app-only Azure DevOps tokens resolve to that principal.
    """
    with world.lock:
        cid = (client_id or world.new_guid()).lower()
        if sp_object_id is None:
            for org in world.orgs.values():
                for sp in org.service_principals():
                    if sp.application_id.lower() == cid:
                        sp_object_id = sp.origin_id
                        break
                if sp_object_id:
                    break
        sp_oid = sp_object_id or world.new_guid()
        world.entra_objects[sp_oid] = "servicePrincipal"
        user = resolve_user(world, signed_in_user) if signed_in_user else None
        app = EntraApp(
            tenant_id=world.tenant_id, client_id=cid, client_secret=client_secret or _new_secret(),
            secret_expires=world.clock.now() + secret_lifetime, display_name=display_name,
            sp_object_id=sp_oid, app_roles=set(app_roles),
            delegated_consent={normalize_scope(s) for s in delegated_consent}, auto_consent=auto_consent,
            signed_in_user=user, redirect_uris=list(redirect_uris),
            allow_public_client=allow_public_client, secret_id=world.new_guid())
        world.entra_apps[cid] = app
        return app


def _new_secret() -> str:
    # The real format: 3 chars, "8Q~", then 37 url-safe-ish characters.
    return secrets.token_urlsafe(3)[:3] + "8Q~" + secrets.token_urlsafe(30)[:37]


def get_app(world: World, client_id: str) -> EntraApp | None:
    app = world.entra_apps.get(client_id.lower())
    return app if isinstance(app, EntraApp) else None


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------


class EntraError(Exception):
    """An Entra error answer (token endpoint JSON, or an error redirect from /authorize)."""

    def __init__(self, status: int, error: str, code: int, message: str, *,
                 suberror: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"AADSTS{code}: {message}")
        self.status, self.error, self.code, self.message = status, error, code, message
        self.suberror = suberror
        self.headers = headers or {}

    def body(self, request: Request) -> dict[str, Any]:
        ts = world_of(request).clock.now().astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        trace = str(uuid.uuid4())
        corr = request.headers.get("client-request-id") or str(uuid.uuid4())
        body: dict[str, Any] = {
            "error": self.error,
            "error_description": f"AADSTS{self.code}: {self.message}\r\nTrace ID: {trace}\r\n"
                                 f"Correlation ID: {corr}\r\nTimestamp: {ts}",
            "error_codes": [self.code], "timestamp": ts, "trace_id": trace, "correlation_id": corr,
            "error_uri": f"https://{request.url.netloc}/error?code={self.code}",
        }
        if self.suberror:
            body["suberror"] = self.suberror
        return body

    def response(self, request: Request) -> JSONResponse:
        body = self.body(request)
        headers = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache",
                   "x-ms-request-id": body["trace_id"], **self.headers}
        return JSONResponse(body, status_code=self.status, headers=headers)


def _missing(param: str) -> EntraError:
    return EntraError(400, "invalid_request", 900144,
                      f"The request body must contain the following parameter: '{param}'.")


def _unknown_client(cid: str, tenant: str) -> EntraError:
    return EntraError(400, "unauthorized_client", 700016,
                      f"Application with identifier '{cid}' was not found in the directory '{tenant}'. "
                      "This can happen if the application has not been installed by the administrator "
                      "of the tenant or consented to by any user in the tenant. You may have sent your "
                      "authentication request to the wrong tenant.")


def _consent_required(app: EntraApp) -> EntraError:
    return EntraError(400, "invalid_grant", 65001,
                      f"The user or administrator has not consented to use the application with ID "
                      f"'{app.client_id}' named '{app.display_name}'. Send an interactive authorization "
                      "request for this user and resource.", suberror="consent_required")


def _invalid_scope(scope: str, detail: str = "") -> EntraError:
    return EntraError(400, "invalid_scope", 70011,
                      f"The provided value for the input parameter 'scope' is not valid. "
                      f"The scope '{scope}' is not valid.{(' ' + detail) if detail else ''}")


def _check_tenant(world: World, tenant: str) -> None:
    if tenant.lower() not in (world.tenant_id.lower(), *GENERIC_TENANTS):
        raise EntraError(400, "invalid_tenant", 90002,
                         f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID "
                         "and are signing into the correct cloud. Check with your subscription "
                         "administrator, this may happen if there are no active subscriptions for the "
                         "tenant.")


# ---------------------------------------------------------------------------------------------
# scopes and consent
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class ScopeRequest:
    audience: str  # azure_devops | msgraph
    names: frozenset[str]  # short names on that resource (".default" included as is)
    oidc: frozenset[str]  # openid, profile, offline_access, email


def graph_aliases(request: Request) -> tuple[str, ...]:
    return (f"https://{request.url.netloc}".lower(),)


def parse_scope(world: World, scope: str | None, aliases: tuple[str, ...] = ()) -> ScopeRequest:
    """Split a v2 `scope` parameter into one resource's permissions plus OIDC scopes."""
    if not scope or not scope.split():
        raise EntraError(400, "invalid_request", 900144,
                         "The request body must contain the following parameter: 'scope'.")
    oidc: set[str] = set()
    by_res: dict[str, set[str]] = {}
    for item in scope.split():
        if item.lower() in OIDC_SCOPES:
            oidc.add(item.lower())
            continue
        full = normalize_scope(item, aliases)
        res, _, name = full.rpartition("/")
        if res == ADO_RESOURCE:
            if name not in (".default", "user_impersonation") and not _VSO.match(name):
                raise _invalid_scope(item, "The scope does not exist on the resource.")
            by_res.setdefault("azure_devops", set()).add(name)
        elif res == GRAPH_RESOURCE:
            if name != ".default" and name not in GRAPH_DELEGATED:
                raise _invalid_scope(item, "The scope does not exist on the resource.")
            by_res.setdefault("msgraph", set()).add(name)
        else:
            raise EntraError(400, "invalid_resource", 500011,
                             f"The resource principal named {res} was not found in the tenant named "
                             f"{world.tenant_id}. This can happen if the application has not been "
                             "installed by the administrator of the tenant or consented to by any user "
                             "in the tenant. You might have sent your authentication request to the "
                             "wrong tenant.")
    if len(by_res) > 1:
        raise EntraError(400, "invalid_scope", 28000,
                         "Provided value for the input parameter scope is not valid because it contains "
                         f"more than one resource. Scope {scope} is not valid.")
    if not by_res:  # OIDC scopes only: Entra issues a Graph token for User.Read
        return ScopeRequest("msgraph", frozenset({"User.Read"}), frozenset(oidc))
    audience, names = next(iter(by_res.items()))
    if ".default" in names and len(names) > 1:
        raise _invalid_scope(scope, "'.default' cannot be combined with other scopes of the resource.")
    return ScopeRequest(audience, frozenset(names), frozenset(oidc))


def _resource(audience: str) -> str:
    return tokens.AUDIENCES[audience]


def consented(app: EntraApp, audience: str) -> set[str]:
    prefix = _resource(audience) + "/"
    return {s[len(prefix):] for s in app.delegated_consent if s.startswith(prefix)}


def delegated_grant(app: EntraApp, req: ScopeRequest) -> frozenset[str]:
    """Scope names a delegated token gets; EntraError 65001 when consent is missing."""
    have = consented(app, req.audience)
    if ".default" in req.names:
        if not have:
            raise _consent_required(app)
        return frozenset(have)
    if not req.names <= have:
        raise _consent_required(app)
    return req.names


# ---------------------------------------------------------------------------------------------
# token responses
# ---------------------------------------------------------------------------------------------


def _base(request: Request) -> str:
    return f"https://{request.url.netloc}"


def _user_claims(world: World, oid: str) -> dict[str, Any]:
    for org in world.orgs.values():
        desc = org.by_origin_id.get(oid)
        ident = org.identities.get(desc) if desc else None
        if ident is not None:
            return {"name": ident.display_name, "preferred_username": ident.principal_name}
    return {"name": "", "preferred_username": ""}


def _token_response(request: Request, world: World, store: TokenStore, app: EntraApp, oid: str,
                    req: ScopeRequest, names: frozenset[str], *, nonce: str | None = None,
                    client_info: bool = False) -> dict[str, Any]:
    """A delegated token response: access token, plus refresh/id token and client_info as asked."""
    uc = _user_claims(world, oid)
    at = store.issue_access_token(world, audience=req.audience, client_id=app.client_id, oid=oid,
                                  delegated=True, scopes=names,
                                  extra_claims={"name": uc["name"], "upn": uc["preferred_username"]})
    now = world.clock.now()
    expires_in = int((at.expires - now).total_seconds()) - 1
    if req.audience == "azure_devops":
        scope = " ".join(f"{ADO_RESOURCE}/{n}" for n in sorted(names))
    else:
        scope = " ".join(sorted(names))
    body: dict[str, Any] = {"token_type": "Bearer", "scope": scope, "expires_in": expires_in,
                            "ext_expires_in": expires_in, "access_token": at.token}
    if "offline_access" in req.oidc:
        body["refresh_token"] = store.issue_refresh_token(world, client_id=app.client_id, oid=oid).token
    if "openid" in req.oidc:
        # Wall-clock times, not the simulated clock: msal < 1.38 checks nbf/exp against the real
        # clock, and tests move the simulated clock ahead by days.
        wall = datetime.now(UTC)
        claims: dict[str, Any] = {
            "aud": app.client_id, "iss": f"{_base(request)}/{world.tenant_id}/v2.0",
            "iat": int(wall.timestamp()), "nbf": int(wall.timestamp()),
            "exp": int((wall + timedelta(hours=1)).timestamp()),
            "oid": oid, "sub": b64url(hashlib.sha256(f"{oid}:{app.client_id}".encode()).hexdigest()[:32]),
            "tid": world.tenant_id, "ver": "2.0", **uc,
        }
        if nonce:
            claims["nonce"] = nonce
        body["id_token"] = tokens.unsigned_jwt(claims)
    if client_info:
        body["client_info"] = b64url(json.dumps({"uid": oid, "utid": world.tenant_id}))
    return body


def _app_token_response(world: World, store: TokenStore, app: EntraApp, req: ScopeRequest) -> dict[str, Any]:
    roles = frozenset(app.app_roles) if req.audience == "msgraph" else frozenset()
    at = store.issue_access_token(world, audience=req.audience, client_id=app.client_id,
                                  oid=app.sp_object_id, delegated=False, roles=roles)
    expires_in = int((at.expires - world.clock.now()).total_seconds()) - 1
    return {"token_type": "Bearer", "expires_in": expires_in, "ext_expires_in": expires_in,
            "access_token": at.token}


# ---------------------------------------------------------------------------------------------
# routes: discovery
# ---------------------------------------------------------------------------------------------


async def openid_configuration(request: Request) -> Response:
    w = world_of(request)
    tenant = request.path_params["tenant"]
    try:
        _check_tenant(w, tenant)
    except EntraError as e:
        return e.response(request)
    base = _base(request)
    issuer_tid = w.tenant_id if tenant.lower() not in GENERIC_TENANTS else "{tenantid}"
    return JSONResponse({
        "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                  "client_secret_basic"],
        "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": f"{base}/{issuer_tid}/v2.0",
        "request_uri_parameter_supported": False,
        "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/devicecode",
        "http_logout_supported": True, "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{base}/{tenant}/oauth2/v2.0/logout",
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "acr", "nonce",
                             "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"],
        "tenant_region_scope": "NA", "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net", "msgraph_host": request.url.netloc,
        "rbac_url": "https://pas.windows.net",
    })


async def jwks(request: Request) -> Response:
    try:
        _check_tenant(world_of(request), request.path_params["tenant"])
    except EntraError as e:
        return e.response(request)
    return JSONResponse({"keys": []})


# ---------------------------------------------------------------------------------------------
# routes: authorize
# ---------------------------------------------------------------------------------------------


def redirect_allowed(app: EntraApp, uri: str) -> bool:
    """Registered URIs match exactly; any http://localhost or 127.0.0.1 port/path is accepted
    (Entra ignores the port of loopback redirect URIs; the simulator is lenient on the path too)."""
    parts = urlsplit(uri)
    if parts.scheme == "http" and parts.hostname in ("localhost", "127.0.0.1"):
        return True
    return uri in app.redirect_uris


_FORM_POST = """<html><head><title>Working...</title></head><body>
<form method="POST" name="hiddenform" action="{action}">{inputs}
<noscript><p>Script is disabled. Click Submit to continue.</p><input type="submit" value="Submit" /></noscript>
</form><script language="javascript">document.forms[0].submit();</script></body></html>"""


def _redirect(uri: str, params: dict[str, str], mode: str) -> Response:
    if mode == "form_post":
        inputs = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}" />'
                         for k, v in params.items())
        return HTMLResponse(_FORM_POST.format(action=html.escape(uri), inputs=inputs))
    sep = "#" if mode == "fragment" else ("&" if "?" in uri else "?")
    return RedirectResponse(uri + sep + urlencode(params), status_code=302)


async def authorize(request: Request) -> Response:
    w = world_of(request)
    q = request.query_params
    tenant = request.path_params["tenant"]
    with w.lock:
        # Errors about the client or the redirect URI are shown, never redirected (RFC 6749 §4.1.2.1).
        try:
            _check_tenant(w, tenant)
            cid = q.get("client_id")
            if not cid:
                raise _missing("client_id")
            app = get_app(w, cid)
            if app is None:
                raise _unknown_client(cid, tenant)
            redirect_uri = q.get("redirect_uri") or (app.redirect_uris[0] if app.redirect_uris else "")
            if not redirect_uri or not redirect_allowed(app, redirect_uri):
                raise EntraError(400, "invalid_request", 50011,
                                 f"The redirect URI '{redirect_uri}' specified in the request does not "
                                 f"match the redirect URIs configured for the application "
                                 f"'{app.client_id}'. Make sure the redirect URI sent in the request "
                                 "matches one added to your application in the Azure portal.")
        except EntraError as e:
            return e.response(request)
        state = q.get("state")
        mode = q.get("response_mode", "query")
        try:
            _authorize_checks(q)
            req = parse_scope(w, q.get("scope"), graph_aliases(request))
            oid = app.signed_in_user or default_user(w)
            if oid is None:
                raise EntraError(400, "login_required", 50058,
                                 "A silent sign-in request was sent but no user is signed in.")
            _consent_at_authorize(app, req, prompt_none=q.get("prompt") == "none")
            code = store_of(w).issue_code(
                w, client_id=app.client_id, redirect_uri=redirect_uri, scope=q.get("scope", ""), oid=oid,
                nonce=q.get("nonce"), code_challenge=q.get("code_challenge"),
                code_challenge_method=(q.get("code_challenge_method") or "plain")
                if q.get("code_challenge") else None)
        except EntraError as e:
            params = {"error": e.error, "error_description": f"AADSTS{e.code}: {e.message}",
                      "error_uri": f"https://{request.url.netloc}/error?code={e.code}"}
            if e.suberror:
                params["error_subcode"] = e.suberror
            if state is not None:
                params["state"] = state
            return _redirect(redirect_uri, params, mode)
        params = {"code": code.code}
        if state is not None:
            params["state"] = state
        params["session_state"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"session:{oid}"))
        return _redirect(redirect_uri, params, mode)


def _authorize_checks(q: Any) -> None:
    rt = q.get("response_type")
    if not rt:
        raise EntraError(400, "invalid_request", 900144,
                         "The request body must contain the following parameter: 'response_type'.")
    if rt != "code":
        raise EntraError(400, "unsupported_response_type", 700054,
                         f"response_type '{rt}' is not enabled for the application.")
    method = q.get("code_challenge_method")
    if q.get("code_challenge") and method not in (None, "S256", "plain"):
        raise EntraError(400, "invalid_request", 501491,
                         f"Invalid code_challenge_method '{method}'; use S256 or plain.")


def _consent_at_authorize(app: EntraApp, req: ScopeRequest, *, prompt_none: bool) -> None:
    have = consented(app, req.audience)
    wanted = set(req.names)
    if ".default" in wanted:
        if have:
            return
        # Static permissions: what the registration lists for this resource.
        wanted = {"user_impersonation"} if req.audience == "azure_devops" else {"User.Read"}
    missing = wanted - have
    if not missing:
        return
    if prompt_none:
        raise EntraError(400, "consent_required", 65001,
                         f"The user or administrator has not consented to use the application with ID "
                         f"'{app.client_id}' named '{app.display_name}'. Send an interactive "
                         "authorization request for this user and resource.")
    if not app.auto_consent:
        raise EntraError(400, "access_denied", 65004, "User declined to consent to access the app.")
    res = _resource(req.audience)
    app.delegated_consent |= {f"{res}/{n}" for n in missing}


async def logout(request: Request) -> Response:
    """End-session endpoint: nothing to clear (no browser session); honours post_logout_redirect_uri."""
    target = request.query_params.get("post_logout_redirect_uri")
    if target:
        return RedirectResponse(target, status_code=302)
    return HTMLResponse("<!DOCTYPE html><html><body><p>You signed out of your account.</p></body></html>")


# ---------------------------------------------------------------------------------------------
# routes: token
# ---------------------------------------------------------------------------------------------


async def _form(request: Request) -> dict[str, str]:
    """The urlencoded body (what OAuth clients send); first value wins. Parsed by hand so the
    simulator does not need python-multipart."""
    raw = await request.body()
    try:
        return dict(reversed(parse_qsl(raw.decode("utf-8"), keep_blank_values=True)))
    except UnicodeDecodeError:
        return {}


def _client_secret(request: Request, form: Any) -> tuple[str | None, str | None]:
    """(client_id, secret) from the form or HTTP Basic (client_secret_basic)."""
    cid, secret = form.get("client_id"), form.get("client_secret")
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("basic "):
        try:
            # RFC 6749 §2.3.1: both parts are form-urlencoded before Basic encoding
            user, _, pw = (unquote_plus(x) for x in
                           base64.b64decode(auth[6:].strip()).decode().partition(":"))
        except (ValueError, UnicodeDecodeError):
            user, pw = "", ""
        cid = cid or user or None
        secret = secret or pw or None
    return cid, secret


def _authenticate_client(w: World, app: EntraApp, secret: str | None, *, confidential_only: bool) -> None:
    if secret is None:
        if confidential_only or not app.allow_public_client:
            raise EntraError(401, "invalid_client", 7000218,
                             "The request body must contain the following parameter: 'client_assertion' "
                             "or 'client_secret'.")
        return
    if not secrets.compare_digest(secret.encode(), app.client_secret.encode()):
        raise EntraError(401, "invalid_client", 7000215,
                         "Invalid client secret provided. Ensure the secret being sent in the request is "
                         "the client secret value, not the client secret ID, for a secret added to app "
                         f"'{app.client_id}'.")
    if w.clock.now() >= app.secret_expires:
        raise EntraError(401, "invalid_client", 7000222,
                         f"The provided client secret keys for app '{app.client_id}' are expired. Visit "
                         "the Azure portal to create new keys for your app: "
                         "https://aka.ms/NewClientSecret, or consider using certificate credentials for "
                         "added security: https://aka.ms/certCreds.")


async def token(request: Request) -> Response:
    w = world_of(request)
    form = await _form(request)
    tenant = request.path_params["tenant"]
    store = store_of(w)
    with w.lock:
        try:
            retry = store.token_throttle.take()
            if retry is not None:
                return _throttled(request, retry)
            _check_tenant(w, tenant)
            grant = form.get("grant_type")
            if not grant:
                raise _missing("grant_type")
            cid, secret = _client_secret(request, form)
            if not cid:
                raise _missing("client_id")
            app = get_app(w, str(cid))
            if app is None:
                raise _unknown_client(str(cid), tenant)
            handler = _GRANTS.get(str(grant))
            if handler is None:
                raise EntraError(400, "unsupported_grant_type", 70003,
                                 f"The app requested an unsupported grant type '{grant}'.")
            _authenticate_client(w, app, str(secret) if secret else None,
                                 confidential_only=grant == "client_credentials")
            body = handler(request, w, store, app, tenant, form)
        except EntraError as e:
            return e.response(request)
    return JSONResponse(body, headers={"Cache-Control": "no-store, no-cache", "Pragma": "no-cache",
                                       "x-ms-request-id": str(uuid.uuid4())})


def _throttled(request: Request, retry_after: int) -> Response:
    err = EntraError(429, "temporarily_unavailable", 50196,
                     "The server is temporarily unavailable because of too many requests. "
                     "Retry after the interval in the Retry-After header.",
                     headers={"Retry-After": str(retry_after)})
    return err.response(request)


def _grant_client_credentials(request: Request, w: World, store: TokenStore, app: EntraApp, tenant: str,
                              form: Any) -> dict[str, Any]:
    scope = form.get("scope") or ""
    items = scope.split()
    if tenant.lower() in GENERIC_TENANTS:
        raise EntraError(400, "invalid_request", 90009,
                         f"Application '{app.client_id}' is requesting a token for itself. The "
                         "client credentials flow needs a tenant-specific authority, not "
                         f"'{tenant}'.")
    req = parse_scope(w, scope, graph_aliases(request))
    if len(items) != 1 or req.names != {".default"} or req.oidc:
        raise EntraError(400, "invalid_scope", 1002012,
                         f"The provided value for scope {scope} is not valid. Client credential flows "
                         "must have a scope value with /.default suffixed to the resource identifier "
                         "(application ID URI).")
    return _app_token_response(w, store, app, req)


def _pkce_ok(verifier: str | None, challenge: str, method: str | None) -> bool:
    if not verifier:
        return False
    if method == "S256":
        digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
        return secrets.compare_digest(base64.urlsafe_b64encode(digest).rstrip(b"="), challenge.encode())
    return secrets.compare_digest(verifier.encode(), challenge.encode())


def _expired_grant() -> EntraError:
    return EntraError(400, "invalid_grant", 70008,
                      "The provided authorization code or refresh token has expired due to inactivity. "
                      "Send a new interactive authorization request for this user and resource.")


def _bad_grant(param: str, why: str) -> EntraError:
    return EntraError(400, "invalid_grant", 70000, f"The provided value for the '{param}' is not valid. {why}")


def _grant_authorization_code(request: Request, w: World, store: TokenStore, app: EntraApp, tenant: str,
                              form: Any) -> dict[str, Any]:
    code = form.get("code")
    if not code:
        raise _missing("code")
    rec = store.codes.get(str(code))
    if rec is None:
        raise _bad_grant("code", "The code is malformed or was not issued by this tenant.")
    if rec.client_id != app.client_id:
        raise _bad_grant("code", "The code was issued to a different client.")
    if rec.used:
        raise EntraError(400, "invalid_grant", 54005,
                         "OAuth2 Authorization code was already redeemed, please retry with a new valid "
                         "code or use an existing refresh token.")
    rec.used = True  # single use, whatever happens next
    if w.clock.now() >= rec.expires:
        raise _expired_grant()
    redirect_uri = form.get("redirect_uri")
    if redirect_uri != rec.redirect_uri:
        raise EntraError(400, "invalid_grant", 50011,
                         f"The redirect URI '{redirect_uri}' specified in the request does not match the "
                         "redirect URI used to obtain the authorization code.")
    if rec.code_challenge is not None and not _pkce_ok(form.get("code_verifier"), rec.code_challenge,
                                                        rec.code_challenge_method):
        raise EntraError(400, "invalid_grant", 501481,
                         "The Code_Verifier does not match the code_challenge supplied in the "
                         "authorization request.")
    req = parse_scope(w, form.get("scope") or rec.scope, graph_aliases(request))
    names = delegated_grant(app, req)
    return _token_response(request, w, store, app, rec.oid, req, names, nonce=rec.nonce,
                           client_info=form.get("client_info") == "1")


def _grant_refresh_token(request: Request, w: World, store: TokenStore, app: EntraApp, tenant: str,
                         form: Any) -> dict[str, Any]:
    rt = form.get("refresh_token")
    if not rt:
        raise _missing("refresh_token")
    rec = store.refresh_tokens.get(str(rt))
    if rec is None:
        raise _bad_grant("refresh_token", "The refresh token is malformed or was not issued by this tenant.")
    if rec.client_id != app.client_id:
        raise _bad_grant("refresh_token", "The refresh token was issued to a different client.")
    if rec.revoked:
        raise EntraError(400, "invalid_grant", 50173,
                         "The provided grant has expired due to it being revoked, a fresh auth token is "
                         "needed. The user might have changed or reset their password.")
    if rec.used:
        raise _bad_grant("refresh_token", "The refresh token was already redeemed; use the one returned "
                                          "with it.")
    if w.clock.now() >= rec.expires:
        raise _expired_grant()
    req = parse_scope(w, form.get("scope"), graph_aliases(request))
    names = delegated_grant(app, req)
    rec.used = True
    # Rotation: the response always carries a new refresh token.
    req = ScopeRequest(req.audience, req.names, req.oidc | {"offline_access"})
    return _token_response(request, w, store, app, rec.oid, req, names,
                           client_info=form.get("client_info") == "1")


def _grant_device_code(request: Request, w: World, store: TokenStore, app: EntraApp, tenant: str,
                       form: Any) -> dict[str, Any]:
    dc = form.get("device_code") or form.get("code")
    if not dc:
        raise _missing("device_code")
    rec = store.device_codes.get(str(dc))
    if rec is None or rec.client_id != app.client_id:
        raise _bad_grant("device_code", "The device code is malformed or was issued to another client.")
    if rec.redeemed:
        raise EntraError(400, "invalid_grant", 54005,
                         "OAuth2 Authorization code was already redeemed, please retry with a new valid "
                         "code or use an existing refresh token.")
    if w.clock.now() >= rec.expires:
        raise EntraError(400, "expired_token", 70020,
                         "The provided value for the input parameter 'device_code' is not valid. "
                         "This device code has expired.")
    if rec.declined:
        raise EntraError(400, "authorization_declined", 70000,
                         "The user denied the authorization request.")
    if rec.approved_oid is None:
        rec.polls += 1
        n = store.device_auto_approve_after
        if n is not None and rec.polls >= n:
            rec.approved_oid = app.signed_in_user or default_user(w)
        if rec.approved_oid is None:
            raise EntraError(400, "authorization_pending", 70016,
                             "OAuth 2.0 device flow error. Authorization is pending. Continue polling.")
    rec.redeemed = True
    req = parse_scope(w, rec.scope, graph_aliases(request))
    names = delegated_grant(app, req)
    return _token_response(request, w, store, app, rec.approved_oid, req, names,
                           client_info=form.get("client_info") == "1")


_GRANTS = {
    "client_credentials": _grant_client_credentials,
    "authorization_code": _grant_authorization_code,
    "refresh_token": _grant_refresh_token,
    "urn:ietf:params:oauth:grant-type:device_code": _grant_device_code,
    "device_code": _grant_device_code,
}


# ---------------------------------------------------------------------------------------------
# routes: device flow
# ---------------------------------------------------------------------------------------------


async def devicecode(request: Request) -> Response:
    w = world_of(request)
    form = await _form(request)
    tenant = request.path_params["tenant"]
    store = store_of(w)
    with w.lock:
        try:
            _check_tenant(w, tenant)
            cid = form.get("client_id")
            if not cid:
                raise _missing("client_id")
            app = get_app(w, str(cid))
            if app is None:
                raise _unknown_client(str(cid), tenant)
            if not app.allow_public_client:
                raise EntraError(401, "invalid_client", 7000218,
                                 "The request body must contain the following parameter: "
                                 "'client_assertion' or 'client_secret'.")
            scope = str(form.get("scope") or "")
            parse_scope(w, scope, graph_aliases(request))
            rec = store.issue_device_code(w, client_id=app.client_id, scope=scope)
        except EntraError as e:
            return e.response(request)
    uri = f"{_base(request)}/common/oauth2/deviceauth"
    return JSONResponse({
        "user_code": rec.user_code, "device_code": rec.device_code, "verification_uri": uri,
        "expires_in": int(store.device_code_lifetime.total_seconds()), "interval": rec.interval,
        "message": f"To sign in, use a web browser to open the page {uri} and enter the code "
                   f"{rec.user_code} to authenticate.",
    })


def approve_device_code(world: World, user_code: str, *, user: str | None = None,
                        decline: bool = False) -> tokens.DeviceCode:
    """Approve (as `user`, default the app's signed-in user) or decline a pending device code."""
    with world.lock:
        rec = store_of(world).device_by_user_code(user_code)
        if rec is None or rec.redeemed:
            raise SimError("not_found", f"No pending device code {user_code!r}.")
        if decline:
            rec.declined = True
            return rec
        app = get_app(world, rec.client_id)
        oid = resolve_user(world, user) if user else (app.signed_in_user if app else None) or \
            default_user(world)
        if oid is None:
            raise SimError("invalid", "No user to sign in: pass one.")
        rec.approved_oid = oid
        return rec


_DEVICE_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Enter code</title></head>
<body><h1>Enter code</h1><p>{message}</p>
<form method="post"><input name="otc" autocomplete="off"><button type="submit">Next</button></form>
</body></html>
"""


async def deviceauth(request: Request) -> Response:
    """The page at verification_uri: entering the code signs in the app's user and approves it."""
    code = request.query_params.get("otc")
    if request.method == "POST":
        code = str((await _form(request)).get("otc") or "")
    if not code:
        return HTMLResponse(_DEVICE_PAGE.format(message="Enter the code displayed on your app or device."))
    try:
        rec = approve_device_code(world_of(request), code)
    except SimError as e:
        return HTMLResponse(_DEVICE_PAGE.format(message=html.escape(e.message)), status_code=400)
    app = get_app(world_of(request), rec.client_id)
    name = html.escape(app.display_name if app else rec.client_id)
    return HTMLResponse(f"<!DOCTYPE html><html><body><p>You have signed in to the {name} application on "
                        "your device. You may now close this window.</p></body></html>")


# ---------------------------------------------------------------------------------------------
# admin API
# ---------------------------------------------------------------------------------------------


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as e:
        raise SimError("invalid", f"invalid JSON body: {e}") from None
    if not isinstance(body, dict):
        raise SimError("invalid", "the body must be a JSON object")
    return body


def _admin_error(e: SimError) -> Response:
    return JSONResponse({"error": e.message}, status_code=404 if e.kind == "not_found" else 400)


def _app_or_404(w: World, client_id: str) -> EntraApp:
    app = get_app(w, client_id)
    if app is None:
        raise SimError("not_found", f"No app registration {client_id!r}.")
    return app


async def admin_apps(request: Request) -> Response:
    w = world_of(request)
    try:
        if request.method == "GET":
            with w.lock:
                return JSONResponse([a.public() for a in w.entra_apps.values() if isinstance(a, EntraApp)])
        body = await _json(request)
        kwargs: dict[str, Any] = {k: body[k] for k in (
            "client_id", "client_secret", "display_name", "signed_in_user", "auto_consent",
            "allow_public_client") if k in body}
        for k in ("app_roles", "delegated_consent", "redirect_uris"):
            if k in body:
                kwargs[k] = tuple(body[k])
        if "secret_expires_in_seconds" in body:
            kwargs["secret_lifetime"] = timedelta(seconds=float(body["secret_expires_in_seconds"]))
        if get_app(w, str(body.get("client_id", ""))) is not None:
            raise SimError("invalid", f"App {body['client_id']!r} is already registered.")
        app = register_app(w, **kwargs)
        return JSONResponse({**app.public(), "client_secret": app.client_secret}, status_code=201)
    except SimError as e:
        return _admin_error(e)


async def admin_app(request: Request) -> Response:
    w = world_of(request)
    try:
        with w.lock:
            return JSONResponse(_app_or_404(w, request.path_params["client_id"]).public())
    except SimError as e:
        return _admin_error(e)


async def admin_app_field(request: Request) -> Response:
    w = world_of(request)
    what = request.path_params["what"]
    try:
        body = await _json(request)
        with w.lock:
            app = _app_or_404(w, request.path_params["client_id"])
            if what == "consent":
                if "scopes" in body:
                    app.delegated_consent = {normalize_scope(s) for s in body["scopes"]}
                if "auto_consent" in body:
                    app.auto_consent = bool(body["auto_consent"])
            elif what == "roles":
                app.app_roles = set(body.get("roles") or ())
            elif what == "user":
                app.signed_in_user = resolve_user(w, body["user"]) if body.get("user") else None
            elif what == "secret":
                if body.get("expire"):
                    app.secret_expires = w.clock.now() - timedelta(seconds=1)
                else:
                    app.client_secret = body.get("client_secret") or _new_secret()
                    app.secret_id = w.new_guid()
                    app.secret_expires = w.clock.now() + timedelta(
                        seconds=float(body.get("expires_in_seconds", 180 * 86400)))
                    return JSONResponse({**app.public(), "client_secret": app.client_secret})
            else:
                raise SimError("not_found", f"Unknown setting {what!r}.")
            return JSONResponse(app.public())
    except (SimError, KeyError, TypeError, ValueError) as e:
        return _admin_error(e if isinstance(e, SimError) else SimError("invalid", str(e)))


async def admin_devicecodes(request: Request) -> Response:
    w = world_of(request)
    with w.lock:
        now = w.clock.now()
        return JSONResponse([
            {"user_code": d.user_code, "client_id": d.client_id, "scope": d.scope, "polls": d.polls,
             "approved": d.approved_oid is not None, "declined": d.declined,
             "expires_in": int((d.expires - now).total_seconds())}
            for d in store_of(w).device_codes.values() if not d.redeemed and d.expires > now])


async def admin_devicecode(request: Request) -> Response:
    w = world_of(request)
    try:
        body = await _json(request)
        action = body.get("action", "approve")
        if action not in ("approve", "decline"):
            raise SimError("invalid", "action must be approve or decline")
        rec = approve_device_code(w, request.path_params["user_code"], user=body.get("user"),
                                  decline=action == "decline")
        return JSONResponse({"user_code": rec.user_code, "approved": rec.approved_oid is not None,
                             "declined": rec.declined, "user": rec.approved_oid})
    except SimError as e:
        return _admin_error(e)


async def admin_revoke(request: Request) -> Response:
    w = world_of(request)
    try:
        body = await _json(request)
        with w.lock:
            oid = resolve_user(w, body["user"]) if body.get("user") else None
            n = store_of(w).revoke(client_id=body.get("client_id"), oid=oid, token=body.get("token"),
                                   access_tokens=bool(body.get("access_tokens", True)),
                                   refresh_tokens=bool(body.get("refresh_tokens", True)))
        return JSONResponse({"revoked": n})
    except SimError as e:
        return _admin_error(e)


async def admin_throttle(request: Request) -> Response:
    w = world_of(request)
    try:
        body = await _json(request)
        with w.lock:
            t = store_of(w).token_throttle
            t.count = int(body.get("count", 1))
            t.retry_after = int(body.get("retry_after", 1))
            return JSONResponse({"count": t.count, "retry_after": t.retry_after})
    except (SimError, TypeError, ValueError) as e:
        return _admin_error(e if isinstance(e, SimError) else SimError("invalid", str(e)))


async def admin_config(request: Request) -> Response:
    w = world_of(request)
    try:
        body = await _json(request)
        with w.lock:
            s = store_of(w)
            if "device_auto_approve_after" in body:
                v = body["device_auto_approve_after"]
                s.device_auto_approve_after = None if v is None else int(v)
            if "device_poll_interval" in body:
                s.device_poll_interval = int(body["device_poll_interval"])
            if "access_token_lifetime_seconds" in body:
                s.access_token_lifetime = timedelta(seconds=float(body["access_token_lifetime_seconds"]))
            return JSONResponse({"device_auto_approve_after": s.device_auto_approve_after,
                                 "device_poll_interval": s.device_poll_interval,
                                 "access_token_lifetime_seconds": s.access_token_lifetime.total_seconds()})
    except (SimError, TypeError, ValueError) as e:
        return _admin_error(e if isinstance(e, SimError) else SimError("invalid", str(e)))


ROUTES: list[BaseRoute] = [
    Route("/_sim/entra/apps", admin_apps, methods=["GET", "POST"]),
    Route("/_sim/entra/apps/{client_id}", admin_app, methods=["GET"]),
    Route("/_sim/entra/apps/{client_id}/{what}", admin_app_field, methods=["PUT", "POST"]),
    Route("/_sim/entra/devicecodes", admin_devicecodes, methods=["GET"]),
    Route("/_sim/entra/devicecodes/{user_code}", admin_devicecode, methods=["POST"]),
    Route("/_sim/entra/revoke", admin_revoke, methods=["POST"]),
    Route("/_sim/entra/throttle", admin_throttle, methods=["POST"]),
    Route("/_sim/entra/config", admin_config, methods=["GET", "PUT"]),
    Route("/{tenant}/v2.0/.well-known/openid-configuration", openid_configuration, methods=["GET"]),
    Route("/{tenant}/discovery/v2.0/keys", jwks, methods=["GET"]),
    Route("/{tenant}/oauth2/v2.0/authorize", authorize, methods=["GET"]),
    Route("/{tenant}/oauth2/v2.0/token", token, methods=["POST"]),
    Route("/{tenant}/oauth2/v2.0/devicecode", devicecode, methods=["POST"]),
    Route("/{tenant}/oauth2/v2.0/logout", logout, methods=["GET"]),
    Route("/{tenant}/oauth2/deviceauth", deviceauth, methods=["GET", "POST"]),
]
