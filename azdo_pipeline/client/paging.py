"""Continuation-token paging with the next request in flight while the caller handles a page.

Token-paged lists are sequential chains (page n+1 needs page n's token), so they are usually the
critical path of a sync. Starting the next request as soon as its token is known, before the
current page is handed over, overlaps the round trip with the caller's work on the page.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from .errors import AzureDevOpsError

R = TypeVar("R")
P = TypeVar("P")  # a page: a list of dicts, or an Arrow table


async def token_pages(fetch: Callable[[str | None], Awaitable[R]],
                      split: Callable[[R], tuple[P, str | None]],
                      endpoint: str) -> AsyncIterator[P]:
    """Pages of a token-paged list; stops only when a reply carries no token.

    fetch(token) sends one request (None for the first page); split(reply) gives the page's items
    and the next token. A token seen twice is a server bug and an error, never a loop.
    """
    seen: set[str] = set()
    pending: asyncio.Future[R] | None = asyncio.ensure_future(fetch(None))
    try:
        while pending is not None:
            reply = await pending
            pending = None
            items, token = split(reply)
            if token:
                if token in seen:
                    raise AzureDevOpsError(f"{endpoint}: the server repeated a continuation token; stopping",
                                           endpoint=endpoint)
                seen.add(token)
                pending = asyncio.ensure_future(fetch(token))
            yield items
    finally:
        if pending is not None:  # the caller stopped early or failed: do not leave a request behind
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
