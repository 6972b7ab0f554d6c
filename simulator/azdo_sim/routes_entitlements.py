"""Member Entitlement Management (`{base}/vsaex/{org}/_apis/...`): user entitlements and service
principal entitlements.

Behaviour (reference §2, §8) and the choices made where it is UNVERIFIED:
- `GET userentitlements` (7.1 paged form): body `{members, items, continuationToken, totalCount}`,
  `members` and `items` the same list, 100 per page. The token is an opaque Cosmos-style string
  (`+RID:~<base64>==#RT:n#TRC:n#ISV:2#IEO:65551#QCF:8`, so it holds `+`, `#` and `=`) and is null on
  the last page. A token that arrives damaged — sent without URL encoding, so `+` became a space
  or `#` cut the query — is refused with **500** and an "internal exception" error body: the only
  field report (vsts-rest-api-specs issue 442) describes an internal exception, not a 400.
- `$filter`: `licenseId eq 'Account-Express'` (Account-<type>, Msdn-<type>), `licenseStatus eq
  'Disabled'` (any status accepted), `userType eq 'member'|'guest'`, `name eq 'x'` (substring of
  display name or mail), joined with and/or and parentheses. `$orderBy`: name | dateCreated |
  lastAccessed, optionally `asc`/`desc`. Default order: the identity store's order of the users.
- `POST userentitlements`: always HTTP 200 with `operationResult`.
  - The caller must be a Project Collection Administrator, else isSuccess false with code 5032
    (checked before the body is validated).
  - A missing principal → 5000 "must be set"; a malformed e-mail → 5000 "invalid";
    `earlyAdopter` → 5000; an unknown project in projectEntitlements → 5000 (UNVERIFIED code).
  - A principal already in the organization (UPN or mail) → isSuccess true, entitlement unchanged
    (reference §8 suggestion); a user present without a licence gets the requested one.
  - A new principal: same domain as the tenant's members → Entra (`aad`) member; a consumer
    domain (outlook.com, hotmail.com, live.com, gmail.com) → Microsoft account (`msa`); any other
    domain → Entra B2B guest (UPN `local_domain#EXT#@tenant`, mail = the address given), as the
    real service invites outside people into an Entra-backed organization. The user comes back
    with status "pending" and an `aad.`/`msa.` descriptor (the real service shows `bnd.` until
    first sign-in; the simulator has no bind-pending subjects). Licensing.Assigned and
    membership audit events are written through the state methods. No accessLevel → express.
- `DELETE userentitlements/{id}` → 204 (PCA only, else 403); unknown id → 404.
- `GET serviceprincipalentitlements/{id}` (7.1-preview.1).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import weakref
from collections.abc import Callable
from operator import itemgetter
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from . import http
from .http import ado_error, ado_json
from .routes_core import (
    Reject,
    bad_request,
    caller_identity,
    require_api_version,
    route,
)
from .serialize import gc_paused
from .state import NEVER, Identity, OrgState, SimError, UserEntitlement, World, iso

try:  # the Graph subject JSON is owned by serialize.py; keep a fallback if it changes shape
    from .serialize import graph_subject as _graph_subject
except ImportError:  # pragma: no cover
    _graph_subject = None

PAGE_SIZE = 100
READ, WRITE = "vso.memberentitlementmanagement", "vso.memberentitlementmanagement_write"
_MEM_TYPE = "Microsoft.VisualStudio.Services.MemberEntitlementManagement.WebApi"
_CONSUMER_DOMAINS = frozenset({"outlook.com", "hotmail.com", "live.com", "gmail.com", "msn.com"})
_EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
_LICENSE_TYPES = {"none", "earlyadopter", "express", "professional", "advanced", "stakeholder"}
_SOURCES = {"none", "account", "msdn", "profile", "auto", "trial"}
_MSDN_TYPES = {"none", "eligible", "professional", "platforms", "testprofessional", "premium", "ultimate",
               "enterprise"}
_GROUP_TYPES = {  # projectEntitlements group types -> PROJECT_ROLES key
    "projectadministrator": "project_administrators", "projectcontributor": "contributors",
    "projectreader": "readers", "projectstakeholder": "readers",
}
_ROLE_GROUP_TYPE = {"project_administrators": "projectAdministrator", "contributors": "projectContributor",
                    "readers": "projectReader"}


def _canon(value: str, allowed: set[str], default: str) -> str | None:
    """Enum value as the service spells it (camelCase), or None when unknown."""
    if value is None or value == "":
        return default
    low = str(value).lower()
    if low not in allowed:
        return None
    return {"earlyadopter": "earlyAdopter", "testprofessional": "testProfessional"}.get(low, low)


# ---------------------------------------------------------------------------------------------
# serialization
# ---------------------------------------------------------------------------------------------


def _entitlement_links(request: Request, org: OrgState, ident: Identity) -> dict[str, Any]:
    """`_links`/`url` as the entitlement examples write them (they differ from the Graph API's own).

    Users (UserEntitlements/*.json): vssps host, lower-case `graph/users|memberships|…`, no avatar.
    Service principals (ServicePrincipalEntitlements/GET__…ById.json): the vsaex host,
    `Graph/Serviceprincipals|Memberships|MembershipStates|StorageKeys`, plus the avatar link.
    """
    d = ident.descriptor
    if ident.subject_kind == "servicePrincipal":
        vsaex = http.public_base(request, "vsaex", org.name)
        core = http.public_base(request, "core", org.name)
        links = {"self": {"href": f"{vsaex}/_apis/Graph/Serviceprincipals/{d}"},
                 "memberships": {"href": f"{vsaex}/_apis/Graph/Memberships/{d}"},
                 "membershipState": {"href": f"{vsaex}/_apis/Graph/MembershipStates/{d}"},
                 "storageKey": {"href": f"{vsaex}/_apis/Graph/StorageKeys/{d}"},
                 "avatar": {"href": f"{core}/_apis/GraphProfile/MemberAvatars/{d}"}}
        return {"_links": links, "url": links["self"]["href"]}
    vssps = _vssps_base(request, org)
    links = {"self": {"href": f"{vssps}/_apis/graph/users/{d}"},
             "memberships": {"href": f"{vssps}/_apis/graph/memberships/{d}"},
             "membershipState": {"href": f"{vssps}/_apis/graph/membershipstates/{d}"},
             "storageKey": {"href": f"{vssps}/_apis/graph/storagekeys/{d}"}}
    return {"_links": links, "url": links["self"]["href"]}


def _vssps_base(request: Request, org: OrgState) -> str:
    """http.public_base(request, "vssps", org), once per request (it parses the URL every call)."""
    cache = request.scope.get("sim.ent_vssps")
    if cache is None or cache[0] != org.name:
        cache = request.scope["sim.ent_vssps"] = (org.name, http.public_base(request, "vssps", org.name))
    return cache[1]


_SUBJECT_ORDER = ("subjectKind", "applicationId", "metaType", "directoryAlias", "domain", "principalName",
                  "mailAddress", "origin", "originId", "displayName", "_links", "url", "descriptor")


def _user_subject(request: Request, org: OrgState, ident: Identity) -> dict[str, Any]:
    """`_subject` for a user, built directly: serialize.graph_subject's user fields in the same key
    order, with the entitlement links (the list page's hot path; _subject is the general form)."""
    d = ident.descriptor
    svc = d.startswith("svc.")
    body: dict[str, Any] = {"subjectKind": "user"}
    if ident.meta_type and not svc:
        body["metaType"] = ident.meta_type
    body["domain"] = ident.domain.split("/", 1)[0] if svc else ident.domain
    body["principalName"] = ident.principal_name
    body["mailAddress"] = ident.mail_address or ""
    body["origin"] = ident.origin
    body["originId"] = ident.origin_id
    body["displayName"] = ident.display_name
    vssps = _vssps_base(request, org)
    url = f"{vssps}/_apis/graph/users/{d}"
    body["_links"] = {"self": {"href": url},
                      "memberships": {"href": f"{vssps}/_apis/graph/memberships/{d}"},
                      "membershipState": {"href": f"{vssps}/_apis/graph/membershipstates/{d}"},
                      "storageKey": {"href": f"{vssps}/_apis/graph/storagekeys/{d}"}}
    body["url"] = url
    body["descriptor"] = d
    return body


def _subject(request: Request, org: OrgState, ident: Identity) -> dict[str, Any]:
    """The Graph subject (serialize.graph_subject) with the entitlement examples' links and key order."""
    if _graph_subject is not None and ident.subject_kind == "user":
        return _user_subject(request, org, ident)
    if _graph_subject is not None:
        base = _graph_subject(request, org, ident)
    else:
        base = {"subjectKind": ident.subject_kind, "metaType": ident.meta_type, "domain": ident.domain,
                "principalName": ident.principal_name, "mailAddress": ident.mail_address,
                "origin": ident.origin, "originId": ident.origin_id, "displayName": ident.display_name,
                "descriptor": ident.descriptor}
    base.update(_entitlement_links(request, org, ident))
    if ident.subject_kind == "servicePrincipal":
        base["metaType"] = ident.meta_type or "application"  # the SP entitlement example carries it
    body = {k: base[k] for k in _SUBJECT_ORDER if k in base}
    body.update({k: v for k, v in base.items() if k not in body})
    return body


def _access_level(ent: UserEntitlement) -> dict[str, Any]:
    return {"licensingSource": ent.licensing_source, "accountLicenseType": ent.account_license_type,
            "msdnLicenseType": ent.msdn_license_type, "licenseDisplayName": ent.license_display_name,
            "status": ent.status, "statusMessage": "", "assignmentSource": "unknown"}


def _build_role_groups(org: OrgState) -> dict[str, tuple[str, str]]:
    return {d: (pid, role) for pid, p in org.projects.items() for role, d in p.role_groups.items()}


# Role groups are fixed when a project is created (its groups join group_order) and go when it is
# deleted (projects shrinks), so these lengths fingerprint the map; an xl organization has
# thousands of projects, which made every single-user GET O(projects).
_role_cache: weakref.WeakKeyDictionary[OrgState, tuple[tuple[int, ...], dict[str, tuple[str, str]]]] = \
    weakref.WeakKeyDictionary()


def _role_groups(org: OrgState) -> dict[str, tuple[str, str]]:
    """Project role group descriptor -> (project id, role key)."""
    version = (len(org.projects), len(org.project_order), len(org.group_order), len(org.audit))
    hit = _role_cache.get(org)
    if hit is not None and hit[0] == version:
        return hit[1]
    roles = _build_role_groups(org)
    _role_cache[org] = (version, roles)
    return roles


def _project_entitlements(org: OrgState, ident: Identity, roles: dict[str, tuple[str, str]]) -> list[dict]:
    out = []
    for container in sorted(org.member_of(ident.descriptor)):
        hit = roles.get(container)
        if hit is None or hit[1] == "project_valid_users":
            continue
        pid, role = hit
        proj, group = org.projects.get(pid), org.identities.get(container)
        if proj is None or group is None or proj.role_groups.get(role) != container:
            roles = _build_role_groups(org)  # stale cached map (not expected): read the live one
            _role_cache.pop(org, None)
            return _project_entitlements(org, ident, roles)
        out.append({"projectRef": {"id": pid, "name": proj.name},
                    "group": {"groupType": _ROLE_GROUP_TYPE.get(role, "custom"),
                              "displayName": group.display_name},
                    "projectPermissionInherited": "notInherited", "teamRefs": [],
                    "assignmentSource": "unknown"})
    return out


def entitlement_json(request: Request, org: OrgState, ident: Identity, ent: UserEntitlement, *,
                     roles: dict[str, tuple[str, str]] | None = None, key: str = "user") -> dict[str, Any]:
    body: dict[str, Any] = {"id": ident.storage_key, key: _subject(request, org, ident),
                            "accessLevel": _access_level(ent),
                            "lastAccessedDate": iso(ent.last_accessed) if ent.last_accessed != NEVER
                            else "0001-01-01T00:00:00Z",
                            "dateCreated": iso(ent.date_created),
                            "projectEntitlements": [], "extensions": [], "groupAssignments": []}
    if roles is not None:
        body["projectEntitlements"] = _project_entitlements(org, ident, roles)
    return body


def _not_found(user_id: str) -> Reject:
    return Reject(ado_error(404, f"Could not find user with id {user_id}.", "MemberNotFoundException",
                            type_name=f"{_MEM_TYPE}.MemberNotFoundException, {_MEM_TYPE}"))


# ---------------------------------------------------------------------------------------------
# continuation token
# ---------------------------------------------------------------------------------------------


def _token_mac(org: OrgState, offset: int, query: str) -> bytes:
    return hashlib.sha256(f"{org.id}|{offset}|{query}".encode()).digest()[:6]


def make_token(org: OrgState, offset: int, query: str, round_trip: int) -> str:
    # 4 + 6 + 6 = 16 bytes -> 24 base64 chars ending in "==", like a Cosmos RID; '-' replaces '/'
    rid = offset.to_bytes(4, "big") + _token_mac(org, offset, query) + bytes(6)
    b64 = base64.b64encode(rid, altchars=b"+-").decode()
    return f"+RID:~{b64}#RT:{round_trip}#TRC:{offset}#ISV:2#IEO:65551#QCF:8"


_TOKEN_RE = re.compile(r"^\+RID:~([A-Za-z0-9+\-]{22}==)#RT:(\d+)#TRC:(\d+)#ISV:2#IEO:65551#QCF:8$")


def parse_token(org: OrgState, token: str, query: str) -> tuple[int, int]:
    """(offset, round trip) of a token we issued; anything else is the real 'internal exception'."""
    m = _TOKEN_RE.match(token)
    if m is not None:
        raw = base64.b64decode(m.group(1), altchars=b"+-")
        offset = int.from_bytes(raw[:4], "big")
        if raw[4:10] == _token_mac(org, offset, query) and int(m.group(3)) == offset:
            return offset, int(m.group(2))
    raise Reject(ado_error(
        500, "An internal exception occurred while processing the request: the continuation token is "
             "malformed. Continuation tokens must be passed URL-encoded.", "InvalidContinuationTokenException",
        type_name=f"{_MEM_TYPE}.InvalidContinuationTokenException, {_MEM_TYPE}"))


# ---------------------------------------------------------------------------------------------
# $filter
# ---------------------------------------------------------------------------------------------

Pred = Callable[[Identity, UserEntitlement], bool]
_TOKENS_RE = re.compile(r"\s*(\(|\)|'(?:[^']|'')*'|[A-Za-z][A-Za-z0-9_-]*)")


def _field_pred(field: str, value: str) -> Pred:
    f, v = field.lower(), value.lower()
    if f == "licenseid":
        src, _, lic = v.partition("-")
        if src == "account":
            return lambda i, e: e.licensing_source == "account" and e.account_license_type.lower() == lic
        if src == "msdn":
            return lambda i, e: e.licensing_source == "msdn" and e.msdn_license_type.lower() == lic
        raise bad_request(f"Invalid licenseId value '{value}' in $filter.")
    if f == "licensestatus":
        return lambda i, e: e.status.lower() == v
    if f == "usertype":
        if v not in ("member", "guest"):
            raise bad_request(f"Invalid userType value '{value}' in $filter: expected member or guest.")
        return lambda i, e: (i.meta_type or "member").lower() == v
    if f == "name":
        return lambda i, e: v in i.display_name.lower() or v in (i.mail_address or "").lower() \
            or v in i.principal_name.lower()
    raise bad_request(f"Invalid $filter field '{field}'. Valid fields: licenseId, licenseStatus, userType, name.")


def parse_filter(text: str) -> Pred:
    pos = 0
    toks: list[str] = []
    while pos < len(text):
        m = _TOKENS_RE.match(text, pos)
        if m is None:
            if text[pos:].strip() == "":
                break
            raise bad_request(f"The $filter '{text}' is not valid.")
        toks.append(m.group(1))
        pos = m.end()
    i = 0

    def peek() -> str | None:
        return toks[i] if i < len(toks) else None

    def take() -> str:
        nonlocal i
        if i >= len(toks):
            raise bad_request(f"The $filter '{text}' is not valid.")
        i += 1
        return toks[i - 1]

    def atom() -> Pred:
        t = take()
        if t == "(":
            p = expr()
            if take() != ")":
                raise bad_request(f"The $filter '{text}' is not valid.")
            return p
        op, val = take(), take()
        if op.lower() != "eq" or not val.startswith("'"):
            raise bad_request(f"The $filter '{text}' is not valid: only 'eq' comparisons are supported.")
        return _field_pred(t, val[1:-1].replace("''", "'"))

    def conj() -> Pred:
        parts = [atom()]
        while (peek() or "").lower() == "and":
            take()
            parts.append(atom())
        if len(parts) == 1:  # no wrapper for a lone comparison: it runs once per licensed user
            return parts[0]
        return lambda idn, e: all(p(idn, e) for p in parts)

    def expr() -> Pred:
        parts = [conj()]
        while (peek() or "").lower() == "or":
            take()
            parts.append(conj())
        if len(parts) == 1:
            return parts[0]
        return lambda idn, e: any(p(idn, e) for p in parts)

    pred = expr()
    if i != len(toks):
        raise bad_request(f"The $filter '{text}' is not valid.")
    return pred


_ORDER_KEYS: dict[str, Callable[[Identity, UserEntitlement], Any]] = {
    "name": lambda i, e: i.display_name.lower(),
    "datecreated": lambda i, e: e.date_created,
    "lastaccessed": lambda i, e: e.last_accessed,
}


# ---------------------------------------------------------------------------------------------
# handlers
# ---------------------------------------------------------------------------------------------


def _licensed_users(org: OrgState) -> list[tuple[Identity, UserEntitlement]]:
    """Users (not service principals, not groups) holding an entitlement, in identity-store order."""
    out = []
    for ident in org.users():
        ent = org.entitlements.get(ident.storage_key)
        if ent is not None:
            out.append((ident, ent))
    return out


# ---- scan cache: a page must cost O(page), not O(organization) -----------------------------
#
# The licensed-user scan (and, per query, its filtered/sorted form) is kept per organization and
# reused while the organization's shape is unchanged. The state has no version counter, so the
# key is a cheap fingerprint of every mutation that can add, drop or reorder rows: user_order only
# appends (add_user) or shrinks (remove_user, which also writes an audit event unless auditing is
# off); a new entitlement grows the dict; the last descriptor changes when a removal is followed
# by an addition. Rows are re-read from the live state when a page is served (so licence/status
# edits show up at once) and a row whose identity or entitlement vanished forces a rebuild.
# Filtered or ordered scans depend on fields that can change in place (status, lastAccessed), so
# a first page (no continuation token) always recomputes them; token pages reuse the snapshot the
# walk started with, which is also what keeps a paged walk stable.

_Rows = list[tuple[str, str]]  # (descriptor, storage key) per licensed user, in scan order
_MAX_QUERIES = 8  # filtered/ordered scans kept per organization


class _ScanCache:
    __slots__ = ("base", "queries", "version")

    def __init__(self) -> None:
        self.version: tuple[Any, ...] | None = None
        self.base: _Rows = []
        self.queries: dict[str, _Rows] = {}


_scan_caches: weakref.WeakKeyDictionary[OrgState, _ScanCache] = weakref.WeakKeyDictionary()


def _version(org: OrgState) -> tuple[Any, ...]:
    order = org.user_order
    return (len(order), order[-1] if order else None, len(org.entitlements), len(org.audit))


def _scan(org: OrgState) -> _ScanCache:
    cache = _scan_caches.get(org)
    if cache is None:
        cache = _scan_caches[org] = _ScanCache()
    version = _version(org)
    if cache.version != version:
        ents, idents = org.entitlements, org.identities
        with gc_paused():
            cache.base = [(d, i.storage_key) for d, i in ((d, idents[d]) for d in org.user_order)
                          if i.storage_key in ents]
        cache.queries = {}
        cache.version = version
    return cache


def _resolve_rows(org: OrgState, rows: _Rows) -> list[tuple[Identity, UserEntitlement]] | None:
    """The live (identity, entitlement) pairs of `rows`; None when one of them is gone (stale cache)."""
    idents, ents = org.identities, org.entitlements
    out = []
    for d, key in rows:
        ident, ent = idents.get(d), ents.get(key)
        if ident is None or ent is None:
            return None
        out.append((ident, ent))
    return out


def _query_rows(org: OrgState, query_fp: str, pred: Pred | None, order_key: Callable[..., Any] | None,
                reverse: bool, fresh: bool) -> _Rows:
    """Scan rows for one filter/order; `fresh` recomputes a filtered/ordered scan (first page)."""
    cache = _scan(org)
    if pred is None and order_key is None:
        return cache.base
    rows = None if fresh else cache.queries.get(query_fp)
    if rows is None:
        with gc_paused():
            rows = _compute_rows(org, cache, pred, order_key, reverse)
        if len(cache.queries) >= _MAX_QUERIES:
            cache.queries.pop(next(iter(cache.queries)))
        cache.queries[query_fp] = rows
    return rows


def _compute_rows(org: OrgState, cache: _ScanCache, pred: Pred | None, order_key: Callable[..., Any] | None,
                  reverse: bool) -> _Rows:
    try:
        return _filter_sort(org, cache.base, pred, order_key, reverse)
    except KeyError:  # changed behind the fingerprint: rebuild the scan from the live state
        cache.version = None
        return _filter_sort(org, _scan(org).base, pred, order_key, reverse)


def _filter_sort(org: OrgState, base: _Rows, pred: Pred | None, order_key: Callable[..., Any] | None,
                 reverse: bool) -> _Rows:
    idents, ents = org.identities, org.entitlements
    if pred is not None:  # keeps the cached row tuples: no per-row allocation
        base = [r for r in base if pred(idents[r[0]], ents[r[1]])]
    if order_key is None:
        return list(base)
    # Sorting by the tuple (key, storage key) is done as two stable sorts on plain keys (storage
    # key, then key; `reverse` keeps ties in their order), which compares in C much faster than
    # tuples; the rows are the cached tuples, re-ordered, never re-allocated.
    rows = sorted(base, key=itemgetter(1), reverse=reverse)
    if order_key is _ORDER_KEYS["name"]:
        keys = [idents[d].display_name.lower() for d, _ in rows]
    elif order_key is _ORDER_KEYS["datecreated"]:
        keys = [ents[k].date_created for _, k in rows]
    elif order_key is _ORDER_KEYS["lastaccessed"]:
        keys = [ents[k].last_accessed for _, k in rows]
    else:
        keys = [order_key(idents[d], ents[k]) for d, k in rows]
    return [rows[i] for i in sorted(range(len(rows)), key=keys.__getitem__, reverse=reverse)]


async def list_user_entitlements(request: Request) -> Response:
    http.need(request, READ)
    org = http.org_of(request)
    require_api_version(request)
    q = request.query_params
    flt, order, select = q.get("$filter") or "", q.get("$orderBy") or q.get("$orderby") or "", q.get("select") or ""
    pred = parse_filter(flt) if flt.strip() else None
    order_key = None
    reverse = False
    if order.strip():
        parts = order.split()
        order_key = _ORDER_KEYS.get(parts[0].lower())
        if order_key is None or len(parts) > 2 or (len(parts) == 2 and parts[1].lower() not in ("asc", "desc")):
            raise bad_request(f"The $orderBy '{order}' is not valid. Valid properties: dateCreated, "
                              "lastAccessed, name; order asc or desc.")
        reverse = len(parts) == 2 and parts[1].lower() == "desc"
    query_fp = f"{flt}|{order}"
    token = q.get("continuationToken")
    w = http.world(request)
    with w.lock:
        offset, rt = parse_token(org, token, query_fp) if token else (0, 0)
        rows = _query_rows(org, query_fp, pred, order_key, reverse, fresh=not token)
        page = _resolve_rows(org, rows[offset:offset + PAGE_SIZE])
        if page is None:  # an identity vanished behind the fingerprint: rebuild and retry once
            _scan(org).version = None
            rows = _query_rows(org, query_fp, pred, order_key, reverse, fresh=True)
            page = _resolve_rows(org, rows[offset:offset + PAGE_SIZE]) or []
        roles = _role_groups(org) if "projects" in select.lower() else None
        items = [entitlement_json(request, org, i, e, roles=roles) for i, e in page]
        nxt = offset + len(page)
        next_token = make_token(org, nxt, query_fp, rt + 1) if nxt < len(rows) else None
        total = len(rows)
    return ado_json({"members": items, "items": items, "continuationToken": next_token, "totalCount": total})


def _find_user(org: OrgState, user_id: str, *, kind: str = "user") -> tuple[Identity, UserEntitlement]:
    want = user_id.strip().lower()
    ident = org.by_storage_key(want) or next(
        (i for i in (org.users() if kind == "user" else org.service_principals())
         if i.storage_key.lower() == want), None)
    ent = org.entitlements.get(ident.storage_key) if ident is not None else None
    if ident is None or ent is None or ident.subject_kind != kind:
        raise _not_found(user_id)
    return ident, ent


async def get_user_entitlement(request: Request) -> Response:
    http.need(request, READ)
    org = http.org_of(request)
    require_api_version(request)
    w = http.world(request)
    with w.lock:
        ident, ent = _find_user(org, request.path_params["user_id"])
        body = entitlement_json(request, org, ident, ent, roles=_role_groups(org))
    return ado_json(body)


async def get_sp_entitlement(request: Request) -> Response:
    http.need(request, READ)
    org = http.org_of(request)
    require_api_version(request, preview_only=True)
    w = http.world(request)
    with w.lock:
        ident, ent = _find_user(org, request.path_params["sp_id"], kind="servicePrincipal")
        body = entitlement_json(request, org, ident, ent, roles=_role_groups(org), key="servicePrincipal")
    return ado_json(body)


def _post_result(ok: bool, errors: list[tuple[int, str]], user_id: str | None,
                 ent_body: dict[str, Any] | None) -> Response:
    return ado_json({
        "operationResult": {"isSuccess": ok, "errors": [{"key": k, "value": v} for k, v in errors],
                            "userId": user_id or "00000000-0000-0000-0000-000000000000",
                            "result": ent_body},
        "isSuccess": ok,
        "userEntitlement": ent_body,
    })


def _find_principal(org: OrgState, principal: str) -> Identity | None:
    low = principal.lower()
    for u in org.users():
        if u.principal_name.lower() == low or (u.mail_address or "").lower() == low:
            return u
    return None


def _tenant_member_domains(world: World) -> set[str]:
    return {u.principal_name.rsplit("@", 1)[1].lower()
            for o in world.orgs.values() for u in o.users()
            if u.origin == "aad" and u.meta_type == "member" and "@" in u.principal_name
            and "#ext#" not in u.principal_name.lower()}


def _tenant_initial_domain(org: OrgState) -> str:
    for u in org.users():
        if "#ext#@" in u.principal_name.lower():
            return u.principal_name.rsplit("@", 1)[1]
    slug = "".join(ch for ch in org.name.lower() if ch.isalnum()) or "org"
    return f"{slug}.onmicrosoft.com"


def _create_principal(world: World, org: OrgState, email: str) -> Identity:
    """A new user for `email` (see the module docstring for aad member / guest / msa)."""
    local, domain = email.rsplit("@", 1)
    # the same person may already exist in another organization of the tenant: reuse the object id
    for other in world.orgs.values():
        if other is org:
            continue
        known = _find_principal(other, email)
        if known is not None:
            kind = "msa" if known.origin == "msa" else "aad"
            return org.add_user(kind=kind, display_name=known.display_name, principal_name=known.principal_name,
                                mail=known.mail_address, meta_type=known.meta_type or "member",
                                origin_id=known.origin_id if kind == "aad" else None)
    if domain.lower() in _CONSUMER_DOMAINS:
        return org.add_user(kind="msa", display_name=email, principal_name=email)
    if domain.lower() in _tenant_member_domains(world):
        return org.add_user(kind="aad", display_name=email, principal_name=email, meta_type="member")
    upn = f"{local}_{domain}#EXT#@{_tenant_initial_domain(org)}"
    return org.add_user(kind="aad", display_name=email, principal_name=upn, mail=email, meta_type="guest")


async def add_user_entitlement(request: Request) -> Response:
    c = http.need(request, WRITE)
    org = http.org_of(request)
    require_api_version(request)
    try:
        body = json.loads(await request.body() or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        raise bad_request("Value cannot be null.\r\nParameter name: userEntitlement", "ArgumentNullException")
    access = body.get("accessLevel") or {}
    user = body.get("user") or {}
    projects = body.get("projectEntitlements") or []
    if not isinstance(access, dict) or not isinstance(user, dict) or not isinstance(projects, list):
        raise bad_request("Value cannot be null.\r\nParameter name: userEntitlement", "ArgumentNullException")
    lic = _canon(access.get("accountLicenseType"), _LICENSE_TYPES, "express")
    src = _canon(access.get("licensingSource"), _SOURCES, "account")
    msdn = _canon(access.get("msdnLicenseType"), _MSDN_TYPES, "none")
    if lic is None or src is None or msdn is None:
        # an enum the JSON model binder cannot read leaves the whole body null, as in ASP.NET
        raise bad_request("Value cannot be null.\r\nParameter name: userEntitlement", "ArgumentNullException")
    if src == "msdn" and msdn == "none":
        msdn = "eligible"
    w = http.world(request)
    with w.lock:
        me = caller_identity(w, org, c)
        if me is None or not org.is_collection_admin(me.storage_key):
            who = me.display_name if me else (c.user_key or "")
            return _post_result(False, [(5032, f"Access Denied: {who} needs the following permission(s) on "
                                               "the resource Users to perform this action: Add Users")],
                                None, None)
        principal = str(user.get("principalName") or user.get("mailAddress") or "").strip()
        origin_id = str(user.get("originId") or "").strip()
        if not principal and origin_id:
            found = org.by_origin_id.get(origin_id)
            if found is not None:
                principal = org.identities[found].principal_name
        if not principal:
            return _post_result(False, [(5000, "The Id, OriginId, or User.PrincipalName must be set.")], None, None)
        if lic == "earlyAdopter":
            return _post_result(False, [(5000, "A user cannot be assigned an Account-EarlyAdopter license.")],
                                None, None)
        targets: list[str] = []
        for pe in projects:
            ref = (pe or {}).get("projectRef") or {}
            gtype = str(((pe or {}).get("group") or {}).get("groupType") or "projectContributor").lower()
            proj = org.projects.get(str(ref.get("id") or "").lower()) or next(
                (p for p in org.projects.values() if p.id.lower() == str(ref.get("id") or "").lower()
                 or p.name.lower() == str(ref.get("name") or "").lower()), None)
            if proj is None:
                return _post_result(False, [(5000, f"Project {ref.get('id') or ref.get('name')} was not found.")],
                                    None, None)
            targets.append(proj.role_groups[_GROUP_TYPES.get(gtype, "contributors")])
        existing = _find_principal(org, principal)
        if existing is None and not _EMAIL_RE.match(principal):
            return _post_result(False, [(5000, f"Given email address '{principal}' is invalid.")], None, None)
        try:
            ident = existing or _create_principal(w, org, principal)
            ent = org.entitlements.get(ident.storage_key)
            if ent is None:
                ent = org.set_entitlement(ident.storage_key, lic, src, msdn,
                                          status="pending" if existing is None else "active",
                                          actor_key=me.storage_key)
                for g in targets:
                    org.add_membership(g, ident.descriptor, actor_key=me.storage_key)
        except SimError as e:
            return _post_result(False, [(5000, e.message)], None, None)
        ent_body = entitlement_json(request, org, ident, ent, roles=_role_groups(org))
    return _post_result(True, [], ident.storage_key, ent_body)


async def delete_user_entitlement(request: Request) -> Response:
    c = http.need(request, WRITE)
    org = http.org_of(request)
    require_api_version(request)
    w = http.world(request)
    with w.lock:
        me = caller_identity(w, org, c)
        if me is None or not org.is_collection_admin(me.storage_key):
            who = me.display_name if me else (c.user_key or "")
            return ado_error(403, f"Access Denied: {who} needs the following permission(s) on the resource "
                                  "Users to perform this action: Delete Users", "InvalidAccessException")
        ident, _ = _find_user(org, request.path_params["user_id"])
        org.remove_user(ident.storage_key, actor_key=me.storage_key)
    return Response(status_code=204)


ROUTES: list[BaseRoute] = [
    route("/vsaex/{org}/_apis/userentitlements", list_user_entitlements, ["GET"]),
    route("/vsaex/{org}/_apis/userentitlements", add_user_entitlement, ["POST"]),
    route("/vsaex/{org}/_apis/userentitlements/{user_id}", get_user_entitlement, ["GET"]),
    route("/vsaex/{org}/_apis/userentitlements/{user_id}", delete_user_entitlement, ["DELETE"]),
    route("/vsaex/{org}/_apis/serviceprincipalentitlements/{sp_id}", get_sp_entitlement, ["GET"]),
]
