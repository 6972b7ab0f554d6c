"""Errors of a sync itself (the client's are in azdo_pipeline.client.errors)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .reconcile import RuleResult


class SyncError(Exception):
    """A sync that cannot publish what it read."""


class ReconciliationError(SyncError):
    """The snapshot read does not add up (a count, a key, a reference or a required value); it was
    not published, so `latest` still holds the previous snapshot."""

    def __init__(self, org: str, snapshot: str, failures: Sequence[RuleResult],
                 results: Sequence[RuleResult] = (), kept_at: str = "") -> None:
        self.org = org
        self.snapshot = snapshot
        self.failures = list(failures)
        self.results = list(results) or list(failures)  # every rule's outcome, passes too
        lines = [_describe(r) for r in self.failures]
        where = f" It is kept for inspection (e.g. {kept_at})." if kept_at else ""
        super().__init__(
            f"the sync of {org} read data that does not add up, so snapshot {snapshot} was not published and "
            f"latest/ still holds the previous one.{where} " + "; ".join(lines) + ". This happens when the "
            "organization changes during the sync or the service answers inconsistently: run the sync again; "
            "if it keeps failing the same way, report it with these details.")


def _describe(r: RuleResult) -> str:
    unit = r.unit[:-1] if r.count == 1 else r.unit
    text = f"{r.table}: {r.rule} failed for {r.count} {unit}"
    if r.detail:
        text += f" ({r.detail})"
    if r.examples:
        text += f"; e.g. {', '.join(r.examples)}"
    return text


class FullSyncNeeded(Exception):
    """The incremental step cannot prove its result equal to a full sync's; the message says why."""
