"""Core area on the org host (`{base}/{org}/_apis/...`): projects, teams, team members, connectionData.

Also holds small helpers the other route modules of this family (entitlements, audit, accounts)
share: api-version checking, query-parameter parsing and "who is the caller in this org".

Behaviour (reference §2, §3.5):
- `GET projects`: `$top` (default 100), `$skip`, `continuationToken` (an integer offset; it wins over
  `$skip` when both are given); the next offset goes in the `X-MS-ContinuationToken` response
  header while projects remain. `stateFilter` (default wellFormed; `all` for every state). Projects
  are listed in creation order so offsets stay stable while new projects are appended.
- `GET teams` / `GET projects/{p}/teams` / `.../members`: `$top` default 100, `$skip`, no token;
  clients loop on `$skip` until a short page. UNVERIFIED: a maximum `$top` — none is enforced.
- api-version is required everywhere except connectionData (real scripts call it bare). Missing →
  400 VssVersionNotSpecifiedException; a preview-only resource without `-preview` → 400
  VssInvalidPreviewVersionException; above 7.2 → 400 VssVersionOutOfRangeException. The version
  may also come in the Accept header (`application/json;api-version=7.1`), as the SDKs send it.
"""

from __future__ import annotations

import functools
import re
import weakref
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from . import http
from .http import AuthFailure, Caller, ado_error, ado_json, public_base
from .serialize import request_bases
from .state import Identity, OrgState, Project, Team, World, iso

# ---------------------------------------------------------------------------------------------
# helpers shared by routes_core / routes_entitlements / routes_audit / routes_accounts
# ---------------------------------------------------------------------------------------------

Handler = Callable[[Request], Awaitable[Response]]


class Reject(Exception):
    """Stop a handler with a ready error response (bad parameter, api-version, not found)."""

    def __init__(self, response: Response) -> None:
        super().__init__("rejected")
        self.response = response


def endpoint(fn: Handler) -> Handler:
    """Turn `Reject` into its response; SimError and AuthFailure go on to the app's handlers."""

    @functools.wraps(fn)
    async def wrapper(request: Request) -> Response:
        try:
            return await fn(request)
        except Reject as r:
            return r.response

    return wrapper


def route(path: str, fn: Handler, methods: list[str]) -> Route:
    return Route(path, endpoint(fn), methods=methods)


_VERSION_RE = re.compile(r"^\s*(\d+)\.(\d+)(?:-(preview)(?:\.(\d+))?)?\s*$", re.IGNORECASE)
LATEST_SERVER = (7, 2)  # newest api-version the service answers at all (7.2 only as preview)
LATEST_RELEASED = (7, 1)


def _requested_version(request: Request) -> str | None:
    v = request.query_params.get("api-version")
    if v is not None:
        return v
    accept = request.headers.get("accept", "")
    m = re.search(r"api-version\s*=\s*([^;,\s]+)", accept, re.IGNORECASE)
    return m.group(1) if m else None


def require_api_version(request: Request, *, preview_only: bool = False, optional: bool = False) -> str:
    """The api-version the caller asked for, or Reject with the real 400 answer."""
    v = _requested_version(request)
    if v is None:
        if optional:
            return f"{LATEST_RELEASED[0]}.{LATEST_RELEASED[1]}"
        raise Reject(ado_error(
            400, f'No api-version was supplied for the "{request.method}" request. The version must be '
                 'supplied either as part of the Accept header (e.g. "application/json; api-version=1.0") '
                 'or as a query parameter (e.g. "?api-version=1.0").', "VssVersionNotSpecifiedException"))
    m = _VERSION_RE.match(v)
    if m is None:
        raise Reject(ado_error(
            400, f"The api-version '{v}' is not valid. The version must be in the format "
                 "{Major}.{Minor}[-{stage}[.{resourceVersion}]], for example '7.1' or '7.1-preview.1'.",
            "VssInvalidApiVersionException"))
    major, minor, preview = int(m.group(1)), int(m.group(2)), bool(m.group(3))
    if (major, minor) > LATEST_SERVER or major < 1:
        raise Reject(ado_error(
            400, f"The requested REST API version of {major}.{minor} is out of range for this server. "
                 f"The latest REST API version this server supports is "
                 f"{LATEST_SERVER[0]}.{LATEST_SERVER[1]}.", "VssVersionOutOfRangeException"))
    if not preview and (preview_only or (major, minor) > LATEST_RELEASED):
        raise Reject(ado_error(
            400, f'The requested version "{major}.{minor}" of the resource is under preview. The -preview '
                 'flag must be supplied in the api-version for such requests. For example: '
                 f'"{major}.{minor}-preview"', "VssInvalidPreviewVersionException"))
    return v.strip()


def bad_request(message: str, type_key: str = "ArgumentException") -> Reject:
    return Reject(ado_error(400, message, type_key,
                            type_name=f"System.{type_key}, mscorlib" if type_key.startswith("Argument")
                            else None))


def int_param(request: Request, name: str, default: int, *, minimum: int = 0) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise bad_request(f"The value '{raw}' is not valid for {name}.") from None
    if value < minimum:
        raise bad_request(f"The value '{raw}' is not valid for {name}: it must be at least {minimum}.",
                          "ArgumentOutOfRangeException")
    return value


def bool_param(request: Request, name: str, default: bool = False) -> bool:
    raw = request.query_params.get(name)
    if raw is None or raw.strip() == "":
        return default
    low = raw.strip().lower()
    if low in ("true", "1"):
        return True
    if low in ("false", "0"):
        return False
    raise bad_request(f"The value '{raw}' is not valid for {name}.")


def find_person(world: World, key: str) -> Identity | None:
    """The identity with storage key `key` in any organization (a token is issued against one)."""
    for org in world.orgs.values():
        ident = org.by_storage_key(key)
        if ident is not None:
            return ident
    return None


def same_person(org: OrgState, person: Identity) -> Identity | None:
    """`person` (from any org) as a subject of `org`: same storage key, UPN or application id."""
    ident = org.by_storage_key(person.storage_key)
    if ident is not None:
        return ident
    if person.subject_kind == "servicePrincipal":
        return next((s for s in org.service_principals()
                     if s.application_id.lower() == person.application_id.lower()), None)
    upn = person.principal_name.lower()
    return next((u for u in org.users() if u.principal_name.lower() == upn), None)


def caller_identity(world: World, org: OrgState, c: Caller) -> Identity | None:
    """The caller as a subject of `org` (an all-organizations PAT is issued against one org's key)."""
    if not c.user_key:
        return None
    ident = org.by_storage_key(c.user_key)
    if ident is not None:
        return ident
    person = find_person(world, c.user_key)
    return same_person(org, person) if person is not None else None


def identity_ref(request: Request, org: OrgState, ident: Identity) -> dict[str, Any]:
    """IdentityRef as the teams APIs return it (subject descriptor in `descriptor`)."""
    vssps, core = request_bases(request, org.name)
    body: dict[str, Any] = {
        "displayName": ident.display_name,
        "url": f"{vssps}/_apis/Identities/{ident.storage_key}",
        "_links": {"avatar": {"href": f"{core}/_apis/GraphProfile/MemberAvatars/{ident.descriptor}"}},
        "id": ident.storage_key,
        "uniqueName": ident.principal_name,
        "imageUrl": f"{core}/_api/_common/identityImage?id={ident.storage_key}",
        "descriptor": ident.descriptor,
    }
    if ident.is_group:
        body["isContainer"] = True
    return body


def legacy_identity(ident: Identity) -> dict[str, Any]:
    """The (legacy) Identity shape used by connectionData and `$expandIdentity`."""
    return {
        "id": ident.storage_key,
        "descriptor": ident.identity_descriptor,
        "subjectDescriptor": ident.descriptor,
        "providerDisplayName": ident.principal_name if ident.is_group else ident.display_name,
        "isActive": ident.active,
        "isContainer": ident.is_group,
        "members": [],
        "memberOf": [],
        "properties": {"Account": {"$type": "System.String", "$value": ident.principal_name}},
        "resourceVersion": 2,
        "metaTypeId": 255 if ident.is_group else 0,
    }


# ---------------------------------------------------------------------------------------------
# projects
# ---------------------------------------------------------------------------------------------

_PROJECT_STATES = {"deleting", "new", "wellformed", "createpending", "all", "unchanged", "deleted"}
_GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def project_ref(request: Request, org: OrgState, p: Project) -> dict[str, Any]:
    base = request_bases(request, org.name)[1]
    body: dict[str, Any] = {"id": p.id, "name": p.name}
    if p.description:
        body["description"] = p.description  # the real service omits an empty description
    body.update({"url": f"{base}/_apis/projects/{p.id}", "state": p.state, "revision": p.revision,
                 "visibility": p.visibility, "lastUpdateTime": iso(p.last_update_time)})
    return body


def find_project(org: OrgState, id_or_name: str) -> Project:
    key = id_or_name.strip()
    if _GUID_RE.match(key):
        hit = org.projects.get(key) or org.projects.get(key.lower())  # ids are unique: O(1) first
        if hit is not None:
            return hit
        for pid, p in org.projects.items():
            if pid.lower() == key.lower():
                return p
        raise Reject(ado_error(
            404, f"TF200016: The following project does not exist: {key}. Verify that the name of the "
                 "project is correct and that the project exists on the specified Azure DevOps Server.",
            "ProjectDoesNotExistException",
            type_name="Microsoft.TeamFoundation.Core.WebApi.ProjectDoesNotExistException, "
                      "Microsoft.TeamFoundation.Core.WebApi"))
    for p in org.projects.values():
        if p.name.lower() == key.lower():
            return p
    raise Reject(ado_error(
        404, f"TF200016: The following project does not exist: {key}. Verify that the name of the "
             "project is correct and that the project exists on the specified Azure DevOps Server.",
        "ProjectDoesNotExistWithNameException",
        type_name="Microsoft.TeamFoundation.Core.WebApi.ProjectDoesNotExistWithNameException, "
                  "Microsoft.TeamFoundation.Core.WebApi"))


async def list_projects(request: Request) -> Response:
    http.need(request, "vso.project")
    org = http.org_of(request)
    require_api_version(request)
    top = int_param(request, "$top", 100)
    skip = int_param(request, "$skip", 0)
    token_raw = request.query_params.get("continuationToken")
    start = skip
    if token_raw:
        try:
            start = int(token_raw)
        except ValueError:
            raise bad_request(f"The value '{token_raw}' is not valid for continuationToken.") from None
        if start < 0:
            raise bad_request(f"The value '{token_raw}' is not valid for continuationToken.")
    state_filter = (request.query_params.get("stateFilter") or "wellFormed").strip()
    if state_filter.lower() not in _PROJECT_STATES:
        raise bad_request(f"The value '{state_filter}' is not valid for stateFilter.")
    w = http.world(request)
    with w.lock:
        projects = [org.projects[pid] for pid in org.project_order]
        if state_filter.lower() != "all":
            projects = [p for p in projects if p.state.lower() == state_filter.lower()]
        page = projects[start:start + top]
        value = [project_ref(request, org, p) for p in page]
        more = start + len(page) < len(projects)
    headers = {"X-MS-ContinuationToken": str(start + len(page))} if more and page else None
    return ado_json({"count": len(value), "value": value}, headers=headers)


async def get_project(request: Request) -> Response:
    http.need(request, "vso.project")
    org = http.org_of(request)
    require_api_version(request)
    caps = bool_param(request, "includeCapabilities")
    bool_param(request, "includeHistory")
    w = http.world(request)
    with w.lock:
        p = find_project(org, request.path_params["project"])
        base = public_base(request, "core", org.name)
        body = project_ref(request, org, p)
        body["_links"] = {"self": {"href": f"{base}/_apis/projects/{p.id}"},
                          "collection": {"href": f"{base}/_apis/projectCollections/{org.id}"},
                          "web": {"href": f"{base}/{quote(p.name)}"}}
        if caps:
            body["capabilities"] = {
                "versioncontrol": {"sourceControlType": "Git", "gitEnabled": "True", "tfvcEnabled": "False"},
                "processTemplate": {"templateName": "Agile",
                                    "templateTypeId": "adcc42ab-9882-485e-a3ed-7678f01f66bc"}}
        team = org.teams.get(p.default_team_id)
        if team is not None:
            body["defaultTeam"] = {"id": team.id, "name": team.name,
                                   "url": f"{base}/_apis/projects/{p.id}/teams/{team.id}"}
    return ado_json(body)


# ---------------------------------------------------------------------------------------------
# teams
# ---------------------------------------------------------------------------------------------


def team_json(request: Request, org: OrgState, t: Team, *, expand_identity: bool = False) -> dict[str, Any]:
    vssps, core = request_bases(request, org.name)
    proj = org.projects[t.project_id]
    body: dict[str, Any] = {
        "id": t.id, "name": t.name, "url": f"{core}/_apis/projects/{t.project_id}/teams/{t.id}",
        "description": t.description, "identityUrl": f"{vssps}/_apis/Identities/{t.id}",
        "projectName": proj.name, "projectId": proj.id,
    }
    if expand_identity:
        group = org.identities.get(t.group_descriptor)
        if group is not None:
            body["identity"] = legacy_identity(group)
    return body


# Teams per project (OrgState.teams_of scans every team of the organization) and the org-wide
# name order, kept per organization. Teams are only created (appended to `org.teams`) or deleted
# with their project, and never renamed, so (count, newest id) fingerprints the index.
_TeamIndex = tuple[tuple[int, str | None], dict[str, list[Team]], list[Team]]
_team_indexes: weakref.WeakKeyDictionary[OrgState, _TeamIndex] = weakref.WeakKeyDictionary()


def _team_index(org: OrgState) -> _TeamIndex:
    key = (len(org.teams), next(reversed(org.teams), None))
    hit = _team_indexes.get(org)
    if hit is not None and hit[0] == key:
        return hit
    by_project: dict[str, list[Team]] = {}
    for t in org.teams.values():
        by_project.setdefault(t.project_id, []).append(t)
    for teams in by_project.values():
        teams.sort(key=lambda t: t.name.lower())  # stable: the same order as OrgState.teams_of
    all_sorted = sorted(org.teams.values(), key=lambda t: (t.name.lower(), t.id))
    index = _team_indexes[org] = (key, by_project, all_sorted)
    return index


def teams_of(org: OrgState, project_id: str) -> list[Team]:
    """OrgState.teams_of from the cached index (a copy: callers may keep or change it)."""
    return list(_team_index(org)[1].get(project_id, ()))


def find_team(org: OrgState, project: Project, id_or_name: str) -> Team:
    key = id_or_name.strip().lower()
    for t in _team_index(org)[1].get(project.id, ()):
        if t.id.lower() == key or t.name.lower() == key:
            return t
    raise Reject(ado_error(404, f"The team with id '{id_or_name}' does not exist.", "TeamNotFoundException",
                           type_name="Microsoft.TeamFoundation.Core.WebApi.TeamNotFoundException, "
                                     "Microsoft.TeamFoundation.Core.WebApi"))


def _mine_filter(request: Request, org: OrgState, teams: list[Team]) -> list[Team]:
    """Teams the caller belongs to (directly or through nested groups)."""
    ident = caller_identity(http.world(request), org, http.caller(request))
    if ident is None:
        return []
    groups = org.transitive_groups(ident.descriptor)
    return [t for t in teams if t.group_descriptor in groups]


async def _teams_page(request: Request, *, project_param: bool) -> Response:
    http.need(request, "vso.project")
    org = http.org_of(request)
    # the org-wide list is preview-only in 7.1 (7.1-preview.3); the per-project list is released
    require_api_version(request, preview_only=not project_param)
    mine = bool_param(request, "$mine")
    top = int_param(request, "$top", 100)
    skip = int_param(request, "$skip", 0)
    expand = bool_param(request, "$expandIdentity")
    w = http.world(request)
    with w.lock:
        if project_param:
            proj = find_project(org, request.path_params["project"])
            teams = teams_of(org, proj.id)
        else:
            teams = list(_team_index(org)[2])
        if mine:
            teams = _mine_filter(request, org, teams)
        page = teams[skip:skip + top]
        value = [team_json(request, org, t, expand_identity=expand) for t in page]
    return ado_json({"value": value, "count": len(value)})


async def list_project_teams(request: Request) -> Response:
    return await _teams_page(request, project_param=True)


async def list_all_teams(request: Request) -> Response:
    return await _teams_page(request, project_param=False)


async def get_team(request: Request) -> Response:
    # the spec lists no scope for this one; vso.project is what its siblings need
    http.need(request, "vso.project")
    org = http.org_of(request)
    require_api_version(request)
    expand = bool_param(request, "$expandIdentity")
    w = http.world(request)
    with w.lock:
        proj = find_project(org, request.path_params["project"])
        team = find_team(org, proj, request.path_params["team"])
        body = team_json(request, org, team, expand_identity=expand)
    return ado_json(body)


async def list_team_members(request: Request) -> Response:
    http.need(request, "vso.project")
    org = http.org_of(request)
    require_api_version(request)
    top = int_param(request, "$top", 100)
    skip = int_param(request, "$skip", 0)
    w = http.world(request)
    with w.lock:
        proj = find_project(org, request.path_params["project"])
        team = find_team(org, proj, request.path_params["team"])
        # direct members only, as the real API (team admin is an ACE, not a membership)
        members = [org.identities[d] for d in org.members(team.group_descriptor) if d in org.identities]
        members.sort(key=lambda i: (i.display_name.lower(), i.storage_key))
        page = members[skip:skip + top]
        value = [{"isTeamAdmin": m.descriptor in team.admins, "identity": identity_ref(request, org, m)}
                 for m in page]
    return ado_json({"value": value, "count": len(value)})


# ---------------------------------------------------------------------------------------------
# connectionData
# ---------------------------------------------------------------------------------------------

_LOCATION_SERVICE_OWNER = "00025394-6065-48ca-87d9-7f5672854ef7"


async def connection_data(request: Request) -> Response:
    c = http.caller(request)
    if c.kind == "anonymous":
        raise AuthFailure("TF400813: The user '' is not authorized to access this resource.")
    org = http.org_of(request)
    if c.org is not None and c.org.lower() != org.name.lower():
        raise AuthFailure(f"TF400813: The user '{c.user_key}' is not authorized to access this resource.")
    require_api_version(request, optional=True)
    w = http.world(request)
    with w.lock:
        ident = caller_identity(w, org, c)
        if ident is None:  # a valid token of someone who is not in this organization
            raise AuthFailure(f"TF400813: The user '{c.user_key}' is not authorized to access this resource.")
        me = legacy_identity(ident)
        body = {
            "authenticatedUser": me, "authorizedUser": me, "instanceId": org.id,
            "deploymentId": org.tenant_id, "deploymentType": "hosted",
            "locationServiceData": {"serviceOwner": _LOCATION_SERVICE_OWNER,
                                    "defaultAccessMappingMoniker": "PublicAccessMapping",
                                    "lastChangeId": 1, "lastChangeId64": 1},
        }
    return ado_json(body)


ROUTES: list[BaseRoute] = [
    route("/{org}/_apis/projects", list_projects, ["GET"]),
    route("/{org}/_apis/projects/{project}", get_project, ["GET"]),
    route("/{org}/_apis/projects/{project}/teams", list_project_teams, ["GET"]),
    route("/{org}/_apis/projects/{project}/teams/{team}", get_team, ["GET"]),
    route("/{org}/_apis/projects/{project}/teams/{team}/members", list_team_members, ["GET"]),
    # the spec example calls ".../members/?api-version=…" (trailing slash); answer it, do not redirect
    route("/{org}/_apis/projects/{project}/teams/{team}/members/", list_team_members, ["GET"]),
    route("/{org}/_apis/teams", list_all_teams, ["GET"]),
    route("/{org}/_apis/connectiondata", connection_data, ["GET"]),
]
