"""Carrying out one batch: requests in arrival order per membership, memberships in parallel.

Requests that share an order key (one membership, one account) form a chain carried out one
after the other in arrival order; different chains run concurrently up to `concurrency`. Each
request is marked started in the ledger before it acts and its outcome recorded right after, so
a run killed in between leaves it `started` for the next run (which checks the service first).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .ledger import DONE, Entry, Ledger

log = logging.getLogger(__name__)

# (status, outcome row) for one request; `resumed` says an earlier run had started it.
Act = Callable[[Entry, bool], Awaitable[tuple[str, dict[str, Any]]]]


@dataclass
class BatchReport:
    batch_id: str
    run_id: str
    done: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # (id, status, row) this run
    skipped: list[str] = field(default_factory=list)  # finished by an earlier run: not touched

    def statuses(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for _, status, _ in self.done:
            out[status] = out.get(status, 0) + 1
        return out


def chains(entries: list[Entry]) -> list[list[Entry]]:
    """Entries grouped by order key, each group in arrival order, groups by first arrival."""
    groups: dict[str, list[Entry]] = {}
    for e in sorted(entries, key=lambda e: e.seq):
        groups.setdefault(e.order_key, []).append(e)
    return list(groups.values())


async def run_batch(ledger: Ledger, batch_id: str, run_id: str, act: Act, *, concurrency: int = 8,
                    failure_row: Callable[[Entry, BaseException], dict[str, Any]] | None = None) -> BatchReport:
    entries = ledger.claim(batch_id, run_id, os.getpid(), socket.gethostname())
    report = BatchReport(batch_id, run_id)
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(e: Entry) -> None:
        if e.state == DONE:
            report.skipped.append(e.request_id)
            return
        resumed = e.state == "started"  # an earlier run may have acted before it was killed
        if not await asyncio.to_thread(ledger.mark_started, e.request_id, run_id):
            report.skipped.append(e.request_id)
            return
        try:
            status, row = await act(e, resumed)
        except Exception as exc:  # an unexpected error ends this request, never the whole batch
            log.exception("request %s failed", e.request_id)
            if failure_row is None:
                raise
            status, row = "failed", failure_row(e, exc)
        if await asyncio.to_thread(ledger.record_outcome, e.request_id, status, row):
            report.done.append((e.request_id, status, row))
        else:
            report.skipped.append(e.request_id)

    async def chain(items: list[Entry]) -> None:
        for e in items:
            async with gate:
                await one(e)

    await asyncio.gather(*(chain(c) for c in chains(entries)))
    return report
