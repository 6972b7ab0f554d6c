"""Azure DevOps client: discovery, auth, paging, throttling and retries, error mapping.

No Dagster here. One `AzureDevOpsClient` per organization:

    async with await AzureDevOpsClient.connect(url, PatCredential(pat)) as client:
        async for page in client.graph.iter_users(): ...
"""

from .client import AzureDevOpsClient
from .discovery import AREA_IDS, ServiceUrls, org_name_from_url
from .errors import (
    AuthenticationError,
    AzureDevOpsError,
    ConfigurationError,
    NotFoundError,
    PermissionDeniedError,
    ThrottledError,
    TransientError,
    UnexpectedResponseError,
)
from .msgraph import MicrosoftGraphClient
from .secrets import Secret, redact, register_secret
from .transport import ClientSettings, Clock, Credential, RequestStats, Scope

__all__ = [
    "AREA_IDS",
    "AuthenticationError",
    "AzureDevOpsClient",
    "AzureDevOpsError",
    "ClientSettings",
    "Clock",
    "ConfigurationError",
    "Credential",
    "MicrosoftGraphClient",
    "NotFoundError",
    "PermissionDeniedError",
    "RequestStats",
    "Scope",
    "Secret",
    "ServiceUrls",
    "ThrottledError",
    "TransientError",
    "UnexpectedResponseError",
    "org_name_from_url",
    "redact",
    "register_secret",
]
