"""Errors raised by the Azure DevOps client.

Every message is built from the server's answer plus a hint, never from request headers, and
passes through `redact()` so a PAT, client secret or bearer token can never leak into a log line
or a traceback.
"""

from __future__ import annotations

from .secrets import redact


class AzureDevOpsError(Exception):
    """A request failed for good (after retries, when retrying made sense).

    status: HTTP status (0 when no response came back), type_key: the service's `typeKey`
    (e.g. "GraphSubjectNotFoundException"), url: the request URL without credentials.
    """

    def __init__(self, message: str, *, status: int = 0, type_key: str = "", url: str = "",
                 endpoint: str = "") -> None:
        self.message = redact(message)
        self.status = status
        self.type_key = type_key
        self.url = redact(url)
        self.endpoint = endpoint
        super().__init__(self.message)

    def __str__(self) -> str:
        where = f" [{self.endpoint}]" if self.endpoint else ""
        return f"{self.message}{where}"


class AuthenticationError(AzureDevOpsError):
    """401, 203 or an HTML sign-in page: the credential is missing, invalid, expired or lacks a scope."""


class PermissionDeniedError(AzureDevOpsError):
    """403: the identity is authenticated but lacks a permission in Azure DevOps (or Entra)."""


class NotFoundError(AzureDevOpsError):
    """404: the subject, membership, project… does not exist (or the route is unknown)."""


class ThrottledError(AzureDevOpsError):
    """429 kept coming back until the retry budget (count or time) ran out."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class UnexpectedResponseError(AzureDevOpsError):
    """A successful status whose body is not what the route returns (wrong content type, empty,
    `null`, a missing list, a field of another type), still so after retries. Never read as empty."""


class CertificateError(AzureDevOpsError):
    """The server's TLS certificate was not accepted (unknown CA, wrong host, expired): never retried."""


class TransientError(AzureDevOpsError):
    """5xx or a connection failure that retries did not cure (or that was not safe to retry)."""


class ConfigurationError(ValueError):
    """The configuration file (or a setting passed in code) is invalid; the message names the fix."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))
