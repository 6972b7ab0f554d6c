"""Incremental sync: the audit log since the last cursor → the objects it touched → targeted re-reads →
a new snapshot = previous snapshot + patches, equal to what a full sync would give at the same moment.

What the audit log never reports is re-read on every run, batched (docs/operations.md lists it):
Entra group memberships (`aadgp` groups, synced from Entra without audit events), team
administrators (one ACL read), sign-ins (the entitlement list ordered by `lastAccessed desc`, read
only down to the previous run's start), service principals and organizations (one page each).

The run falls back to a full sync, and says why (`SyncReport.fallback_reason`, the manifest), when
there is no usable previous snapshot, the cursor is older than the audit log's 90-day retention,
auditing is off, the credential may not read the audit log, the audit read fails in a way that could
hide events, an event cannot be mapped, or the patched snapshot does not validate.

The cursor (service time when the run started reading, plus the ids of the events it saw near that
time) lives in the manifest of the snapshot it belongs to: a failed or killed run writes no manifest,
so it never advances the cursor. Reading the audit log: https://learn.microsoft.com/rest/api/azure/devops/audit/audit-log/query
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .. import auditlog
from ..client import AzureDevOpsClient
from ..client.errors import AuthenticationError, AzureDevOpsError, PermissionDeniedError
from ..store import Store
from .errors import FullSyncNeeded
from .events import AuditEntry, MalformedEntry, parse_entry, touched_by
from .full import SyncOptions, SyncReport, full_sync
from .patch import in_background, incremental_step, read_previous, start_every_run, stop, write_admin_identities

log = logging.getLogger("azdo_pipeline.sync")

RETENTION = timedelta(days=90)  # https://learn.microsoft.com/azure/devops/organizations/audit/azure-devops-auditing
RETENTION_MARGIN = timedelta(hours=12)  # a cursor this close to the edge may already have lost events
OVERLAP = timedelta(minutes=15)  # re-read this much before the cursor: events recorded late still arrive
SIGN_IN_MARGIN = timedelta(minutes=5)  # read sign-ins this far before the previous run's start
AUDIT_BATCH = 1000


@dataclass
class AuditRead:
    entries: list[AuditEntry]
    service_time: datetime | None  # the newest entry's time: the service clock when the read started


async def read_audit(client: AzureDevOpsClient, since: datetime) -> AuditRead:
    """Every audit entry since `since`; FullSyncNeeded when the read is refused or could hide events."""
    entries: list[AuditEntry] = []
    try:
        async for page in client.audit.iter_entries(since, batch_size=AUDIT_BATCH):
            entries.extend(parse_entry(e) for e in page)
    except (AuthenticationError, PermissionDeniedError) as exc:
        text = f"{exc.type_key} {exc}".lower()
        if "disabled" in text or "not enabled" in text:
            raise FullSyncNeeded("auditing is off for the organization: turn on the 'Log Audit Events' policy "
                                 "(Organization settings > Policies)") from exc
        raise FullSyncNeeded(f"reading the audit log was refused (HTTP {exc.status}): give the credential the "
                             "'Audit Log (Read)' scope (vso.auditlog) and the 'View audit log' permission") from exc
    except MalformedEntry as exc:
        raise FullSyncNeeded(f"the audit log returned an entry that cannot be read ({exc})") from exc
    except AzureDevOpsError as exc:
        raise FullSyncNeeded(f"reading the audit log failed, so events could be missing ({exc})") from exc
    newest = max((e.timestamp for e in entries), default=None)
    return AuditRead(entries, newest)


def _parse_cursor(manifest: Mapping[str, Any] | None) -> tuple[datetime | None, set[str]]:
    state = (manifest or {}).get("incremental") or {}
    raw = state.get("audit_cursor")
    if not raw:
        return None, set()
    return datetime.fromisoformat(str(raw)), set(state.get("seen_event_ids") or [])


def carried_cursor(manifest: Mapping[str, Any] | None) -> dict[str, Any]:
    """Manifest keys for a snapshot derived from `manifest`'s (e.g. memberships re-read after
    provisioning): it keeps the audit cursor, so the next run stays incremental (it re-reads every
    event since, which re-reading newer state cannot make wrong), and claims no shared tables."""
    state = (manifest or {}).get("incremental") or {}
    if not state.get("audit_cursor"):
        return {}
    return {"incremental": {"mode": "derived", "audit_cursor": state["audit_cursor"],
                            "seen_event_ids": list(state.get("seen_event_ids") or []),
                            "options": state.get("options"), "previous_snapshot": (manifest or {}).get("snapshot")}}


def _options_of(options: SyncOptions) -> dict[str, bool]:
    return {"sync_teams": options.sync_teams, "sync_organizations": options.sync_organizations}


async def sync(client: AzureDevOpsClient, store: Store, org: str, snapshot: str, options: SyncOptions = SyncOptions(),
               *, incremental: bool = True, now: datetime | None = None) -> SyncReport:
    """One run for an organization whose `incremental_sync` setting is on: incremental when it can be
    proven equal to a full sync, else a full sync saying why. Either way the audit log is appended to
    the audit_log table and the new snapshot's manifest carries the cursor. `incremental=False` asks
    for a full sync (the daily one) that still keeps the audit log and the cursor."""
    started = time.monotonic()
    wall = now or datetime.now(UTC)
    prev = store.latest_manifest(org)
    prev_cursor, seen = _parse_cursor(prev)
    since = prev_cursor - OVERLAP if prev_cursor is not None and prev_cursor > wall - RETENTION + RETENTION_MARGIN \
        else wall - RETENTION + RETENTION_MARGIN
    audit: AuditRead | None = None
    audit_problem: str | None = None
    # The tables an incremental run patches are read while the audit log is (a thread; unused on fallback).
    # And the reads every incremental run makes whatever the events say (cancelled on fallback).
    early = bool(incremental and prev and prev_cursor is not None and prev.get("snapshot"))
    previous = in_background(asyncio.to_thread(read_previous, store, org, str(prev["snapshot"]))) \
        if early and prev else None
    every_run = start_every_run(client, options, prev_cursor - SIGN_IN_MARGIN) \
        if early and prev_cursor is not None else None
    try:
        audit = await read_audit(client, since)
    except FullSyncNeeded as exc:
        audit_problem = str(exc)
    appended = auditlog.append(store.data_dir, org, audit.entries, snapshot) if audit else None
    if appended is not None and appended.files and store.mirror is not None:
        store.mirror.push_files(store.data_dir, appended.files)
    cursor = max(filter(None, (audit.service_time if audit else None, prev_cursor)), default=None)
    if audit is not None and audit.service_time is None:
        cursor = prev_cursor  # nothing read: the cursor cannot move
    service_now = max(wall, audit.service_time) if audit and audit.service_time else wall

    reason: str | None = None
    if not incremental:
        reason = None
    elif audit_problem:
        reason = audit_problem
    elif prev is None:
        reason = "there is no previous snapshot"
    elif prev_cursor is None:
        reason = "the previous snapshot has no audit cursor (it was taken with incremental sync off)"
    elif prev_cursor < service_now - RETENTION + RETENTION_MARGIN:
        reason = (f"the audit cursor ({prev_cursor.isoformat()}) is older than the audit log's 90-day retention: "
                  "events may be lost")
    elif (prev.get("incremental") or {}).get("options") != _options_of(options):
        reason = "the sync_teams / sync_organizations settings changed since the previous snapshot"
    fresh = [e for e in (audit.entries if audit else []) if e.id not in seen]
    touched = touched_by(fresh)
    if reason is None and incremental and touched.full_resync:
        reason = "; ".join(touched.full_resync[:3])

    def state(mode: str, fallback: str | None) -> dict[str, Any]:
        keep_from = (cursor - OVERLAP) if cursor else None
        return {"incremental": {
            "mode": mode, "fallback_reason": fallback, "options": _options_of(options),
            "audit_cursor": cursor.isoformat() if cursor else None,
            "audit_problem": audit_problem,
            "seen_event_ids": sorted(e.id for e in (audit.entries if audit else [])
                                     if keep_from is not None and e.timestamp >= keep_from),
            "previous_snapshot": (prev or {}).get("snapshot"),
            "events_read": len(audit.entries) if audit else 0, "events_new": len(fresh),
            "audit_log_appended": appended.new if appended else 0, "touched": touched.summary()}}

    if incremental and reason is None:
        assert prev is not None and prev_cursor is not None
        try:
            report = await incremental_step(client, store, org, snapshot, options, prev, touched,
                                            sign_ins_since=prev_cursor - SIGN_IN_MARGIN,
                                            manifest=state("incremental", None), previous=previous,
                                            every_run=every_run)
            report.mode = "incremental"
            report.duration_s = time.monotonic() - started
            return report
        except FullSyncNeeded as exc:
            reason = str(exc)
        log.warning("incremental sync of %s falls back to a full sync: %s", org, reason)
    if previous is not None:
        previous.cancel()  # unused by the full sync (the thread finishes its read; nothing waits for it)
    if every_run is not None:
        await stop(every_run.futures())
    report = await full_sync(client, store, org, snapshot, options,
                             manifest_extra=state("full", reason if incremental else None))
    if report.admin_identities is not None:
        write_admin_identities(store, org, snapshot, report.admin_identities)
    report.mode = "full"
    report.fallback_reason = reason if incremental else None
    if audit_problem and not incremental:
        report.notes.append(f"audit log not kept this run: {audit_problem}")
    report.duration_s = time.monotonic() - started
    return report


__all__ = ["FullSyncNeeded", "carried_cursor", "incremental_step", "read_audit", "sync"]
