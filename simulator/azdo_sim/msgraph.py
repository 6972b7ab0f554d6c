"""Simulated Microsoft Graph v1.0 (graph.microsoft.com): Entra groups and their members.

    GET    /v1.0/groups/{id}                            the group
    GET    /v1.0/groups/{id}/members                    `$top` (1–999, default 100), `$skiptoken` paging
                                                        through `@odata.nextLink`
    POST   /v1.0/groups/{id}/members/$ref               {"@odata.id": "https://<graph host>/v1.0/
                                                        directoryObjects/{id}"} → 204
    DELETE /v1.0/groups/{id}/members/{memberId}/$ref    → 204
    DELETE /v1.0/groups/{id}/members/{memberId}         → 403 (would delete the object itself; never done)
    PATCH  /v1.0/groups/{id}                            {"members@odata.bind": [up to 20 ids]} → 204
    GET    /v1.0/users/{id}, /v1.0/directoryObjects/{id}  one object (User.Read.All / Directory.Read.All)

Auth: a bearer token issued by the simulated Entra for `https://graph.microsoft.com` (the app's auth
middleware verifies it with audience "msgraph"). Reads need one of GroupMember.Read.All,
Group.Read.All, Directory.Read.All or a ReadWrite permission; writes need GroupMember.ReadWrite.All
(or Group/Directory.ReadWrite.All), as an application role or a delegated scope.

Writes go through `world.entra_write`: Graph reads see them at once, Azure DevOps (the `aadgp.` group
memberships) only after `world.propagation_delay` (applied by `world.settle()`).

Errors always use Graph's envelope `{"error": {"code", "message", "innerError": {"date",
"request-id", "client-request-id"}}}` with `request-id` / `client-request-id` headers.

Admin API (no auth, loopback only):

    POST /_sim/msgraph/throttle     {count, retry_after}: the next Graph requests answer 429
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from . import tokens
from .http import Caller
from .http import world as world_of
from .state import World, b64url, b64url_decode, iso
from .tokens import store_of

READ_PERMISSIONS = frozenset({"GroupMember.Read.All", "Group.Read.All", "Directory.Read.All",
                              "GroupMember.ReadWrite.All", "Group.ReadWrite.All", "Directory.ReadWrite.All"})
USER_READ_PERMISSIONS = frozenset({"User.ReadBasic.All", "User.Read.All", "User.ReadWrite.All",
                                   "Directory.Read.All", "Directory.ReadWrite.All"})
DIRECTORY_READ_PERMISSIONS = frozenset({"Directory.Read.All", "Directory.ReadWrite.All"})
WRITE_PERMISSIONS = frozenset({"GroupMember.ReadWrite.All", "Group.ReadWrite.All", "Directory.ReadWrite.All"})
GRAPH_HOSTS = ("graph.microsoft.com",)
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_ODATA_ID = re.compile(r"^/(?:v1\.0|beta)/(?:directoryObjects|users|groups|servicePrincipals|devices|contacts)"
                       r"/([^/]+)/?$", re.IGNORECASE)
_ODATA_TYPE = {"user": "#microsoft.graph.user", "group": "#microsoft.graph.group",
               "servicePrincipal": "#microsoft.graph.servicePrincipal"}
JSON_TYPE = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
MAX_BIND = 20


class GraphError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def _ids(request: Request) -> tuple[str, str]:
    rid = request.scope.setdefault("msgraph.request_id", str(uuid.uuid4()))
    return rid, request.headers.get("client-request-id") or rid


def _headers(request: Request) -> dict[str, str]:
    rid, crid = _ids(request)
    return {"request-id": rid, "client-request-id": crid,
            "x-ms-ags-diagnostic": json.dumps({"ServerInfo": {"DataCenter": "Simulator", "Slice": "E",
                                                              "Ring": "1", "ScaleUnit": "000"}})}


def error_response(request: Request, err: GraphError) -> Response:
    rid, crid = _ids(request)
    date = world_of(request).clock.now().strftime("%Y-%m-%dT%H:%M:%S")
    body = {"error": {"code": err.code, "message": err.message,
                      "innerError": {"date": date, "request-id": rid, "client-request-id": crid}}}
    headers = {**_headers(request), **err.headers}
    return Response(json.dumps(body), status_code=err.status, media_type="application/json", headers=headers)


def ok(request: Request, body: Any) -> Response:
    return Response(json.dumps(body), media_type=JSON_TYPE, headers=_headers(request))


def no_content(request: Request) -> Response:
    return Response(status_code=204, headers=_headers(request))


# ---- auth ------------------------------------------------------------------------------------

_AUTH_MESSAGES = {
    "malformed": "IDX14100: JWT is not well formed, there are no dots (.).\nThe token needs to be in JWS "
                 "or JWE Compact Serialization Format. (JWS): 'EncodedHeader.EndcodedPayload."
                 "EncodedSignature'. (JWE): 'EncodedProtectedHeader.EncodedEncryptedKey."
                 "EncodedInitializationVector.EncodedCiphertext.EncodedAuthenticationTag'.",
    "unknown": "Access token validation failure.",
    "revoked": "Access token validation failure.",
    "expired": "Lifetime validation failed, the token is expired.",
    "audience": "Access token validation failure. Invalid audience.",
}


def _unauthorized(message: str) -> GraphError:
    return GraphError(401, "InvalidAuthenticationToken", message, headers={
        "WWW-Authenticate": 'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/'
                            'oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"'})


def authenticate(request: Request, needed: frozenset[str]) -> tuple[Caller, tokens.AccessToken]:
    """The caller and its token; GraphError 401 (bad token) / 403 (missing permission) / 429 (knob)."""
    w = world_of(request)
    header = request.headers.get("authorization", "").strip()
    scheme, _, cred = header.partition(" ")
    cred = cred.strip()
    if not header or scheme.lower() != "bearer" or not cred:
        # A Basic PAT is not a Graph credential: Graph sees no bearer token at all.
        raise _unauthorized("Access token is empty.")
    caller = getattr(request.state, "caller", None)
    if caller is None or caller.kind != "bearer":
        caller = tokens.verify_bearer(w, cred, "msgraph")
    if caller is None:
        raise _unauthorized(_AUTH_MESSAGES.get(tokens.diagnose(w, cred, "msgraph") or "unknown",
                                               "Access token validation failure."))
    rec = tokens.access_token_record(w, cred)
    assert rec is not None  # verified above
    if not (caller.roles | caller.scopes) & needed:
        raise GraphError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
    with w.lock:
        retry = store_of(w).graph_throttle.take()
    if retry is not None:
        raise GraphError(429, "TooManyRequests",
                         f"Too many requests from Identifier:{w.tenant_id}+{rec.client_id} under category:"
                         "throttle.aad.ags.msgraph.write.group. Please try again later.",
                         headers={"Retry-After": str(retry)})
    return caller, rec


# ---- directory helpers -----------------------------------------------------------------------


def _check_id(value: str) -> str:
    if not _GUID.match(value):
        raise GraphError(400, "Request_BadRequest", f"Invalid object identifier '{value}'.")
    return value.lower()


def _not_found(oid: str) -> GraphError:
    return GraphError(404, "Request_ResourceNotFound",
                      f"Resource '{oid}' does not exist or one of its queried reference-property objects "
                      "are not present.")


def _kind(w: World, oid: str) -> str | None:
    return w.entra_objects.get(oid)


def _group(w: World, gid: str) -> str:
    gid = _check_id(gid)
    if _kind(w, gid) != "group":
        raise _not_found(gid)
    return gid


def _identity(w: World, oid: str) -> Any:
    for org in w.orgs.values():
        desc = org.by_origin_id.get(oid)
        if desc and desc in org.identities:
            return org.identities[desc]
    return None


def _directory_object(w: World, oid: str) -> dict[str, Any]:
    kind = _kind(w, oid) or "user"
    ident = _identity(w, oid)
    name = ident.display_name if ident else None
    if kind == "user":
        upn = ident.principal_name if ident else None
        return {"@odata.type": _ODATA_TYPE[kind], "id": oid, "businessPhones": [], "displayName": name,
                "givenName": name.split(" ")[0] if name else None, "jobTitle": None,
                "mail": ident.mail_address if ident else None, "mobilePhone": None,
                "officeLocation": None, "preferredLanguage": None,
                "surname": name.split(" ")[-1] if name and " " in name else None,
                "userPrincipalName": upn}
    if kind == "servicePrincipal":
        app_id = ident.application_id if ident else None
        for app in w.entra_apps.values():
            if getattr(app, "sp_object_id", None) == oid:
                app_id, name = app.client_id, name or app.display_name
        return {"@odata.type": _ODATA_TYPE[kind], "id": oid, "accountEnabled": True, "appId": app_id,
                "displayName": name, "servicePrincipalType": "Application"}
    return {"@odata.type": _ODATA_TYPE.get(kind, "#microsoft.graph.directoryObject"), "id": oid,
            **_group_props(w, oid)}


def _group_props(w: World, gid: str) -> dict[str, Any]:
    ident = _identity(w, gid)
    name = ident.display_name if ident else f"Entra group {gid[:8]}"
    return {"deletedDateTime": None, "classification": None,
            "createdDateTime": iso(ident.created) if ident else None,
            "description": ident.description if ident and ident.description else None,
            "displayName": name, "groupTypes": [], "isAssignableToRole": None, "mail": None,
            "mailEnabled": False, "mailNickname": re.sub(r"[^A-Za-z0-9]", "", name) or gid[:8],
            "onPremisesSyncEnabled": None, "securityEnabled": True, "visibility": None}


def _base(request: Request) -> str:
    return f"https://{request.url.netloc}"


# ---- routes ----------------------------------------------------------------------------------


def _method_not_allowed() -> GraphError:
    return GraphError(405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target.")


async def group(request: Request) -> Response:
    w = world_of(request)
    try:
        if request.method == "GET":
            authenticate(request, READ_PERMISSIONS)
            with w.lock:
                gid = _group(w, request.path_params["group_id"])
                return ok(request, {"@odata.context": f"{_base(request)}/v1.0/$metadata#groups/$entity",
                                    "id": gid, **_group_props(w, gid)})
        if request.method == "PATCH":
            return await _patch_group(request)
        raise _method_not_allowed()
    except GraphError as e:
        return error_response(request, e)


def _skiptoken(after: str) -> str:
    return "RFNwdAIAAQAAA" + b64url(json.dumps({"after": after}, separators=(",", ":")))


def _after(token: str) -> str:
    try:
        after = json.loads(b64url_decode(token[len("RFNwdAIAAQAAA"):]))["after"]
        if token.startswith("RFNwdAIAAQAAA") and isinstance(after, str):
            return after
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        pass
    raise GraphError(400, "Directory_ExpiredPageToken",
                     "The specified page token value has expired and can no longer be included in your request.")


async def members(request: Request) -> Response:
    w = world_of(request)
    try:
        if request.method != "GET":
            raise _method_not_allowed()
        authenticate(request, READ_PERMISSIONS)
        q = request.query_params
        raw_top = q.get("$top", "100")
        try:
            top = int(raw_top)
        except ValueError:
            top = 0
        if not 1 <= top <= 999:
            raise GraphError(400, "Request_BadRequest",
                             f"Invalid page size specified: '{raw_top}'. Must be between 1 and 999 inclusive.")
        with w.lock:
            gid = _group(w, request.path_params["group_id"])
            # Keyset paging by object id: stable while members are added or removed between pages.
            ordered = sorted(w.entra_members.get(gid, ()))
            if "$skiptoken" in q:
                after = _after(q["$skiptoken"])
                ordered = [m for m in ordered if m > after]
            page = ordered[:top]
            body: dict[str, Any] = {"@odata.context": f"{_base(request)}/v1.0/$metadata#directoryObjects",
                                    "value": [_directory_object(w, m) for m in page]}
            if len(ordered) > top:
                params = {"$top": str(top), "$skiptoken": _skiptoken(page[-1])}
                body["@odata.nextLink"] = (f"{_base(request)}/v1.0/groups/{gid}/members?"
                                           f"{urlencode(params, safe='$')}")
                # order as the real service: nextLink before value
                body = {"@odata.context": body["@odata.context"], "@odata.nextLink": body["@odata.nextLink"],
                        "value": body["value"]}
        return ok(request, body)
    except GraphError as e:
        return error_response(request, e)


async def _read_json(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise GraphError(400, "BadRequest", "Unable to read JSON request payload. Please ensure Content-Type "
                                            "header is set and payload is of valid JSON format.") from None


def _member_from_ref(request: Request, ref: Any) -> str:
    """The object id in an `@odata.id` / `members@odata.bind` URL."""
    if not isinstance(ref, str) or not ref:
        raise GraphError(400, "Request_BadRequest", "Invalid URL format specified in @odata.id.")
    parts = urlsplit(ref)
    hosts = {request.url.netloc.lower(), request.url.hostname or "", *GRAPH_HOSTS}
    m = _ODATA_ID.match(parts.path)
    if parts.scheme != "https" or parts.netloc.lower() not in hosts or not m:
        raise GraphError(400, "Request_BadRequest", f"Invalid URL format specified in @odata.id: '{ref}'.")
    return _check_id(m.group(1))


def _add_checks(w: World, gid: str, mid: str) -> None:
    if _kind(w, mid) is None:
        raise _not_found(mid)
    if mid == gid:
        raise GraphError(400, "Request_BadRequest", "An object cannot be added as a member of itself.")
    if mid in w.entra_members.get(gid, ()):
        raise GraphError(400, "Request_BadRequest", "One or more added object references already exist for "
                                                    "the following modified properties: 'members'.")


async def add_member(request: Request) -> Response:
    w = world_of(request)
    try:
        if request.method != "POST":
            raise _method_not_allowed()
        authenticate(request, WRITE_PERMISSIONS)
        body = await _read_json(request)
        with w.lock:
            gid = _group(w, request.path_params["group_id"])
            if not isinstance(body, dict) or "@odata.id" not in body:
                raise GraphError(400, "Request_BadRequest",
                                 "The request body must contain an '@odata.id' reference to a directory object.")
            mid = _member_from_ref(request, body["@odata.id"])
            _add_checks(w, gid, mid)
            w.entra_write(gid, mid, True)
        return no_content(request)
    except GraphError as e:
        return error_response(request, e)


async def remove_member_ref(request: Request) -> Response:
    w = world_of(request)
    try:
        if request.method != "DELETE":
            raise _method_not_allowed()
        authenticate(request, WRITE_PERMISSIONS)
        with w.lock:
            gid = _group(w, request.path_params["group_id"])
            mid = _check_id(request.path_params["member_id"])
            if mid not in w.entra_members.get(gid, ()):
                # Graph names the group, not the member, when only the membership is missing.
                raise _not_found(gid)
            w.entra_write(gid, mid, False)
        return no_content(request)
    except GraphError as e:
        return error_response(request, e)


async def member_object(request: Request) -> Response:
    """`/groups/{id}/members/{memberId}` without `$ref`: DELETE would delete the directory object
    itself. A token scoped to group membership is refused, and the simulator never deletes objects."""
    try:
        if request.method == "DELETE":
            authenticate(request, WRITE_PERMISSIONS)
            raise GraphError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
        if request.method == "GET":
            authenticate(request, READ_PERMISSIONS)
            w = world_of(request)
            with w.lock:
                gid = _group(w, request.path_params["group_id"])
                mid = _check_id(request.path_params["member_id"])
                if mid not in w.entra_members.get(gid, ()):
                    raise _not_found(mid)
                return ok(request, {"@odata.context": f"{_base(request)}/v1.0/$metadata#directoryObjects/$entity",
                                    **_directory_object(w, mid)})
        raise _method_not_allowed()
    except GraphError as e:
        return error_response(request, e)


async def _patch_group(request: Request) -> Response:
    """PATCH with `members@odata.bind` only: adds up to 20 members, all or nothing."""
    w = world_of(request)
    authenticate(request, WRITE_PERMISSIONS)
    body = await _read_json(request)
    with w.lock:
        gid = _group(w, request.path_params["group_id"])
        if not isinstance(body, dict):
            raise GraphError(400, "BadRequest", "Empty Payload. JSON content expected.")
        others = [k for k in body if k != "members@odata.bind"]
        if others:
            # Changing group properties needs Group.ReadWrite.All; the simulator supports members only.
            caller = tokens.verify_bearer(w, request.headers["authorization"].split(" ", 1)[1].strip(), "msgraph")
            if caller is None or not (caller.roles | caller.scopes) & {"Group.ReadWrite.All",
                                                                       "Directory.ReadWrite.All"}:
                raise GraphError(403, "Authorization_RequestDenied",
                                 "Insufficient privileges to complete the operation.")
            raise GraphError(400, "Request_BadRequest",
                             f"The simulator only supports 'members@odata.bind' (got {others[0]!r}).")
        refs = body.get("members@odata.bind")
        if not isinstance(refs, list) or not refs:
            raise GraphError(400, "Request_BadRequest", "'members@odata.bind' must be a non-empty array.")
        if len(refs) > MAX_BIND:
            raise GraphError(400, "Request_BadRequest",
                             f"The request exceeds the maximum of {MAX_BIND} members that can be added in a "
                             "single request.")
        mids = [_member_from_ref(request, r) for r in refs]
        for mid in mids:
            _add_checks(w, gid, mid)
        if len(set(mids)) != len(mids):
            raise GraphError(400, "Request_BadRequest", "One or more added object references already exist for "
                                                        "the following modified properties: 'members'.")
        for mid in mids:
            w.entra_write(gid, mid, True)
    return no_content(request)


async def directory_object(request: Request) -> Response:
    """GET /v1.0/users/{id} (users only) and /v1.0/directoryObjects/{id} (any kind)."""
    w = world_of(request)
    users_only = request.url.path.lower().startswith("/v1.0/users/")
    try:
        if request.method != "GET":
            raise _method_not_allowed()
        authenticate(request, USER_READ_PERMISSIONS if users_only else DIRECTORY_READ_PERMISSIONS)
        with w.lock:
            oid = _check_id(request.path_params["object_id"])
            kind = _kind(w, oid)
            if kind is None or (users_only and kind != "user"):
                raise _not_found(oid)
            obj = _directory_object(w, oid)
        if users_only:
            obj.pop("@odata.type")
            ctx = f"{_base(request)}/v1.0/$metadata#users/$entity"
        else:
            ctx = f"{_base(request)}/v1.0/$metadata#directoryObjects/$entity"
        return ok(request, {"@odata.context": ctx, **obj})
    except GraphError as e:
        return error_response(request, e)


async def not_found_segment(request: Request) -> Response:
    seg = request.path_params["rest"].split("/", 1)[0]
    return error_response(request, GraphError(400, "BadRequest", f"Resource not found for the segment '{seg}'."))


async def admin_throttle(request: Request) -> Response:
    w = world_of(request)
    try:
        body = json.loads(await request.body() or b"{}")
        with w.lock:
            t = store_of(w).graph_throttle
            t.count = int(body.get("count", 1))
            t.retry_after = int(body.get("retry_after", 1))
            return JSONResponse({"count": t.count, "retry_after": t.retry_after})
    except (ValueError, TypeError, AttributeError) as e:
        return JSONResponse({"error": str(e)}, status_code=400)


_ALL = ["GET", "POST", "PUT", "PATCH", "DELETE"]

ROUTES: list[BaseRoute] = [
    Route("/_sim/msgraph/throttle", admin_throttle, methods=["POST"]),
    Route("/v1.0/groups/{group_id}", group, methods=_ALL),
    Route("/v1.0/groups/{group_id}/members", members, methods=_ALL),
    Route("/v1.0/groups/{group_id}/members/$ref", add_member, methods=_ALL),
    Route("/v1.0/groups/{group_id}/members/{member_id}/$ref", remove_member_ref, methods=_ALL),
    Route("/v1.0/groups/{group_id}/members/{member_id}", member_object, methods=_ALL),
    Route("/v1.0/users/{object_id}", directory_object, methods=_ALL),
    Route("/v1.0/directoryObjects/{object_id}", directory_object, methods=_ALL),
    Route("/v1.0/{rest:path}", not_found_segment, methods=_ALL),
]
