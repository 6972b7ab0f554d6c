"""The streams of a full sync, one unit each: what it reads, what it writes, what it hands on.

Every unit takes the results of the streams it depends on as awaitables (tasks of the same
asyncio.TaskGroup) and returns a frozen result for the streams that depend on it, so the waits
are the data flow (sync/full.py starts them):

    entitlements ─────────────┬────────────────────────→ users (join)
    graph users ──────────────┼────────────────────────→ users (join), team members (names)
    teams → groups ───────────┴→ memberships ──────────→ team members
    service principals, team administrators ───────────→ team members
    projects, organizations (independent)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from .. import schemas
from ..client.arrow_pages import IDENTITY_REFS_PAGE
from ..client.errors import AuthenticationError, NotFoundError, PermissionDeniedError
from ..store import TableWriter
from . import columns, rows
from . import teams as team_logic
from .source import Json, SyncClient

log = logging.getLogger("azdo_pipeline.sync")

ENTITLEMENT_COLUMNS = ("storage_key", "license", "licensing_source", "msdn_license_type", "license_display_name",
                       "status", "last_accessed", "date_created")
USER_PART = pa.schema([f for f in schemas.USERS if f.name not in ENTITLEMENT_COLUMNS])
ENTITLEMENT_PART = pa.schema([pa.field("descriptor", pa.string(), nullable=False)]
                             + [schemas.USERS.field(c) for c in ENTITLEMENT_COLUMNS])
MEMBERSHIP_FLUSH_ROWS = 50_000  # edges buffered before a Parquet write (1M edges at xl: no dict per row)


def note(client: SyncClient, text: str) -> None:
    """Say what the sync could not do the best way (and the fix) in the report, once."""
    if text not in client.stats.notes:
        client.stats.notes.append(text)
    log.info("%s", text)


# ---- results handed from stream to stream --------------------------------------------------

@dataclass(frozen=True)
class Entitlements:
    batches: list[pa.RecordBatch]  # ENTITLEMENT_PART
    storage_keys: dict[str, str]  # storage key -> user descriptor (resolves batched membership reads)
    read: int = 0  # distinct entitlements the list gave
    total_count: int | None = None  # the list's totalCount (None: not given, or not read)


@dataclass(frozen=True)
class Teams:
    ids: frozenset[str]
    pairs: list[tuple[str, str]]  # (project id, team id)


@dataclass(frozen=True)
class Groups:
    descriptors: list[str]
    storage_keys: dict[str, str]  # Azure DevOps group originId (its storage key) -> descriptor
    names: dict[str, str | None]  # descriptor -> display name (kept for team members only)
    team_of_group: dict[str, str]  # team group descriptor -> team id (kept for team members only)
    repeats: int = 0  # groups the Graph list gave again (kept once)


@dataclass(frozen=True)
class GraphUsers:
    batches: list[pa.RecordBatch]  # USER_PART, people only
    names: dict[str, str | None]  # people's and service accounts' descriptor -> display name (team members only)
    skipped: dict[str, int]  # system identities by subject type
    repeats: int = 0  # subjects the Graph list gave again (kept once)
    without_descriptor: int = 0  # rows listed without a descriptor (they cannot be kept)


@dataclass(frozen=True)
class ServicePrincipals:
    names: dict[str, str | None]  # descriptor -> display name (team members only)
    repeats: int = 0  # service principals the Graph list gave again (kept once)


@dataclass(frozen=True)
class Memberships:
    team_edges: dict[str, list[str]] = field(default_factory=dict)  # team group -> its direct members
    batched: bool = False  # read through the identities API (member storage keys are known)
    answered: dict[str, int] = field(default_factory=dict)  # group -> times the read answered it
    unresolved_member_ids: int = 0  # member ids no identity read resolved


# ---- the streams ---------------------------------------------------------------------------

def _first_sight(page: list[Json], seen: set[str]) -> list[Json]:
    """The subjects of a Graph page not listed before: a Graph list may repeat a subject across
    pages while the organization changes (it scans identities, then filters); keep the first."""
    out = []
    for item in page:
        d = item.get("descriptor")
        if not isinstance(d, str) or d not in seen:
            out.append(item)
            if isinstance(d, str):
                seen.add(d)
    return out

async def read_entitlements(client: SyncClient) -> Entitlements:
    """User entitlements (licence, status, last access) and the storage key of each user."""
    batches: list[pa.RecordBatch] = []
    keys: dict[str, str] = {}
    pages = read = 0
    try:
        async for page in client.entitlements.iter_user_entitlement_tables():
            pages += 1
            read += page.num_rows
            batch = columns.entitlement_batch(page, ENTITLEMENT_PART)
            keys.update((k, d) for k, d in zip(batch.column("storage_key").to_pylist(),
                                               batch.column("descriptor").to_pylist(), strict=True) if k and d)
            batches.extend(batch.to_batches())
    except (AuthenticationError, PermissionDeniedError) as exc:
        if pages:
            raise  # refused midway: not a missing scope
        # The brief's minimal read PAT (Graph + Project and Team) has no entitlement scope: the
        # users are still synced, without what only the entitlements know.
        note(client, f"users: licence, licensing source, status, last access, date created and storage key are "
                     f"empty because reading user entitlements was refused (HTTP {exc.status}); give the PAT the "
                     "'Member Entitlement Management (Read)' scope (vso.memberentitlementmanagement)")
        return Entitlements(batches, keys)
    return Entitlements(batches, keys, read, client.entitlements.total_count)


async def read_teams(client: SyncClient, out: TableWriter | None) -> Teams:
    """Every team; always listed (cheap: 100 per page) because groups need the is_team flag.
    Written only when `out` is given (sync_teams)."""
    ids: set[str] = set()
    pairs: list[tuple[str, str]] = []
    async for page in client.core.iter_teams():
        for t in page:
            ids.add(t["id"])
            pairs.append((t.get("projectId") or "", t["id"]))
        if out is not None:
            out.write_rows(rows.team_row(t) for t in page)
    return Teams(frozenset(ids), pairs)


async def read_groups(client: SyncClient, out: TableWriter, teams: Awaitable[Teams], *, for_teams: bool) -> Groups:
    team_ids = (await teams).ids
    descriptors: list[str] = []
    keys: dict[str, str] = {}
    names: dict[str, str | None] = {}
    team_of_group: dict[str, str] = {}
    seen: set[str] = set()
    listed = 0
    async for page in client.graph.iter_groups():
        listed += len(page)
        group_rows = [rows.group_row(g, team_ids) for g in _first_sight(page, seen)]
        out.write_rows(group_rows)
        for row in group_rows:
            d = row["descriptor"]
            descriptors.append(d)
            if row["origin_id"] and row["kind"] == "vssgp":
                keys[row["origin_id"]] = d
            if for_teams:
                names[d] = row["display_name"]
                if row["is_team"]:
                    team_of_group[d] = row["storage_key"]
    return Groups(descriptors, keys, names, team_of_group, repeats=listed - len(descriptors))


async def read_service_principals(client: SyncClient, out: TableWriter, *, for_teams: bool) -> ServicePrincipals:
    names: dict[str, str | None] = {}
    seen: set[str] = set()
    listed = 0
    async for page in client.graph.iter_service_principals():
        listed += len(page)
        sp_rows = [rows.service_principal_row(sp) for sp in _first_sight(page, seen)]
        out.write_rows(sp_rows)
        if for_teams:
            names.update((r["descriptor"], r["display_name"]) for r in sp_rows)
    return ServicePrincipals(names, repeats=listed - len(seen))


async def read_projects(client: SyncClient, out: TableWriter) -> None:
    async for page in client.core.iter_projects():
        out.write_rows(rows.project_row(p) for p in page)


async def read_organizations(client: SyncClient, out: TableWriter | None) -> None:
    """The organizations the credential's identity belongs to; only when `out` is given."""
    if out is not None:
        out.write_rows(rows.organization_row(a) for a in await client.accounts.list_organizations())


async def read_graph_users(client: SyncClient, accounts_out: TableWriter, *, for_teams: bool) -> GraphUsers:
    """Graph users: people kept as compact Arrow batches (joined with entitlements later), service
    accounts written as they come, system identities counted."""
    batches: list[pa.RecordBatch] = []
    names: dict[str, str | None] = {}
    skipped: dict[str, int] = {}
    seen: set[str] = set()
    repeats = without_descriptor = 0
    async for listed in client.graph.iter_user_tables():
        without_descriptor += listed.column("descriptor").null_count
        page = columns.first_sight(listed, seen)
        repeats += listed.num_rows - page.num_rows
        people, accounts, other = columns.split_graph_users(page, USER_PART, schemas.SERVICE_ACCOUNTS)
        for t, n in other.items():
            skipped[t] = skipped.get(t, 0) + n
        batches.extend(people.to_batches())
        accounts_out.write_table(accounts)
        if for_teams:
            for part in (people, accounts):
                names.update((str(d), n) for d, n in zip(part.column("descriptor").to_pylist(),
                                                         part.column("display_name").to_pylist(), strict=True))
    return GraphUsers(batches, names, skipped, repeats, without_descriptor)


def join_users(user_batches: list[pa.RecordBatch], ent_batches: list[pa.RecordBatch]) -> pa.Table:
    """Graph users left-joined with their entitlements (licence, status, last access), USERS schema."""
    users = pa.Table.from_batches(user_batches, schema=USER_PART)
    ents = pa.Table.from_batches(ent_batches, schema=ENTITLEMENT_PART)
    # A user appears once in the entitlement list; should a page repeat one, keep the first.
    ents = ents.group_by("descriptor", use_threads=False).aggregate(
        [(c, "first") for c in ENTITLEMENT_COLUMNS]).rename_columns(["descriptor", *ENTITLEMENT_COLUMNS])
    joined = users.join(ents, keys="descriptor", join_type="left outer", use_threads=False)
    return joined.select(schemas.USERS.names).cast(schemas.USERS)


T = TypeVar("T")


async def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    """fn(*args) in a worker thread, awaited to its end even when the sync is cancelled: a thread
    cannot be stopped, and the writer it uses is closed as soon as the sync unwinds (a Parquet
    writer closed under a running write crashed the process: tests/faults)."""
    job = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(job)
    except asyncio.CancelledError:
        await asyncio.wait([job])
        raise


async def write_users(out: TableWriter, users: Awaitable[GraphUsers], entitlements: Awaitable[Entitlements]) -> int:
    """The users table: Graph users joined with their entitlements. Returns how many entitlements
    matched no Graph user (a user the Graph list left out: reconciled, never silently dropped)."""
    people, ents = await users, await entitlements

    def join_and_write() -> int:
        out.write_table(join_users(people.batches, ents.batches))
        return unmatched_entitlements(people.batches, ents.batches)

    # The join and its Parquet write release the GIL: off the event loop, which the membership
    # read needs at this very moment (it resumes when the entitlement keys are complete).
    return await _in_thread(join_and_write)


def unmatched_entitlements(user_batches: list[pa.RecordBatch], ent_batches: list[pa.RecordBatch]) -> int:
    if not ent_batches:
        return 0
    users = pa.Table.from_batches(user_batches, schema=USER_PART).column("descriptor")
    ents = pa.Table.from_batches(ent_batches, schema=ENTITLEMENT_PART).column("descriptor")
    return len(ents) - int(pc.count(ents.filter(pc.is_in(ents, value_set=users.combine_chunks()))).as_py())


async def read_memberships(client: SyncClient, out: TableWriter, groups: Awaitable[Groups],
                           entitlements: Awaitable[Entitlements], *, fan_out: int) -> Memberships:
    """Direct members of every group. Groups are read while the entitlement pages still arrive;
    member ids are resolved once the entitlements' storage keys are complete, so no extra look-ups."""
    g = await groups
    keys = dict(g.storage_keys)

    async def entitlement_keys() -> None:
        keys.update((await entitlements).storage_keys)

    containers: list[str] = []
    members_col: list[str] = []
    team_edges: dict[str, list[str]] = {}
    answered: dict[str, int] = {}

    async def flush() -> None:
        batch = (pa.array(containers, pa.string()), pa.array(members_col, pa.string()))
        containers.clear()
        members_col.clear()
        await _in_thread(_write_memberships, out, *batch)  # Arrow and Parquet release the GIL

    async with asyncio.TaskGroup() as tg:
        keys_ready = tg.create_task(entitlement_keys())
        async for container, members in client.memberships(g.descriptors, storage_keys=keys,
                                                            keys_ready=keys_ready, max_in_flight=fan_out):
            answered[container] = answered.get(container, 0) + 1
            containers.extend([container] * len(members))
            members_col.extend(members)
            if container in g.team_of_group:
                team_edges[container] = list(members)
            if len(members_col) >= MEMBERSHIP_FLUSH_ROWS:
                await flush()
        await flush()
    return Memberships(team_edges, batched=client.stats.membership_mode == "batched", answered=answered,
                       unresolved_member_ids=client.unresolved_member_ids)


def _write_memberships(out: TableWriter, containers: pa.Array[Any], members: pa.Array[Any]) -> None:
    out.write_table(pa.table({"container_descriptor": containers, "member_descriptor": members,
                              "member_kind": columns.member_kinds(members)}, schema=schemas.MEMBERSHIPS))


async def read_team_admins(client: SyncClient) -> dict[str, list[str]] | None:
    """Every team's administrators in one ACL read; None when the credential may not read ACLs."""
    try:
        return await client.security.team_administrators()
    except (AuthenticationError, PermissionDeniedError, NotFoundError) as exc:
        why = (f"reading security ACLs was refused (HTTP {exc.status}); give the PAT the 'Security (Manage)' "
               "scope (vso.security_manage) to read them in one request (and to see administrators who are "
               "not team members)")
        note(client, f"team members: read with one request per team because {why}")
        return None


@dataclass(frozen=True)
class TeamInputs:
    """Everything the team members build reads: it waits for each of them (a name or edge that is
    not there yet would otherwise be written as null)."""

    teams: Awaitable[Teams]
    admins: Awaitable[dict[str, list[str]] | None]
    groups: Awaitable[Groups]
    users: Awaitable[GraphUsers]
    service_principals: Awaitable[ServicePrincipals]
    memberships: Awaitable[Memberships]


async def read_team_members(client: SyncClient, out: TableWriter, inputs: TeamInputs, *,
                            fan_out: int) -> list[Json] | None:
    """Team members with their administrators: from data the sync already holds (team groups'
    direct members, one ACL read, administrators' identities) when it can, else one request per team.
    Returns the administrators' identities read (an incremental run reuses them), None when not read."""
    teams, acl = await inputs.teams, await inputs.admins
    if acl is not None:
        ids = [t for _p, t in teams.pairs]
        wanted = sorted({d for t in ids for d in acl.get(t.lower(), ())})
        async with asyncio.TaskGroup() as tg:
            # The administrators' identities are read while the memberships still arrive.
            found = tg.create_task(_identities(client, wanted))
            memberships = await inputs.memberships
            if not memberships.batched:
                found.cancel()
        if memberships.batched:
            g, users, sps = await inputs.groups, await inputs.users, await inputs.service_principals
            names = {**g.names, **users.names, **sps.names}
            out.write_rows(_team_rows_from_acl(client, acl, ids, found.result(), g, memberships, names))
            return found.result()
        note(client, "team members: read with one request per team because memberships were read per group "
                     "(no storage keys)")
    await _team_members_per_team(client, out, teams.pairs, fan_out)
    return None


async def _identities(client: SyncClient, legacy_descriptors: list[str]) -> list[Json]:
    if not legacy_descriptors:
        return []
    return await client.identities.read_many(descriptors=legacy_descriptors, decoder=IDENTITY_REFS_PAGE)


def _team_rows_from_acl(client: SyncClient, acl: dict[str, list[str]], ids: list[str], found: list[Json],
                        groups: Groups, memberships: Memberships, names: dict[str, str | None]) -> Iterable[Json]:
    admins, admin_info, unresolved = team_logic.admins_by_team(acl, ids, found)
    if unresolved:
        log.warning("team members: %d administrator descriptor(s) did not resolve (deleted meanwhile?)", unresolved)
    key_of = {d: k for k, d in client.member_keys.items()}
    for d, (k, name) in admin_info.items():
        if k:
            key_of.setdefault(d, k)
        if name and d not in names:
            names[d] = name
    return team_logic.team_member_rows(groups.team_of_group, memberships.team_edges, admins, key_of, names)


async def _team_members_per_team(client: SyncClient, out: TableWriter, teams: list[tuple[str, str]],
                                 fan_out: int) -> None:
    # One request per team can fill every slot of the client; the entitlement and user page chains
    # are sequential and on the critical path, so the fan-out leaves them room.
    slots = asyncio.Semaphore(fan_out)

    async def one(project_id: str, team_id: str) -> None:
        async with slots:
            async for page in client.core.iter_team_members(project_id, team_id):
                out.write_rows(rows.team_member_row(team_id, m) for m in page)

    async with asyncio.TaskGroup() as tg:
        for p, t in teams:
            tg.create_task(one(p, t))
