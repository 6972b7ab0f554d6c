"""Graph REST API (vssps): users, groups, service principals, memberships, descriptors, lookups.

Behaviour follows the Graph REST reference (https://learn.microsoft.com/rest/api/azure/devops/graph)
and what clients of the service report about its paging:
- list endpoints read one page of up to PAGE_SIZE raw identities of the scan (users, groups and
  service principals are separate scans), filter it afterwards (subjectTypes; for users the scope),
  and send `X-MS-ContinuationToken` whenever the scan has more identities — so pages can be short or
  empty; a group listing with a project `scopeDescriptor` scans that scope's identities only;
- membership single-edge verbs: GET 200/404, HEAD 200/404 without body, PUT 201 (idempotent),
  DELETE 200/404; the list is direct edges and not paged;
- errors carry the real typeKeys and VS/TF messages (GraphResources / IdentityResources).

Choices where the reference is UNVERIFIED or silent:
- a missing api-version is a 400 for every method (some servers serve GETs at the latest version);
- HEAD on a membership answers for direct edges only; an unknown subject is 400, an unknown container 404;
- `depth=-1` on the membership list returns the transitive closure (the server maps it to Expanded);
- continuation tokens are base64url JSON of (scan, scope, position, tail of the page); the scope of
  the first request sticks to the token, `subjectTypes` is read on every page; a token of another
  scan or garbage is 400 ArgumentException;
- an unknown `scp.` scope is 404 GroupScopeDoesNotExistException; built-in groups (collection
  groups, Project Administrators, Project Valid Users) and team groups cannot be deleted (403
  RemoveSpecialGroupException; teams go through the teams API);
- writes (group create/delete, membership PUT/DELETE) need Project Collection Administrators
  (403 InvalidAccessException otherwise); new project groups join Project Valid Users.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from . import http
from .serialize import gc_paused, graph_scope, graph_subject, membership_json, resource_name, scope_descriptor
from .state import ORG_ROLES, Identity, OrgState, SimError, World, b64url_decode

PAGE_SIZE = 500  # registry /Configuration/Graph/Paging/MaxPageSize default; tests may lower it
SUBJECT_LOOKUP_MAX = 500  # GraphSubjectLookupController
SUBJECT_QUERY_MAX = 100  # GraphSubjectQueryController
LATEST_API_VERSION = (7, 2)  # the current Azure DevOps Services ceiling

USER_TYPES = frozenset({"aad", "msa", "svc", "bnd", "imp", "acs", "unusr", "win", "agg", "csp"})
SP_TYPES = frozenset({"aadsp"})
GROUP_TYPES = frozenset({"vssgp", "aadgp", "ungrp"})
MEMBER_TYPES = USER_TYPES | SP_TYPES | GROUP_TYPES
# Built-in groups that cannot be deleted (RemoveSpecialGroupException).
_SPECIAL_ROLES = frozenset({k for k, _ in ORG_ROLES} | {"project_administrators", "project_valid_users"})

_VERSION_RE = re.compile(r"^\s*(\d+)\.(\d+)(-preview(?:\.(\d+))?)?\s*$", re.IGNORECASE)
_DESCRIPTOR_RE = re.compile(r"^([A-Za-z]{2,5})\.([A-Za-z0-9_\-=]{1,400})$")


# ---- errors ------------------------------------------------------------------------------
class ApiError(Exception):
    """An error answer of the real service: status, typeKey, message and the typeName namespace."""

    def __init__(self, status: int, type_key: str, message: str, *,
                 namespace: str = "Microsoft.VisualStudio.Services.Graph",
                 assembly: str = "Microsoft.VisualStudio.Services.WebApi") -> None:
        super().__init__(message)
        self.status, self.type_key, self.message = status, type_key, message
        self.type_name = f"{namespace}.{type_key}, {assembly}"

    def response(self) -> Response:
        return http.ado_error(self.status, self.message, self.type_key, type_name=self.type_name)


def bad_request(message: str, type_key: str = "GraphBadRequestException") -> ApiError:
    return ApiError(400, type_key, message)


def argument_error(message: str) -> ApiError:
    return ApiError(400, "ArgumentException", message, namespace="System", assembly="mscorlib")


def subject_not_found(descriptor: str) -> ApiError:
    return ApiError(404, "GraphSubjectNotFoundException",
                    f"VS403325: The graph subject with descriptor '{descriptor}' could not be found. You may need "
                    "to create the subject in the enclosing enterprise, or add organization-level memberships to "
                    "make a subject in the enterprise visible in the enclosing organization")


def membership_not_found(member: str, container: str) -> ApiError:
    return ApiError(404, "GraphMembershipNotFoundException",
                    f"VS403328: The graph membership for member descriptor '{member}' and container descriptor "
                    f"'{container}' could not be found. You may need to create this membership in the enclosing "
                    "enterprise or organization.")


def _identity_error(status: int, type_key: str, message: str) -> ApiError:
    return ApiError(status, type_key, message, namespace="Microsoft.VisualStudio.Services.Identity")


def too_many_items(count: int, limit: int) -> ApiError:
    return _identity_error(400, "TooManyRequestedItemsException",
                           f"TF400049: The request was aborted because it contained too many requested items "
                           f"{count}, maximum allowed is {limit}.")


# ---- api-version -------------------------------------------------------------------------
def _requested_version(request: Request) -> str | None:
    v = request.query_params.get("api-version")
    if v is not None:
        return v
    # The real service also accepts the version in the Accept header.
    for part in request.headers.get("accept", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "api-version" and value.strip():
            return value.strip()
    return None


def check_api_version(request: Request, *, preview: bool,
                      min_version: tuple[int, int] = (1, 0), route: str = "") -> Response | None:
    """The real api-version negotiation errors, or None when the version is acceptable.

    preview: the resource is preview-only at every version (Graph except descriptors/storagekeys),
    so a released version such as `7.1` is refused with VssInvalidPreviewVersionException.
    min_version: the controller's first version (ControllerApiVersion); older requests are refused.
    """
    v = _requested_version(request)
    if v is None:
        # UNVERIFIED for GET (some servers serve GETs at the latest version); stricter here so the
        # client is kept honest. POST/PUT/PATCH/DELETE answer exactly this.
        return http.ado_error(400, f'No api-version was supplied for the "{request.method}" request. The version '
                                   'must be supplied either as part of the Accept header (e.g. "application/json; '
                                   'api-version=1.0") or as a query parameter (e.g. "?api-version=1.0").',
                              "VssVersionNotSpecifiedException")
    m = _VERSION_RE.match(v)
    if m is None:
        return http.ado_error(400, f'Invalid api version string: "{v}". Api version string must be in the format: '
                                   "{Major}.{Minor}[-preview[.{ResourceVersion}]].", "VssInvalidApiVersionException")
    major, minor = int(m.group(1)), int(m.group(2))
    if (major, minor) > LATEST_API_VERSION:
        latest = ".".join(map(str, LATEST_API_VERSION))
        return http.ado_error(400, f"The requested REST API version of {major}.{minor} is out of range for this "
                                   f"server. The latest REST API version this server supports is {latest}.",
                              "VssVersionOutOfRangeException")
    if (major, minor) < min_version:
        # UNVERIFIED route name in the message; the text is WebApiResources.ApiVersionOutOfRangeForRoute.
        return http.ado_error(400, f"The request matched route {route}, but the requested REST API version "
                                   f"{major}.{minor} was outside the valid version range for this route.",
                              "VssVersionOutOfRangeException")
    if preview and not m.group(3):
        base = f"{major}.{minor}"
        return http.ado_error(400, f'The requested version "{base}" of the resource is under preview. The -preview '
                                   f'flag must be supplied in the api-version for such requests. For example: '
                                   f'"{base}-preview"', "VssInvalidPreviewVersionException")
    return None


# ---- plumbing ----------------------------------------------------------------------------
class CIRoute(Route):
    """A Route whose literal segments match case-insensitively (`_apis/Graph/Users` == `_apis/graph/users`)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.path_regex = re.compile(self.path_regex.pattern, re.IGNORECASE)


Handler = Callable[[Request, OrgState, http.Caller, Any], Response]


def api(scope: str, *, preview: bool = True, write: bool = False, body: bool = False,
        min_version: tuple[int, int] = (3, 2)) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """Wrap a synchronous handler: scope check, api-version, JSON body, world lock, PCA check, errors.

    The handler runs entirely under `world.lock` (it must not await).
    """

    def deco(fn: Handler) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(fn)
        async def endpoint(request: Request) -> Response:
            caller = http.need(request, scope)  # AuthFailure -> the app's 401
            route = (getattr(request.scope.get("route"), "path", "") or request.url.path).split("/_apis/", 1)[-1]
            bad = check_api_version(request, preview=preview, min_version=min_version, route=route)
            if bad is not None:
                return bad
            payload: Any = None
            if body:
                raw = await request.body()
                try:
                    payload = json.loads(raw) if raw.strip() else None
                except (ValueError, UnicodeDecodeError):
                    return argument_error("The request body is not valid JSON.").response()
            world: World = http.world(request)
            try:
                with world.lock:
                    world.settle()
                    org = http.org_of(request)
                    if write and not org.is_collection_admin(caller.user_key or ""):
                        raise ApiError(403, "InvalidAccessException",
                                       "Access Denied: the caller needs the Project Collection Administrators role "
                                       "(Manage group membership) to perform this action.",
                                       namespace="Microsoft.VisualStudio.Services.WebApi")
                    return fn(request, org, caller, payload)
            except ApiError as e:
                return e.response()
            except SimError as e:
                return http.sim_error_response(e)

        return endpoint

    return deco


def parse_descriptor(value: str) -> str:
    """The subject type (lower-case) of a well-formed descriptor; 400 VS860021 otherwise."""
    m = _DESCRIPTOR_RE.match(value or "")
    if m is None:
        raise bad_request(f"VS860021: The provided descriptor '{value}' is not a valid graph subject descriptor "
                          "for this end point.")
    return m.group(1).lower()


def get_subject(org: OrgState, descriptor: str) -> Identity:
    parse_descriptor(descriptor)
    ident = org.identities.get(descriptor)
    if ident is None:
        raise subject_not_found(descriptor)
    return ident


def scope_id_of(org: OrgState, descriptor: str) -> str | None:
    """Project id (or None for the collection) named by a `scp.` descriptor."""
    if parse_descriptor(descriptor) != "scp":
        raise bad_request(f"VS860021: The provided descriptor '{descriptor}' is not a valid graph subject "
                          "descriptor for this end point.")
    try:
        sid = b64url_decode(descriptor.split(".", 1)[1])
    except (binascii.Error, UnicodeDecodeError, ValueError):
        sid = ""
    if sid == org.id:
        return None
    if sid in org.projects:
        return sid
    # UNVERIFIED message; GroupScopeDoesNotExistException maps to 404 in GraphControllerBase.
    raise _identity_error(404, "GroupScopeDoesNotExistException", f"The scope '{descriptor}' does not exist.")


def _subject_types(request: Request) -> set[str] | None:
    raw = request.query_params.get("subjectTypes")
    if raw is None:
        return None
    types = {t.strip().lower() for t in raw.split(",") if t.strip()}
    return types or None  # unknown values simply match nothing (QueryFilters)


_TOKEN_TAIL = 8  # descriptors of the page's tail kept in a token, to resume after concurrent removals


def _encode_token(kind: str, scope: str | None, index: int, tail: list[str]) -> str:
    data = json.dumps({"k": kind, "s": scope, "i": index, "t": tail[-_TOKEN_TAIL:]}, separators=(",", ":"))
    return base64.urlsafe_b64encode(data.encode()).decode().rstrip("=")


def _decode_token(token: str, kind: str) -> tuple[str | None, list[str], int]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if data["k"] != kind or not isinstance(data["t"], list):
            raise ValueError(kind)
        return data["s"], [str(t) for t in data["t"]], int(data["i"])
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise argument_error(f"The continuation token '{token}' is not valid.") from None


def _resume(order: list[str], tail: list[str], index: int) -> int:
    """Where the scan continues: right after the last identity read that still exists.

    The real store pages by a stable key, so removals between pages neither skip nor repeat
    identities; positions in the scan list shift, hence the descriptors of the page's tail.
    """
    # Fast path (nothing removed before the cursor): O(1) instead of a scan of the whole order.
    if tail and 0 < index <= len(order) and order[index - 1] == tail[-1]:
        return index
    for d in reversed(tail):
        try:
            return order.index(d) + 1
        except ValueError:
            continue
    return min(max(index - len(tail), 0), len(order))  # the whole tail vanished: repeat rather than skip


def _in_project(org: OrgState, ident: Identity, project_id: str) -> bool:
    for g in org.transitive_groups(ident.descriptor):
        grp = org.identities.get(g)
        if grp is not None and grp.project_id == project_id:
            return True
    return False


def _list_page(request: Request, org: OrgState, kind: str, order: list[str],
               keep: Callable[[Identity, str | None], bool], *, filter_types: bool = True,
               scoped: Callable[[str], list[str]] | None = None) -> Response:
    """Read a raw page of the scan, then filter; the token depends only on the raw scan. `scoped`:
    the scan of a project scope, when the store pages over that scope's identities only."""
    token = request.query_params.get("continuationToken")
    if token:
        scope, tail, index = _decode_token(token, kind)
        if scope is not None and scoped is not None:
            order = scoped(scope)
        start = _resume(order, tail, index)
    else:
        sd = request.query_params.get("scopeDescriptor")
        scope = scope_id_of(org, sd) if sd else None
        if scope is not None and scoped is not None:
            order = scoped(scope)
        start = 0
    raw = order[start:start + PAGE_SIZE]
    types = _subject_types(request) if filter_types else None
    value = []
    for d in raw:
        ident = org.identities.get(d)
        if ident is None:
            continue
        if types is not None and ident.subject_type not in types:
            continue
        if keep(ident, scope):
            value.append(graph_subject(request, org, ident))
    headers = {}
    if start + len(raw) < len(order):
        headers["X-MS-ContinuationToken"] = _encode_token(kind, scope, start + len(raw), raw)
    return http.ado_json({"count": len(value), "value": value}, headers=headers)


# ---- users -------------------------------------------------------------------------------
@api("vso.graph")
def list_users(request: Request, org: OrgState, caller: http.Caller, _: Any) -> Response:
    def keep(ident: Identity, scope: str | None) -> bool:
        return ident.subject_kind == "user" and (scope is None or _in_project(org, ident, scope))

    return _list_page(request, org, "users", org.user_order, keep)


def _not_allowed_type(subject_type: str) -> ApiError:
    return bad_request(f"VS860045: Provided subject type '{subject_type}' is not supported by the API endpoint.")


@api("vso.graph")
def get_user(request: Request, org: OrgState, caller: http.Caller, _: Any) -> Response:
    d = request.path_params["descriptor"]
    st = parse_descriptor(d)
    if st not in USER_TYPES:
        raise _not_allowed_type(st)
    ident = get_subject(org, d)
    if ident.subject_kind != "user":
        raise subject_not_found(d)
    return http.ado_json(graph_subject(request, org, ident))


# ---- service principals --------------------------------------------------------------------
@api("vso.graph", min_version=(7, 1))
def list_service_principals(request: Request, org: OrgState, caller: http.Caller, _: Any) -> Response:
    def keep(ident: Identity, scope: str | None) -> bool:
        return ident.subject_kind == "servicePrincipal" and (scope is None or _in_project(org, ident, scope))

    # The endpoint has no subjectTypes parameter.
    return _list_page(request, org, "serviceprincipals", org.sp_order, keep, filter_types=False)


@api("vso.graph", min_version=(7, 1))
def get_service_principal(request: Request, org: OrgState, caller: http.Caller, _: Any) -> Response:
    d = request.path_params["descriptor"]
    st = parse_descriptor(d)
    if st not in SP_TYPES:
        raise _not_allowed_type(st)
    ident = get_subject(org, d)
    return http.ado_json(graph_subject(request, org, ident))


# ---- groups ------------------------------------------------------------------------------
@api("vso.graph")
def list_groups(request: Request, org: OrgState, caller: http.Caller, _: Any) -> Response:
    """Groups pages read 500 identities *of the scope* (ScopePagingContext(scope, ...)), then filter:
    a project's groups come in a page or two, the organization's in one page per 500 groups."""
    def keep(ident: Identity, scope: str | None) -> bool:
        return ident.is_group and (scope is None or ident.project_id == scope)

    def scoped(scope: str) -> list[str]:
        idents = org.identities
        return [d for d in org.group_order if (g := idents.get(d)) is not None and g.project_id == scope]

    return _list_page(request, org, "groups", org.group_order, keep, scoped=scoped)


@api("vso.graph")
def get_group(request: Request, org: OrgState, caller: http.Caller, _: Any) -> Response:
    d = request.path_params["descriptor"]
    ident = get_subject(org, d)
    if not ident.is_group:  # GetGroup: "is not GraphGroup" -> not found
        raise subject_not_found(d)
    return http.ado_json(graph_subject(request, org, ident))


def _entra_group_name(world: World, oid: str) -> str:
    """Display name of an Entra group, from whatever the Entra simulator keeps (else a stable fallback)."""
    for attr in ("entra_group_names", "entra_names", "entra_display_names"):
        names = getattr(world, attr, None)
        if isinstance(names, dict) and oid in names:
            return str(names[oid])
    for other in world.orgs.values():  # materialized elsewhere in the tenant
        d = other.by_origin_id.get(oid)
        if d is not None:
            return other.identities[d].display_name
    return f"Entra group {oid[:8]}"


@api("vso.graph_manage", write=True, body=True)
def create_group(request: Request, org: OrgState, caller: http.Caller, payload: Any) -> Response:
    if not isinstance(payload, dict):
        raise bad_request("VS860014: Must have exactly one of originId, principalName or displayName set.")
    keys = [k for k in ("originId", "principalName", "displayName", "mailAddress") if payload.get(k)]
    if len(keys) != 1:
        raise bad_request("VS860014: Must have exactly one of originId, principalName or displayName set.")
    sd = request.query_params.get("scopeDescriptor")
    join = [g.strip() for g in request.query_params.get("groupDescriptors", "").split(",") if g.strip()]
    containers = []
    for g in dict.fromkeys(join):
        c = get_subject(org, g)
        if not c.is_group:
            raise bad_request(f"VS860002: The descriptor {g} does not represent an identity of expected type group.")
        containers.append(c)
    if keys[0] == "displayName":
        project_id = scope_id_of(org, sd) if sd else None
        name = str(payload["displayName"]).strip()
        for g in org.groups():
            if g.subject_type == "vssgp" and g.project_id == project_id and g.display_name.lower() == name.lower():
                scope_name = org.projects[project_id].name if project_id else org.name
                raise _identity_error(409, "GroupCreationException",
                                      f"TF50624: A group named {name} already exists in scope {scope_name}.")
        group = org.create_group(display_name=name, description=str(payload.get("description") or ""),
                                 project_id=project_id, actor_key=caller.user_key)
        if project_id is not None:
            # Every project group is a member of [Project]\Project Valid Users (implicit, no audit).
            pvu = org.projects[project_id].role_groups.get("project_valid_users")
            if pvu:
                org.add_membership(pvu, group.descriptor, audit=False)
    else:
        if sd:
            raise bad_request("VS860004: Only Visual Studio created groups can be added to a custom scope.")
        key = keys[0]
        value = str(payload[key])
        oid = value if key == "originId" else None
        world = org.world
        if oid is None or world.entra_objects.get(oid) != "group":
            # The real controller answers this one with a bare JSON string body.
            return http.ado_json(f"VS860016: Could not find subject '{value}' in the backing domain. This value "
                                 f"came from the parameter '{key}'. Please check your input and try again.",
                                 status=400)
        existing = org.by_origin_id.get(oid)
        if existing is not None:
            group = org.identities[existing]
        else:
            group = org.create_group(display_name=_entra_group_name(world, oid), entra_oid=oid,
                                     actor_key=caller.user_key)
            # Entra members already materialized in this organization show up at once.
            for moid in world.entra_members.get(oid, ()):
                md = org.by_origin_id.get(moid)
                if md is not None:
                    with contextlib.suppress(SimError):
                        org.add_membership(group.descriptor, md, via_entra=True)
    for c in containers:
        _add_edge(org, c, group, caller)
    body = graph_subject(request, org, group)
    return http.ado_json(body, status=201, headers={"Location": body["url"]})


@api("vso.graph_manage", write=True)
def delete_group(request: Request, org: OrgState, caller: http.Caller, _: Any) -> Response:
    d = request.path_params["descriptor"]
    group = get_subject(org, d)
    if not group.is_group:
        raise bad_request(f"VS860002: The descriptor {d} does not represent an identity of expected type group.")
    if (group.role in _SPECIAL_ROLES) or group.is_team:
        # UNVERIFIED message text; the status and typeKey are from GraphControllerBase.
        raise _identity_error(403, "RemoveSpecialGroupException",
                              f"The group {group.principal_name} is a special group and cannot be deleted.")
    org.delete_group(d, actor_key=caller.user_key)
    return Response(status_code=204)


# ---- memberships -------------------------------------------------------------------------
def _check_edge_descriptors(subject: str, container: str) -> None:
    st = parse_descriptor(subject)
    ct = parse_descriptor(container)
    if ct == "scp":
        raise bad_request("VS860012: Checking membership of scopes is not supported at this time.")
    if ct not in GROUP_TYPES:
        raise bad_request(f"VS860002: The descriptor {container} does not represent an identity of expected type "
                          "group.")
    if st not in MEMBER_TYPES:
        raise bad_request(f"VS860002: The descriptor {subject} does not represent an identity of expected type "
                          "member.")


def _add_edge(org: OrgState, container: Identity, member: Identity, caller: http.Caller) -> None:
    try:
        org.add_membership(container.descriptor, member.descriptor, actor_key=caller.user_key)
    except SimError as e:
        if e.kind == "cycle":
            raise _identity_error(400, "AddMemberCyclicMembershipException",
                                  f"TF50233: A cyclic group containment error occurred when adding a group member. "
                                  f"The group {member.principal_name} already has the group "
                                  f"{container.principal_name} as a contained member.") from None
        raise


@api("vso.graph")
def get_membership(request: Request, org: OrgState, caller: http.Caller, _: Any) -> Response:
    s, c = request.path_params["subject"], request.path_params["container"]
    _check_edge_descriptors(s, c)
    # GetMembership only asks IsMember: unknown subjects are "membership not found" too.
    if s not in org.identities or c not in org.identities or not org.is_member(c, s):
        raise membership_not_found(s, c)
    return http.ado_json(membership_json(request, org, org.identities[s], org.identities[c]))


@api("vso.graph")
def head_membership(request: Request, org: OrgState, caller: http.Caller, _: Any) -> Response:
    s, c = request.path_params["subject"], request.path_params["container"]
    _check_edge_descriptors(s, c)
    if s not in org.identities:
        # CheckMembershipExistence: an unknown subject is a bad request, not a 404.
        return Response(status_code=400)
    if c not in org.identities:
        return Response(status_code=404)
    # UNVERIFIED whether IsMember is transitive; direct edges only (reference §4.1).
    return Response(status_code=200 if org.is_member(c, s) else 404)


@api("vso.graph_manage", write=True)
def put_membership(request: Request, org: OrgState, caller: http.Caller, _: Any) -> Response:
    s, c = request.path_params["subject"], request.path_params["container"]
    _check_edge_descriptors(s, c)
    if parse_descriptor(s) == "imp":
        raise bad_request(f"VS860021: The provided descriptor '{s}' is not a valid graph subject descriptor for "
                          "this end point.")
    member, container = get_subject(org, s), get_subject(org, c)
    if not container.is_group:
        raise bad_request(f"VS403339: Cannot add or remove child from graph subject with descriptor '{c}' because "
                          "it is not a group.")
    _add_edge(org, container, member, caller)  # idempotent: an existing edge is no error
    # No Location header for memberships (unlike users/groups).
    return http.ado_json(membership_json(request, org, member, container), status=201)


@api("vso.graph_manage", write=True)
def delete_membership(request: Request, org: OrgState, caller: http.Caller, _: Any) -> Response:
    s, c = request.path_params["subject"], request.path_params["container"]
    _check_edge_descriptors(s, c)
    member, container = get_subject(org, s), get_subject(org, c)
    if container.subject_type == "aadgp":
        raise SimError("read_only", "Membership of Microsoft Entra groups is managed in Microsoft Entra ID and "
                                    "cannot be changed in Azure DevOps.")
    if not org.is_member(c, s):
        # RemoveGroupMemberNotMemberException (404); clients treat it as already revoked.
        raise _identity_error(404, "RemoveGroupMemberNotMemberException",
                              f"TF50632: An error occurred removing the group member. There is no group member with "
                              f"the security identifier (SID) {member.identity_descriptor.split(';', 1)[-1]}.")
    pca = org.org_groups.get("project_collection_administrators")
    if c == pca and member.storage_key == org.owner_key:
        raise _identity_error(403, "RemoveAccountOwnerFromAdminGroupException",
                              "Current account owner is not allowed to be removed from Project Collection "
                              "Administrators group. Please change the account owner and try again.")
    org.remove_membership(c, s, actor_key=caller.user_key)
    return Response(status_code=200)


async def membership_edge(request: Request) -> Response:
    """GET/HEAD/PUT/DELETE graph/memberships/{subject}/{container}."""
    handler = {"GET": get_membership, "HEAD": head_membership, "PUT": put_membership,
               "DELETE": delete_membership}[request.method]
    resp = await handler(request)
    if request.method == "HEAD":
        return Response(status_code=resp.status_code, headers={
            k: v for k, v in resp.headers.items() if k.lower() not in ("content-length", "content-type")})
    return resp


@api("vso.graph")
def list_memberships(request: Request, org: OrgState, caller: http.Caller, _: Any) -> Response:
    d = request.path_params["subject"]
    st = parse_descriptor(d)
    direction = (request.query_params.get("direction") or "up").strip().lower()
    if direction not in ("up", "down"):
        raise bad_request(f"VS860020: The provided traversal direction '{direction}' is not supported for "
                          "parameter 'direction'. The supported values are 'up' and 'down'.")
    raw_depth = request.query_params.get("depth", "1")
    try:
        depth = int(raw_depth)
    except ValueError:
        raise argument_error(f"The value '{raw_depth}' is not valid for depth.") from None
    if depth not in (1, -1):
        raise bad_request(f"VS860019: The provided traversal depth '{depth}' is not supported for parameter "
                          "'depth'. Currently the only supported value is '1'.")
    if st == "scp":
        raise ApiError(500, "NotImplementedException", "The method or operation is not implemented.",
                       namespace="System", assembly="mscorlib")
    ident = get_subject(org, d)
    edges = org.up if direction == "up" else org.down
    if depth == 1:
        others = sorted(edges.get(d, ()))
    else:  # -1 = expanded (the server maps it to QueryMembership.Expanded)
        others = _transitive(d, edges)
    value = []
    with gc_paused():  # a big group's list is tens of thousands of dicts (unpaged, as the real API)
        for o in others:
            other = org.identities.get(o)
            if other is None:
                continue
            member, container = (ident, other) if direction == "up" else (other, ident)
            # List items carry no _links, as the official MembershipsBatch examples show.
            value.append({"containerDescriptor": container.descriptor, "memberDescriptor": member.descriptor})
        return http.ado_json({"count": len(value), "value": value})


def _transitive(start: str, edges: dict[str, set[str]]) -> list[str]:
    seen: set[str] = set()
    stack = [start]
    while stack:
        for n in edges.get(stack.pop(), ()):
            if n not in seen and n != start:
                seen.add(n)
                stack.append(n)
    return sorted(seen)


@api("vso.graph")
def membership_state(request: Request, org: OrgState, caller: http.Caller, _: Any) -> Response:
    d = request.path_params["subject"]
    ident = get_subject(org, d)
    vssps = http.public_base(request, "vssps", org.name)
    return http.ado_json({"active": ident.active, "_links": {
        "self": {"href": f"{vssps}/_apis/Graph/MembershipStates/{d}"},
        "member": {"href": f"{vssps}/_apis/Graph/{resource_name(ident)}/{d}"}}})


# ---- descriptors / storage keys ----------------------------------------------------------
@api("vso.graph", preview=False, min_version=(3, 1))
def get_descriptor(request: Request, org: OrgState, caller: http.Caller, _: Any) -> Response:
    raw = request.path_params["storage_key"]
    try:
        key = str(uuid.UUID(raw))
    except ValueError:
        raise bad_request(f"VS860005: Cannot parse field storageKey for value {raw}.") from None
    if key == "00000000-0000-0000-0000-000000000000":
        raise bad_request(f"The storage key '{key}' is not valid for a descriptor request.",
                          "InvalidGetDescriptorRequestException")
    ident = org.by_storage_key(key)
    if ident is not None:
        d, subject_res = ident.descriptor, resource_name(ident)
    elif key in org.projects or key == org.id:
        d, subject_res = scope_descriptor(key), "Scopes"
    else:
        raise ApiError(404, "SubjectDescriptorNotFoundException",
                       f"VS403368: The subject descriptor for storage key '{key}' could not be found.")
    vssps = http.public_base(request, "vssps", org.name)
    return http.ado_json({"value": d, "_links": {
        "self": {"href": f"{vssps}/_apis/Graph/Descriptors/{key}"},
        "storageKey": {"href": f"{vssps}/_apis/Graph/StorageKeys/{d}"},
        "subject": {"href": f"{vssps}/_apis/Graph/{subject_res}/{d}"}}})


@api("vso.graph", preview=False)
def get_storage_key(request: Request, org: OrgState, caller: http.Caller, _: Any) -> Response:
    d = request.path_params["descriptor"]
    st = parse_descriptor(d)
    key: str | None = None
    if st == "scp":
        try:
            sid = b64url_decode(d.split(".", 1)[1])
        except (binascii.Error, UnicodeDecodeError, ValueError):
            sid = ""
        if sid in org.projects or sid == org.id:
            key = sid
    elif d in org.identities:
        key = org.identities[d].storage_key
    if key is None:
        raise ApiError(404, "StorageKeyNotFoundException",
                       f"VS403369: The storage key for descriptor '{d}' could not be found.")
    vssps = http.public_base(request, "vssps", org.name)
    return http.ado_json({"value": key, "_links": {
        "self": {"href": f"{vssps}/_apis/Graph/StorageKeys/{d}"},
        "descriptor": {"href": f"{vssps}/_apis/Graph/Descriptors/{key}"}}})


# ---- subject lookup / query --------------------------------------------------------------
@api("vso.graph", body=True)
def subject_lookup(request: Request, org: OrgState, caller: http.Caller, payload: Any) -> Response:
    keys = payload.get("lookupKeys") if isinstance(payload, dict) else None
    if not isinstance(keys, list):
        raise ApiError(400, "ArgumentNullException", "Value cannot be null.\r\nParameter name: LookupKeys",
                       namespace="System", assembly="mscorlib")
    if len(keys) > SUBJECT_LOOKUP_MAX:
        raise too_many_items(len(keys), SUBJECT_LOOKUP_MAX)
    result: dict[str, Any] = {}
    for k in keys:
        d = k.get("descriptor") if isinstance(k, dict) else None
        if not isinstance(d, str):
            continue
        result[d] = None  # unknown descriptors resolve to null, as the controller pre-fills them
        if d.startswith("scp."):
            with contextlib.suppress(binascii.Error, UnicodeDecodeError, ValueError):
                result[d] = graph_scope(request, org, b64url_decode(d[4:]))
        elif d in org.identities:
            result[d] = graph_subject(request, org, org.identities[d])
    return http.ado_json({"count": len(result), "value": result})


@api("vso.graph", body=True, min_version=(5, 1))
def subject_query(request: Request, org: OrgState, caller: http.Caller, payload: Any) -> Response:
    if not isinstance(payload, dict) or not str(payload.get("query") or "").strip():
        raise argument_error("Value cannot be null or empty.\r\nParameter name: Query")
    kinds = payload.get("subjectKind")
    if not isinstance(kinds, list) or not kinds:
        raise argument_error("Value cannot be null or empty.\r\nParameter name: SubjectKind")
    wanted = {str(k).lower() for k in kinds}
    q = str(payload["query"]).strip().lower()
    scope = scope_id_of(org, payload["scopeDescriptor"]) if payload.get("scopeDescriptor") else None
    hits = []
    for ident in org.identities.values():
        kind = "user" if ident.subject_kind in ("user", "servicePrincipal") else "group"
        if kind not in wanted:
            continue
        names = (ident.display_name, ident.mail_address, ident.principal_name, ident.directory_alias,
                 ident.principal_name.split("@", 1)[0])
        if not any(n and n.lower().startswith(q) for n in names):
            continue
        if scope is not None and not (ident.project_id == scope or _in_project(org, ident, scope)):
            continue
        hits.append(ident)
    hits.sort(key=lambda i: i.display_name)
    value = [graph_subject(request, org, i) for i in hits[:SUBJECT_QUERY_MAX]]
    return http.ado_json({"count": len(value), "value": value})


_G = "/vssps/{org}/_apis/graph"
ROUTES: list[BaseRoute] = [
    CIRoute(f"{_G}/users", list_users, methods=["GET"]),
    CIRoute(f"{_G}/users/{{descriptor}}", get_user, methods=["GET"]),
    CIRoute(f"{_G}/serviceprincipals", list_service_principals, methods=["GET"]),
    CIRoute(f"{_G}/serviceprincipals/{{descriptor}}", get_service_principal, methods=["GET"]),
    CIRoute(f"{_G}/groups", list_groups, methods=["GET"]),
    CIRoute(f"{_G}/groups", create_group, methods=["POST"]),
    CIRoute(f"{_G}/groups/{{descriptor}}", get_group, methods=["GET"]),
    CIRoute(f"{_G}/groups/{{descriptor}}", delete_group, methods=["DELETE"]),
    CIRoute(f"{_G}/memberships/{{subject}}", list_memberships, methods=["GET"]),
    CIRoute(f"{_G}/memberships/{{subject}}/{{container}}", membership_edge,
            methods=["GET", "HEAD", "PUT", "DELETE"]),
    CIRoute(f"{_G}/membershipstates/{{subject}}", membership_state, methods=["GET"]),
    CIRoute(f"{_G}/descriptors/{{storage_key}}", get_descriptor, methods=["GET"]),
    CIRoute(f"{_G}/storagekeys/{{descriptor}}", get_storage_key, methods=["GET"]),
    CIRoute(f"{_G}/subjectlookup", subject_lookup, methods=["POST"]),
    CIRoute(f"{_G}/subjectquery", subject_query, methods=["POST"]),
]
