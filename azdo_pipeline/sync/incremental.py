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
import json
import logging
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import auditlog, schemas
from ..client import AzureDevOpsClient
from ..client.arrow_pages import IDENTITY_REFS_PAGE
from ..client.errors import AuthenticationError, AzureDevOpsError, NotFoundError, PermissionDeniedError
from ..store import Store
from . import reconcile, rows
from . import teams as team_logic
from .events import AuditEntry, MalformedEntry, Touched, parse_entry, touched_by
from .full import SyncOptions, SyncReport, TableResult, _enabled, full_sync

log = logging.getLogger("azdo_pipeline.sync")

RETENTION = timedelta(days=90)  # https://learn.microsoft.com/azure/devops/organizations/audit/azure-devops-auditing
RETENTION_MARGIN = timedelta(hours=12)  # a cursor this close to the edge may already have lost events
OVERLAP = timedelta(minutes=15)  # re-read this much before the cursor: events recorded late still arrive
SIGN_IN_MARGIN = timedelta(minutes=5)  # read sign-ins this far before the previous run's start
AUDIT_BATCH = 1000
STATE_DIR = "_incremental"


class FullSyncNeeded(Exception):
    """The incremental step cannot prove its result equal to a full sync's; the message says why."""


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


def _admins_path(store: Store, org: str, snapshot: str) -> Path:
    return store.data_dir / STATE_DIR / f"org={org}" / f"{snapshot}.admin_identities.json"


def _write_admin_identities(store: Store, org: str, snapshot: str, identities: list[dict[str, Any]]) -> None:
    path = _admins_path(store, org, snapshot)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(identities, default=str))
    os.replace(tmp, path)
    # Only the newest few are ever read (the next run reads its previous snapshot's): drop the rest.
    for old in sorted(path.parent.glob("*.admin_identities.json"))[:-3]:
        old.unlink(missing_ok=True)


def _read_admin_identities(store: Store, org: str, snapshot: str) -> list[dict[str, Any]]:
    path = _admins_path(store, org, snapshot)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return [d for d in data if isinstance(d, dict)] if isinstance(data, list) else []


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
    try:
        audit = await read_audit(client, since)
    except FullSyncNeeded as exc:
        audit_problem = str(exc)
    appended = auditlog.append(store.data_dir, org, audit.entries, snapshot) if audit else None
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
                                            manifest=state("incremental", None))
            report.mode = "incremental"
            report.duration_s = time.monotonic() - started
            return report
        except FullSyncNeeded as exc:
            reason = str(exc)
        log.warning("incremental sync of %s falls back to a full sync: %s", org, reason)
    report = await full_sync(client, store, org, snapshot, options,
                             manifest_extra=state("full", reason if incremental else None))
    if report.admin_identities is not None:
        _write_admin_identities(store, org, snapshot, report.admin_identities)
    report.mode = "full"
    report.fallback_reason = reason if incremental else None
    if audit_problem and not incremental:
        report.notes.append(f"audit log not kept this run: {audit_problem}")
    report.duration_s = time.monotonic() - started
    return report


# ---- the incremental step --------------------------------------------------------------------------


def _read_prev(store: Store, org: str, snapshot: str) -> dict[str, pa.Table]:
    out = {}
    for name, schema in schemas.RAW_TABLES.items():
        path = store.snapshot_path(name, org, snapshot)
        if not path.exists():
            raise FullSyncNeeded(f"the previous snapshot {snapshot} lacks its {name} table")
        out[name] = pq.read_table(path).cast(schema)
    return out


def _drop(table: pa.Table, column: str, values: Iterable[str]) -> pa.Table:
    vals = list(values)
    if not vals or table.num_rows == 0:
        return table
    mask = pc.is_in(table[column], value_set=pa.array(vals, pa.string()))
    return table.filter(pc.invert(pc.fill_null(mask, False)))


def _add(table: pa.Table, new_rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    if not new_rows:
        return table
    return pa.concat_tables([table, pa.Table.from_pylist(new_rows, schema=schema)])


def _lower_map(keys: pa.ChunkedArray, values: pa.ChunkedArray) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in zip(keys.to_pylist(), values.to_pylist(), strict=True) if k and v}


def _ent_descriptor(ent: Mapping[str, Any]) -> str | None:
    d = (ent.get("user") or {}).get("descriptor")
    return str(d) if d else None


@dataclass
class _Work:
    """Reads of one incremental run and what they found."""

    entitlements: dict[str, dict[str, Any]] = field(default_factory=dict)  # descriptor -> entitlement fields
    removed_users: set[str] = field(default_factory=set)  # descriptors
    group_rows: dict[str, dict[str, Any]] = field(default_factory=dict)  # descriptor -> row (new/changed)
    deleted_groups: set[str] = field(default_factory=set)  # descriptors
    project_rows: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # id -> row, None: gone
    project_teams: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # project id -> teams JSON
    project_groups: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # project id -> groups JSON


async def incremental_step(client: AzureDevOpsClient, store: Store, org: str, snapshot: str, options: SyncOptions,
                           prev_manifest: Mapping[str, Any], touched: Touched, *, sign_ins_since: datetime,
                           manifest: Mapping[str, Any]) -> SyncReport:
    """Previous snapshot + the patches `touched` and the every-run re-reads call for → `snapshot`."""
    started = time.monotonic()
    prev_snapshot = str(prev_manifest["snapshot"])
    prev = await asyncio.to_thread(_read_prev, store, org, prev_snapshot)
    report = SyncReport(org=org, snapshot=snapshot)
    w = _Work()

    users, groups = prev["users"], prev["groups"]
    user_by_principal = _lower_map(users["principal_name"], users["descriptor"])
    user_key_of = {str(d): str(k) for d, k in zip(users["descriptor"].to_pylist(), users["storage_key"].to_pylist(),
                                                  strict=True) if k}  # descriptor -> storage key
    group_by_key = _lower_map(groups["storage_key"], groups["descriptor"])
    known_users = set(users["descriptor"].to_pylist())
    team_ids = {str(k).lower() for k, t in zip(groups["storage_key"].to_pylist(), groups["is_team"].to_pylist(),
                                                 strict=True) if t and k}

    # Users: removals need no read; licence changes of known users are one GET each unless reading the
    # whole list is cheaper; new users come from the list ordered by dateCreated desc.
    for principal in touched.users_removed:
        d = user_by_principal.get(principal)
        if d:
            w.removed_users.add(d)
    known_licensed = {user_by_principal[p] for p in touched.users_licensed if p in user_by_principal}
    unknown_licensed = {p for p in touched.users_licensed if p not in user_by_principal}
    list_pages = max(1, users.num_rows // 100)
    read_all_entitlements = touched.all_entitlements or len(known_licensed) > list_pages

    async def one_entitlement(d: str) -> None:
        key = user_key_of.get(d)
        ent = await client.entitlements.get_user_entitlement(key) if key else None
        if ent is None or _ent_descriptor(ent) != d:
            w.removed_users.add(d)
        else:
            w.entitlements[d] = rows.entitlement_fields(ent)

    async def entitlements_down_to(order: str, column: str) -> None:
        async for page in client.entitlements.iter_user_entitlements(order_by=f"{order} desc"):
            oldest: datetime | None = None
            for ent in page:
                fields = rows.entitlement_fields(ent)
                d = _ent_descriptor(ent)
                if d and (fields[column] is not None and fields[column] >= sign_ins_since):
                    w.entitlements[d] = fields
                oldest = fields[column]
            if not page or oldest is None or oldest < sign_ins_since:
                return

    async def all_entitlements() -> None:
        async for page in client.entitlements.iter_user_entitlements():
            for ent in page:
                d = _ent_descriptor(ent)
                if d:
                    w.entitlements[d] = rows.entitlement_fields(ent)

    async def project(pid: str) -> None:
        p = await client.core.get_project(pid)
        w.project_rows[pid] = rows.project_row(p) if p else None
        if p is None:
            return
        teams: list[dict[str, Any]] = []
        async for page in client.core.iter_project_teams(pid):
            teams.extend(page)
        w.project_teams[pid] = teams
        scope = await client.graph.descriptor_of(pid)
        found: list[dict[str, Any]] = []
        async for page in client.graph.iter_groups(scope_descriptor=scope):
            found.extend(page)
        w.project_groups[pid] = found

    created_groups: list[dict[str, Any]] = []

    async def created_group(project_id: str | None, principal: str) -> None:
        name = principal.split("\\", 1)[-1]
        for s in await client.graph.query_subjects(name, ["Group"]):
            if str(s.get("principalName") or "").lower() == principal.lower() and s.get("descriptor"):
                created_groups.append(s)
                return
        # Not there now: created and deleted again within the window (its delete event drops it).

    async def sps() -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        async for page in client.graph.iter_service_principals():
            out.extend(rows.service_principal_row(sp) for sp in page)
        return out

    async def organizations() -> list[dict[str, Any]] | None:
        if not options.sync_organizations:
            return None
        return [rows.organization_row(a) for a in await client.accounts.list_organizations()]

    async def admins() -> dict[str, list[str]] | None:
        if not options.sync_teams:
            return None
        try:
            return await client.security.team_administrators()
        except (AuthenticationError, PermissionDeniedError, NotFoundError) as exc:
            raise FullSyncNeeded(f"team administrators cannot be read in one request (HTTP {exc.status}); the "
                                 "incremental sync needs the 'Security (Manage)' scope when sync_teams is on") from exc

    # Projects: created or changed ones are re-read (row, teams, groups); a group created in a project
    # may back a new team, so that project's teams are re-read too.
    projects_to_read = (touched.projects_created | touched.projects_changed) - touched.projects_deleted
    team_projects = {p for p, _n in touched.groups_created if p} - projects_to_read - touched.projects_deleted
    sp_task = asyncio.ensure_future(sps())
    org_task = asyncio.ensure_future(organizations())
    acl_task = asyncio.ensure_future(admins())
    try:
        await asyncio.gather(
            *(one_entitlement(d) for d in ([] if read_all_entitlements else sorted(known_licensed))),
            all_entitlements() if read_all_entitlements else asyncio.sleep(0),
            entitlements_down_to("lastAccessed", "last_accessed"),
            entitlements_down_to("dateCreated", "date_created") if unknown_licensed and not read_all_entitlements
            else asyncio.sleep(0),
            *(project(p) for p in sorted(projects_to_read)),
            *(created_group(p, n) for p, n in sorted(touched.groups_created, key=str)
              if p not in projects_to_read),
            *(_project_teams(client, p, w) for p in sorted(team_projects)),
            sp_task, org_task, acl_task)
    except BaseException:
        for t in (sp_task, org_task, acl_task):
            t.cancel()
        raise
    sp_rows, org_rows, acl = sp_task.result(), org_task.result(), acl_task.result()
    for pid in touched.projects_deleted:
        w.project_rows[pid] = None

    # ---- groups and teams ---------------------------------------------------------------------
    gone_projects = {p for p, r in w.project_rows.items() if r is None}
    teams_tbl = prev["teams"]
    new_team_json: list[dict[str, Any]] = []
    for ts in w.project_teams.values():
        new_team_json.extend(ts)
    for pid in gone_projects | set(w.project_teams):
        teams_tbl = _drop(teams_tbl, "project_id", [pid])
    for team in new_team_json:
        team_ids.add(str(team["id"]).lower())
    if options.sync_teams:
        teams_tbl = _add(teams_tbl, [rows.team_row(t) for t in new_team_json], schemas.TEAMS)
    # Team ids of groups of re-listed or removed projects come from the new team lists only.
    groups_prev_projects = groups.filter(pc.fill_null(pc.is_in(groups["project_id"], value_set=pa.array(
        sorted(gone_projects | set(w.project_groups)), pa.string())), False)) if (gone_projects or w.project_groups) \
        else groups.slice(0, 0)
    stale_team_groups = set(groups_prev_projects["descriptor"].to_pylist())
    for g in created_groups:
        w.group_rows[g["descriptor"]] = rows.group_row(g, frozenset(team_ids))
    for found in w.project_groups.values():
        for g in found:
            w.group_rows[g["descriptor"]] = rows.group_row(g, frozenset(team_ids))
    for key in touched.groups_deleted:
        d = group_by_key.get(key)
        if d:
            w.deleted_groups.add(d)
    w.deleted_groups |= stale_team_groups - set(w.group_rows)
    for key in touched.groups_changed:
        d = group_by_key.get(key)
        if d and d not in w.deleted_groups:
            found_subject = (await client.graph.lookup_subjects([d])).get(d)
            if found_subject is None:
                w.deleted_groups.add(d)
            else:
                w.group_rows[d] = rows.group_row(found_subject, frozenset(team_ids))
    new_groups = _drop(_drop(groups, "descriptor", w.deleted_groups), "descriptor", w.group_rows)
    new_groups = _add(new_groups, list(w.group_rows.values()), schemas.GROUPS)
    group_by_key.update({str(r["storage_key"]).lower(): d for d, r in w.group_rows.items() if r["storage_key"]})

    # ---- memberships ---------------------------------------------------------------------------
    containers: set[str] = set()
    unknown_keys: list[str] = []
    for key in touched.containers:
        d = group_by_key.get(key)
        if d:
            containers.add(d)
        else:
            unknown_keys.append(key)
    if unknown_keys:
        for ident in await client.identities.read_many(identity_ids=unknown_keys):
            d = ident.get("subjectDescriptor")
            if d and str(d).split(".", 1)[0] in ("vssgp", "aadgp"):
                containers.add(str(d))
    kinds = new_groups["kind"].to_pylist()
    descriptors = new_groups["descriptor"].to_pylist()
    scopes = new_groups["scope"].to_pylist()
    containers |= {d for d, k in zip(descriptors, kinds, strict=True) if k == "aadgp"}  # Entra drift
    containers |= set(w.group_rows)
    if touched.projects_created or touched.projects_deleted:
        # Creating or deleting a project links its groups into organization groups (Project Collection
        # Valid Users, Project Collection Build Service Accounts) without membership events.
        containers |= {d for d, s in zip(descriptors, scopes, strict=True) if s == "organization"}
    containers -= w.deleted_groups
    storage_keys = {**group_by_key}
    storage_keys.update({k.lower(): d for d, k in user_key_of.items()})
    edges_by_container: dict[str, list[str]] = {}
    answered: dict[str, int] = {}
    async for container, members in client.memberships(sorted(containers), storage_keys=storage_keys):
        edges_by_container[container] = list(members)
        answered[container] = answered.get(container, 0) + 1
    memberships = prev["memberships"]
    # Only containers whose members differ are patched: an unchanged table stays the previous file.
    old_edges: dict[str, set[str]] = {}
    before = _rows_where(memberships, "container_descriptor", edges_by_container)
    for c, m in zip(before["container_descriptor"].to_pylist(), before["member_descriptor"].to_pylist(), strict=True):
        old_edges.setdefault(c, set()).add(m)
    edges_by_container = {c: ms for c, ms in edges_by_container.items() if set(ms) != old_edges.get(c, set())}
    memberships = _drop(memberships, "container_descriptor", set(edges_by_container) | w.deleted_groups)
    memberships = _drop(memberships, "member_descriptor", w.deleted_groups | w.removed_users)
    new_edges = [(c, m) for c, ms in edges_by_container.items() for m in ms]
    if new_edges:
        cs, ms = [c for c, _ in new_edges], [m for _, m in new_edges]
        memberships = pa.concat_tables([memberships, pa.table({
            "container_descriptor": pa.array(cs, pa.string()), "member_descriptor": pa.array(ms, pa.string()),
            "member_kind": pa.array([rows.member_kind(m) for m in ms], pa.string())}, schema=schemas.MEMBERSHIPS)])

    # ---- subjects met for the first time (new users, build services, Entra groups) ----------------
    sp_tbl = pa.Table.from_pylist(sp_rows, schema=schemas.SERVICE_PRINCIPALS)
    known_subjects = (known_users | set(prev["service_accounts"]["descriptor"].to_pylist())
                      | set(sp_tbl["descriptor"].to_pylist()) | set(new_groups["descriptor"].to_pylist()))
    fresh_members = {m for _c, m in new_edges if m not in known_subjects and m not in w.removed_users
                     and rows.member_kind(m) != "other"}
    fresh_users = {d for d in w.entitlements if d not in known_users and d not in w.removed_users}
    lookup = sorted(fresh_members | fresh_users)
    subjects = await client.graph.lookup_subjects(lookup) if lookup else {}
    new_user_rows: list[dict[str, Any]] = []
    svc_rows: list[dict[str, Any]] = []
    extra_groups: list[dict[str, Any]] = []
    member_keys = {d: k for k, d in client.member_keys.items()}
    missing_ents = []
    for d in lookup:
        s = subjects.get(d)
        if s is None:
            continue
        kind = rows.subject_type(d)
        if kind in rows.USER_TYPES:
            if d not in w.entitlements and d in member_keys:
                missing_ents.append(d)
            new_user_rows.append(dict(s))
        elif kind in rows.SERVICE_ACCOUNT_TYPES:
            svc_rows.append(rows.service_account_row(s))
        elif kind in ("vssgp", "aadgp"):
            extra_groups.append(rows.group_row(s, frozenset(team_ids)))
    for d in missing_ents:
        ent = await client.entitlements.get_user_entitlement(member_keys[d])
        if ent is not None:
            w.entitlements[d] = rows.entitlement_fields(ent)
    if extra_groups:
        new_groups = _add(new_groups, extra_groups, schemas.GROUPS)

    # ---- users ---------------------------------------------------------------------------------
    new_users = _drop(users, "descriptor", w.removed_users)
    patched = [d for d in w.entitlements if d in known_users and d not in w.removed_users]
    empty_ent = dict.fromkeys(rows.entitlement_fields({}))
    if read_all_entitlements:
        # Users a licence event named who are no longer in the list have left the organization.
        named = {user_by_principal[p] for p in touched.users_licensed | touched.users_removed if p in user_by_principal}
        w.removed_users |= {d for d in named if d not in w.entitlements}
        new_users = _drop(new_users, "descriptor", w.removed_users)
        memberships = _drop(memberships, "member_descriptor", w.removed_users)
        patched = list(new_users["descriptor"].to_pylist())
    if patched:
        old = {r["descriptor"]: r for r in _rows_of(new_users, patched)}
        new_users = _drop(new_users, "descriptor", patched)
        new_users = _add(new_users, [{**old[d], **w.entitlements.get(d, empty_ent)} for d in patched],
                         schemas.USERS)
    new_users = _add(new_users, [rows.user_row(s, w.entitlements.get(s["descriptor"])) for s in new_user_rows],
                     schemas.USERS)

    svc = _add(prev["service_accounts"], svc_rows, schemas.SERVICE_ACCOUNTS)

    # ---- projects ------------------------------------------------------------------------------
    projects = _drop(prev["projects"], "id", w.project_rows)
    projects = _add(projects, [r for r in w.project_rows.values() if r is not None], schemas.PROJECTS)

    # ---- team members --------------------------------------------------------------------------
    team_members = prev["team_members"]
    admin_identities: list[dict[str, Any]] | None = None
    if options.sync_teams:
        assert acl is not None
        team_members, admin_identities = await _team_members(
            client, store, org, prev_snapshot, prev["team_members"], teams_tbl, new_groups, memberships,
            new_users, svc, sp_tbl, acl, storage_keys)

    tables: dict[str, pa.Table] = {
        "users": new_users, "service_accounts": svc, "service_principals": sp_tbl, "groups": new_groups,
        "memberships": memberships, "projects": projects, "teams": teams_tbl, "team_members": team_members,
        "organizations": pa.Table.from_pylist(org_rows, schema=schemas.ORGANIZATIONS) if org_rows is not None
        else prev["organizations"],
    }
    stats = client.stats
    report.requests = stats.total
    report.requests_by_endpoint = dict(stats.by_endpoint)
    report.retries = stats.retries
    report.throttled = stats.throttled
    report.notes = list(stats.notes)
    facts = reconcile.Facts(groups_requested=sorted(containers), groups_answered=answered)
    await asyncio.to_thread(_commit, store, org, snapshot, prev_snapshot, prev, tables, report, options, facts,
                            manifest)
    if admin_identities is not None:
        _write_admin_identities(store, org, snapshot, admin_identities)
    report.duration_s = time.monotonic() - started
    return report


async def _project_teams(client: AzureDevOpsClient, pid: str, w: _Work) -> None:
    teams: list[dict[str, Any]] = []
    async for page in client.core.iter_project_teams(pid):
        teams.extend(page)
    w.project_teams[pid] = teams


def _rows_where(table: pa.Table, column: str, values: Iterable[str]) -> pa.Table:
    return table.filter(pc.fill_null(pc.is_in(table[column], value_set=pa.array(list(values), pa.string())), False))


def _rows_of(table: pa.Table, descriptors: Iterable[str]) -> list[dict[str, Any]]:
    wanted = list(descriptors)
    if not wanted:
        return []
    found: list[dict[str, Any]] = table.filter(pc.is_in(table["descriptor"],
                                                        value_set=pa.array(wanted, pa.string()))).to_pylist()
    return found


async def _team_members(client: AzureDevOpsClient, store: Store, org: str, prev_snapshot: str, prev_tm: pa.Table,
                        teams: pa.Table, groups: pa.Table, memberships: pa.Table, users: pa.Table,
                        svc: pa.Table, sps: pa.Table, acl: dict[str, list[str]],
                        storage_keys: dict[str, str]) -> tuple[pa.Table, list[dict[str, Any]]]:
    """team_members rebuilt from the patched groups and memberships and this run's ACL read, as the
    full sync builds it (sync/teams.py); administrators' identities come from the previous run's
    look-ups, only new ones are read."""
    team_ids = teams["id"].to_pylist()
    team_set = {t.lower() for t in team_ids}
    team_of_group = {d: k for d, k, is_team in zip(groups["descriptor"].to_pylist(), groups["storage_key"].to_pylist(),
                                                   groups["is_team"].to_pylist(), strict=True)
                     if is_team and k and k.lower() in team_set}
    team_edges_tbl = memberships.filter(pc.is_in(memberships["container_descriptor"],
                                                 value_set=pa.array(list(team_of_group), pa.string())))
    team_edges: dict[str, list[str]] = {}
    for c, m in zip(team_edges_tbl["container_descriptor"].to_pylist(),
                    team_edges_tbl["member_descriptor"].to_pylist(), strict=True):
        team_edges.setdefault(c, []).append(m)
    known = _read_admin_identities(store, org, prev_snapshot)
    by_legacy = {str(i.get("descriptor") or "").lower(): i for i in known}
    wanted = sorted({d for t in team_ids for d in acl.get(t.lower(), ())})
    missing = [d for d in wanted if d.lower() not in by_legacy]
    if missing:
        for ident in await client.identities.read_many(descriptors=missing, decoder=IDENTITY_REFS_PAGE):
            by_legacy[str(ident.get("descriptor") or "").lower()] = ident
    found = [by_legacy[d.lower()] for d in wanted if d.lower() in by_legacy]
    admins, admin_info, _unresolved = team_logic.admins_by_team(acl, team_ids, found)
    needed = {m for ms in team_edges.values() for m in ms} | {d for ds in admins.values() for d in ds}
    names: dict[str, str] = {}
    for tbl in (groups, sps, users, svc):
        sub = tbl.filter(pc.is_in(tbl["descriptor"], value_set=pa.array(sorted(needed), pa.string())))
        names.update((d, n) for d, n in zip(sub["descriptor"].to_pylist(), sub["display_name"].to_pylist(),
                                            strict=True) if n is not None)
    key_of: dict[str, str] = {}
    for d, k in zip(prev_tm["member_descriptor"].to_pylist(), prev_tm["member_storage_key"].to_pylist(), strict=True):
        if k:
            key_of[d] = k
    key_of.update({d: k for k, d in storage_keys.items()})
    key_of.update({d: k for k, d in client.member_keys.items()})
    for d, (k, name) in admin_info.items():
        if k:
            key_of.setdefault(d, k)
        if name and d not in names:
            names[d] = name
    out = team_logic.team_member_rows(team_of_group, team_edges, admins, key_of, names)
    return pa.Table.from_pylist(out, schema=schemas.TEAM_MEMBERS), found


def _same(a: pa.Table, b: pa.Table, name: str) -> bool:
    """The same rows (in any order): the table is then shared with the previous snapshot."""
    if a is b:
        return True
    if a.num_rows != b.num_rows:
        return False
    schema = schemas.RAW_TABLES[name]
    keys = [(k, "ascending") for k in schemas.key_columns(schema)]
    return bool(a.cast(schema).sort_by(keys).equals(b.cast(schema).sort_by(keys)))


def _commit(store: Store, org: str, snapshot: str, prev_snapshot: str, prev: Mapping[str, pa.Table],
            tables: Mapping[str, pa.Table], report: SyncReport, options: SyncOptions, facts: reconcile.Facts,
            manifest: Mapping[str, Any]) -> None:
    """Write the snapshot aside (unchanged tables are hard links to the previous snapshot's files, never
    rewritten), reconcile it as a full sync's is, and switch `latest` to it in one step; a snapshot
    that does not reconcile is rejected (kept under _rejected/) and the run falls back to a full sync."""
    with store.begin(org, snapshot) as draft:
        for name, table in tables.items():
            if _same(table, prev[name], name):
                draft.link(name, prev_snapshot)
                report.tables_linked.append(name)
            else:
                draft.write_table(name, table.cast(schemas.RAW_TABLES[name]))
        report.reconciliation = reconcile.reconcile(
            {n: pq.read_table(draft.table_path(n), columns=reconcile.columns_needed(n)) for n in tables}, facts)
        failed = reconcile.failures(report.reconciliation)
        if failed:
            kept = draft.reject(f"{f.table}: {f.rule} failed for {f.count} {f.unit}"
                                + (f"; e.g. {', '.join(f.examples)}" if f.examples else "") for f in failed)
            raise FullSyncNeeded("the patched snapshot did not reconcile ("
                                 + "; ".join(f"{f.table}: {f.rule}, {f.count} {f.unit}" for f in failed)
                                 + f"); kept at {kept}")
        enabled = {n: _enabled(n, options) for n in tables}
        for name, table in tables.items():
            report.tables[name] = TableResult(table.num_rows, store.latest_path(name, org), enabled[name])
        state = dict(manifest.get("incremental") or {})
        state["tables_linked"] = list(report.tables_linked)
        draft.commit({n: {"enabled": enabled[n]} for n in tables}, simulated=options.simulated,
                     extra={**dict(manifest), "requests": report.requests, "incremental": state})


__all__ = ["FullSyncNeeded", "carried_cursor", "incremental_step", "read_audit", "sync"]
