"""JSON shapes of Graph subjects, memberships and IMS identities, as the real service writes them.

Shapes follow the spec examples in graph/7.1/httpExamples and ims/7.1/httpExamples (key order too,
so a diff against a recorded body stays readable). Route modules of other services may import
`graph_subject` and `identity_json`; keep their signatures stable.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from starlette.requests import Request

from . import http
from .state import Identity, OrgState, b64url

# Graph resource names used in `url`/`_links` (as the real service spells them).
_KIND_RESOURCE = {"user": "Users", "group": "Groups", "servicePrincipal": "ServicePrincipals"}

# IMS metaTypeId: IdentityMetaType enum (Member=0, Guest=1, …, Unknown=255).
_META_TYPE_ID = {"member": 0, "guest": 1}

_ORG_SPECIAL_TYPES = {
    "project_collection_valid_users": "EveryoneApplicationGroup",
    "project_collection_administrators": "AdministrativeApplicationGroup",
    "project_collection_build_service_accounts": "ServiceApplicationGroup",
}
_PROJECT_SPECIAL_TYPES = {
    "project_valid_users": "EveryoneApplicationGroup",
    "project_administrators": "AdministrativeApplicationGroup",
}


def resource_name(identity: Identity) -> str:
    return _KIND_RESOURCE.get(identity.subject_kind, "Users")


def scope_descriptor(scope_id: str) -> str:
    """Descriptor of a project or collection scope: `scp.` + base64url(scope id)."""
    return f"scp.{b64url(scope_id)}"


def _svc_domain(identity: Identity) -> str:
    # The state keeps "Build/{hostId}"; the Graph example shows just "Build".
    return identity.domain.split("/", 1)[0] if identity.subject_type == "svc" else identity.domain


def _aadgp_domain(org: OrgState, identity: Identity) -> str:
    # Entra groups live at enterprise level: vstfs IdentityDomain/{enterprise host}. The simulated
    # enterprise host id is the tenant id.
    if identity.domain.startswith("vstfs:"):
        return identity.domain
    return f"vstfs:///Framework/IdentityDomain/{org.tenant_id}"


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic GC while a big response body is built.

    Bodies are trees of fresh dicts freed by reference counting (no cycles), but allocating tens of
    thousands of them triggers young collections whose survivors push the collector into full
    passes over the whole simulated organization (hundreds of ms at the xl size).
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def request_bases(request: Request, org_name: str) -> tuple[str, str]:
    """(vssps, core) public bases for `org_name`, computed once per request.

    `http.public_base` parses the request URL on every call; a 500-item page would call it 1000
    times, so the pair is memoised in the ASGI scope (it depends only on the request and org).
    """
    cache = request.scope.get("sim.bases")
    if cache is None:
        cache = request.scope["sim.bases"] = {}
    hit = cache.get(org_name)
    if hit is None:
        hit = cache[org_name] = (http.public_base(request, "vssps", org_name),
                                 http.public_base(request, "core", org_name))
    return hit


def graph_subject(request: Request, org: OrgState, identity: Identity) -> dict[str, Any]:
    """GraphUser / GraphGroup / GraphServicePrincipal body for `identity`."""
    d = identity.descriptor
    kind = identity.subject_kind
    vssps, core = request_bases(request, org.name)
    # `_links`/`url` as http.links() writes them, built inline (hot path of every Graph page).
    url = f"{vssps}/_apis/Graph/{_KIND_RESOURCE.get(kind, 'Users')}/{d}"
    links: dict[str, Any] = {
        "self": {"href": url},
        "memberships": {"href": f"{vssps}/_apis/Graph/Memberships/{d}"},
        "membershipState": {"href": f"{vssps}/_apis/Graph/MembershipStates/{d}"},
        "storageKey": {"href": f"{vssps}/_apis/Graph/StorageKeys/{d}"},
    }
    if kind == "user":
        subject_type = d.split(".", 1)[0]
        body: dict[str, Any] = {"subjectKind": kind}
        # The svc example carries no metaType; aad/msa users do.
        if identity.meta_type and subject_type != "svc":
            body["metaType"] = identity.meta_type
        # The state keeps "Build/{hostId}"; the Graph example shows just "Build".
        body["domain"] = identity.domain.split("/", 1)[0] if subject_type == "svc" else identity.domain
        body["principalName"] = identity.principal_name
        body["mailAddress"] = identity.mail_address or ""
        links["avatar"] = {"href": f"{core}/_apis/GraphProfile/MemberAvatars/{d}"}
    elif kind == "servicePrincipal":
        # Example: principalName and directoryAlias are the SP object id; no mail address.
        body = {
            "subjectKind": kind,
            "applicationId": identity.application_id,
            "directoryAlias": identity.directory_alias or identity.origin_id,
            "domain": identity.domain,
            "principalName": identity.origin_id,
            "mailAddress": None,
        }
        links["avatar"] = {"href": f"{core}/_apis/GraphProfile/MemberAvatars/{d}"}
    else:
        body = {"subjectKind": kind, "description": identity.description}
        if identity.subject_type == "aadgp":
            body["isCrossProject"] = True
        body.update({
            "domain": _aadgp_domain(org, identity) if identity.subject_type == "aadgp" else identity.domain,
            "principalName": identity.principal_name,
            "mailAddress": None,
        })
        # group examples have no avatar link
    body["origin"] = identity.origin
    body["originId"] = identity.origin_id
    body["displayName"] = identity.display_name
    body["_links"] = links
    body["url"] = url
    body["descriptor"] = d
    return body


def graph_scope(request: Request, org: OrgState, scope_id: str) -> dict[str, Any] | None:
    """GraphScope body for a project id or the collection id; None when neither."""
    vssps = http.public_base(request, "vssps", org.name)
    d = scope_descriptor(scope_id)
    proj = org.projects.get(scope_id)
    if proj is None and scope_id != org.id:
        return None
    body: dict[str, Any] = {
        "subjectKind": "scope",
        "scopeType": "teamProject" if proj else "serviceHost",
        "isGlobal": proj is None,
        "parentDescriptor": None if proj is None else scope_descriptor(org.id),
        "domain": f"vstfs:///Classification/TeamProject/{scope_id}" if proj
        else f"vstfs:///Framework/IdentityDomain/{org.id}",
        "principalName": proj.name if proj else org.name,
        "mailAddress": None,
        "origin": "vsts",
        "originId": scope_id,
        "displayName": proj.name if proj else org.name,
        "_links": {"self": {"href": f"{vssps}/_apis/Graph/Scopes/{d}"}},
        "url": f"{vssps}/_apis/Graph/Scopes/{d}",
        "descriptor": d,
    }
    return body


def membership_json(request: Request, org: OrgState, member: Identity, container: Identity) -> dict[str, Any]:
    """GraphMembership body (GET/PUT single edge and the list endpoint)."""
    vssps = request_bases(request, org.name)[0]
    m, c = member.descriptor, container.descriptor
    return {
        "containerDescriptor": c,
        "memberDescriptor": m,
        "_links": {
            "self": {"href": f"{vssps}/_apis/Graph/Memberships/{m}/{c}"},
            "member": {"href": f"{vssps}/_apis/Graph/{resource_name(member)}/{m}"},
            "container": {"href": f"{vssps}/_apis/Graph/{resource_name(container)}/{c}"},
        },
    }


def _prop(value: Any, type_: str = "System.String") -> dict[str, Any]:
    return {"$type": type_, "$value": value}


def _identity_properties(org: OrgState, ident: Identity) -> dict[str, Any]:
    if ident.is_group:
        proj = org.projects.get(ident.project_id) if ident.project_id else None
        if ident.subject_type == "aadgp":
            special = "Generic"
        elif proj is not None:
            special = _PROJECT_SPECIAL_TYPES.get(ident.role or "", "Generic")
        else:
            special = _ORG_SPECIAL_TYPES.get(ident.role or "", "Generic")
        scope_id = proj.id if proj else org.id
        props: dict[str, Any] = {
            "SchemaClassName": _prop("Group"),
            "Description": _prop(ident.description),
            "Domain": _prop(_aadgp_domain(org, ident) if ident.subject_type == "aadgp" else ident.domain),
            "Account": _prop(ident.display_name),
            "SecurityGroup": _prop("SecurityGroup"),
            "SpecialType": _prop(special),
            "ScopeId": _prop(scope_id, "System.Guid"),
            "ScopeType": _prop("TeamProject" if proj else "ServiceHost"),
            "LocalScopeId": _prop(scope_id, "System.Guid"),
            "SecuringHostId": _prop(org.id, "System.Guid"),
            "ScopeName": _prop(proj.name if proj else org.name),
        }
        if proj is None:
            props["GlobalScope"] = _prop("GlobalScope")
        if ident.subject_type == "aadgp":
            props["http://schemas.microsoft.com/identity/claims/objectidentifier"] = _prop(ident.origin_id)
        props["VirtualPlugin"] = _prop("")
        return props
    account = ident.origin_id if ident.subject_kind == "servicePrincipal" else ident.principal_name
    props = {
        "SchemaClassName": _prop("User"),
        "Description": _prop(""),
        "Domain": _prop(_svc_domain(ident)),
        "Account": _prop(account),
        "DN": _prop(""),
        "Mail": _prop(ident.mail_address or ""),
        "SpecialType": _prop("Generic"),
    }
    alias = ident.directory_alias or (ident.origin_id if ident.subject_kind == "servicePrincipal" else "")
    if alias:
        props["Alias"] = _prop(alias)
    if ident.origin == "aad":
        props["http://schemas.microsoft.com/identity/claims/objectidentifier"] = _prop(ident.origin_id)
    if alias:
        props["DirectoryAlias"] = _prop(alias)
    return props


def _closure(org: OrgState, start: str, edges: dict[str, set[str]]) -> list[str]:
    """Transitive neighbours of `start` along `edges` (cycle-safe, excludes `start`)."""
    seen: set[str] = set()
    stack = [start]
    while stack:
        for nxt in edges.get(stack.pop(), ()):
            if nxt not in seen and nxt != start:
                seen.add(nxt)
                stack.append(nxt)
    return sorted(seen)


def membership_lists(org: OrgState, ident: Identity, query_membership: str) -> tuple[list[str], list[str]]:
    """(members, memberOf) subject descriptors for a queryMembership value (lower-case)."""
    d = ident.descriptor
    qm = query_membership.lower()
    members: list[str] = []
    member_of: list[str] = []
    if qm == "direct":
        members, member_of = sorted(org.down.get(d, ())), sorted(org.up.get(d, ()))
    elif qm == "expanded":
        members, member_of = _closure(org, d, org.down), _closure(org, d, org.up)
    elif qm == "expandedup":
        member_of = _closure(org, d, org.up)
    elif qm == "expandeddown":
        members = _closure(org, d, org.down)
    # Edges can point at identities removed meanwhile; skip them like the identity store does.
    return ([m for m in members if m in org.identities], [c for c in member_of if c in org.identities])


def identity_json(org: OrgState, identity: Identity, query_membership: str = "none") -> dict[str, Any]:
    """IMS Identity body (ims/7.1 SearchBy*.json shape).

    query_membership: none | direct | expanded | expandedUp | expandedDown (case-insensitive).
    `members`/`memberOf` hold legacy identity descriptors, `memberIds` storage keys of the members.
    """
    members, member_of = membership_lists(org, identity, query_membership)
    body: dict[str, Any] = {
        "id": identity.storage_key,
        "descriptor": identity.identity_descriptor,
        "subjectDescriptor": identity.descriptor,
        "providerDisplayName": identity.principal_name if identity.is_group else identity.display_name,
        "isActive": identity.active,
    }
    if identity.is_group:
        body["isContainer"] = True
    body.update({
        "members": [org.identities[m].identity_descriptor for m in members],
        "memberOf": [org.identities[c].identity_descriptor for c in member_of],
        "memberIds": [org.identities[m].storage_key for m in members],
        "properties": _identity_properties(org, identity),
        "resourceVersion": 2,
        "metaTypeId": 255 if identity.is_group else _META_TYPE_ID.get(identity.meta_type, 255),
    })
    return body
