"""Audit log (auditservice): entries newest first, continuationToken + hasMore in the body."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from .errors import AzureDevOpsError, UnexpectedResponseError
from .scopes import AUDIT_READ
from .shapes import AUDIT_LOG, ShapeError
from .transport import Requester

AUDIT_VERSION = "7.1-preview.1"


def _iso(ts: datetime | str) -> str:
    if isinstance(ts, str):
        return ts
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class AuditService:
    def __init__(self, requester: Requester, base: str) -> None:
        self._r = requester
        self.base = base

    async def iter_entries(self, start_time: datetime | str, end_time: datetime | str | None = None,
                           batch_size: int = 200, skip_aggregation: bool = True) -> AsyncIterator[list[dict[str, Any]]]:
        """Decorated audit entries between start_time and end_time, page by page (newest first)."""
        token: str | None = None
        seen: set[str] = set()
        while True:
            params: dict[str, Any] = {"startTime": _iso(start_time), "batchSize": batch_size,
                                      "skipAggregation": str(skip_aggregation).lower(),
                                      "api-version": AUDIT_VERSION}
            if end_time is not None:
                params["endTime"] = _iso(end_time)
            if token:
                params["continuationToken"] = token
            reply = await self._r.request("GET", f"{self.base}/_apis/audit/auditlog",
                                          endpoint="GET audit/auditlog", scope=AUDIT_READ, params=params)
            data = reply.data
            wrapped = isinstance(data, dict) and "decoratedAuditLogEntries" not in data
            if wrapped and isinstance(data.get("value"), dict):
                data = data["value"]  # the spec example wraps the body in "value"
            try:  # a page that is not the audit log must never read as "no events"
                AUDIT_LOG.check(data)
            except ShapeError as exc:
                raise UnexpectedResponseError(
                    f"GET audit/auditlog: the answer is not what this route returns: {exc}",
                    endpoint="GET audit/auditlog") from None
            yield list(data.get("decoratedAuditLogEntries") or [])
            token = data.get("continuationToken") or None
            if not data.get("hasMore") or not token:
                return
            if token in seen:
                raise AzureDevOpsError("GET audit/auditlog: the server repeated a continuation token",
                                       endpoint="GET audit/auditlog")
            seen.add(token)
