"""Identities (IMS) API on vssps: GET `_apis/identities` and POST `_apis/identitybatch`.

Shapes follow ims/7.1/httpExamples (see serialize.identity_json). Lookups by identityIds,
descriptors (legacy identity descriptors) or subjectDescriptors answer one entry per requested
key, in request order, with `null` for keys that resolve to nothing (the IdentitiesCollection of
the .NET client keeps those positions). queryMembership: None | Direct | Expanded | ExpandedUp |
ExpandedDown (case-insensitive); Direct fills members/memberOf/memberIds with direct edges,
Expanded with the transitive closure (cycle-safe).

Limits (no documented server limit was found; reference §4.2 says UNVERIFIED):
- GET: the query string may be at most MAX_QUERY_STRING characters (IIS's default
  maxQueryString); longer requests get IIS's plain 404. The .NET client keeps to 50 identityIds
  or 5 descriptors per GET and switches to identitybatch above that — which fits.
- POST identitybatch: at most IDENTITY_BATCH_MAX keys, else 400 TooManyRequestedItemsException.
"""

from __future__ import annotations

import uuid
import weakref
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from . import http
from .routes_graph import CIRoute, api, argument_error, too_many_items
from .serialize import identity_json
from .state import Identity, OrgState

MAX_QUERY_STRING = 2048
IDENTITY_BATCH_MAX = 500
QUERY_MEMBERSHIP = ("none", "direct", "expanded", "expandedup", "expandeddown")
SEARCH_FILTERS = ("accountname", "displayname", "mailaddress", "general", "localgroupname")


def _query_membership(value: Any) -> str:
    qm = str(value or "None").strip().lower()
    if qm not in QUERY_MEMBERSHIP:
        raise argument_error(f"The value '{value}' is not valid for queryMembership. Valid values are None, Direct, "
                             "Expanded, ExpandedUp and ExpandedDown.")
    return qm


def _split(value: Any) -> list[str]:
    if isinstance(value, list):
        items = []
        for v in value:
            if isinstance(v, dict):  # {"identityType": ..., "identifier": ...} form of IdentityDescriptor
                v = f"{v.get('identityType', '')};{v.get('identifier', '')}"
            items.append(str(v))
        return [i.strip() for i in items if i.strip()]
    return [i.strip() for i in str(value).split(",") if i.strip()]


# lower-case legacy descriptor -> identity, per organization: building it is O(organization), so it
# is kept while the identity set is unchanged (count, newest descriptor, audit length).
_legacy_indexes: weakref.WeakKeyDictionary[OrgState, tuple[tuple[Any, ...], dict[str, Identity]]] = \
    weakref.WeakKeyDictionary()


def _legacy_index(org: OrgState) -> dict[str, Identity]:
    version = (len(org.identities), next(reversed(org.identities), None), len(org.audit))
    hit = _legacy_indexes.get(org)
    if hit is not None and hit[0] == version:
        return hit[1]
    index = {i.identity_descriptor.lower(): i for i in org.identities.values()}
    _legacy_indexes[org] = (version, index)
    return index


def _resolve(org: OrgState, kind: str, keys: list[str]) -> list[Identity | None]:
    """One identity (or None) per key. kind: identityIds | descriptors | subjectDescriptors."""
    if kind == "identityIds":
        out: list[Identity | None] = []
        for k in keys:
            try:
                out.append(org.by_storage_key(str(uuid.UUID(k))))
            except ValueError:
                raise argument_error(f"The value '{k}' is not a valid Guid (identityIds).") from None
        return out
    if kind == "descriptors":
        # Legacy descriptors compare case-insensitively ("Type;Identifier").
        by_legacy = _legacy_index(org)
        found = [by_legacy.get(k.lower()) for k in keys]
        if any(i is not None and org.identities.get(i.descriptor) is not i for i in found):
            _legacy_indexes.pop(org, None)  # an identity was replaced behind the fingerprint
            by_legacy = _legacy_index(org)
            found = [by_legacy.get(k.lower()) for k in keys]
        return found
    return [org.identities.get(k) for k in keys]


def _search(org: OrgState, search_filter: str, value: str) -> list[Identity]:
    sf = search_filter.strip().lower()
    if sf not in SEARCH_FILTERS:
        raise argument_error(f"The value '{search_filter}' is not valid for searchFilter.")
    v = value.strip().lower()
    hits = []
    for ident in org.identities.values():
        account = f"{ident.domain}\\{ident.principal_name}".lower()
        names = {
            "accountname": {account, ident.principal_name.lower()},
            "displayname": {ident.display_name.lower()},
            "mailaddress": {ident.mail_address.lower()} if ident.mail_address else set(),
            "localgroupname": {ident.display_name.lower(), ident.principal_name.lower()}
            if ident.subject_type == "vssgp" else set(),
        }
        if sf == "general":
            match = v in names["accountname"] | names["displayname"] | names["mailaddress"]
        else:
            match = v in names[sf]
        if match:
            hits.append(ident)
    return hits


def _body(org: OrgState, found: list[Identity | None], qm: str) -> dict[str, Any]:
    value = [None if i is None else identity_json(org, i, qm) for i in found]
    return {"count": len(value), "value": value}


@api("vso.identity", preview=False, min_version=(1, 0))
def read_identities(request: Request, org: OrgState, caller: http.Caller, _: Any) -> Response:
    if len(request.url.query) > MAX_QUERY_STRING:
        return http.page_not_found()
    q = request.query_params
    given = [k for k in ("identityIds", "descriptors", "subjectDescriptors", "searchFilter") if q.get(k)]
    if len(given) != 1:
        raise argument_error("Exactly one of descriptors, identityIds, subjectDescriptors or searchFilter must be "
                             "specified.")
    qm = _query_membership(q.get("queryMembership"))
    if given[0] == "searchFilter":
        found: list[Identity | None] = list(_search(org, q["searchFilter"], q.get("filterValue", "")))
    else:
        found = _resolve(org, given[0], _split(q[given[0]]))
    return http.ado_json(_body(org, found, qm))


@api("vso.identity", preview=False, body=True, min_version=(1, 0))
def identity_batch(request: Request, org: OrgState, caller: http.Caller, payload: Any) -> Response:
    if not isinstance(payload, dict):
        raise argument_error("Value cannot be null.\r\nParameter name: batchInfo")
    given = [k for k in ("identityIds", "descriptors", "subjectDescriptors") if payload.get(k)]
    if len(given) != 1:
        raise argument_error("Exactly one of descriptors, identityIds or subjectDescriptors must be specified.")
    keys = _split(payload[given[0]])
    if len(keys) > IDENTITY_BATCH_MAX:
        raise too_many_items(len(keys), IDENTITY_BATCH_MAX)
    qm = _query_membership(payload.get("queryMembership"))
    return http.ado_json(_body(org, _resolve(org, given[0], keys), qm))


ROUTES: list[BaseRoute] = [
    CIRoute("/vssps/{org}/_apis/identities", read_identities, methods=["GET"]),
    CIRoute("/vssps/{org}/_apis/identitybatch", identity_batch, methods=["POST"]),
]
