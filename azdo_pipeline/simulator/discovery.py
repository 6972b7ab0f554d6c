"""Resource-area discovery (no auth): `GET {org}/_apis/resourceAreas[/{id}]`, the global lookup
`GET /_apis/resourceAreas/{id}?accountName=|hostId=`, and `OPTIONS {areaBase}/_apis` (resource
locations, as the Go/.NET SDKs read them).
"""

from __future__ import annotations

from dataclasses import dataclass

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


async def get_area(request: Request) -> Response:
    org = _org_or_404(request, request.path_params["org"])
    if isinstance(org, Response):
        return org
    area = _BY_ID.get(request.path_params["area_id"].lower())
    if area is None:
        return _unknown_area(request.path_params["area_id"])
    return ado_json(_area_json(request, org, area))


async def get_area_global(request: Request) -> Response:
    """`/_apis/resourceAreas/{id}?accountName={org}` (or `hostId={orgId}`) on dev.azure.com."""
    name = request.query_params.get("accountName")
    host_id = request.query_params.get("hostId")
    if name is None and host_id:
        name = next((o.name for o in world(request).orgs.values() if o.id.lower() == host_id.lower()), host_id)
    if not name:
        return ado_error(400, "Either accountName or hostId must be specified.", "ArgumentException")
    org = _org_or_404(request, name)
    if isinstance(org, Response):
        return org
    area = _BY_ID.get(request.path_params["area_id"].lower())
    if area is None:
        return _unknown_area(request.path_params["area_id"])
    return ado_json(_area_json(request, org, area))


ROUTES: list[BaseRoute] = [
    Route("/{org}/_apis/resourceareas", list_areas, methods=["GET"]),
    Route("/{org}/_apis/resourceareas/{area_id}", get_area, methods=["GET"]),
    Route("/_apis/resourceareas/{area_id}", get_area_global, methods=["GET"]),
]
