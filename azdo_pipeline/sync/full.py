"""Full sync: stream every resource of one organization into one Parquet snapshot.

Independent streams (sync/streams.py) run concurrently under one asyncio.TaskGroup; a stream that
needs another's result awaits that stream's task, so the waits below are the data flow. The
client bounds the number of requests in flight. Each table streams page by page into a draft
snapshot (Store.begin), written aside. The draft is then reconciled (sync/reconcile.py): if every
rule passes it is committed and `latest` switches to it in one step; if not it is rejected (kept
under `_rejected/` for inspection, never published). A failed or inconsistent sync leaves the
previous snapshot untouched and nothing half-written.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from .. import schemas
from ..client.transport import RequestStats
from ..store import SnapshotDraft, Store, TableWriter
from . import reconcile, streams
from .errors import ReconciliationError
from .reconcile import RuleResult
from .source import SyncClient
from .streams import ENTITLEMENT_PART as _ENTITLEMENT_PART  # noqa: F401  (tests build pages with them)
from .streams import USER_PART as _USER_PART  # noqa: F401
from .streams import join_users  # noqa: F401

__all__ = ["ReconciliationError", "RuleResult", "SyncClient", "SyncOptions", "SyncReport", "TableResult",
           "full_sync"]

log = logging.getLogger("azdo_pipeline.sync")

# Request slots kept free of the fan-outs (membership chunks, team members) for the sequential page
# chains on the critical path: entitlements (read from both ends) and Graph users.
RESERVED_FOR_CHAINS = 3

T = TypeVar("T")


@dataclass(frozen=True)
class SyncOptions:
    sync_teams: bool = False
    sync_organizations: bool = False
    simulated: bool = False  # the organization is the simulator's: the manifest says so
    # An incremental run whose reads would cost more than this share of a full sync's requests does a
    # full sync instead (cheaper, and equal by construction).
    full_sync_above: float = 1.0


@dataclass
class TableResult:
    rows: int
    path: Path
    enabled: bool = True


@dataclass
class SyncReport:
    org: str
    snapshot: str
    tables: dict[str, TableResult] = field(default_factory=dict)
    requests: int = 0
    requests_by_endpoint: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    throttled: int = 0
    duration_s: float = 0.0
    skipped_subjects: dict[str, int] = field(default_factory=dict)
    stream_seconds: dict[str, float] = field(default_factory=dict)  # when each read finished (the critical path)
    notes: list[str] = field(default_factory=list)  # what the sync could not do the best way, and the fix
    # Every reconciliation rule's outcome (passed, count, examples), for asset checks; all passed if published.
    reconciliation: list[RuleResult] = field(default_factory=list)
    mode: str = "full"  # full | incremental (sync/incremental.py)
    fallback_reason: str | None = None  # why an incremental run did a full sync instead
    tables_linked: list[str] = field(default_factory=list)  # unchanged tables shared with the previous snapshot
    admin_identities: list[dict[str, Any]] | None = None  # team administrators' identities (for incremental runs)

    def record(self, stats: RequestStats) -> None:
        """What the client did: requests (in all and per route), retries, throttling, notes."""
        self.requests = stats.total
        self.requests_by_endpoint = dict(stats.by_endpoint)
        self.retries = stats.retries
        self.throttled = stats.throttled
        self.notes = list(stats.notes)


def _enabled(table: str, options: SyncOptions) -> bool:
    if table in ("teams", "team_members"):
        return options.sync_teams
    return table != "organizations" or options.sync_organizations


async def full_sync(client: SyncClient, store: Store, org: str, snapshot: str,
                    options: SyncOptions = SyncOptions(), *,
                    manifest_extra: dict[str, Any] | None = None) -> SyncReport:
    """Pull every raw table of `org` into `snapshot` and publish it as the latest snapshot.
    `manifest_extra`: more keys for the snapshot's manifest (the incremental sync's cursor)."""
    started = time.monotonic()
    report = SyncReport(org=org, snapshot=snapshot)
    # Tables are written aside (a draft); `latest` switches to all of them in one step at commit.
    with store.begin(org, snapshot) as draft:
        with ExitStack() as stack:
            writers: dict[str, TableWriter] = {
                name: stack.enter_context(draft.writer(name, schema))
                for name, schema in schemas.RAW_TABLES.items()
            }
            facts = await _run_streams(client, writers, options, report)
        # Every table is complete: reconcile the draft; only a snapshot that adds up is published.
        report.reconciliation = await asyncio.to_thread(_reconcile, draft, facts)
        failed = reconcile.failures(report.reconciliation)
        if failed:
            kept = draft.reject(f"{f.table}: {f.rule} failed for {f.count} {f.unit}"
                                + (f" ({f.detail})" if f.detail else "")
                                + (f"; e.g. {', '.join(f.examples)}" if f.examples else "") for f in failed)
            raise ReconciliationError(org, snapshot, failed, report.reconciliation, kept_at=str(kept))
        for name, w in writers.items():
            report.tables[name] = TableResult(w.rows, store.latest_path(name, org), _enabled(name, options))
        report.record(client.stats)
        report.duration_s = time.monotonic() - started
        draft.commit({n: {"enabled": t.enabled} for n, t in report.tables.items()},
                     simulated=options.simulated, extra={"requests": report.requests, **(manifest_extra or {})})
    return report


def _reconcile(draft: SnapshotDraft, facts: reconcile.Facts) -> list[RuleResult]:
    # Descriptors of the memberships read as dictionaries: a million edges name ~100k subjects, so
    # the checks look each one up once and never hold the million strings (xl: ~900 MiB less).
    tables: dict[str, pa.Table] = {
        name: pq.read_table(draft.table_path(name), columns=reconcile.columns_needed(name),
                            read_dictionary=reconcile.DICTIONARY_COLUMNS.get(name))
        for name in schemas.RAW_TABLES}
    return reconcile.reconcile(tables, facts)


async def _run_streams(client: SyncClient, w: dict[str, TableWriter], options: SyncOptions,
                       report: SyncReport) -> reconcile.Facts:
    """Start every stream; each waits for exactly the streams whose results it reads."""
    # Request slots for the fan-outs (membership chunks, team members), the rest for the page chains.
    fan_out = max(1, client.settings.max_concurrency - RESERVED_FOR_CHAINS)
    teams_on = options.sync_teams
    started = time.monotonic()

    async def timed(name: str, stream: Coroutine[Any, Any, T]) -> T:
        result = await stream
        report.stream_seconds[name] = round(time.monotonic() - started, 3)
        log.debug("sync stream %s done after %.2fs", name, report.stream_seconds[name])
        return result

    try:
        async with asyncio.TaskGroup() as tg:
            def start(name: str, stream: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
                return tg.create_task(timed(name, stream), name=f"sync {name}")

            ents = start("entitlements", streams.read_entitlements(client))
            teams = start("teams", streams.read_teams(client, w["teams"] if teams_on else None))
            groups = start("groups", streams.read_groups(client, w["groups"], teams, for_teams=teams_on))
            memberships = start("memberships", streams.read_memberships(client, w["memberships"], groups, ents,
                                                                        fan_out=fan_out))
            admins = tg.create_task(streams.read_team_admins(client) if teams_on else _none())
            sps = start("service_principals", streams.read_service_principals(client, w["service_principals"],
                                                                              for_teams=teams_on))
            start("projects", streams.read_projects(client, w["projects"]))
            start("organizations", streams.read_organizations(
                client, w["organizations"] if options.sync_organizations else None))
            users = tg.create_task(streams.read_graph_users(client, w["service_accounts"], for_teams=teams_on))
            users_written = start("users", streams.write_users(w["users"], users, ents))
            inputs = streams.TeamInputs(teams=teams, admins=admins, groups=groups, users=users,
                                        service_principals=sps, memberships=memberships)
            team_members = start("team_members", streams.read_team_members(
                client, w["team_members"], inputs, fan_out=fan_out) if teams_on else _none())
    except BaseExceptionGroup as group:
        error = _cause(group)
    else:
        report.skipped_subjects = users.result().skipped
        report.admin_identities = team_members.result()
        return _facts(ents.result(), groups.result(), memberships.result(), users.result(), sps.result(),
                      entitlements_without_user=users_written.result())
    raise error


def _facts(ents: streams.Entitlements, groups: streams.Groups, memberships: streams.Memberships,
           users: streams.GraphUsers, sps: streams.ServicePrincipals, *,
           entitlements_without_user: int) -> reconcile.Facts:
    return reconcile.Facts(
        entitlements_read=ents.read, entitlements_total=ents.total_count,
        entitlements_without_user=entitlements_without_user,
        groups_requested=groups.descriptors, groups_answered=memberships.answered,
        unresolved_member_ids=memberships.unresolved_member_ids,
        listed_without_descriptor=users.without_descriptor,
        graph_repeats={"users": users.repeats, "groups": groups.repeats, "service_principals": sps.repeats})


async def _none() -> None:
    return None


def _cause(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error that stopped the sync (the first one raised), not the group the TaskGroup wraps it in:
    callers and the Dagster UI see e.g. the AuthenticationError itself."""
    leaves: list[BaseException] = []

    def flatten(g: BaseExceptionGroup[BaseException]) -> None:
        for e in g.exceptions:
            if isinstance(e, BaseExceptionGroup):
                flatten(e)
            elif not any(e is seen for seen in leaves):
                leaves.append(e)

    flatten(group)
    for other in leaves[1:]:
        log.debug("sync: a concurrent stream failed too: %r", other)
    return leaves[0]
