"""The incremental step: previous snapshot + the patches the audit events call for -> a new snapshot.

One phase per step of the data flow, each with its inputs and outputs in its signature:

    _index(previous tables)                 -> Prev (look-ups over the previous snapshot)
    _plan(touched, Prev)                    -> Plan (which reads the events call for)
    _read_changes(client, Plan, ...)        -> Reads (entitlements, projects, created groups, every-run reads)
    _patch_groups(client, Prev, Reads)      -> teams, groups (deleted / changed groups noted in Reads)
    _patch_memberships(client, Prev, ...)   -> memberships, the containers re-read and their answers
    _new_subjects(client, ...)              -> users, service accounts, groups met for the first time
    _patch_users(Prev, Reads, ...)          -> users (and memberships without users who left)
    _team_members(...)                      -> team_members, as the full sync builds it
    _commit(...)                            -> the snapshot, reconciled like a full sync's, published

Every read is one the full sync makes too (or a single-object read of the same route), batched
where the API allows it; sync/incremental.py decides whether this step may run at all.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import schemas
from ..client import AzureDevOpsClient
from ..client.arrow_pages import IDENTITY_REFS_PAGE
from ..client.errors import AuthenticationError, NotFoundError, PermissionDeniedError
from ..store import SnapshotDraft, Store
from . import reconcile, rows
from . import teams as team_logic
from .errors import FullSyncNeeded
from .events import Touched
from .full import SyncOptions, SyncReport, TableResult, _enabled

STATE_DIR = "_incremental"
GROUP_TYPES = ("vssgp", "aadgp")
T = TypeVar("T")


# ---- the previous snapshot --------------------------------------------------------------------------
@dataclass(frozen=True)
class Prev:
    """The previous snapshot's tables and the look-ups every phase uses."""

    snapshot: str
    tables: dict[str, pa.Table]
    user_by_principal: dict[str, str]  # lower-case principal name -> descriptor (of the names events gave)
    user_key_of: dict[str, str]  # user descriptor -> storage key
    user_by_key: dict[str, str]  # lower-case storage key -> user descriptor (resolves membership reads)
    group_by_key: dict[str, str]  # lower-case storage key -> group descriptor
    known_users: set[str]
    team_ids: frozenset[str]  # lower-case ids of teams (their backing groups' storage keys)


def in_background(work: Awaitable[T]) -> asyncio.Future[T]:
    """`work` running in the background. A run that falls back to a full sync before awaiting it
    leaves no "exception never retrieved" behind: its failure is the fallback's concern."""
    future = asyncio.ensure_future(work)
    future.add_done_callback(lambda f: f.cancelled() or f.exception())
    return future


def read_previous(store: Store, org: str, snapshot: str) -> dict[str, pa.Table]:
    """The raw tables of the snapshot an incremental run patches (a caller may start this early: the
    run reads them while the audit log is read)."""
    out = {}
    for name, schema in schemas.RAW_TABLES.items():
        path = store.snapshot_path(name, org, snapshot)
        if not path.exists():
            raise FullSyncNeeded(f"the previous snapshot {snapshot} lacks its {name} table")
        out[name] = pq.read_table(path).cast(schema)
    return out


def _index(snapshot: str, tables: dict[str, pa.Table], names: Iterable[str]) -> Prev:
    """`names`: the lower-case principal names the events gave (a look-up of every user's name would
    cost a 100,000-entry dictionary per run for a handful of names)."""
    users, groups = tables["users"], tables["groups"]
    wanted = pa.array(sorted(set(names)), pa.string())
    principal = users["principal_name"]
    # Rows whose lower-cased name is wanted; names that are not ASCII all go to `_lower_map` as well,
    # where Python's lower() decides, as everywhere else (Arrow's utf8_lower may differ from it there).
    hit = pc.or_(pc.is_in(pc.utf8_lower(principal), value_set=wanted), pc.invert(pc.string_is_ascii(principal)))
    named = users.filter(pc.fill_null(hit, False)) if len(wanted) else users.slice(0, 0)
    key_of = {str(d): str(k) for d, k in zip(users["descriptor"].to_pylist(), users["storage_key"].to_pylist(),
                                             strict=True) if k}
    return Prev(
        snapshot=snapshot, tables=tables,
        user_by_principal=_lower_map(named["principal_name"], named["descriptor"]),
        user_key_of=key_of, user_by_key={k.lower(): d for d, k in key_of.items()},
        group_by_key=_lower_map(groups["storage_key"], groups["descriptor"]),
        known_users=set(users["descriptor"].to_pylist()),
        team_ids=frozenset(str(k).lower() for k, t in zip(groups["storage_key"].to_pylist(),
                                                          groups["is_team"].to_pylist(), strict=True) if t and k))


# ---- what to read -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    removed_users: frozenset[str]  # descriptors of users a removal event named
    known_licensed: frozenset[str]  # descriptors of known users whose licence changed: one GET each...
    unknown_licensed: frozenset[str]  # principal names of users not in the snapshot (new users)
    read_all_entitlements: bool  # ...unless reading the whole list is cheaper (or a group rule changed)
    projects_to_read: frozenset[str]  # created or changed projects: row, teams, groups
    team_projects: frozenset[str]  # projects where a group was created (it may back a new team)
    created_by_query: tuple[tuple[str | None, str], ...]  # created groups looked up one query each...
    list_groups: bool  # ...or found in one listing of every group (then also the groups of projects_to_read,
    # which are otherwise listed per project scope)
    list_teams: bool  # every team in one listing, rather than each project's teams
    requests: int  # what the plan costs, about
    full_sync_requests: int  # what a full sync costs, about


def _pages(rows_: int, per_page: int) -> int:
    return max(1, -(-rows_ // per_page))


def _plan(touched: Touched, prev: Prev) -> Plan:
    """The cheapest reads for what the events touched. A project's groups are listed in its own scope
    (Graph pages 500 identities of the scope asked for, then filters: a page or two for a project) after
    looking up its scope descriptor; each created group costs a subject query unless one listing of every
    group is cheaper (which then also gives the projects' groups); teams likewise."""
    t = prev.tables
    known = frozenset(prev.user_by_principal[p] for p in touched.users_licensed if p in prev.user_by_principal)
    ent_pages = _pages(t["users"].num_rows, 100)
    group_pages = _pages(t["groups"].num_rows, 500)
    team_pages = _pages(len(prev.team_ids), 100)  # the full sync lists every team (groups' is_team flag)
    projects = frozenset((touched.projects_created | touched.projects_changed) - touched.projects_deleted)
    created = tuple(sorted((g for g in touched.groups_created if g[0] not in projects), key=str))
    list_groups = len(created) + 2 * len(projects) > group_pages
    team_projects = frozenset({p for p, _n in touched.groups_created if p} - projects - touched.projects_deleted)
    list_teams = len(projects | team_projects) > team_pages
    read_all = touched.all_entitlements or len(known) > ent_pages
    cost = (ent_pages if read_all else len(known)) + 2  # sign-ins (and new users) by date: a page or two
    cost += 2 * len(projects) + (group_pages if list_groups else len(created) + 2 * len(projects))
    cost += team_pages if list_teams else len(projects | team_projects)
    cost += _pages(len(touched.containers) + len(touched.groups_created), 500) + 4  # memberships, every-run reads
    # A full sync: entitlements, Graph users, groups, their memberships (500 groups a call), projects,
    # teams, service principals, discovery.
    full = ent_pages + _pages(t["users"].num_rows, 500) + 2 * group_pages + _pages(t["projects"].num_rows, 100)
    full += team_pages + 2
    return Plan(
        removed_users=frozenset(d for p in touched.users_removed if (d := prev.user_by_principal.get(p))),
        known_licensed=known,
        unknown_licensed=frozenset(p for p in touched.users_licensed if p not in prev.user_by_principal),
        read_all_entitlements=read_all, projects_to_read=projects, team_projects=team_projects,
        created_by_query=() if list_groups else created, list_groups=list_groups, list_teams=list_teams,
        requests=cost, full_sync_requests=full)


# ---- the reads ---------------------------------------------------------------------------------------
@dataclass
class Reads:
    """What this run's reads found."""

    entitlements: dict[str, dict[str, Any]] = field(default_factory=dict)  # descriptor -> entitlement fields
    removed_users: set[str] = field(default_factory=set)  # descriptors
    group_rows: dict[str, dict[str, Any]] = field(default_factory=dict)  # descriptor -> row (new/changed)
    deleted_groups: set[str] = field(default_factory=set)  # descriptors
    project_rows: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # id -> row, None: gone
    project_teams: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # project id -> teams JSON
    project_groups: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # project id -> groups JSON
    created_groups: list[dict[str, Any]] = field(default_factory=list)  # Graph subjects
    service_principals: list[dict[str, Any]] = field(default_factory=list)  # rows (re-read every run)
    organizations: list[dict[str, Any]] | None = None  # rows, when synced
    team_admins: dict[str, list[str]] | None = None  # the ACL read, when teams are synced


@dataclass
class EveryRun:
    """The reads every incremental run makes whatever the audit log says, running in the background:
    service principals, organizations, team administrators (one ACL read) and sign-ins (the
    entitlement list by `lastAccessed desc`, down to the previous run). They depend on nothing the
    audit log says, so a run starts them while it reads the audit log (`start_every_run`)."""

    service_principals: asyncio.Future[list[dict[str, Any]]]
    organizations: asyncio.Future[list[dict[str, Any]] | None]
    team_admins: asyncio.Future[dict[str, list[str]] | None]
    sign_ins: asyncio.Future[dict[str, dict[str, Any]]]  # descriptor -> entitlement fields

    def futures(self) -> list[asyncio.Future[Any]]:
        return [self.service_principals, self.organizations, self.team_admins, self.sign_ins]


async def stop(futures: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel `futures` and wait until each has ended: a full sync that follows on the same client must
    not have reads of the abandoned step still running beside it (request slots, member look-ups).
    Stopping a finished read changes nothing."""
    pending = list(futures)
    for future in pending:
        future.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


def start_every_run(client: AzureDevOpsClient, options: SyncOptions, sign_ins_since: datetime) -> EveryRun:
    return EveryRun(in_background(_service_principals(client)), in_background(_organizations(client, options)),
                    in_background(_team_admins(client, options)),
                    in_background(_entitlements_down_to(client, "lastAccessed", "last_accessed", sign_ins_since)))


async def _read_changes(client: AzureDevOpsClient, touched: Touched, prev: Prev, plan: Plan,
                        sign_ins_since: datetime, every: EveryRun) -> Reads:
    r = Reads(removed_users=set(plan.removed_users))
    one_by_one = [] if plan.read_all_entitlements else sorted(plan.known_licensed)
    # New users by creation date, when events named users the snapshot does not have.
    created = asyncio.ensure_future(_entitlements_down_to(client, "dateCreated", "date_created", sign_ins_since)
                                    if plan.unknown_licensed and not plan.read_all_entitlements else _no_entitlements())
    try:
        await asyncio.gather(
            *(_one_entitlement(client, prev, r, d) for d in one_by_one),
            _all_entitlements(client, r) if plan.read_all_entitlements else asyncio.sleep(0),
            every.sign_ins, created,
            *(_project(client, r, p, teams=not plan.list_teams, groups=not plan.list_groups)
              for p in sorted(plan.projects_to_read)),
            _all_groups(client, r, plan, touched) if plan.list_groups else asyncio.sleep(0),
            *(_created_group(client, r, n) for _p, n in plan.created_by_query),
            _all_teams(client, r, plan) if plan.list_teams else asyncio.sleep(0),
            *(_project_teams(client, r, p) for p in ([] if plan.list_teams else sorted(plan.team_projects))),
            every.service_principals, every.organizations, every.team_admins)
    except BaseException:
        created.cancel()  # the every-run reads are the caller's to stop
        raise
    # Every read gives the entitlement as it is now: which one fills a user's fields does not matter.
    r.entitlements = {**every.sign_ins.result(), **created.result(), **r.entitlements}
    r.service_principals = every.service_principals.result()
    r.organizations, r.team_admins = every.organizations.result(), every.team_admins.result()
    for pid in touched.projects_deleted:
        r.project_rows[pid] = None
    for pid in plan.projects_to_read:  # gone meanwhile: nothing of it is listed
        if r.project_rows.get(pid) is None:
            r.project_groups.pop(pid, None)
            r.project_teams.pop(pid, None)
    return r


def _ent_descriptor(ent: Mapping[str, Any]) -> str | None:
    d = (ent.get("user") or {}).get("descriptor")
    return str(d) if d else None


async def _one_entitlement(client: AzureDevOpsClient, prev: Prev, r: Reads, d: str) -> None:
    key = prev.user_key_of.get(d)
    ent = await client.entitlements.get_user_entitlement(key) if key else None
    if ent is None or _ent_descriptor(ent) != d:
        r.removed_users.add(d)
    else:
        r.entitlements[d] = rows.entitlement_fields(ent)


async def _no_entitlements() -> dict[str, dict[str, Any]]:
    return {}


async def _entitlements_down_to(client: AzureDevOpsClient, order: str, column: str,
                                since: datetime) -> dict[str, dict[str, Any]]:
    """The entitlement list ordered by `order` desc, only down to `since` (sign-ins, new users):
    descriptor -> entitlement fields."""
    out: dict[str, dict[str, Any]] = {}
    async for page in client.entitlements.iter_user_entitlements(order_by=f"{order} desc"):
        oldest: datetime | None = None
        for ent in page:
            fields = rows.entitlement_fields(ent)
            d = _ent_descriptor(ent)
            if d and (fields[column] is not None and fields[column] >= since):
                out[d] = fields
            oldest = fields[column]
        if not page or oldest is None or oldest < since:
            break
    return out


async def _all_entitlements(client: AzureDevOpsClient, r: Reads) -> None:
    async for page in client.entitlements.iter_user_entitlements():
        for ent in page:
            d = _ent_descriptor(ent)
            if d:
                r.entitlements[d] = rows.entitlement_fields(ent)


async def _project(client: AzureDevOpsClient, r: Reads, pid: str, *, teams: bool, groups: bool) -> None:
    p = await client.core.get_project(pid)
    r.project_rows[pid] = rows.project_row(p) if p else None
    if p is not None:
        await asyncio.gather(_project_teams(client, r, pid) if teams else asyncio.sleep(0),
                             _project_groups(client, r, pid) if groups else asyncio.sleep(0))


async def _project_groups(client: AzureDevOpsClient, r: Reads, pid: str) -> None:
    """A project's groups: its scope descriptor, then the groups listed in that scope. The project was
    just read, so a scope not found is not taken for a deletion: the run falls back to a full sync."""
    found: list[dict[str, Any]] = []
    seen: set[str] = set()
    try:
        scope = await client.graph.descriptor_of(pid)
        async for page in client.graph.iter_groups(scope_descriptor=scope):
            for g in page:
                d = g.get("descriptor")
                if d and d not in seen and rows.group_row(g, frozenset())["project_id"] == pid:
                    seen.add(d)
                    found.append(g)
    except NotFoundError as exc:
        raise FullSyncNeeded(f"the groups of project {pid} could not be listed: its scope was not found") from exc
    r.project_groups[pid] = found


async def _all_groups(client: AzureDevOpsClient, r: Reads, plan: Plan, touched: Touched) -> None:
    """One listing of every group: the groups of the projects re-read, and the created groups."""
    projects: dict[str, list[dict[str, Any]]] = {pid: [] for pid in plan.projects_to_read}
    created = {n.lower() for p, n in touched.groups_created if p not in plan.projects_to_read}
    seen: set[str] = set()
    async for page in client.graph.iter_groups():
        for g in page:
            d = g.get("descriptor")
            if not d or d in seen:  # the list may repeat a subject across pages while it changes
                continue
            seen.add(d)
            pid = rows.group_row(g, frozenset())["project_id"]
            if pid in projects:
                projects[pid].append(g)
            elif str(g.get("principalName") or "").lower() in created:
                r.created_groups.append(g)
    r.project_groups.update(projects)


async def _all_teams(client: AzureDevOpsClient, r: Reads, plan: Plan) -> None:
    wanted: dict[str, list[dict[str, Any]]] = {pid: [] for pid in plan.projects_to_read | plan.team_projects}
    async for page in client.core.iter_teams():
        for t in page:
            if t.get("projectId") in wanted:
                wanted[str(t["projectId"])].append(t)
    r.project_teams.update(wanted)


async def _project_teams(client: AzureDevOpsClient, r: Reads, pid: str) -> None:
    teams: list[dict[str, Any]] = []
    async for page in client.core.iter_project_teams(pid):
        teams.extend(page)
    r.project_teams[pid] = teams


async def _created_group(client: AzureDevOpsClient, r: Reads, principal: str) -> None:
    name = principal.split("\\", 1)[-1]
    for s in await client.graph.query_subjects(name, ["Group"]):
        if str(s.get("principalName") or "").lower() == principal.lower() and s.get("descriptor"):
            r.created_groups.append(s)
            return
    # Not there now: created and deleted again within the window (its delete event drops it).


async def _service_principals(client: AzureDevOpsClient) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async for page in client.graph.iter_service_principals():
        out.extend(rows.service_principal_row(sp) for sp in page)
    return out


async def _organizations(client: AzureDevOpsClient, options: SyncOptions) -> list[dict[str, Any]] | None:
    if not options.sync_organizations:
        return None
    return [rows.organization_row(a) for a in await client.accounts.list_organizations()]


async def _team_admins(client: AzureDevOpsClient, options: SyncOptions) -> dict[str, list[str]] | None:
    if not options.sync_teams:
        return None
    try:
        return await client.security.team_administrators()
    except (AuthenticationError, PermissionDeniedError, NotFoundError) as exc:
        raise FullSyncNeeded(f"team administrators cannot be read in one request (HTTP {exc.status}); the "
                             "incremental sync needs the 'Security (Manage)' scope when sync_teams is on") from exc


# ---- groups and teams --------------------------------------------------------------------------------
async def _patch_groups(client: AzureDevOpsClient, prev: Prev, touched: Touched, r: Reads,
                        options: SyncOptions) -> tuple[pa.Table, pa.Table, frozenset[str], dict[str, str]]:
    """(teams, groups, team ids, storage key -> group descriptor) after the run's group changes; the
    groups found deleted go into `r.deleted_groups`, new and changed ones into `r.group_rows`."""
    groups = prev.tables["groups"]
    gone_projects = {p for p, row in r.project_rows.items() if row is None}
    new_team_json = [t for ts in r.project_teams.values() for t in ts]
    teams = prev.tables["teams"]
    for pid in gone_projects | set(r.project_teams):
        teams = _drop(teams, "project_id", [pid])
    team_ids = prev.team_ids | {str(t["id"]).lower() for t in new_team_json}
    if options.sync_teams:
        teams = _add(teams, [rows.team_row(t) for t in new_team_json], schemas.TEAMS)
    # Team ids of groups of re-listed or removed projects come from the new team lists only.
    relisted = sorted(gone_projects | set(r.project_groups))
    stale_team_groups = set(_rows_where(groups, "project_id", relisted)["descriptor"].to_pylist()) if relisted \
        else set()
    for g in [*r.created_groups, *(g for found in r.project_groups.values() for g in found)]:
        r.group_rows[g["descriptor"]] = rows.group_row(g, team_ids)
    r.deleted_groups |= {d for key in touched.groups_deleted if (d := prev.group_by_key.get(key))}
    r.deleted_groups |= stale_team_groups - set(r.group_rows)
    # Renamed / re-described groups: one batched subject look-up for all of them.
    changed = sorted({d for key in touched.groups_changed
                      if (d := prev.group_by_key.get(key)) and d not in r.deleted_groups})
    found_subjects = await client.graph.lookup_subjects(changed) if changed else {}
    for d in changed:
        subject = found_subjects.get(d)
        if subject is None:
            r.deleted_groups.add(d)
        else:
            r.group_rows[d] = rows.group_row(subject, team_ids)
    new_groups = _drop(_drop(groups, "descriptor", r.deleted_groups), "descriptor", r.group_rows)
    new_groups = _add(new_groups, list(r.group_rows.values()), schemas.GROUPS)
    group_by_key = {**prev.group_by_key,
                    **{str(row["storage_key"]).lower(): d for d, row in r.group_rows.items() if row["storage_key"]}}
    return teams, new_groups, team_ids, group_by_key


# ---- memberships -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MembershipPatch:
    table: pa.Table
    containers: list[str]  # the groups re-read (for reconciliation: each answered once)
    answered: dict[str, int]
    new_edges: list[tuple[str, str]]  # (container, member) of the containers whose members changed
    storage_keys: dict[str, str]  # lower-case storage key -> descriptor, for resolving members
    member_keys: dict[str, str]  # the same, with the members' keys the reads resolved


async def _containers(client: AzureDevOpsClient, touched: Touched, groups: pa.Table, r: Reads,
                      group_by_key: Mapping[str, str]) -> list[str]:
    """The groups whose direct members are re-read: those events named, every Entra group (drift the
    audit log never reports), new and changed groups, and on project creation or deletion the
    organization-scope groups (projects link their groups into them without membership events)."""
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
            if d and str(d).split(".", 1)[0] in GROUP_TYPES:
                containers.add(str(d))
    descriptors, kinds, scopes = (groups[c].to_pylist() for c in ("descriptor", "kind", "scope"))
    containers |= {d for d, k in zip(descriptors, kinds, strict=True) if k == "aadgp"}
    containers |= set(r.group_rows)
    if touched.projects_created or touched.projects_deleted:
        containers |= {d for d, s in zip(descriptors, scopes, strict=True) if s == "organization"}
    return sorted(containers - r.deleted_groups)


def _known_containers(touched: Touched, prev: Prev) -> list[str]:
    """The groups `_containers` will name that are known before any read (those events named that the
    previous snapshot has, every Entra group, the organization-scope groups on project creation or
    deletion), less the groups known gone (deleted by an event, or of a deleted project: asking for
    those costs a read per group): their members are read while the other reads go on."""
    groups = prev.tables["groups"]
    out = {d for key in touched.containers if (d := prev.group_by_key.get(key))}
    descriptors, kinds, scopes, projects = (groups[c].to_pylist() for c in ("descriptor", "kind", "scope",
                                                                             "project_id"))
    out |= {d for d, k in zip(descriptors, kinds, strict=True) if k == "aadgp"}
    if touched.projects_created or touched.projects_deleted:
        out |= {d for d, s in zip(descriptors, scopes, strict=True) if s == "organization"}
    out -= {d for key in touched.groups_deleted if (d := prev.group_by_key.get(key))}
    out -= {d for d, p in zip(descriptors, projects, strict=True) if p and p in touched.projects_deleted}
    return sorted(out)


@dataclass(frozen=True)
class MemberReads:
    requested: frozenset[str]
    edges: dict[str, list[str]]  # container -> direct members
    answered: dict[str, int]  # container -> answers (reconciliation: exactly one each)
    member_keys: dict[str, str]  # lower-case storage key -> descriptor, as the client resolved them


NO_MEMBER_READS = MemberReads(frozenset(), {}, {}, {})


async def _read_members(client: AzureDevOpsClient, containers: list[str], storage_keys: dict[str, str], *,
                        max_in_flight: int | None = None) -> MemberReads:
    edges: dict[str, list[str]] = {}
    answered: dict[str, int] = {}
    async for container, members in client.memberships(containers, storage_keys=storage_keys,
                                                       max_in_flight=max_in_flight):
        edges[container] = list(members)
        answered[container] = answered.get(container, 0) + 1
    return MemberReads(frozenset(containers), edges, answered, dict(client.member_keys))


def start_member_reads(client: AzureDevOpsClient, touched: Touched, prev: Prev) -> asyncio.Future[MemberReads] | None:
    """The early read of `_known_containers`, on half the request slots (the reads of the changed
    objects go on beside it); None when those groups fill more than one round of those slots. Thousands
    of groups keep the service busy for several rounds anyway: the overlap measured no faster there
    (xl, 10,000 changes, alternating runs), so they are all read after the groups are patched."""
    containers = _known_containers(touched, prev)
    half = max(1, client.settings.max_concurrency // 2)
    if len(containers) > half * client.settings.membership_chunk_size:
        return None
    keys = {**prev.group_by_key, **prev.user_by_key}
    return in_background(_read_members(client, containers, keys, max_in_flight=half))


async def _patch_memberships(client: AzureDevOpsClient, prev: Prev, touched: Touched, r: Reads, groups: pa.Table,
                             group_by_key: Mapping[str, str], early: Awaitable[MemberReads] | None) -> MembershipPatch:
    """Memberships after re-reading the containers' direct members: those `early` read already
    (`start_member_reads`), then the rest (groups the reads found new or changed)."""
    containers = await _containers(client, touched, groups, r, group_by_key)
    first = await early if early is not None else NO_MEMBER_READS
    storage_keys = {**group_by_key, **prev.user_by_key, **first.member_keys}
    rest = [c for c in containers if c not in first.requested]
    late = await _read_members(client, rest, storage_keys) if rest else NO_MEMBER_READS
    edges_by_container = {c: ms for read in (first, late) for c, ms in read.edges.items() if c in containers}
    answered = {c: n for read in (first, late) for c, n in read.answered.items() if c in containers}
    memberships = prev.tables["memberships"]
    # Only containers whose members differ are patched: an unchanged table stays the previous file.
    old_edges: dict[str, set[str]] = {}
    before = _rows_where(memberships, "container_descriptor", edges_by_container)
    for c, m in zip(before["container_descriptor"].to_pylist(), before["member_descriptor"].to_pylist(), strict=True):
        old_edges.setdefault(c, set()).add(m)
    edges_by_container = {c: ms for c, ms in edges_by_container.items() if set(ms) != old_edges.get(c, set())}
    memberships = _drop_either(memberships, ("container_descriptor", set(edges_by_container) | r.deleted_groups),
                               ("member_descriptor", r.deleted_groups | r.removed_users))
    new_edges = [(c, m) for c, ms in edges_by_container.items() for m in ms]
    if new_edges:
        cs, ms = [c for c, _ in new_edges], [m for _, m in new_edges]
        memberships = pa.concat_tables([memberships, pa.table({
            "container_descriptor": pa.array(cs, pa.string()), "member_descriptor": pa.array(ms, pa.string()),
            "member_kind": pa.array([rows.member_kind(m) for m in ms], pa.string())}, schema=schemas.MEMBERSHIPS)])
    return MembershipPatch(memberships, containers, answered, new_edges, storage_keys,
                           late.member_keys if rest else first.member_keys)


# ---- subjects met for the first time (new users, build services, Entra groups) -----------------------
@dataclass
class NewSubjects:
    users: list[dict[str, Any]] = field(default_factory=list)  # Graph subjects
    service_accounts: list[dict[str, Any]] = field(default_factory=list)  # rows
    groups: list[dict[str, Any]] = field(default_factory=list)  # rows


async def _new_subjects(client: AzureDevOpsClient, prev: Prev, r: Reads, groups: pa.Table, sps: pa.Table,
                        new_edges: list[tuple[str, str]], team_ids: frozenset[str],
                        resolved: Mapping[str, str]) -> NewSubjects:
    known = (prev.known_users | set(prev.tables["service_accounts"]["descriptor"].to_pylist())
             | set(sps["descriptor"].to_pylist()) | set(groups["descriptor"].to_pylist()))
    fresh_members = {m for _c, m in new_edges if m not in known and m not in r.removed_users
                     and rows.member_kind(m) != "other"}
    fresh_users = {d for d in r.entitlements if d not in prev.known_users and d not in r.removed_users}
    lookup = sorted(fresh_members | fresh_users)
    subjects = await client.graph.lookup_subjects(lookup) if lookup else {}
    out = NewSubjects()
    member_keys = {d: k for k, d in resolved.items()}
    missing_ents = []
    for d in lookup:
        s = subjects.get(d)
        if s is None:
            continue
        kind = rows.subject_type(d)
        if kind in rows.USER_TYPES:
            if d not in r.entitlements and d in member_keys:
                missing_ents.append(d)
            out.users.append(dict(s))
        elif kind in rows.SERVICE_ACCOUNT_TYPES:
            out.service_accounts.append(rows.service_account_row(s))
        elif kind in GROUP_TYPES:
            out.groups.append(rows.group_row(s, team_ids))
    for d in missing_ents:
        ent = await client.entitlements.get_user_entitlement(member_keys[d])
        if ent is not None:
            r.entitlements[d] = rows.entitlement_fields(ent)
    return out


# ---- users -------------------------------------------------------------------------------------------
def _patch_users(prev: Prev, touched: Touched, plan: Plan, r: Reads, new_users: list[dict[str, Any]],
                 memberships: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(users, memberships): removed users dropped, changed entitlements patched, new users added."""
    users = _drop(prev.tables["users"], "descriptor", r.removed_users)
    patched = [d for d in r.entitlements if d in prev.known_users and d not in r.removed_users]
    empty_ent = dict.fromkeys(rows.entitlement_fields({}))
    if plan.read_all_entitlements:
        # Users a licence event named who are no longer in the list have left the organization.
        named = {prev.user_by_principal[p] for p in touched.users_licensed | touched.users_removed
                 if p in prev.user_by_principal}
        r.removed_users |= {d for d in named if d not in r.entitlements}
        users = _drop(users, "descriptor", r.removed_users)
        memberships = _drop(memberships, "member_descriptor", r.removed_users)
        patched = list(users["descriptor"].to_pylist())
    if patched:
        old = {row["descriptor"]: row for row in _rows_of(users, patched)}
        users = _drop(users, "descriptor", patched)
        users = _add(users, [{**old[d], **r.entitlements.get(d, empty_ent)} for d in patched], schemas.USERS)
    users = _add(users, [rows.user_row(s, r.entitlements.get(s["descriptor"])) for s in new_users], schemas.USERS)
    return users, memberships


# ---- the step ----------------------------------------------------------------------------------------
async def incremental_step(client: AzureDevOpsClient, store: Store, org: str, snapshot: str, options: SyncOptions,
                           prev_manifest: Mapping[str, Any], touched: Touched, *, sign_ins_since: datetime,
                           manifest: Mapping[str, Any],
                           previous: Awaitable[dict[str, pa.Table]] | None = None,
                           every_run: EveryRun | None = None) -> SyncReport:
    """Previous snapshot + the patches `touched` and the every-run re-reads call for → `snapshot`.
    `previous`: the previous snapshot's tables being read already (`read_previous`); `every_run`: the
    every-run reads started already (`start_every_run`, with the same `sign_ins_since`)."""
    started = time.monotonic()
    every = every_run if every_run is not None else start_every_run(client, options, sign_ins_since)
    background: list[asyncio.Future[Any]] = []  # reads the step starts early
    try:
        return await _step(client, store, org, snapshot, options, prev_manifest, touched, sign_ins_since,
                           manifest, previous, every, background, started)
    finally:
        await stop([*every.futures(), *background])


async def _step(client: AzureDevOpsClient, store: Store, org: str, snapshot: str, options: SyncOptions,
                prev_manifest: Mapping[str, Any], touched: Touched, sign_ins_since: datetime,
                manifest: Mapping[str, Any], previous: Awaitable[dict[str, pa.Table]] | None,
                every: EveryRun, background: list[asyncio.Future[Any]], started: float) -> SyncReport:
    report = SyncReport(org=org, snapshot=snapshot)

    def phase(name: str) -> None:  # when each phase ended (seconds from the start), as the full sync's streams
        report.stream_seconds[name] = round(time.monotonic() - started, 3)

    prev_snapshot = str(prev_manifest["snapshot"])
    tables_before = await (previous if previous is not None
                           else asyncio.to_thread(read_previous, store, org, prev_snapshot))
    prev = _index(prev_snapshot, tables_before, touched.users_licensed | touched.users_removed)
    plan = _plan(touched, prev)
    if plan.requests > plan.full_sync_requests * options.full_sync_above:
        raise FullSyncNeeded(f"the changes call for about {plan.requests} requests, more than a full sync's "
                             f"about {plan.full_sync_requests}")
    phase("previous snapshot")
    # The members of the groups known to need re-reading are read while the changed objects are.
    members = start_member_reads(client, touched, prev)
    if members is not None:
        background.append(members)
    r = await _read_changes(client, touched, prev, plan, sign_ins_since, every)
    phase("reads")
    # Team administrators' identities not known from the previous run are read while the rest goes on.
    identities = None
    if options.sync_teams and r.team_admins is not None:
        identities = in_background(_admin_identities(client, read_admin_identities(store, org, prev_snapshot),
                                                     r.team_admins))
        background.append(identities)
    teams, groups, team_ids, group_by_key = await _patch_groups(client, prev, touched, r, options)
    phase("groups")
    m = await _patch_memberships(client, prev, touched, r, groups, group_by_key, members)
    phase("memberships")
    sps = pa.Table.from_pylist(r.service_principals, schema=schemas.SERVICE_PRINCIPALS)
    fresh = await _new_subjects(client, prev, r, groups, sps, m.new_edges, team_ids, m.member_keys)
    groups = _add(groups, fresh.groups, schemas.GROUPS)
    users, memberships = _patch_users(prev, touched, plan, r, fresh.users, m.table)
    phase("subjects and users")
    svc = _add(prev.tables["service_accounts"], fresh.service_accounts, schemas.SERVICE_ACCOUNTS)
    projects = _add(_drop(prev.tables["projects"], "id", r.project_rows),
                    [row for row in r.project_rows.values() if row is not None], schemas.PROJECTS)
    tables: dict[str, pa.Table] = {
        "users": users, "service_accounts": svc, "service_principals": sps, "groups": groups,
        "memberships": memberships, "projects": projects, "teams": teams,
        "organizations": pa.Table.from_pylist(r.organizations, schema=schemas.ORGANIZATIONS)
        if r.organizations is not None else prev.tables["organizations"],
    }
    admin_identities: list[dict[str, Any]] | None = None
    with store.begin(org, snapshot) as draft, ThreadPoolExecutor(max_workers=2, thread_name_prefix="commit") as pool:
        # The tables that are final are written (two at a time) while team_members is still assembled.
        settling = {name: pool.submit(_settle, draft, name, table, prev.tables[name], prev_snapshot)
                    for name, table in tables.items()}
        tables["team_members"] = prev.tables["team_members"]
        if options.sync_teams:
            assert r.team_admins is not None and identities is not None
            tables["team_members"], admin_identities = await _team_members(
                prev.tables["team_members"], teams, groups, memberships, users, svc, sps, r.team_admins,
                m.storage_keys, m.member_keys, identities)
            phase("team members")
        settling["team_members"] = pool.submit(_settle, draft, "team_members", tables["team_members"],
                                               prev.tables["team_members"], prev_snapshot)
        settled = {name: await asyncio.wrap_future(f) for name, f in settling.items()}
        report.record(client.stats)
        facts = reconcile.Facts(groups_requested=m.containers, groups_answered=m.answered)
        await asyncio.to_thread(_commit, draft, org, settled, tables, report, options, facts, manifest)
    phase("commit")
    if admin_identities is not None:
        write_admin_identities(store, org, snapshot, admin_identities)
    report.duration_s = time.monotonic() - started
    return report


# ---- team members, and the commit --------------------------------------------------------------
async def _admin_identities(client: AzureDevOpsClient, known: list[dict[str, Any]],
                            acl: Mapping[str, list[str]]) -> dict[str, dict[str, Any]]:
    """Legacy descriptor (lower case) -> identity, for every administrator the ACL read names: the
    previous run's look-ups, and the others read now."""
    by_legacy = {str(i.get("descriptor") or "").lower(): i for i in known}
    missing = sorted({d for ds in acl.values() for d in ds if d.lower() not in by_legacy})
    if missing:
        for ident in await client.identities.read_many(descriptors=missing, decoder=IDENTITY_REFS_PAGE):
            by_legacy[str(ident.get("descriptor") or "").lower()] = ident
    return by_legacy


async def _team_members(prev_tm: pa.Table, teams: pa.Table, groups: pa.Table, memberships: pa.Table, users: pa.Table,
                        svc: pa.Table, sps: pa.Table, acl: dict[str, list[str]], storage_keys: dict[str, str],
                        resolved: dict[str, str], identities: Awaitable[dict[str, dict[str, Any]]],
                        ) -> tuple[pa.Table, list[dict[str, Any]]]:
    """team_members rebuilt from the patched groups and memberships and this run's ACL read, as the
    full sync builds it (sync/teams.py); administrators' identities come from `_admin_identities`."""
    team_ids = teams["id"].to_pylist()
    team_set = {t.lower() for t in team_ids}
    team_of_group = {d: k for d, k, is_team in zip(groups["descriptor"].to_pylist(), groups["storage_key"].to_pylist(),
                                                   groups["is_team"].to_pylist(), strict=True)
                     if is_team and k and k.lower() in team_set}
    by_legacy = await identities
    wanted = sorted({d for t in team_ids for d in acl.get(t.lower(), ())})
    found = [by_legacy[d.lower()] for d in wanted if d.lower() in by_legacy]
    admins, admin_info, _unresolved = team_logic.admins_by_team(acl, team_ids, found)

    def lookup(descriptors: pa.Array) -> tuple[pa.Array, pa.Array]:
        # Precedence as the full sync's: names from the subject tables (a later table wins, nulls
        # skipped), then administrators' identities where none; storage keys from the previous
        # team_members, overridden by this run's reads, then administrators' identities where none.
        names = pa.nulls(len(descriptors), pa.string())
        for tbl in (svc, users, sps, groups):
            names = pc.coalesce(names, pc.take(tbl["display_name"].cast(pa.string()),
                                               pc.index_in(descriptors, value_set=tbl["descriptor"])))
        prev_keys = prev_tm.select(["member_descriptor", "member_storage_key"])
        prev_keys = prev_keys.filter(pc.and_(pc.is_valid(prev_keys["member_storage_key"]),
                                             pc.not_equal(prev_keys["member_storage_key"], "")))
        prev_keys = prev_keys.take(np.arange(prev_keys.num_rows - 1, -1, -1))  # the last one wins
        keys = pc.take(prev_keys["member_storage_key"].cast(pa.string()),
                       pc.index_in(descriptors, value_set=prev_keys["member_descriptor"]))
        override = {d: k for k, d in storage_keys.items()} | {d: k for k, d in resolved.items()}
        if override or admin_info:
            position = {d: i for i, d in enumerate(descriptors.to_pylist())}
            key_list, name_list = keys.to_pylist(), names.to_pylist()
            for d, k in override.items():
                if d in position:
                    key_list[position[d]] = k
            for d, (admin_key, name) in admin_info.items():
                i = position.get(d)
                if i is None:
                    continue
                if admin_key and key_list[i] is None:
                    key_list[i] = admin_key
                if name and name_list[i] is None:
                    name_list[i] = name
            return pa.array(key_list, pa.string()), pa.array(name_list, pa.string())
        return keys, names

    edges = memberships.select(["container_descriptor", "member_descriptor"])
    return team_logic.team_members_table(team_of_group, edges, admins, lookup, schemas.TEAM_MEMBERS), found


def _same(a: pa.Table, b: pa.Table, name: str) -> bool:
    """The same rows (in any order): the table is then shared with the previous snapshot.

    Each row of `a` is matched to the row of `b` with its key (a hash look-up, not a sort of both
    tables); the rows are the same when that matching is one-to-one and every matched row is equal."""
    if a is b:
        return True
    if a.num_rows != b.num_rows:
        return False
    schema = schemas.RAW_TABLES[name]
    a, b = a.cast(schema), b.cast(schema)
    keys = schemas.key_columns(schema)

    def key(t: pa.Table) -> pa.ChunkedArray | pa.Array:
        parts = [pc.fill_null(t[k].cast(pa.string()), "\x00") for k in keys]  # null: not any value
        return parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, "\x1f")

    at = pc.index_in(key(a), value_set=key(b))
    if at.null_count or pc.count_distinct(at).as_py() != a.num_rows:
        return False  # a key of one table is not in the other, or two rows share one row of the other
    return bool(a.combine_chunks().equals(b.take(at).combine_chunks()))


Settled = tuple[bool, pa.Table, list[reconcile.RuleResult]]  # shared, columns read back, one-table rules


def _settle(draft: SnapshotDraft, name: str, table: pa.Table, prev: pa.Table, prev_snapshot: str) -> Settled:
    """One table into the draft: a hard link to the previous snapshot's file when its rows are the same
    (never rewritten), else written; then read back, as reconciliation checks the file itself.
    Returns (shared, the columns reconciliation reads, the rules that read this table alone)."""
    shared = _same(table, prev, name)
    if shared:
        draft.link(name, prev_snapshot)
    else:
        draft.write_table(name, table.cast(schemas.RAW_TABLES[name]))
    back = pq.read_table(draft.table_path(name), columns=reconcile.columns_needed(name),
                         read_dictionary=reconcile.DICTIONARY_COLUMNS.get(name))
    return shared, back, reconcile.table_rules(name, back)


def _commit(draft: SnapshotDraft, org: str, settled: Mapping[str, Settled],
            tables: Mapping[str, pa.Table], report: SyncReport, options: SyncOptions, facts: reconcile.Facts,
            manifest: Mapping[str, Any]) -> None:
    """Reconcile the settled snapshot as a full sync's is, and switch `latest` to it in one step; a
    snapshot that does not reconcile is rejected (kept under _rejected/) and the run falls back to a
    full sync."""
    report.tables_linked.extend(name for name in tables if settled[name][0])
    report.reconciliation = reconcile.reconcile({n: t for n, (_s, t, _r) in settled.items()}, facts,
                                                {n: rules for n, (_s, _t, rules) in settled.items()})
    failed = reconcile.failures(report.reconciliation)
    if failed:
        kept = draft.reject(f"{f.table}: {f.rule} failed for {f.count} {f.unit}"
                            + (f"; e.g. {', '.join(f.examples)}" if f.examples else "") for f in failed)
        raise FullSyncNeeded("the patched snapshot did not reconcile ("
                             + "; ".join(f"{f.table}: {f.rule}, {f.count} {f.unit}" for f in failed)
                             + f"); kept at {kept}")
    enabled = {n: _enabled(n, options) for n in tables}
    for name, table in tables.items():
        report.tables[name] = TableResult(table.num_rows, draft.store.latest_path(name, org), enabled[name])
    state = dict(manifest.get("incremental") or {})
    state["tables_linked"] = list(report.tables_linked)
    draft.commit({n: {"enabled": enabled[n]} for n in tables}, simulated=options.simulated,
                 extra={**dict(manifest), "requests": report.requests, "incremental": state})


# ---- table helpers -----------------------------------------------------------------------------------
def _drop(table: pa.Table, column: str, values: Iterable[str]) -> pa.Table:
    """The rows whose `column` is not in `values`; the same object when none is (so an untouched table
    is recognised as such at commit without comparing its rows)."""
    return _drop_either(table, (column, values))


def _drop_either(table: pa.Table, *conditions: tuple[str, Iterable[str]]) -> pa.Table:
    """The rows matching none of the (column, values) conditions, in one pass over the table (a million
    memberships: filtering once instead of once per condition); the same object when none matches."""
    mask = None
    for column, values in conditions:
        vals = list(values)
        if vals and table.num_rows:
            hit = pc.fill_null(pc.is_in(table[column], value_set=pa.array(vals, pa.string())), False)
            mask = hit if mask is None else pc.or_(mask, hit)
    if mask is None:
        return table
    return _without(table, pc.indices_nonzero(mask).to_numpy())


def _without(table: pa.Table, rows: np.ndarray) -> pa.Table:
    """`table` without the rows at the sorted positions `rows`; the same object when there are none.
    Zero-copy slices around the dropped runs rather than a filtered copy: a table is written grouped
    (memberships by container), so even thousands of dropped rows make few runs, and filtering a
    million memberships cost half a second."""
    if not len(rows):
        return table
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1  # where a run of consecutive dropped rows ends
    firsts = np.concatenate(([rows[0]], rows[breaks]))
    lasts = np.concatenate((rows[breaks - 1], [rows[-1]]))
    if len(firsts) > 1000:  # scattered: one filtered copy beats thousands of slices
        keep = np.ones(table.num_rows, dtype=bool)
        keep[rows] = False
        return table.filter(pa.array(keep))
    starts = np.concatenate(([0], lasts + 1))
    ends = np.concatenate((firsts, [table.num_rows]))
    parts = [table.slice(int(a), int(b - a)) for a, b in zip(starts, ends, strict=True) if b > a]
    return pa.concat_tables(parts) if parts else table.slice(0, 0)


def _add(table: pa.Table, new_rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    if not new_rows:
        return table
    return pa.concat_tables([table, pa.Table.from_pylist(new_rows, schema=schema)])


def _lower_map(keys: pa.ChunkedArray, values: pa.ChunkedArray) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in zip(keys.to_pylist(), values.to_pylist(), strict=True) if k and v}


def _rows_where(table: pa.Table, column: str, values: Iterable[str]) -> pa.Table:
    return table.filter(pc.fill_null(pc.is_in(table[column], value_set=pa.array(list(values), pa.string())), False))


def _rows_of(table: pa.Table, descriptors: Iterable[str]) -> list[dict[str, Any]]:
    wanted = list(descriptors)
    if not wanted:
        return []
    found: list[dict[str, Any]] = table.filter(pc.is_in(table["descriptor"],
                                                        value_set=pa.array(wanted, pa.string()))).to_pylist()
    return found


# ---- team administrators' identities, kept beside the snapshot ---------------------------------------
def _admins_path(store: Store, org: str, snapshot: str) -> Path:
    return store.data_dir / STATE_DIR / f"org={org}" / f"{snapshot}.admin_identities.json"


def write_admin_identities(store: Store, org: str, snapshot: str, identities: list[dict[str, Any]]) -> None:
    path = _admins_path(store, org, snapshot)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(identities, default=str))
    os.replace(tmp, path)
    # Only the newest few are ever read (the next run reads its previous snapshot's): drop the rest.
    for old in sorted(path.parent.glob("*.admin_identities.json"))[:-3]:
        old.unlink(missing_ok=True)


def read_admin_identities(store: Store, org: str, snapshot: str) -> list[dict[str, Any]]:
    path = _admins_path(store, org, snapshot)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return [d for d in data if isinstance(d, dict)] if isinstance(data, list) else []


