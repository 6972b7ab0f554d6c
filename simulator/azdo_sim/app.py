"""The simulator's ASGI application: every route module behind host mapping, counting, faults and auth.

Middlewares, outermost first (all pure ASGI, so streaming and dropped connections behave like a
real server):

1. `HostMapMiddleware`   real hosts (dev.azure.com, {org}.vssps.visualstudio.com, …) → internal paths;
                         `scope["sim.style"]` = cloud | legacy | loopback; case-insensitive `_apis` paths.
2. `CountMiddleware`     finds the route template, counts it in `world.request_counts`, settles
                         due Entra → Azure DevOps propagation under `world.lock`.
3. `FaultMiddleware`     latency, 5xx, dropped connections, scripted faults, TSTU throttling (faults.py).
4. `AuthMiddleware`      Basic PAT / Bearer → `request.state.caller`; the real 203 / 401 answers.

Route kinds (`scope["sim.kind"]`): ado | entra | msgraph | admin | none (no route matched).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import html
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Match, Route, Router, get_route_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import faults as faults_mod
from .http import AuthFailure, Caller, ado_error, page_not_found, sim_error_response
from .state import SimError, World

# ---------------------------------------------------------------------------------------------
# 1. host mapping and case normalisation
# ---------------------------------------------------------------------------------------------

_CLOUD_PREFIX = {"vssps.dev.azure.com": "/vssps", "vsaex.dev.azure.com": "/vsaex",
                 "auditservice.dev.azure.com": "/auditservice", "app.vssps.visualstudio.com": "/app.vssps"}
_CLOUD_ROOT = {"dev.azure.com", "login.microsoftonline.com", "graph.microsoft.com"}
_LEGACY_SUB = {"vssps": "/vssps", "vsaex": "/vsaex", "vsrm": "/vsrm"}

# Path segments Azure DevOps matches case-insensitively. A segment is lowercased only where a
# route keyword can stand (not where a descriptor, id or name goes): see `normalise_path`.
VOCABULARY = frozenset({
    "_apis", "graph", "users", "groups", "serviceprincipals", "memberships", "membershipstates",
    "descriptors", "storagekeys", "subjectlookup", "subjectquery", "identities", "identitybatch",
    "projects", "teams", "members", "userentitlements", "serviceprincipalentitlements", "audit",
    "auditlog", "actions", "resourceareas", "accounts", "connectiondata", "profile", "profiles",
    "graphprofile", "memberavatars", "groupentitlements", "memberentitlements", "subjects",
    "accesscontrollists",
})
# Keywords followed by a value (id, descriptor, name): the next segment is never lowercased.
_TAKES_VALUE = frozenset({
    "users", "groups", "serviceprincipals", "memberships", "membershipstates", "descriptors",
    "storagekeys", "identities", "projects", "teams", "userentitlements", "serviceprincipalentitlements",
    "resourceareas", "accounts", "profiles", "memberavatars", "groupentitlements", "memberentitlements",
    "subjects", "accesscontrollists",
})
_SERVICE_PREFIXES = frozenset({"vssps", "vsaex", "auditservice", "app.vssps", "_sim"})


def map_host(host: str, path: str) -> tuple[str, str]:
    """(style, internal path) for a request to `host` (no port) and `path`."""
    host = host.lower().rstrip(".")
    if host in _CLOUD_ROOT:
        return "cloud", path
    if host in _CLOUD_PREFIX:
        return "cloud", _CLOUD_PREFIX[host] + path
    if host.endswith(".visualstudio.com"):
        parts = host[: -len(".visualstudio.com")].split(".")
        if len(parts) == 1:
            # {org}.visualstudio.com; the pre-2018 collection segment is optional
            rest = re.sub(r"^/defaultcollection(?=/|$)", "", path, flags=re.IGNORECASE)
            return "legacy", f"/{parts[0]}{rest}"
        if len(parts) == 2 and parts[1] in _LEGACY_SUB:
            return "legacy", f"{_LEGACY_SUB[parts[1]]}/{parts[0]}{path}"
    return "loopback", path


def normalise_path(path: str) -> str:
    """Lowercase route keywords after `_apis` (Azure DevOps routes are case-insensitive).

    `/fabrikam/_apis/Graph/Users/aad.X` → `/fabrikam/_apis/graph/users/aad.X`. The segment after a
    keyword that takes a value (users/{descriptor}, projects/{name}, …) is left alone, so a project
    called "Members" keeps its case.
    """
    segs = path.split("/")
    out: list[str] = []
    in_api = False
    value_next = False
    for i, seg in enumerate(segs):
        low = seg.lower()
        if i == 1 and low in _SERVICE_PREFIXES:
            out.append(low)
            continue
        if not in_api:
            if low == "_apis":
                in_api = True
                out.append(low)
            else:
                out.append(seg)
            continue
        if value_next:
            value_next = False
            out.append(seg)
            continue
        if low in VOCABULARY:
            out.append(low)
            value_next = low in _TAKES_VALUE
        else:
            out.append(seg)
    return "/".join(out)


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", ()):
        if k.lower() == name:
            return v.decode("latin-1")
    return None


def _host_name(host: str) -> str:
    """Host header without the port ("[::1]:8765" → "::1")."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class HostMapMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = _host_name(_header(scope, b"host") or "")
        style, path = map_host(host, scope["path"])
        path = normalise_path(path)
        scope = dict(scope)
        scope["sim.style"] = style
        scope["sim.public_path"] = scope["path"]
        if path != scope["path"]:
            # the same segment-level rewrite on the still-encoded raw path keeps %-escapes intact
            raw = scope.get("raw_path") or scope["path"].encode("utf-8")
            scope["raw_path"] = normalise_path(map_host(host, raw.decode("latin-1"))[1]).encode("latin-1")
            scope["path"] = path
        await self.app(scope, receive, send)


# ---------------------------------------------------------------------------------------------
# 2. route matching, counting, propagation
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class RouteInfo:
    route: BaseRoute
    kind: str  # ado | entra | msgraph | admin


def _kind_of_path(path: str) -> str | None:
    if path.startswith("/_sim/") or path == "/_sim":
        return "admin"
    if path.startswith(("/v1.0/", "/beta/")):
        return "msgraph"
    return None


class RouteIndex:
    """The routes that can match a path, in route order, looked up by the path's number of '/'.

    Matching scanned all ~160 routes twice per request (counting, then Starlette's router), more
    than half of a trivial request's server time. A `Route` whose path has no `:path` parameter
    matches only paths with exactly its number of '/' (the other convertors never match one), so
    only those routes, plus any other kind of route, are candidates; the first match is unchanged.
    """

    def __init__(self, routes: list[Any]) -> None:
        self._routes = routes
        self._slashes = [r.path.count("/") if isinstance(r, Route) and ":path}" not in r.path else None
                         for r in (_route_of(x) for x in routes)]
        self._by_count: dict[int, list[Any]] = {}

    def candidates(self, route_path: str) -> list[Any]:
        n = route_path.count("/")
        hit = self._by_count.get(n)
        if hit is None:
            hit = self._by_count[n] = [x for x, c in zip(self._routes, self._slashes, strict=True)
                                       if c is None or c == n]
        return hit


def _route_of(x: Any) -> Any:
    return x.route if isinstance(x, RouteInfo) else x


class IndexedRouter(Router):
    """Starlette's Router, scanning only `RouteIndex` candidates; anything unmatched (404, slash
    redirects, other scope types) takes the stock full scan, so answers are unchanged."""

    _index: RouteIndex | None = None
    _indexed: tuple[int, int] = (-1, 0)

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().app(scope, receive, send)
            return
        key = (len(self.routes), id(self.routes[-1]) if self.routes else 0)  # routes added later
        if self._index is None or self._indexed != key:
            self._index, self._indexed = RouteIndex(self.routes), key
        if "router" not in scope:
            scope["router"] = self
        partial = partial_scope = None
        for route in self._index.candidates(get_route_path(scope)):
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                scope["route"] = route
                scope.update(child_scope)
                await route.handle(scope, receive, send)
                return
            if match is Match.PARTIAL and partial is None:
                partial, partial_scope = route, child_scope
        if partial is not None:
            scope["route"] = partial
            scope.update(partial_scope)
            await partial.handle(scope, receive, send)
            return
        await super().app(scope, receive, send)


class CountMiddleware:
    def __init__(self, app: ASGIApp, routes: list[RouteInfo]) -> None:
        self.app = app
        self.routes = routes
        self.index = RouteIndex(routes)

    def match(self, scope: Scope) -> tuple[str, str]:
        """(template, kind) of the first route matching path (and method, if any does)."""
        partial: tuple[str, str] | None = None
        for info in self.index.candidates(get_route_path(scope)):
            m, _ = info.route.matches(scope)
            if m == Match.FULL:
                return getattr(info.route, "path", "?"), info.kind
            if m == Match.PARTIAL and partial is None:
                partial = (getattr(info.route, "path", "?"), info.kind)
        if partial:
            return partial
        return "<no route>", _kind_of_path(scope["path"]) or "none"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        template, kind = self.match(scope)
        scope["sim.route"] = template
        scope["sim.kind"] = _kind_of_path(scope["path"]) or kind
        world: World = scope["app"].state.world
        with world.lock:
            if scope["sim.kind"] != "admin":
                world.request_counts[f"{scope['method']} {template}"] += 1
            world.settle()
        if scope["sim.kind"] not in ("ado", "none"):
            await self.app(scope, receive, send)
            return
        # Azure DevOps stamps every answer with correlation ids; clients log ActivityId.
        activity = str(uuid.uuid4())
        extra = [(b"activityid", activity.encode()), (b"x-tfs-session", activity.encode()),
                 (b"x-vss-e2eid", activity.encode())]

        async def send_stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_stamped)


# ---------------------------------------------------------------------------------------------
# 4. auth (resolution is shared with the fault layer, which throttles per identity)
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class AuthResult:
    caller: Caller
    error: str | None = None  # invalid | expired | wrong_org | not_member
    scheme: str = ""  # basic | bearer | ""


ANONYMOUS = Caller("anonymous", None, frozenset())


def _org_in_path(path: str) -> str | None:
    segs = [s for s in path.split("/") if s]
    if not segs:
        return None
    if segs[0] in ("vssps", "vsaex", "auditservice"):
        return segs[1] if len(segs) > 1 and segs[1] != "_apis" else None
    if segs[0] in ("_apis", "app.vssps", "_sim", "v1.0", "beta"):
        return None
    return segs[0]


def _verify_bearer(world: World, token: str, audience: str, org: str | None) -> Caller | None:
    from . import tokens

    with world.lock:
        return tokens.verify_bearer(world, token, audience, org=org)


def resolve_auth(world: World, scope: Scope) -> AuthResult:
    """Who is calling; cached on the scope (the fault layer and the auth layer both need it)."""
    cached = scope.get("sim.auth")
    if cached is not None:
        return cached
    result = _resolve(world, scope)
    scope["sim.auth"] = result
    return result


def _resolve(world: World, scope: Scope) -> AuthResult:
    kind = scope.get("sim.kind")
    if kind in ("admin", "entra"):
        return AuthResult(ANONYMOUS)
    value = _header(scope, b"authorization")
    if not value or not value.strip():
        return AuthResult(ANONYMOUS)
    scheme, _, cred = value.strip().partition(" ")
    scheme, cred = scheme.lower(), cred.strip()
    org = _org_in_path(scope["path"])
    if scheme == "basic":
        try:
            decoded = base64.b64decode(cred, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return AuthResult(ANONYMOUS, "invalid", "basic")
        token = decoded.partition(":")[2] if ":" in decoded else decoded
        with world.lock:
            pat = world.pats.get(token)
            now = world.clock.now()
        if pat is None:
            return AuthResult(ANONYMOUS, "invalid", "basic")
        caller = Caller("pat", pat.user_key, pat.scopes, org=pat.org)
        if pat.valid_to <= now:
            return AuthResult(caller, "expired", "basic")
        if pat.org is not None and org is not None and kind == "ado" and pat.org.lower() != org.lower():
            return AuthResult(caller, "wrong_org", "basic")
        return AuthResult(caller, _membership_error(world, scope, caller, org), "basic")
    if scheme == "bearer" and cred:
        audience = "msgraph" if kind == "msgraph" else "azure_devops"
        caller = _verify_bearer(world, cred, audience, org)
        if caller is None:
            return AuthResult(ANONYMOUS, "invalid", "bearer")
        return AuthResult(caller, _membership_error(world, scope, caller, org), "bearer")
    return AuthResult(ANONYMOUS, "invalid", scheme)


def _membership_error(world: World, scope: Scope, caller: Caller, org_name: str | None) -> str | None:
    """A valid credential of someone who is not in the organization gets TF400813 too.

    Discovery (resourceAreas, OPTIONS) stays open: it answers anonymous callers anyway.
    """
    if scope.get("sim.kind") != "ado" or org_name is None:
        return None
    if scope["method"] == "OPTIONS" or "/resourceareas" in scope.get("sim.route", ""):
        return None
    with world.lock:
        org = world.org(org_name)
        if org is None:  # unknown organization: the route answers 404
            return None
        return None if caller.user_key and caller.user_key in org.by_key else "not_member"


_SIGN_IN_PAGE = """<!DOCTYPE html>
<html lang="en-US">
<head><meta charset="utf-8"><title>Azure DevOps Services | Sign In</title></head>
<body>
<div id="signin">Sign in to Azure DevOps:
<a href="https://app.vssps.visualstudio.com/_signin?realm={realm}&amp;reply_to={reply}">Sign in</a>
</div>
</body>
</html>
"""


def _request_host(scope: Scope) -> str:
    return _header(scope, b"host") or "127.0.0.1"


def auth_failure(scope: Scope, message: str, *, expired: bool = False, process_id: str = "") -> Response:
    """The real answer to bad credentials: 203 + HTML sign-in page, or 401 JSON with Suppress."""
    method = scope.get("method", "GET")
    suppress = (_header(scope, b"x-tfs-fedauthredirect") or "").strip().lower() == "suppress"
    host = _request_host(scope)
    if not suppress and method in ("GET", "POST"):
        reply = html.escape(f"https://{host}{scope.get('sim.public_path', scope['path'])}")
        body = _SIGN_IN_PAGE.format(realm=html.escape(host), reply=reply)
        return HTMLResponse(body, status_code=203, headers={"X-TFS-ProcessId": process_id})
    if expired:
        resp = ado_error(401, "Access Denied: The Personal Access Token used has expired.",
                         "AccessCheckException",
                         type_name="Microsoft.TeamFoundation.Framework.Server.AccessCheckException, "
                                   "Microsoft.TeamFoundation.Framework.Server")
    else:
        resp = ado_error(401, message, "UnauthorizedRequestException",
                         type_name="Microsoft.TeamFoundation.Framework.Server.UnauthorizedRequestException, "
                                   "Microsoft.TeamFoundation.Framework.Server")
    resp.headers["X-TFS-ProcessId"] = process_id
    resp.headers["WWW-Authenticate"] = f'Basic realm="https://{host}/"'
    return resp


def graph_auth_error(message: str = "Access token is empty.") -> JSONResponse:
    """Microsoft Graph's 401 (msgraph.py may use it too)."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    rid = str(uuid.uuid4())
    return JSONResponse({"error": {"code": "InvalidAuthenticationToken", "message": message,
                                   "innerError": {"date": now, "request-id": rid,
                                                  "client-request-id": rid}}},
                        status_code=401)


def _unauthorized_message(user: str | None) -> str:
    return f"TF400813: The user '{user or ''}' is not authorized to access this resource."


class AuthMiddleware:
    def __init__(self, app: ASGIApp, process_id: str) -> None:
        self.app = app
        self.process_id = process_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        world: World = scope["app"].state.world
        kind = scope.get("sim.kind")
        if kind == "admin":
            client = (scope.get("client") or ("127.0.0.1", 0))[0]
            if client not in ("127.0.0.1", "::1", "localhost", "testclient"):
                await PlainTextResponse("The admin API answers on loopback only.", 403)(scope, receive, send)
                return
        res = resolve_auth(world, scope)
        state = scope.setdefault("state", {})
        if res.error and kind == "msgraph":
            state["caller"] = ANONYMOUS
            state["auth_error"] = res.error  # msgraph.py answers InvalidAuthenticationToken itself
        elif res.error and kind not in ("admin", "entra"):
            if res.error == "expired":
                resp = auth_failure(scope, "", expired=True, process_id=self.process_id)
            else:
                resp = auth_failure(scope, _unauthorized_message(res.caller.user_key),
                                    process_id=self.process_id)
            await resp(scope, receive, send)
            return
        else:
            state["caller"] = res.caller
        await self.app(scope, receive, send)


# ---------------------------------------------------------------------------------------------
# 3. faults
# ---------------------------------------------------------------------------------------------


def _fault_response(kind: str, status: int, body: Any, content_type: str | None = None) -> Response:
    if content_type is not None:  # exactly this body and type (an empty body, XML, `null`…)
        return Response(str(body).encode(), status_code=status, headers={"content-type": content_type})
    if body is not None:
        if isinstance(body, str):
            return PlainTextResponse(body, status_code=status)
        return JSONResponse(body, status_code=status)
    if kind == "msgraph":
        code = "TooManyRequests" if status == 429 else "serviceNotAvailable"
        return JSONResponse({"error": {"code": code, "message": "The service is unavailable."
                                       if status != 429 else "Too many requests.", "innerError": {}}},
                            status_code=status)
    if kind == "entra":
        return JSONResponse({"error": "temporarily_unavailable",
                             "error_description": "AADSTS50196: The server is temporarily unavailable."},
                            status_code=status)
    if status == 429:
        return ado_error(429, faults_mod.throttle_error_body(), "RequestBlockedException",
                         type_name="Microsoft.TeamFoundation.Framework.Server.RequestBlockedException, "
                                   "Microsoft.TeamFoundation.Framework.Server")
    if status == 503:
        return ado_error(503, "The service is temporarily unavailable. Please try again later.",
                         "ServiceUnavailableException")
    if status == 401:
        return ado_error(401, _unauthorized_message(None), "UnauthorizedRequestException")
    if status >= 500:
        return ado_error(status, "VS402345: An unexpected error occurred (simulated fault).",
                         "InternalServerErrorException")
    return ado_error(status, f"Simulated fault: HTTP {status}.", "ArgumentException")


async def _mutated(app: ASGIApp, scope: Scope, receive: Receive, send: Send, mutate: dict[str, Any],
                   headers: dict[str, str]) -> None:
    """Run the route, then send its JSON answer altered by a fault rule's `mutate`."""
    start: dict[str, Any] = {}
    chunks: list[bytes] = []

    async def capture(message: Message) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, capture)
    body = b"".join(chunks)
    with contextlib.suppress(ValueError):  # not JSON: sent unchanged
        body = json.dumps(faults_mod.apply_mutation(json.loads(body), mutate)).encode()
    out = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
    out += [(b"content-length", str(len(body)).encode())]
    out += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": start.get("status", 200), "headers": out})
    await send({"type": "http.response.body", "body": body})


class FaultMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("sim.kind") == "admin":
            await self.app(scope, receive, send)
            return
        world: World = scope["app"].state.world
        f = faults_mod.faults_of(world)
        if not f.active:
            await self.app(scope, receive, send)
            return
        kind = scope.get("sim.kind", "none")
        res = resolve_auth(world, scope)
        client = (scope.get("client") or ("?", 0))[0]
        identity = res.caller.user_key or f"anonymous@{client}"
        with world.lock:
            now = world.clock.now().timestamp()
        d = f.decide(scope["method"], scope["path"], identity=identity, now=now,
                     random_ok=kind == "ado" or (f.include_entra and kind in ("entra", "msgraph")))
        await faults_mod.sleep(d.delay)
        if d.drop:
            await faults_mod.drop_connection(send)
            return
        if d.status is not None:
            resp = _fault_response(kind, d.status, d.body, d.content_type)
            for k, v in d.headers.items():
                resp.headers[k] = v
            await resp(scope, receive, send)
            return
        if d.mutate:
            await _mutated(self.app, scope, receive, send, d.mutate, d.headers)
            return
        if not d.headers:
            await self.app(scope, receive, send)
            return
        extra = [(k.lower().encode(), v.encode()) for k, v in d.headers.items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


# ---------------------------------------------------------------------------------------------
# exception handlers and assembly
# ---------------------------------------------------------------------------------------------


def _make_handlers(process_id: str) -> dict[Any, Any]:
    async def on_sim_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SimError)
        return sim_error_response(exc)

    async def on_auth_failure(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AuthFailure)
        kind = request.scope.get("sim.kind")
        if kind == "msgraph":
            return graph_auth_error(exc.message or "Access token is empty.")
        return auth_failure(request.scope, exc.message, expired=exc.expired, process_id=process_id)

    async def on_http_exception(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            return ado_error(405, f"The requested resource does not support http method "
                                  f"'{request.method}'.", "HttpMethodNotAllowedException")
        if exc.status_code == 404:
            return page_not_found()
        return ado_error(exc.status_code, str(exc.detail), "ArgumentException")

    async def on_crash(request: Request, exc: Exception) -> Response:
        # The real service answers 500 with its JSON error shape; Starlette re-raises so it is logged.
        return ado_error(500, f"VS402345: An unexpected error occurred: {type(exc).__name__}: {exc}",
                         "InternalServerErrorException")

    return {SimError: on_sim_error, AuthFailure: on_auth_failure, HTTPException: on_http_exception,
            404: on_http_exception, 405: on_http_exception, Exception: on_crash}


def _route_infos() -> list[RouteInfo]:
    from . import (
        admin,
        discovery,
        entra,
        msgraph,
        routes_accounts,
        routes_audit,
        routes_core,
        routes_entitlements,
        routes_graph,
        routes_identities,
        routes_security,
    )

    infos: list[RouteInfo] = []
    for module, kind in ((admin, "admin"), (discovery, "ado"), (entra, "entra"), (msgraph, "msgraph"),
                         (routes_graph, "ado"), (routes_identities, "ado"), (routes_core, "ado"),
                         (routes_entitlements, "ado"), (routes_audit, "ado"),
                         (routes_accounts, "ado"), (routes_security, "ado")):
        infos.extend(RouteInfo(r, kind) for r in module.ROUTES)
    return infos


def create_app(world: World, *, extra_routes: list[BaseRoute] | None = None) -> Starlette:
    """The simulator app over `world`. `extra_routes` (kind "ado") are for tests."""
    from starlette.middleware import Middleware

    infos = [RouteInfo(r, "ado") for r in extra_routes or []] + _route_infos()
    process_id = str(uuid.uuid4())
    app = Starlette(
        routes=[i.route for i in infos],
        middleware=[Middleware(HostMapMiddleware), Middleware(CountMiddleware, routes=infos),
                    Middleware(FaultMiddleware), Middleware(AuthMiddleware, process_id=process_id)],
        exception_handlers=_make_handlers(process_id),
    )
    app.router = IndexedRouter(app.router.routes)  # before the first request builds the stack
    app.state.world = world
    if world.faults is None:
        world.faults = faults_mod.Faults()
    return app

