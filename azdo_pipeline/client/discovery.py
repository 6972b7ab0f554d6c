"""Base URLs per service area, discovered from the organization URL (reference §1.2).

`GET {org_url}/_apis/resourceAreas` needs no credential and lists each area's `locationUrl` in
the organization's primary URL form (dev.azure.com, legacy *.visualstudio.com, or whatever host
serves it: the simulator on loopback). Nothing here knows about particular hosts.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import (
    AuthenticationError,
    AzureDevOpsError,
    CertificateError,
    ConfigurationError,
    ThrottledError,
    TransientError,
)
from .shapes import RESOURCE_AREAS
from .transport import Requester

# Resource area ids (reference §1.1; graph is bb1e7ec9-…, not GraphProfile's 4e40f190-…).
AREA_IDS: dict[str, str] = {
    "core": "79134c72-4a58-4b42-976c-04e7115f32bf",
    "graph": "bb1e7ec9-e901-4b68-999a-de7012b920f8",
    "identities": "8a3d49b8-91f0-46ef-b33d-dda338c25db3",
    "entitlements": "68ddce18-2501-45f1-a17b-7931a9922690",
    "audit": "94ff054d-5ee1-413d-9341-3f4a7827de2e",
    "accounts": "0d55247a-1c47-4462-9b1f-5e2125590ee6",
}
RESOURCE_AREAS_VERSION = "5.1-preview.1"


@dataclass(frozen=True)
class ServiceUrls:
    org: str  # organization name
    org_url: str  # as configured, without trailing slash
    core: str
    graph: str
    identities: str
    entitlements: str
    audit: str
    accounts: str


def normalize_org_url(org_url: str) -> str:
    parts = urlsplit(org_url.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigurationError(f"organization url {org_url!r} is not an http(s) URL "
                                 "(expected e.g. https://dev.azure.com/fabrikam)")
    if parts.username or parts.password:
        raise ConfigurationError("organization url must not contain credentials; use auth settings instead")
    return org_url.strip().rstrip("/")


def org_name_from_url(org_url: str) -> str:
    """The organization name: the last path segment, else the first label of the host.

    https://dev.azure.com/fabrikam -> fabrikam; https://fabrikam.visualstudio.com -> fabrikam;
    https://127.0.0.1:8443/fabrikam -> fabrikam.
    """
    parts = urlsplit(normalize_org_url(org_url))
    segments = [s for s in parts.path.split("/") if s]
    if segments:
        return segments[-1]
    host = parts.hostname or ""
    label = host.split(".", 1)[0]
    if not label or label.isdigit():
        raise ConfigurationError(f"cannot tell the organization name from url {org_url!r}; use "
                                 "https://dev.azure.com/{org} or https://{org}.visualstudio.com")
    return label


async def discover(requester: Requester, org_url: str) -> ServiceUrls:
    """Ask the organization for its resource areas; areas it does not list use the org URL."""
    base = normalize_org_url(org_url)
    try:
        reply = await requester.request(
            "GET", f"{base}/_apis/resourceAreas", endpoint="GET resourceAreas", scope=None,
            params={"api-version": RESOURCE_AREAS_VERSION}, auth=False, shape=RESOURCE_AREAS)
    except AzureDevOpsError as exc:
        # Throttling, an outage, a refused certificate or credential: the organization (or the way
        # to it) says so itself. A 404, an HTML or other page in place of the areas: a wrong URL.
        if isinstance(exc, TransientError | ThrottledError | CertificateError) or (
                isinstance(exc, AuthenticationError) and exc.status == 401):
            raise
        raise type(exc)(f"{base} did not answer as an Azure DevOps organization ({exc.message}); check the "
                        "organization url (https://dev.azure.com/{org} or https://{org}.visualstudio.com)",
                        status=exc.status, type_key=exc.type_key, url=exc.url, endpoint=exc.endpoint) from None
    found: dict[str, str] = {}
    data = reply.data if isinstance(reply.data, dict) else {}
    for area in data.get("value") or []:
        if isinstance(area, dict) and area.get("id") and area.get("locationUrl"):
            found[str(area["id"]).lower()] = str(area["locationUrl"]).rstrip("/")
    urls = {name: found.get(area_id, base) for name, area_id in AREA_IDS.items()}
    # Accounts/profile is a global service: an org that does not list it gets it looked up lazily.
    urls["accounts"] = found.get(AREA_IDS["accounts"], "")
    return ServiceUrls(org=org_name_from_url(base), org_url=base, **urls)


async def global_area_url(requester: Requester, org_url: str, area: str) -> str | None:
    """`GET {scheme}://{host}/_apis/resourceAreas/{id}?accountName={org}` (the documented global
    lookup, no auth); None when it does not answer."""
    parts = urlsplit(normalize_org_url(org_url))
    root = f"{parts.scheme}://{parts.netloc}"
    try:
        reply = await requester.request(
            "GET", f"{root}/_apis/resourceAreas/{AREA_IDS[area]}", endpoint="GET resourceAreas/{id}", scope=None,
            params={"accountName": org_name_from_url(org_url), "api-version": RESOURCE_AREAS_VERSION}, auth=False)
    except AzureDevOpsError:
        return None
    url = (reply.data or {}).get("locationUrl") if isinstance(reply.data, dict) else None
    return str(url).rstrip("/") if url else None
