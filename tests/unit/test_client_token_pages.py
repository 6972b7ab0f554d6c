"""token_pages: the next page is requested while the caller handles the current one."""

from __future__ import annotations

import asyncio

import pytest

from azdo_pipeline.client.errors import AzureDevOpsError
from azdo_pipeline.client.paging import token_pages


class Server:
    """Pages 0..pages-1; with `gated`, the answer to a token waits until the test opens its gate."""

    def __init__(self, pages: int, gated: bool = False, repeat: bool = False) -> None:
        self.pages, self.gated, self.repeat = pages, gated, repeat
        self.gates: dict[str | None, asyncio.Event] = {}
        self.started: list[str | None] = []
        self.finished = 0
        self.cancelled = 0

    def gate(self, token: str | None) -> asyncio.Event:
        return self.gates.setdefault(token, asyncio.Event())

    async def fetch(self, token: str | None) -> tuple[list[dict], str | None]:
        self.started.append(token)
        try:
            if self.gated:
                await self.gate(token).wait()
            else:
                await asyncio.sleep(0)
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
    server = Server(pages=4, gated=True)

    async def go() -> list[int]:
        got = []
        server.gate(None).set()
        async for page in token_pages(server.fetch, _split, "GET x"):
            n = page[0]["page"]
            # as soon as the caller yields control, request n+1 is already running
            await asyncio.sleep(0)
            assert len(server.started) == min(n + 2, server.pages)
            assert server.finished == n + 1  # …and not finished: it overlaps our work
            got.append(n)
            server.gate(str(n + 1)).set()  # its answer arrives
        return got

    assert asyncio.run(go()) == [0, 1, 2, 3]
    assert server.started == [None, "1", "2", "3"]


def test_stopping_early_cancels_the_request_in_flight() -> None:
    server = Server(pages=10, gated=True)

    async def go() -> None:
        server.gate(None).set()  # the first answer only: request 2 stays on the wire until cancelled
        pages = token_pages(server.fetch, _split, "GET x")
        async for _page in pages:
            await asyncio.sleep(0)  # one turn: request 2 is now on the wire
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
