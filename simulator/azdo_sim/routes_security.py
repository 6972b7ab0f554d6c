"""Security area on the org host: `GET {org}/_apis/accesscontrollists/{securityNamespaceId}`.

Faithful to security/7.1/security.json (`Access Control Lists_Query`) and its examples
(httpExamples/accessControlLists/GET__*.json):

- Answer `{"count": n, "value": [AccessControlList, ...]}` (the collection wrapper every example shows);
  an ACL is `{"inheritPermissions", "token", "acesDictionary"}` (that key order), the dictionary keyed
  by the legacy identity descriptor string (`Microsoft.TeamFoundation.Identity;S-1-9-…`,
  `Microsoft.IdentityModel.Claims.ClaimsIdentity;{tenant}\\{upn}`, …), each ACE
  `{"descriptor", "allow", "deny"}`. ACLs are ordered by token.
- `includeExtendedInfo=true`: each ACL gains `"includeExtendedInfo": true` (after `acesDictionary`) and
  each ACE an `extendedInfo`. As in the example, members that are 0 are left out: our ACEs are all
  explicit, so `effectiveAllow` = allow (and `effectiveDeny` = deny when not 0); nothing is inherited.
- `token`: only the ACL with exactly that token (compared case-insensitively: the tokens are GUIDs);
  with `recurse=true` also its children (tokens starting with token + "\\"). No token: every ACL of
  the namespace (the spec: "All ACLs ... will be retrieved if no optional parameters are provided").
- `descriptors` (comma-separated legacy descriptors, case-insensitive): only the ACEs of those
  identities; ACLs left without any ACE are dropped. The "Filter by descriptors" example instead keeps
  every ACL and shows the asked identity with allow 0 / deny 0 where it has no ACE; the simulator
  answers only real ACEs (the interface its clients are written against).
- Scope `vso.security_manage` (the spec's only scope); api-version 7.1 (or its -preview forms), the
  same checks as the core routes (routes_core.require_api_version).

Namespaces: only Identity (`5a27515b-ccd7-42c9-84f1-54c998f03866`, the namespace of the examples with
`{projectId}` / `{projectId}\\{teamId}` tokens) holds ACLs, computed from the organization at request
time:
- per project, token `{projectId}`: Project Administrators allow 31 (Read, Write, Delete,
  ManageMembership, CreateScope), Project Valid Users allow 1 (Read);
- per team with administrators, token `{projectId}\\{teamId}`: one ACE per `Team.admins` identity,
  allow 31. A team without administrators has no ACL.
Any other namespace GUID answers an empty list; a namespace id that is not a GUID answers 400.
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from . import http
from .http import ado_json
from .routes_core import bad_request, bool_param, require_api_version, route
from .state import OrgState

SCOPE = "vso.security_manage"
IDENTITY_NAMESPACE = "5a27515b-ccd7-42c9-84f1-54c998f03866"
# Identity namespace actions: Read 1, Write 2, Delete 4, ManageMembership 8, CreateScope 16, RestoreScope 32.
ADMIN_BITS = 31
READ_BITS = 1

Ace = tuple[str, int, int]  # (legacy descriptor, allow, deny)
Acl = tuple[str, list[Ace]]  # (token, ACEs)


def identity_acls(org: OrgState) -> list[Acl]:
    """The Identity namespace's ACLs of `org`, ordered by token (call under `world.lock`)."""
    acls: list[Acl] = []
    for pid in org.project_order:
        proj = org.projects[pid]
        aces: list[Ace] = []
        for role, bits in (("project_administrators", ADMIN_BITS), ("project_valid_users", READ_BITS)):
            group = org.identities.get(proj.role_groups.get(role, ""))
            if group is not None:
                aces.append((group.identity_descriptor, bits, 0))
        acls.append((proj.id, aces))
    for team in org.teams.values():
        if team.project_id not in org.projects:
            continue
        admins = sorted({ident.identity_descriptor for d in team.admins
                         if (ident := org.identities.get(d)) is not None}, key=str.lower)
        if admins:
            acls.append((f"{team.project_id}\\{team.id}", [(d, ADMIN_BITS, 0) for d in admins]))
    acls.sort(key=lambda acl: acl[0].lower())
    return acls


def _select(acls: list[Acl], token: str | None, recurse: bool, descriptors: set[str] | None) -> list[Acl]:
    if token is not None:
        want = token.lower()
        acls = [a for a in acls if a[0].lower() == want or (recurse and a[0].lower().startswith(want + "\\"))]
    if descriptors is not None:
        acls = [(t, kept) for t, aces in acls if (kept := [a for a in aces if a[0].lower() in descriptors])]
    return acls


def _acl_json(acl: Acl, extended: bool) -> dict[str, Any]:
    token, aces = acl
    dictionary: dict[str, Any] = {}
    for descriptor, allow, deny in aces:
        ace: dict[str, Any] = {"descriptor": descriptor, "allow": allow, "deny": deny}
        if extended:
            info: dict[str, int] = {}
            if allow:
                info["effectiveAllow"] = allow
            if deny:
                info["effectiveDeny"] = deny
            ace["extendedInfo"] = info
        dictionary[descriptor] = ace
    body: dict[str, Any] = {"inheritPermissions": True, "token": token, "acesDictionary": dictionary}
    if extended:
        body["includeExtendedInfo"] = True
    return body


def _namespace_id(raw: str) -> str:
    try:
        return str(uuid.UUID(raw.strip()))
    except ValueError:
        raise bad_request(f"The value '{raw}' is not a valid Guid (securityNamespaceId).") from None


async def query_access_control_lists(request: Request) -> Response:
    http.need(request, SCOPE)
    org = http.org_of(request)
    require_api_version(request)
    namespace = _namespace_id(request.path_params["namespace_id"])
    q = request.query_params
    token = q.get("token") or None
    raw_descriptors = q.get("descriptors")
    descriptors = None
    if raw_descriptors is not None and raw_descriptors.strip():
        descriptors = {d.strip().lower() for d in raw_descriptors.split(",") if d.strip()}
    extended = bool_param(request, "includeExtendedInfo")
    recurse = bool_param(request, "recurse")
    if namespace != IDENTITY_NAMESPACE:
        return ado_json({"count": 0, "value": []})
    w = http.world(request)
    with w.lock:
        acls = _select(identity_acls(org), token, recurse, descriptors)
        value = [_acl_json(a, extended) for a in acls]
    return ado_json({"count": len(value), "value": value})


ROUTES: list[BaseRoute] = [
    route("/{org}/_apis/accesscontrollists/{namespace_id}", query_access_control_lists, ["GET"]),
    # the spec examples call ".../accesscontrollists/{id}/?..." (trailing slash): answer it, do not redirect
    route("/{org}/_apis/accesscontrollists/{namespace_id}/", query_access_control_lists, ["GET"]),
]
