"""From inbox files to ledger entries and batches: what the provisioning sensor does each tick.

Pure of Dagster: the sensor passes in how to parse a request and reads back what to launch.
Every file in incoming/ leaves it in the same tick: into the ledger then processed/, or into
rejected/ with its reason beside it. A bad file costs one rejection and never stops the tick.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from .inbox import Inbox, IncomingFile
from .ledger import Ledger

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Accepted:
    """A valid request, reduced to what the ledger keys and orders it by."""

    request_id: str
    org: str
    action: str
    order_key: str  # requests with the same key (one membership, one account) run in arrival order
    body: dict[str, Any]  # the request as JSON, stored in the ledger and handed back to the executor


class RequestRejected(ValueError):
    """A file that is not a valid request; the message names the problem and the fix."""


Parse = Callable[[bytes], Accepted]


@dataclass
class IntakeReport:
    received: list[str] = field(default_factory=list)  # request ids, arrival order
    duplicates: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (file name, reason)

    @property
    def files(self) -> int:
        return len(self.received) + len(self.duplicates) + len(self.rejected)


def digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def ingest(inbox: Inbox, ledger: Ledger, parse: Parse, *, known_orgs: Collection[str] | None = None,
           limit: int = 5000) -> IntakeReport:
    """Take up to `limit` files from incoming/ (oldest first) into the ledger."""
    report = IntakeReport()
    orgs = {o.lower(): o for o in known_orgs} if known_orgs is not None else None
    for f in inbox.scan(limit=limit):
        try:
            _ingest_one(inbox, ledger, parse, f, orgs, report)
        except FileNotFoundError:
            continue  # moved by another reader meanwhile
        except OSError as exc:  # unreadable: report it and leave the rest of the tick alone
            log.warning("could not read %s: %s", f.name, exc)
    return report


def _ingest_one(inbox: Inbox, ledger: Ledger, parse: Parse, f: IncomingFile, orgs: dict[str, str] | None,
                report: IntakeReport) -> None:
    try:
        accepted = parse(inbox.read(f))
        if orgs is not None and accepted.org.lower() not in orgs:
            known = ", ".join(sorted(orgs.values())) or "none"
            raise RequestRejected(f"organization: {accepted.org!r} is not in the configuration (configured: "
                                  f"{known}); fix the request's organization or add it under `organizations:`")
    except (RequestRejected, ValueError) as exc:
        inbox.move_rejected(f, f"{f.name}: {exc}")
        report.rejected.append((f.name, str(exc)))
        return
    got = ledger.receive(request_id=accepted.request_id, org=orgs[accepted.org.lower()] if orgs else accepted.org,
                         action=accepted.action, order_key=accepted.order_key, body=accepted.body,
                         digest=digest(accepted.body), file_name=f.name)
    if got.kind == "new":
        inbox.move_processed(f)
        report.received.append(accepted.request_id)
    elif got.kind == "duplicate":
        if got.entry.file_name == f.name and not inbox.processed_has(f.name):
            # Taken into the ledger by a tick that stopped before moving the file: finish the move.
            inbox.move_processed(f)
            return
        inbox.move_processed(f, note=(
            f"{f.name}: duplicate of request {accepted.request_id!r} received at {got.entry.received_at} "
            f"(from {got.entry.file_name}); not carried out again. Its outcome is in provisioning_outcomes."))
        report.duplicates.append(accepted.request_id)
    else:
        reason = (f"id: request id {accepted.request_id!r} was already used at {got.entry.received_at} "
                  f"(file {got.entry.file_name}) for a different request; give each request its own id")
        inbox.move_rejected(f, f"{f.name}: {reason}")
        report.rejected.append((f.name, reason))
