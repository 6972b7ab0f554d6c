"""token_pages: the next page is requested while the caller handles the current one."""

from __future__ import annotations

import asyncio

import pytest

from azdo_pipeline.client.errors import AzureDevOpsError
from azdo_pipeline.client.paging import token_pages


class Server:
    def __init__(self, pages: int, delay: float = 0.0, repeat: bool = False) -> None:
        self.pages, self.delay, self.repeat = pages, delay, repeat
        self.started: list[str | None] = []
        self.finished = 0
        self.cancelled = 0

    async def fetch(self, token: str | None) -> tuple[list[dict], str | None]:
        self.started.append(token)
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        self.finished += 1
        n = 0 if token is None else int(token)
        nxt = None if n + 1 >= self.pages else ("0" if self.repeat and n == 1 else str(n + 1))
        return [{"page": n}], nxt


def _split(reply: tuple[list[dict], str | None]) -> tuple[list[dict], str | None]:
    return reply


def test_next_request_is_in_flight_while_the_page_is_handled() -> None:
    server = Server(pages=4, delay=0.01)

    async def go() -> list[int]:
        got = []
        async for page in token_pages(server.fetch, _split, "GET x"):
            # as soon as the caller yields control, request n+1 is already running
            await asyncio.sleep(0)
            assert len(server.started) == min(page[0]["page"] + 2, server.pages)
            assert server.finished == page[0]["page"] + 1  # …and not finished: it overlaps our work
            await asyncio.sleep(0.02)
            got.append(page[0]["page"])
        return got

    assert asyncio.run(go()) == [0, 1, 2, 3]
    assert server.started == [None, "1", "2", "3"]


def test_stopping_early_cancels_the_request_in_flight() -> None:
    server = Server(pages=10, delay=0.05)

    async def go() -> None:
        pages = token_pages(server.fetch, _split, "GET x")
        async for _page in pages:
            await asyncio.sleep(0)  # one turn: request 2 is now on the wire (no wall-clock race with its answer)
            assert server.started == [None, "1"] and server.finished == 1
            break
        await pages.aclose()

    asyncio.run(go())
    assert server.started == [None, "1"] and server.cancelled == 1


def test_repeated_token_is_an_error_not_a_loop() -> None:
    server = Server(pages=10, repeat=True)

    async def go() -> None:
        async for _ in token_pages(server.fetch, _split, "GET x"):
            pass

    with pytest.raises(AzureDevOpsError, match="repeated a continuation token"):
        asyncio.run(go())
