"""Resource-area discovery (no auth): `GET {org}/_apis/resourceAreas[/{id}]`, the global lookup
`GET /_apis/resourceAreas/{id}?accountName=|hostId=`, and `OPTIONS {areaBase}/_apis` (resource
locations, as the Go/.NET SDKs read them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .http import ado_error, ado_json, public_base, world
from .state import OrgState


@dataclass(frozen=True, slots=True)
class Area:
    id: str
    name: str
    service: str  # public_base service key: core | vssps | vsaex | auditservice | accounts


AREAS: tuple[Area, ...] = (
    Area("79134c72-4a58-4b42-976c-04e7115f32bf", "core", "core"),
    Area("bb1e7ec9-e901-4b68-999a-de7012b920f8", "Graph", "vssps"),
    # The docs' table calls 4e40f190-… "graph"; it is really GraphProfile (avatars), on the org host.
    Area("4e40f190-2e3f-4d9f-8331-c7788e833080", "GraphProfile", "core"),
    Area("8a3d49b8-91f0-46ef-b33d-dda338c25db3", "IMS", "vssps"),
    Area("68ddce18-2501-45f1-a17b-7931a9922690", "MemberEntitlementManagement", "vsaex"),
    Area("94ff054d-5ee1-413d-9341-3f4a7827de2e", "Audit", "auditservice"),
    Area("0d55247a-1c47-4462-9b1f-5e2125590ee6", "Account", "accounts"),
)
_BY_ID = {a.id: a for a in AREAS}


def _area_json(request: Request, org: OrgState, area: Area) -> dict[str, str]:
    # locationUrl carries a trailing slash, like the real service (e.g. "https://vssps.dev.azure.com/fabrikam/")
    return {"id": area.id, "name": area.name,
            "locationUrl": public_base(request, area.service, org.name).rstrip("/") + "/"}


def _org_or_404(request: Request, name: str | None) -> OrgState | Response:
    org = world(request).org(name or "")
    if org is None:
        return ado_error(404, f"TF400813: Organization '{name}' not found.", "HostDoesNotExistException",
                         type_name="Microsoft.VisualStudio.Services.Common.HostDoesNotExistException, "
                                   "Microsoft.VisualStudio.Services.Common")
    return org


def _unknown_area(area_id: str) -> Response:
    return ado_error(404, f"VS800075: The resource area '{area_id}' was not found.",
                     "ResourceAreaNotFoundException")


async def list_areas(request: Request) -> Response:
    org = _org_or_404(request, request.path_params["org"])
    if isinstance(org, Response):
        return org
    value = [_area_json(request, org, a) for a in AREAS]
    return ado_json({"count": len(value), "value": value})


def _one_area(request: Request, org_name: str) -> Response:
    org = _org_or_404(request, org_name)
    if isinstance(org, Response):
        return org
    area = _BY_ID.get(request.path_params["area_id"].lower())
    if area is None:
        return _unknown_area(request.path_params["area_id"])
    return ado_json(_area_json(request, org, area))


async def get_area(request: Request) -> Response:
    return _one_area(request, request.path_params["org"])


async def get_area_global(request: Request) -> Response:
    """`/_apis/resourceAreas/{id}?accountName={org}` (or `hostId={orgId}`) on dev.azure.com."""
    name = request.query_params.get("accountName")
    host_id = request.query_params.get("hostId")
    if name is None and host_id:
        name = next((o.name for o in world(request).orgs.values() if o.id.lower() == host_id.lower()), host_id)
    if not name:
        return ado_error(400, "Either accountName or hostId must be specified.", "ArgumentException")
    return _one_area(request, name)


# ---- OPTIONS {areaBase}/_apis: resource locations ------------------------------------------------
# Location ids and route templates are the real service's (the specs carry none): taken from the
# official SDKs (azure-devops-go-api v7, azure-devops-python-api v7_1) and the decompiled
# GraphResourceIds / CoreConstants. Only locations this simulator actually serves are listed: each
# has a probe path that must match one of the app's routes.


@dataclass(frozen=True, slots=True)
class Location:
    id: str
    area: str
    resource_name: str
    route_template: str
    service: str  # core | vssps | vsaex | auditservice | accounts
    probe: str  # a concrete path below the service base that the route must answer
    resource_version: int = 1
    released: bool = False  # preview-only resources report releasedVersion "0.0"


LOCATIONS: tuple[Location, ...] = (
    # Location service (every host)
    *(Location("e81700f7-3be2-46de-8624-2eb35882fcaa", "Location", "ResourceAreas",
               "_apis/{resource}/{areaId}", svc, "_apis/resourceareas", 1, False)
      for svc in ("core", "vssps", "vsaex", "auditservice")),
    # core
    Location("603fe2ac-9723-48b9-88ad-09305aa6c6e1", "core", "projects", "_apis/{resource}/{*projectId}",
             "core", "_apis/projects", 4, True),
    Location("d30a3dd1-f8ba-442a-b86a-bd0c0c383e59", "core", "teams",
             "_apis/projects/{projectId}/{resource}/{*teamId}", "core", "_apis/projects/p/teams", 3, True),
    Location("294c494c-2600-4d7e-b76c-3dd50c3c95be", "core", "members",
             "_apis/projects/{projectId}/teams/{teamId}/{resource}", "core",
             "_apis/projects/p/teams/t/members", 2, True),
    Location("7a4d9ee9-3433-4347-b47a-7a80f1cf307e", "core", "teams", "_apis/{resource}", "core",
             "_apis/teams", 3),
    # Security (org host; the area has no resource-area id): SecurityResourceIds.SecurityAccessControlLists,
    # the id the SDKs send (azure-devops-python-api v7_1 security_client.query_access_control_lists)
    Location("18a2ad18-7571-46ae-bec7-0c7da1495885", "Security", "AccessControlLists",
             "_apis/{resource}/{securityNamespaceId}", "core",
             "_apis/accesscontrollists/5a27515b-ccd7-42c9-84f1-54c998f03866", 1, True),
    # Graph (vssps)
    Location("005e26ec-6b77-4e4f-a986-b3827bf241f5", "Graph", "Users", "_apis/{area}/{resource}/{userDescriptor}",
             "vssps", "_apis/graph/users"),
    Location("ebbe6af8-0b91-4c13-8cf1-777c14858188", "Graph", "Groups",
             "_apis/{area}/{resource}/{groupDescriptor}", "vssps", "_apis/graph/groups"),
    Location("e1dbb0ae-49cb-4532-95a1-86cd89cfcab4", "Graph", "ServicePrincipals",
             "_apis/{area}/{resource}/{servicePrincipalDescriptor}", "vssps", "_apis/graph/serviceprincipals"),
    Location("3fd2e6ca-fb30-443a-b579-95b19ed0934c", "Graph", "Memberships",
             "_apis/{area}/{resource}/{subjectDescriptor}/{containerDescriptor}", "vssps",
             "_apis/graph/memberships/s/c"),
    Location("e34b6394-6b30-4435-94a9-409a5eef3e31", "Graph", "MembershipsBatch",
             "_apis/{area}/Memberships/{subjectDescriptor}", "vssps", "_apis/graph/memberships/s"),
    Location("1ffe5c94-1144-4191-907b-d0211cad36a8", "Graph", "MembershipStates",
             "_apis/{area}/{resource}/{subjectDescriptor}", "vssps", "_apis/graph/membershipstates/s"),
    Location("048aee0a-7072-4cde-ab73-7af77b1e0b4e", "Graph", "Descriptors",
             "_apis/{area}/{resource}/{storageKey}", "vssps", "_apis/graph/descriptors/k"),
    Location("eb85f8cc-f0f6-4264-a5b1-ffe2e4d4801f", "Graph", "StorageKeys",
             "_apis/{area}/{resource}/{subjectDescriptor}", "vssps", "_apis/graph/storagekeys/s"),
    Location("4dd4d168-11f2-48c4-83e8-756fa0de027c", "Graph", "SubjectLookup", "_apis/{area}/{resource}",
             "vssps", "_apis/graph/subjectlookup"),
    Location("05942c89-006a-48ce-bb79-baeb8abf99c6", "Graph", "SubjectQuery", "_apis/{area}/{resource}",
             "vssps", "_apis/graph/subjectquery"),
    # Identities (vssps)
    Location("28010c54-d0c0-4c89-a5b0-1c9e188b9fb7", "IMS", "Identities", "_apis/{resource}/{identityId}",
             "vssps", "_apis/identities", 2),
    Location("299e50df-fe45-4d3a-8b5b-a5836fac74dc", "IMS", "IdentityBatch", "_apis/{resource}/{action}",
             "vssps", "_apis/identitybatch"),
    # Member entitlement management (vsaex); the two ids are the real pair (collection / by user id)
    Location("387f832c-dbf2-4643-88e9-c1aa94dbb737", "MemberEntitlementManagement", "UserEntitlements",
             "_apis/{resource}/{userDescriptor}", "vsaex", "_apis/userentitlements", 3),
    Location("8480c6eb-ce60-47e9-88df-eca3c801638b", "MemberEntitlementManagement", "UserEntitlements",
             "_apis/{resource}/{userId}", "vsaex", "_apis/userentitlements/u", 3),
    # ServicePrincipalEntitlements (preview): by id, the id the official SDK sends for GET/DELETE
    # (azure-devops-python-api v7_1 member_entitlement_management_client.get_service_principal_entitlement)
    Location("1d491a66-190b-43ae-86b8-9c2688c55186", "MemberEntitlementManagement", "ServicePrincipalEntitlements",
             "_apis/{resource}/{servicePrincipalId}", "vsaex", "_apis/serviceprincipalentitlements/s"),
    # Audit (auditservice)
    Location("4e5fa14f-7097-4b73-9c85-00abc7353c61", "Audit", "AuditLog", "_apis/{area}/{resource}",
             "auditservice", "_apis/audit/auditlog"),
    Location("6fa30b9a-9558-4e3b-a95f-a12572caa6e6", "Audit", "Actions", "_apis/{area}/{resource}",
             "auditservice", "_apis/audit/actions"),
    # Accounts (app.vssps)
    Location("229a6a53-b428-4ffb-a835-e8f36b5b4b1e", "Account", "Accounts", "_apis/{resource}/{accountId}",
             "accounts", "_apis/accounts"),
)


def _internal_base(service: str, org: str) -> str:
    return {"core": f"/{org}", "accounts": "/app.vssps"}.get(service, f"/{service}/{org}")


def _served(request: Request, path: str) -> bool:
    """True when one of the app's routes answers `path` (any method)."""
    from starlette.routing import Match

    scope = {"type": "http", "path": path, "root_path": "", "method": "GET", "query_string": b"",
             "headers": []}
    for route in request.app.routes:
        match, _ = route.matches(scope)
        if match != Match.NONE:
            return True
    return False


def _location_json(loc: Location) -> dict[str, object]:
    return {"id": loc.id, "area": loc.area, "resourceName": loc.resource_name,
            "routeTemplate": loc.route_template, "resourceVersion": loc.resource_version,
            "minVersion": "1.0", "maxVersion": "7.2", "releasedVersion": "7.1" if loc.released else "0.0"}


def _options_for(service: str) -> Any:
    async def options(request: Request) -> Response:
        name = request.path_params.get("org", "")
        if service != "accounts":
            org = _org_or_404(request, name)
            if isinstance(org, Response):
                return org
            name = org.name
        base = _internal_base(service, name)
        value = [_location_json(loc) for loc in LOCATIONS
                 if loc.service == service and _served(request, f"{base}/{loc.probe}")]
        return ado_json({"count": len(value), "value": value})

    return options


ROUTES: list[BaseRoute] = [
    Route("/{org}/_apis/resourceareas", list_areas, methods=["GET"]),
    Route("/{org}/_apis/resourceareas/{area_id}", get_area, methods=["GET"]),
    Route("/_apis/resourceareas/{area_id}", get_area_global, methods=["GET"]),
    # the SPS-style hosts answer discovery too (a client may ask whichever host it holds)
    *(Route(f"/{svc}/{{org}}/_apis/resourceareas", list_areas, methods=["GET"])
      for svc in ("vssps", "vsaex", "auditservice")),
    *(Route(f"/{svc}/{{org}}/_apis/resourceareas/{{area_id}}", get_area, methods=["GET"])
      for svc in ("vssps", "vsaex", "auditservice")),
    # OPTIONS {areaBase}/_apis (with or without the trailing slash)
    *(Route(f"{base}/_apis{slash}", _options_for(svc), methods=["OPTIONS"])
      # accounts first: "/app.vssps/_apis" would otherwise match the org-host pattern
      for svc, base in (("accounts", "/app.vssps"), ("core", "/{org}"), ("vssps", "/vssps/{org}"),
                        ("vsaex", "/vsaex/{org}"), ("auditservice", "/auditservice/{org}"))
      for slash in ("", "/")),
]
