"""Full sync: stream every resource of one organization into one Parquet snapshot.

Independent streams run concurrently (the client bounds the number of requests in flight).
Each table streams page by page to its own temporary file; only when every table is complete
are they renamed into the snapshot and published as `latest`, so a failed sync leaves the
previous snapshot untouched and nothing half-written.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from .. import schemas
from ..client.arrow_pages import IDENTITY_REFS_PAGE
from ..client.errors import AuthenticationError, NotFoundError, PermissionDeniedError
from ..store import Store, TableWriter
from . import columns, rows
from . import teams as team_logic

log = logging.getLogger("azdo_pipeline.sync")

# Request slots kept free of the fan-outs (membership chunks, team members) for the sequential page
# chains on the critical path: entitlements (read from both ends) and Graph users.
RESERVED_FOR_CHAINS = 3


_ENTITLEMENT_COLUMNS = ("storage_key", "license", "licensing_source", "msdn_license_type", "license_display_name",
                        "status", "last_accessed", "date_created")
_USER_PART = pa.schema([f for f in schemas.USERS if f.name not in _ENTITLEMENT_COLUMNS])
_ENTITLEMENT_PART = pa.schema([pa.field("descriptor", pa.string(), nullable=False)]
                              + [schemas.USERS.field(c) for c in _ENTITLEMENT_COLUMNS])


def join_users(user_batches: list[pa.RecordBatch], ent_batches: list[pa.RecordBatch]) -> pa.Table:
    """Graph users left-joined with their entitlements (licence, status, last access), USERS schema."""
    users = pa.Table.from_batches(user_batches, schema=_USER_PART)
    ents = pa.Table.from_batches(ent_batches, schema=_ENTITLEMENT_PART)
    # A user appears once in the entitlement list; should a page repeat one, keep the first.
    ents = ents.group_by("descriptor", use_threads=False).aggregate(
        [(c, "first") for c in _ENTITLEMENT_COLUMNS]).rename_columns(["descriptor", *_ENTITLEMENT_COLUMNS])
    joined = users.join(ents, keys="descriptor", join_type="left outer", use_threads=False)
    return joined.select(schemas.USERS.names).cast(schemas.USERS)


def _note(client: Any, note: str) -> None:
    notes = getattr(getattr(client, "stats", None), "notes", None)
    if isinstance(notes, list) and note not in notes:
        notes.append(note)
    log.info("%s", note)


class SyncClient(Protocol):
    """What the sync needs from azdo_pipeline.client.AzureDevOpsClient."""

    graph: Any
    core: Any
    entitlements: Any
    accounts: Any
    identities: Any
    security: Any
    stats: Any

    def memberships(self, group_descriptors: list[str], *, storage_keys: dict[str, str] | None = None,
                    keys_ready: Any = None,
                    max_in_flight: int | None = None) -> AsyncIterator[tuple[str, list[str]]]: ...


@dataclass(frozen=True)
class SyncOptions:
    sync_teams: bool = False
    sync_organizations: bool = False
    simulated: bool = False  # the organization is the simulator's: the manifest says so


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


async def full_sync(client: SyncClient, store: Store, org: str, snapshot: str,
                    options: SyncOptions = SyncOptions()) -> SyncReport:
    """Pull every raw table of `org` into `snapshot` and publish it as the latest snapshot."""
    started = time.monotonic()
    report = SyncReport(org=org, snapshot=snapshot)
    with ExitStack() as stack:
        writers: dict[str, TableWriter] = {
            name: stack.enter_context(store.writer(name, schema, org, snapshot))
            for name, schema in schemas.RAW_TABLES.items()
        }
        await _sync_into(client, writers, options, report)
    # Every table is complete and renamed into the snapshot: publish them together.
    for name, w in writers.items():
        store.publish(name, org, snapshot)
        enabled = not ((name in ("teams", "team_members") and not options.sync_teams)
                       or (name == "organizations" and not options.sync_organizations))
        report.tables[name] = TableResult(w.rows, store.latest_path(name, org), enabled)
    stats = client.stats
    report.requests = int(getattr(stats, "total", 0))
    report.requests_by_endpoint = dict(getattr(stats, "by_endpoint", {}))
    report.retries = int(getattr(stats, "retries", 0))
    report.throttled = int(getattr(stats, "throttled", 0))
    report.notes = list(getattr(stats, "notes", None) or [])
    report.duration_s = time.monotonic() - started
    store.write_manifest(org, snapshot, {
        n: {"rows": t.rows, "enabled": t.enabled} for n, t in report.tables.items()} | {
        "_requests": report.requests}, simulated=options.simulated)
    return report


async def _sync_into(client: SyncClient, w: dict[str, TableWriter], options: SyncOptions,
                     report: SyncReport) -> None:
    # Users and entitlements stream independently (neither waits for the other: both are long
    # sequential page chains) into compact Arrow batches, joined on the descriptor at the end.
    ent_batches: list[pa.RecordBatch] = []
    user_batches: list[pa.RecordBatch] = []
    storage_keys: dict[str, str] = {}  # storage key -> descriptor (for batched membership reads)
    group_descriptors: list[str] = []
    team_ids: set[str] = set()
    teams: list[tuple[str, str]] = []  # (project id, team id)
    # For team_members without one request per team (sync_teams): team group -> team id, its
    # direct members, and display names of the subjects met.
    team_of_group: dict[str, str] = {}
    team_edges: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    entitlement_pages = 0  # a refusal after the first page is not a missing scope
    # Request slots for the fan-outs (membership chunks, team members), the rest for the page chains.
    fan_out = max(1, int(getattr(getattr(client, "settings", None), "max_concurrency", 8)) - RESERVED_FOR_CHAINS)

    async def read_entitlements() -> None:
        try:
            await _read_entitlements()
        except (AuthenticationError, PermissionDeniedError) as exc:
            # The brief's minimal read PAT (Graph + Project and Team) has no entitlement scope: the
            # users are still synced, without what only the entitlements know.
            if entitlement_pages:
                raise  # refused midway: not a missing scope
            _note(client, f"users: licence, licensing source, status, last access, date created and storage key "
                          f"are empty because reading user entitlements was refused (HTTP {exc.status}); give the "
                          "PAT the 'Member Entitlement Management (Read)' scope (vso.memberentitlementmanagement)")

    async def _read_entitlements() -> None:
        nonlocal entitlement_pages
        async for page in client.entitlements.iter_user_entitlement_tables():
            entitlement_pages += 1
            batch = columns.entitlement_batch(page, _ENTITLEMENT_PART)
            storage_keys.update(zip(batch.column("storage_key").to_pylist(), batch.column("descriptor").to_pylist(),
                                    strict=True))
            ent_batches.extend(batch.to_batches())

    async def read_teams() -> None:
        # Teams are always listed (cheap: 100 per page) because groups need the is_team flag.
        async for page in client.core.iter_teams():
            for t in page:
                team_ids.add(t["id"])
                teams.append((t.get("projectId"), t["id"]))
                if options.sync_teams:
                    w["teams"].write_rows([rows.team_row(t)])

    async def read_groups() -> None:
        await teams_done
        async for page in client.graph.iter_groups():
            group_rows = [rows.group_row(g, team_ids) for g in page]
            w["groups"].write_rows(group_rows)
            for g, row in zip(page, group_rows, strict=True):
                group_descriptors.append(g["descriptor"])
                if g.get("originId") and row["kind"] == "vssgp":
                    storage_keys[g["originId"]] = g["descriptor"]
                if options.sync_teams:
                    names[row["descriptor"]] = row["display_name"]
                    if row["is_team"]:
                        team_of_group[row["descriptor"]] = row["storage_key"]

    async def read_service_principals() -> None:
        async for page in client.graph.iter_service_principals():
            sp_rows = [rows.service_principal_row(sp) for sp in page]
            w["service_principals"].write_rows(sp_rows)
            if options.sync_teams:
                names.update((r["descriptor"], r["display_name"]) for r in sp_rows)

    async def read_projects() -> None:
        async for page in client.core.iter_projects():
            w["projects"].write_rows(rows.project_row(p) for p in page)

    async def read_organizations() -> None:
        if options.sync_organizations:
            w["organizations"].write_rows(rows.organization_row(a)
                                          for a in await client.accounts.list_organizations())

    async def read_users() -> None:
        skipped: dict[str, int] = {}
        async for page in client.graph.iter_user_tables():
            users, svcs, other = columns.split_graph_users(page, _USER_PART, schemas.SERVICE_ACCOUNTS)
            for t, n in other.items():
                skipped[t] = skipped.get(t, 0) + n
            user_batches.extend(users.to_batches())
            w["service_accounts"].write_table(svcs)
            if options.sync_teams:
                for part in (users, svcs):
                    names.update(zip(part.column("descriptor").to_pylist(), part.column("display_name").to_pylist(),
                                     strict=True))
        report.skipped_subjects = skipped
        await ents_done
        # The join and its Parquet write release the GIL: off the event loop, which the membership
        # read needs at this very moment (it resumes when the entitlement keys are complete).
        await asyncio.to_thread(lambda: w["users"].write_table(join_users(user_batches, ent_batches)))

    async def read_memberships() -> None:
        # Groups are read while the entitlement pages still arrive; member ids are resolved once the
        # storage-key map from the entitlements is complete (keys_ready), so no extra look-ups.
        await groups_done
        # Columnar: 1M edges at xl, so no dict per row.
        containers: list[str] = []
        members_col: list[str] = []

        async def flush() -> None:
            batch = {"container_descriptor": pa.array(containers, pa.string()),
                     "member_descriptor": pa.array(members_col, pa.string())}
            containers.clear()
            members_col.clear()
            # Arrow work and Parquet encoding release the GIL: off the event loop.
            await asyncio.to_thread(lambda: w["memberships"].write_table(pa.table(
                {**batch, "member_kind": columns.member_kinds(batch["member_descriptor"])},
                schema=schemas.MEMBERSHIPS)))

        async for container, members in client.memberships(group_descriptors, storage_keys=storage_keys,
                                                            keys_ready=ents_done, max_in_flight=fan_out):
            containers.extend([container] * len(members))
            members_col.extend(members)
            if container in team_of_group:
                team_edges[container] = list(members)
            if len(members_col) >= 50_000:
                await flush()
        await flush()

    async def read_team_admins() -> dict[str, list[str]] | None:
        """Every team's administrators in one ACL read; None when the credential may not read ACLs."""
        if not options.sync_teams:
            return None
        try:
            return await client.security.team_administrators()
        except (AuthenticationError, PermissionDeniedError, NotFoundError) as exc:
            why = (f"reading security ACLs was refused (HTTP {exc.status}); give the PAT the 'Security (Manage)' "
                   "scope (vso.security_manage) to read them in one request (and to see administrators who are "
                   "not team members)")
            _note(client, f"team members: read with one request per team because {why}")
            return None

    async def read_team_members() -> None:
        if not options.sync_teams:
            return
        await teams_done
        acl = await admins_done
        if acl is not None:
            # The administrators' identities are read while the memberships still arrive.
            ids = [t for _p, t in teams]
            wanted = sorted({d for t in ids for d in acl.get(t.lower(), ())})
            found = asyncio.ensure_future(client.identities.read_many(descriptors=wanted, decoder=IDENTITY_REFS_PAGE)
                                          if wanted else asyncio.sleep(0, result=[]))
            try:
                await memberships_done
            except BaseException:
                found.cancel()
                raise
            if getattr(client.stats, "membership_mode", "") == "batched":
                team_members_from_acl(acl, ids, await found)
                return
            found.cancel()
            _note(client, "team members: read with one request per team because memberships were read per "
                          "group (no storage keys)")
        # One request per team can fill every slot of the client; the entitlement and user page chains
        # are sequential and on the critical path, so the fan-out leaves them room.
        sem = asyncio.Semaphore(fan_out)

        async def one(project_id: str, team_id: str) -> None:
            async with sem:
                async for page in client.core.iter_team_members(project_id, team_id):
                    w["team_members"].write_rows(rows.team_member_row(team_id, m) for m in page)

        await asyncio.gather(*(one(p, t) for p, t in teams))

    def team_members_from_acl(acl: dict[str, list[str]], ids: list[str], found: list[dict]) -> None:
        admins, admin_info, unresolved = team_logic.admins_by_team(acl, ids, found)
        if unresolved:
            log.warning("team members: %d administrator descriptor(s) did not resolve (deleted meanwhile?)",
                        unresolved)
        key_of = {d: k for k, d in getattr(client, "member_keys", {}).items()}
        for d, (k, name) in admin_info.items():
            if k:
                key_of.setdefault(d, k)
            if name and d not in names:
                names[d] = name
        w["team_members"].write_rows(team_logic.team_member_rows(team_of_group, team_edges, admins, key_of, names))

    started = time.monotonic()

    async def timed(name: str, stream: Awaitable[None]) -> None:
        await stream
        report.stream_seconds[name] = round(time.monotonic() - started, 3)
        log.debug("sync stream %s done after %.2fs", name, report.stream_seconds[name])

    ents_done = asyncio.ensure_future(timed("entitlements", read_entitlements()))
    teams_done = asyncio.ensure_future(timed("teams", read_teams()))
    groups_done = asyncio.ensure_future(timed("groups", read_groups()))
    memberships_done = asyncio.ensure_future(timed("memberships", read_memberships()))
    admins_done = asyncio.ensure_future(read_team_admins())
    others = [timed("service_principals", read_service_principals()), timed("projects", read_projects()),
              timed("organizations", read_organizations()), timed("users", read_users()),
              timed("team_members", read_team_members())]
    tasks = [ents_done, teams_done, groups_done, memberships_done, admins_done,
             *(asyncio.ensure_future(c) for c in others)]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
