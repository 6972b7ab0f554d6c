"""The provisioning flow around the executor: settings, parsing inbox files, carrying out a batch,
publishing the outcome table.

    inbox file --parse_request--> ledger --form_batches--> batch --carry_out_batch--> outcome rows
                                                                                   --> provisioning_outcomes
                                                                                   --> re-read memberships

Free of Dagster: the sensor and the asset in assets/provisioning.py only call into here.
"""

from __future__ import annotations

import fcntl
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..config import OrganizationConfig, PipelineConfig
from ..remote import Mirror, local_root, parse_url
from ..store import Store
from .inbox import Inbox, RemoteInbox
from .intake import Accepted, RequestRejected
from .ledger import Entry, Ledger
from .refresh import refresh_memberships
from .requests import Request, RequestError
from .requests import parse_request as parse_valid_request
from .resolve import Directory
from .runner import run_batch

log = logging.getLogger(__name__)

OUTCOMES_TABLE = "provisioning_outcomes"
DEFAULT_MAX_BATCH = 1000


@dataclass(frozen=True)
class ProvisioningSettings:
    inbox_dir: Path  # the local folder: the inbox itself, or (inbox_url) its ledger and locks
    max_batch: int = DEFAULT_MAX_BATCH
    dry_run: bool = False
    confirm_wait: timedelta = timedelta(minutes=90)
    recheck_interval: timedelta = timedelta(minutes=5)
    inbox_url: str | None = None  # data_dir on Azure storage: the inbox folders are `{data_dir}/inbox` there

    def inbox(self) -> Inbox:
        if self.inbox_url is None:
            return Inbox(self.inbox_dir)
        loc = parse_url(self.inbox_url)
        return RemoteInbox(self.inbox_dir, Mirror(replace(loc, prefix="")), prefix=loc.prefix or "inbox")


def provisioning_settings(cfg: PipelineConfig, data_dir: str | Path | None = None) -> ProvisioningSettings:
    """The pipeline's `provisioning:` settings; the inbox is `{data_dir}/inbox` unless
    `provisioning.inbox_dir` names another folder. With data_dir on Azure storage the inbox folders
    are there too (`{URL}/inbox`) and the ledger in the local cache (docs/operations.md)."""
    p = cfg.provisioning
    base, url = local_root(str(data_dir) if data_dir else None, cfg.data_dir, cfg.data_url, cfg.cache_dir)
    return ProvisioningSettings(inbox_dir=p.inbox_dir or base / "inbox", max_batch=p.max_batch, dry_run=p.dry_run,
                                confirm_wait=timedelta(minutes=p.confirm_wait_minutes),
                                recheck_interval=timedelta(seconds=p.recheck_interval_seconds),
                                inbox_url=p.inbox_url or (f"{url.rstrip('/')}/inbox" if url and p.inbox_dir is None
                                                          else None))


# ---- parsing ------------------------------------------------------------------------------------
def parse_request(data: bytes, directory: Directory | None = None) -> Accepted:
    """An inbox file's bytes -> a valid request, or RequestRejected naming the problem and the fix.
    With `directory` (the latest synced tables) the order key names the principal by descriptor."""
    return _accepted(_parse(data), directory)


def _parse(data: bytes) -> Request:
    try:
        return parse_valid_request(data)
    except RequestError as exc:
        raise RequestRejected(str(exc)) from None


def _accepted(req: Request, directory: Directory | None) -> Accepted:
    return Accepted(request_id=req.id, org=req.organization, action=req.action.value,
                    order_key=order_key(req, directory), body=req.to_dict())


def order_key(req: Request, directory: Directory | None = None) -> str:
    """Requests with the same key are carried out in arrival order: every request of one principal
    in one organization. Keying on the principal (not the membership) also orders a grant after the
    `create_account` of the same person. The principal is named by its descriptor when the synced
    tables know it, so a request naming someone by e-mail and another by descriptor share a key;
    a principal the tables do not know yet is keyed as written (lower-cased)."""
    subject = directory.principal(req.principal) if directory is not None else None
    who = subject.descriptor if subject is not None else str(req.principal).lower()
    return f"{req.organization.lower()}|{who}"


class RequestParser:
    """`parse_request` with each organization's directory from the latest synced tables, re-read only
    when a new raw snapshot was published (the sensor parses every tick)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._directories: dict[str, tuple[str | None, Directory]] = {}
        self._published: dict[str, Any] | None = None  # read once per tick (see request_parser)

    def directory(self, org: str) -> Directory:
        if self._published is None:
            self._published = self.store.published()
        snapshot = self._published.get("orgs", {}).get(org, {}).get("raw")
        cached = self._directories.get(org)
        if cached is None or cached[0] != snapshot:
            cached = (snapshot, Directory.from_store(self.store, org) if snapshot else Directory())
            self._directories[org] = cached
        return cached[1]

    def __call__(self, data: bytes) -> Accepted:
        req = _parse(data)
        return _accepted(req, self.directory(req.organization))


_PARSERS: dict[Path, RequestParser] = {}


def request_parser(store: Store) -> RequestParser:
    """One parser per data folder for the life of the process, so its directories stay cached; each
    call (a sensor tick) makes it look at what is published again, once for all the files it parses."""
    parser = _PARSERS.setdefault(Path(store.data_dir), RequestParser(store))
    parser._published = None
    return parser


# ---- carrying out ---------------------------------------------------------------------------------
Act = Callable[[Entry, bool, bool], Awaitable[dict[str, Any]]]  # (entry, resumed, dry_run) -> outcome row


@dataclass
class BatchResult:
    rows: list[dict[str, Any]] = field(default_factory=list)  # outcome rows made by this run
    skipped: list[str] = field(default_factory=list)
    table_rows: int = 0
    path: Path | None = None
    rechecked: int = 0
    refreshed_groups: list[str] = field(default_factory=list)
    refreshed_snapshot: str | None = None  # the raw snapshot published with them
    notes: list[str] = field(default_factory=list)

    def statuses(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[str(r.get("status"))] = out.get(str(r.get("status")), 0) + 1
        return out


def _failure_row(entry: Entry, exc: BaseException) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return {"request_id": entry.request_id, "organization": entry.org, "action": entry.action,
            "principal": str(entry.body.get("principal")), "target": entry.body.get("target") and
            str(entry.body.get("target")), "status": "failed",
            "message": f"unexpected error ({type(exc).__name__}: {exc}); the request was not retried: send it "
                       "again with a new id once the cause is fixed",
            "api_calls": [], "api_call_count": 0, "dry_run": bool(entry.body.get("dry_run")),
            "requested_at": entry.received_at, "finished_at": now}


async def carry_out_batch(ledger: Ledger, batch_id: str, run_id: str, act: Act, *, dry_run: bool,
                          concurrency: int) -> BatchResult:
    async def one(entry: Entry, resumed: bool) -> tuple[str, dict[str, Any]]:
        row = await act(entry, resumed, dry_run)
        return str(row["status"]), row

    report = await run_batch(ledger, batch_id, run_id, one, concurrency=concurrency, failure_row=_failure_row)
    return BatchResult(rows=[row for _, _, row in report.done], skipped=report.skipped)


# ---- the outcome table -----------------------------------------------------------------------------
@contextmanager
def _publish_lock(inbox: Inbox, org: str) -> Iterator[None]:
    # Two runs of one organization publish one after the other, each from the ledger as it is then,
    # so the last published table holds every outcome recorded before it.
    path = inbox.root / f".publish-{org.lower()}.lock"
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def outcome_rows(ledger: Ledger, org: str) -> list[dict[str, Any]]:
    """One current outcome row per finished request of the organization, in arrival order."""
    return [e.outcome for e in ledger.entries(org) if e.outcome is not None]


def publish_outcomes(store: Store, inbox: Inbox, ledger: Ledger, org: str, schema: pa.Schema, *,
                     simulated: bool = False) -> tuple[Path, int]:
    """Commit the organization's outcome table as a new snapshot (kind `provisioning`) and make it
    the latest; the store keeps the last few and never edits one in place."""
    with _publish_lock(inbox, org):
        rows = outcome_rows(ledger, org)
        table = pa.Table.from_pylist([from_ledger(r, schema) for r in rows], schema=schema)
        snapshot = f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}"
        with store.begin(org, snapshot, kind="provisioning") as draft:
            draft.write_table(OUTCOMES_TABLE, table)
            draft.commit(simulated=simulated)
        return store.latest_path(OUTCOMES_TABLE, org), table.num_rows


# ---- one provisioning run ---------------------------------------------------------------------------
def to_ledger(row: dict[str, Any]) -> dict[str, Any]:
    """An outcome row as JSON for the ledger (times as ISO 8601)."""
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


def from_ledger(row: dict[str, Any], schema: pa.Schema) -> dict[str, Any]:
    """A ledger outcome back to an Arrow row of `schema` (ISO times parsed, unknown keys dropped)."""
    out: dict[str, Any] = {}
    for f in schema:
        v = row.get(f.name)
        if isinstance(v, str) and pa.types.is_timestamp(f.type):
            v = datetime.fromisoformat(v)
        out[f.name] = v
    return out


async def provision_org(org: OrganizationConfig, store: Store, settings: ProvisioningSettings, *,
                        connect: Callable[[], Awaitable[Any]],
                        connect_msgraph: Callable[[], Awaitable[Any]] | None,
                        batch_id: str, run_id: str, dry_run: bool) -> BatchResult:
    """What one provisioning_job run does for one organization: carry out the batch (if any),
    re-check pending Entra changes that are due, publish the outcome table."""
    from .executor import ProvisioningContext, execute
    from .outcomes import PROVISIONING_OUTCOMES, Status
    from .requests import validate_request

    inbox = settings.inbox().ensure()
    store.refresh(org.name)  # Azure storage: the synced tables may have been published by another worker
    ctx = ProvisioningContext(org=org, connect=connect, directory=Directory.from_store(store, org.name),
                              connect_msgraph=connect_msgraph, dry_run=dry_run)
    try:
        with Ledger(inbox.ledger_path) as ledger:

            async def act(entry: Entry, resumed: bool, forced_dry_run: bool) -> dict[str, Any]:
                request = validate_request(entry.body)
                if request.requested_at is None:
                    request = replace(request, requested_at=datetime.fromisoformat(entry.received_at))
                outcome = await execute(request, ctx)
                if resumed and outcome.status is Status.ALREADY_DONE:
                    outcome = replace(outcome, message=outcome.message + " (an interrupted run had started this "
                                      "request; the check before acting found it done, so nothing was repeated)")
                return to_ledger(outcome.to_row())

            result = BatchResult()
            if batch_id:
                result = await carry_out_batch(ledger, batch_id, run_id, act, dry_run=dry_run,
                                               concurrency=max(1, org.concurrency))
            await _refresh_changed_groups(result, ctx, store, org)
            result.rechecked = await recheck_pending(ledger, ctx, org.name, settings)
            path, rows = publish_outcomes(store, inbox, ledger, org.name, PROVISIONING_OUTCOMES,
                                          simulated=org.simulated)
            result.path, result.table_rows = path, rows
            return result
    finally:
        await ctx.aclose()


async def _refresh_changed_groups(result: BatchResult, ctx: Any, store: Store, org: OrganizationConfig) -> None:
    groups = sorted({str(r["target_descriptor"]) for r in result.rows
                     if r.get("status") == "succeeded" and r.get("action") in ("grant", "revoke")
                     and r.get("target_descriptor") and not r.get("dry_run")})
    if not groups:
        return
    try:
        done = await refresh_memberships(await ctx.client(), store, org.name, groups, simulated=org.simulated)
    except Exception as exc:  # the changes are made and recorded; only the early re-read failed
        log.warning("re-reading the memberships of %d changed group(s) failed", len(groups), exc_info=True)
        result.notes.append(f"the memberships of {len(groups)} changed group(s) could not be read again "
                            f"({type(exc).__name__}: {exc}); the next sync shows the changes")
        return
    if done is None:
        result.notes.append("no synced snapshot of the organization yet: its first sync shows the changes")
    else:
        result.refreshed_groups = list(done.groups)
        result.refreshed_snapshot = done.snapshot


async def recheck_pending(ledger: Ledger, ctx: Any, org: str, settings: ProvisioningSettings) -> int:
    """Settle pending Entra changes (one HEAD each): confirmed when Azure DevOps shows them,
    unconfirmed after `confirm_wait`. Returns how many were checked."""
    pending = ledger.entries(org, status="pending")
    if not pending:
        return 0
    from .confirm import check_pending

    for entry in pending:
        assert entry.outcome is not None
        before = outcome_from_row(entry.outcome)
        after = await check_pending(before, ctx, wait=settings.confirm_wait)
        if after is not before:
            ledger.update_outcome(entry.request_id, after.status.value, to_ledger(after.to_row()))
    return len(pending)


def outcome_from_row(row: dict[str, Any]) -> Any:
    """The Outcome a ledger row was made from (to settle a pending one)."""
    from .outcomes import ApiCall, Outcome, Status
    from .requests import Action

    def when(v: Any) -> datetime | None:
        return datetime.fromisoformat(v) if isinstance(v, str) else v

    calls = []
    for text in row.get("api_calls") or []:
        head, _, status = str(text).rpartition(" -> ")
        if not head:
            head, status = status, ""
        method, _, url = head.partition(" ")
        calls.append(ApiCall(method, url, int(status) if status.isdigit() else None))
    details = {k: str(row[k]) for k in ("entra_group_id", "entra_member_id") if row.get(k)}
    return Outcome(request_id=row["request_id"], organization=row["organization"], action=Action(row["action"]),
                   status=Status(row["status"]), message=row.get("message") or "", principal=row.get("principal") or "",
                   target=row.get("target"), principal_descriptor=row.get("principal_descriptor"),
                   target_descriptor=row.get("target_descriptor"), api_calls=tuple(calls),
                   dry_run=bool(row.get("dry_run")), requested_at=when(row.get("requested_at")),
                   started_at=when(row.get("started_at")), finished_at=when(row.get("finished_at")), details=details)
