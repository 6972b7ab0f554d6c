"""Which HTTP calls one piece of work made, even when many run at once on one client.

    attach(client)                      # once per AzureDevOpsClient / MicrosoftGraphClient
    with record_calls() as calls:       # in the task doing the work
        await client.graph.has_membership(...)
    calls -> [RecordedCall("HEAD", "https://vssps.dev.azure.com/fabrikam/_apis/graph/memberships/a/b", 404)]

An httpx response hook appends to the list of the current context (asyncio tasks inherit it), so
requests of other tasks on the same client are not mixed in. Every attempt counts (a retried call
is recorded twice). URLs are kept without their query string.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

_CURRENT: contextvars.ContextVar[list[RecordedCall] | None] = contextvars.ContextVar("azdo_recorded_calls",
                                                                                     default=None)


@dataclass(frozen=True)
class RecordedCall:
    method: str
    url: str
    status: int


async def _on_response(response: httpx.Response) -> None:
    calls = _CURRENT.get()
    if calls is not None:
        u = response.request.url
        calls.append(RecordedCall(response.request.method, str(u.copy_with(query=None, fragment=None)),
                                  response.status_code))


def attach(client: Any) -> None:
    """Record this client's calls into `record_calls()` lists (idempotent)."""
    http: httpx.AsyncClient = client._r.http  # the client's own transport (same package)
    hooks = http.event_hooks
    if _on_response not in hooks["response"]:
        hooks["response"] = [*hooks["response"], _on_response]
        http.event_hooks = hooks


@contextmanager
def record_calls() -> Iterator[list[RecordedCall]]:
    calls: list[RecordedCall] = []
    token = _CURRENT.set(calls)
    try:
        yield calls
    finally:
        _CURRENT.reset(token)
