"""Shared HTTP plumbing for the simulator's route modules: public URLs, callers, error bodies.

Internal routing: one server answers for every real host. The app's host-mapping middleware turns
`https://vssps.dev.azure.com/fabrikam/_apis/...` (or `https://fabrikam.vssps.visualstudio.com/...`)
into the internal path `/vssps/fabrikam/_apis/...` and remembers the public style, so bodies echo
the host the client used. On loopback the internal paths are the public ones:

    {base}/{org}/_apis/...                 dev.azure.com          (core: projects, teams, resourceAreas)
    {base}/vssps/{org}/_apis/...           vssps.dev.azure.com    (graph, identities)
    {base}/vsaex/{org}/_apis/...           vsaex.dev.azure.com    (member entitlement management)
    {base}/auditservice/{org}/_apis/...    auditservice.dev.azure.com
    {base}/app.vssps/_apis/accounts        app.vssps.visualstudio.com
    {base}/{tenant}/oauth2/v2.0/...        login.microsoftonline.com (Entra)
    {base}/v1.0/...                        graph.microsoft.com (Microsoft Graph)
    {base}/_sim/...                        admin API (not a real route)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from .state import OrgState, SimError, World

SERVICES = ("core", "vssps", "vsaex", "auditservice")

# Scope implications: a broader scope satisfies the narrower one.
IMPLIES: dict[str, set[str]] = {
    "vso.graph_manage": {"vso.graph"},
    "vso.identity_manage": {"vso.identity"},
    "vso.memberentitlementmanagement_write": {"vso.memberentitlementmanagement"},
    "vso.project_manage": {"vso.project", "vso.project_write"},
    "vso.project_write": {"vso.project"},
    "vso.security_manage": {"vso.security"},
    "vso.profile_write": {"vso.profile"},
}
FULL_ACCESS = "app_token"  # a full-access PAT


class AuthFailure(Exception):
    """Raised by routes (via `need`); the app turns it into the real 401/203 answer."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.expired = expired


@dataclass(slots=True)
class Caller:
    """Who is calling: set by the auth middleware on `request.state.caller`."""

    kind: str  # pat | bearer | anonymous
    user_key: str | None  # storage key of the user (or service principal) behind the token
    scopes: frozenset[str]  # granted scopes; FULL_ACCESS for full-access PATs / user_impersonation
    roles: frozenset[str] = frozenset()  # application roles (Microsoft Graph, client credentials)
    org: str | None = None  # PAT bound to one organization, or None for all

    def has(self, scope: str) -> bool:
        if FULL_ACCESS in self.scopes or scope in self.scopes:
            return True
        return any(scope in IMPLIES.get(s, ()) for s in self.scopes)


def world(request: Request) -> World:
    return request.app.state.world


def caller(request: Request) -> Caller:
    return getattr(request.state, "caller", None) or Caller("anonymous", None, frozenset())


def org_of(request: Request) -> OrgState:
    """The organization named in the path; raises SimError(not_found) for an unknown one."""
    name = request.path_params.get("org", "")
    org = world(request).org(name)
    if org is None:
        raise SimError("unknown_org", f"TF400813: Organization '{name}' not found.")
    return org


def need(request: Request, scope: str) -> Caller:
    """Require an authenticated caller holding `scope` for this org; raise AuthFailure otherwise."""
    c = caller(request)
    if c.kind == "anonymous":
        raise AuthFailure("TF400813: The user '' is not authorized to access this resource.")
    org = request.path_params.get("org")
    if c.org is not None and org is not None and c.org.lower() != org.lower():
        raise AuthFailure(f"TF400813: The user '{c.user_key}' is not authorized to access this resource.")
    if not c.has(scope):
        raise AuthFailure(f"TF400813: The user '{c.user_key}' is not authorized to access this resource.")
    return c


def public_base(request: Request, service: str, org: str) -> str:
    """The public base URL of `service` for `org`, in the host style the client used.

    service: core | vssps | vsaex | auditservice | accounts | graph_profile.
    """
    style = request.scope.get("sim.style", "loopback")
    scheme = request.url.scheme
    if style == "cloud":
        host = {"core": "dev.azure.com", "accounts": "app.vssps.visualstudio.com"}.get(
            service, f"{service}.dev.azure.com")
        return f"https://{host}" if service == "accounts" else f"https://{host}/{org}"
    if style == "legacy":
        if service == "accounts":
            return "https://app.vssps.visualstudio.com"
        if service == "auditservice":  # no legacy audit host exists
            return f"https://auditservice.dev.azure.com/{org}"
        sub = "" if service == "core" else f".{service}"
        return f"https://{org}{sub}.visualstudio.com"
    root = f"{scheme}://{request.url.netloc}"
    if service == "core":
        return f"{root}/{org}"
    if service == "accounts":
        return f"{root}/app.vssps"
    return f"{root}/{service}/{org}"


def ado_error(status: int, message: str, type_key: str, *,
              type_name: str | None = None, error_code: int = 0, event_id: int = 3000,
              headers: dict[str, str] | None = None) -> JSONResponse:
    """The real Azure DevOps JSON error body."""
    body = {"$id": "1", "innerException": None, "message": message,
            "typeName": type_name or f"Microsoft.VisualStudio.Services.WebApi.{type_key}, "
                                     "Microsoft.VisualStudio.Services.WebApi",
            "typeKey": type_key, "errorCode": error_code, "eventId": event_id}
    from urllib.parse import quote

    h = {"X-TFS-ServiceError": quote(message)}
    h.update(headers or {})
    return JSONResponse(body, status_code=status, headers=h)


# SimError.kind -> (status, typeKey) for the Azure DevOps services.
_SIM_ERROR_MAP = {
    "not_found": (404, "GraphSubjectNotFoundException"),
    "membership_not_found": (404, "GraphMembershipNotFoundException"),
    "unknown_org": (404, "HostDoesNotExistException"),
    "cycle": (400, "GraphBadRequestException"),
    "invalid": (400, "GraphBadRequestException"),
    "too_many": (400, "TooManyRequestedItemsException"),
    "read_only": (403, "InvalidAccessException"),
    "forbidden": (403, "InvalidAccessException"),
    "conflict": (409, "IdentityAlreadyExistsException"),
}


def sim_error_response(err: SimError) -> JSONResponse:
    status, type_key = _SIM_ERROR_MAP.get(err.kind, (400, "ArgumentException"))
    return ado_error(status, err.message, type_key)


def page_not_found() -> PlainTextResponse:
    """Unknown routes answer with plain text, not the JSON error shape (as the real hosts do)."""
    return PlainTextResponse("Page not found.", status_code=404)


def ado_json(body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response with the content type Azure DevOps sends."""
    # orjson: the big list pages are most of the simulator's CPU with the stdlib encoder.
    return Response(orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS), status_code=status,
                    media_type="application/json; charset=utf-8; api-version=7.1", headers=headers)


def api_version(request: Request, *, default_ok: bool = False) -> str | None:
    """The api-version query parameter; None when missing (routes decide whether that is an error)."""
    v = request.query_params.get("api-version")
    if v is None and default_ok:
        return "7.1"
    return v


def links(request: Request, org: str, kind: str, descriptor: str) -> dict[str, Any]:
    """`_links` and `url` of a Graph subject (kind: Users | Groups | ServicePrincipals)."""
    vssps = public_base(request, "vssps", org)
    core = public_base(request, "core", org)
    d = descriptor
    return {
        "_links": {
            "self": {"href": f"{vssps}/_apis/Graph/{kind}/{d}"},
            "memberships": {"href": f"{vssps}/_apis/Graph/Memberships/{d}"},
            "membershipState": {"href": f"{vssps}/_apis/Graph/MembershipStates/{d}"},
            "storageKey": {"href": f"{vssps}/_apis/Graph/StorageKeys/{d}"},
            "avatar": {"href": f"{core}/_apis/GraphProfile/MemberAvatars/{d}"},
        },
        "url": f"{vssps}/_apis/Graph/{kind}/{d}",
    }
