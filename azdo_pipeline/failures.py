"""Known errors -> a `dg.Failure` whose description says the cause and what to do (the run page in
the Dagster UI shows it in place of a stack trace); the traceback still goes to the run's log.

https://docs.dagster.io/api/dagster/ops#dagster.Failure
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from .client.errors import (
    AuthenticationError,
    AzureDevOpsError,
    ConfigurationError,
    NotFoundError,
    PermissionDeniedError,
    ThrottledError,
    TransientError,
    UnexpectedResponseError,
)
from .sync.errors import ReconciliationError

# (class, what kind of failure, what to do); the first matching class wins.
_KNOWN: list[tuple[type[BaseException], str, str]] = [
    (ConfigurationError, "configuration",
     "Fix the setting the message names in the configuration file (docs/configuration.md), then run again."),
    (AuthenticationError, "authentication",
     "Renew the credential (a new PAT in the environment variable the configuration names, or "
     "`azdo-pipeline login` for OAuth) with the scopes in docs/configuration.md, then run again."),
    (PermissionDeniedError, "permission",
     "Give the identity the permission or scope the message names in Azure DevOps (or Entra), then run again."),
    (ThrottledError, "throttling",
     "Azure DevOps kept throttling the requests: run again later, or lower `concurrency` for this organization."),
    (UnexpectedResponseError, "validation",
     "The service answered something that is not what the route returns; nothing was published. Run again; "
     "if it persists, report the route and the problem named."),
    (NotFoundError, "not found",
     "Check the organization URL and that the organization still exists, then run again."),
    (TransientError, "service unavailable",
     "Azure DevOps did not answer after retries; nothing was published. Run again later."),
    (ReconciliationError, "reconciliation",
     "The data read does not add up; it was kept under _rejected/ for inspection and `latest` still holds "
     "the previous snapshot. Run the sync again; if it fails the same way, report it with these details."),
]


def failure_for(exc: BaseException) -> dg.Failure | None:
    """The Failure to raise for a known error, or None for an unknown one (let it propagate)."""
    for cls, kind, todo in _KNOWN:
        if isinstance(exc, cls):
            metadata: dict[str, dg.RawMetadataValue] = {"failure": kind, "error": type(exc).__name__}
            if isinstance(exc, AzureDevOpsError):
                metadata |= {k: v for k, v in (("http status", exc.status), ("endpoint", exc.endpoint),
                                               ("url", exc.url)) if v}
            if isinstance(exc, ThrottledError) and exc.retry_after:
                metadata["retry after (s)"] = exc.retry_after
            if isinstance(exc, ReconciliationError):
                metadata |= {"organization": exc.org, "snapshot": exc.snapshot,
                             "failed rules": dg.MetadataValue.json([r.as_dict() for r in exc.failures])}
            return dg.Failure(description=f"{kind} failure: {exc}\n\nWhat to do: {todo}", metadata=metadata)
    return None


@contextmanager
def plain_failures(log: dg.DagsterLogManager) -> Iterator[None]:
    """Turn a known error raised inside into a dg.Failure naming the cause and the fix; the
    traceback goes to the run's log."""
    try:
        yield
    except dg.Failure:
        raise
    except Exception as exc:
        failure = failure_for(exc)
        if failure is None:
            raise
        log.error("".join(traceback.format_exception(exc)))
        raise failure from None
