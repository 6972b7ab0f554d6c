"""AzureDevOpsClient: one organization, its services, and batched membership reads."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable
from typing import Any, cast

import httpx

from .accounts import AccountsService
from .arrow_pages import IDENTITY_MEMBERS_PAGE
from .audit import AuditService
from .core import CoreService
from .discovery import ServiceUrls, discover, normalize_org_url
from .entitlements import EntitlementsService
from .errors import AuthenticationError, AzureDevOpsError, NotFoundError, PermissionDeniedError
from .graph import GraphService
from .identities import IdentitiesService
from .security import SecurityService
from .transport import ClientSettings, Clock, Credential, Requester, RequestStats

log = logging.getLogger("azdo_pipeline.client")

# Entra-backed groups: one report saw identities?queryMembership=Direct stop at 99 members
# (reference §4.1). An Entra group whose batched answer has exactly such a round count is re-read
# through Graph (not capped); other sizes cannot be a truncation at that cap.
AAD_GROUP_SUSPECT_COUNTS = frozenset({99, 100})


class AzureDevOpsClient:
    """Client for one Azure DevOps organization. Use `await AzureDevOpsClient.connect(...)`."""

    def __init__(self, requester: Requester, urls: ServiceUrls) -> None:
        self._r = requester
        self.urls = urls
        self.org = urls.org
        self.settings = requester.settings
        self.graph = GraphService(requester, urls.graph)
        self.identities = IdentitiesService(requester, urls.identities,
                                            batch_size=requester.settings.identity_chunk_size)
        self.core = CoreService(requester, urls.core)
        self.entitlements = EntitlementsService(requester, urls.entitlements)
        self.audit = AuditService(requester, urls.audit)
        self.accounts = AccountsService(requester, urls.accounts, urls.org_url)
        self.security = SecurityService(requester, urls.core)
        # storage key (lower case) -> subject descriptor of every member the last memberships()
        # read resolved (users, groups, service accounts and principals alike)
        self.member_keys: dict[str, str] = {}
        # member ids the last memberships() read could not resolve to a subject (dropped from its edges)
        self.unresolved_member_ids = 0
        self._identities_refused: str | None = None  # why batched membership reads are unavailable
        self._key_lock = asyncio.Lock()

    @classmethod
    async def connect(cls, org_url: str, credential: Credential, *,
                      settings: ClientSettings = ClientSettings(),
                      transport: httpx.AsyncBaseTransport | None = None,
                      clock: Clock | None = None, rng: random.Random | None = None) -> AzureDevOpsClient:
        """Discover the organization's service URLs (no credential needed) and return a client."""
        requester = Requester(credential, settings, transport=transport, clock=clock, rng=rng)
        try:
            urls = await discover(requester, normalize_org_url(org_url))
        except BaseException:
            await requester.aclose()
            raise
        return cls(requester, urls)

    @property
    def stats(self) -> RequestStats:
        return self._r.stats

    async def aclose(self) -> None:
        await self._r.aclose()

    async def __aenter__(self) -> AzureDevOpsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AzureDevOpsClient(org={self.org!r}, url={self.urls.org_url!r})"

    # ---- memberships ------------------------------------------------------------------
    async def memberships(self, group_descriptors: list[str], *, storage_keys: dict[str, str] | None = None,
                          keys_ready: Awaitable[Any] | None = None,
                          chunk_size: int | None = None,
                          max_in_flight: int | None = None) -> AsyncIterator[tuple[str, list[str]]]:
        """(group descriptor, direct member subject descriptors) for every group, streamed.

        Batched: `POST identitybatch {subjectDescriptors: <chunk>, queryMembership: Direct}` (or
        `GET identities?subjectDescriptors=` where identitybatch is missing) gives each group's
        member storage keys; keys not in `storage_keys` (storage key -> descriptor; e.g. user
        entitlement ids and vssgp originIds) are resolved in batches by identityIds, coalesced
        across the chunks in flight. If the identities API is refused (401/403: the PAT lacks
        vso.identity) or absent (404), each group is read with
        `graph/Memberships/{g}?direction=down` instead; stats say which.
        """
        size = max(1, chunk_size or self.settings.membership_chunk_size)
        groups = list(dict.fromkeys(group_descriptors))
        known = {k.lower(): v for k, v in (storage_keys or {}).items()}
        self.member_keys = known
        self.unresolved_member_ids = 0
        resolver = _Resolver(self.identities, known, max(1, self.settings.identity_chunk_size))
        if keys_ready is not None and storage_keys is not None:
            # The caller is still filling `storage_keys` (e.g. from the entitlement pages): read the
            # groups now and resolve member ids only once the map is complete.
            resolver.later(storage_keys, keys_ready)
        counts = {"batched": 0, "per_group": 0}
        chunks = [groups[i:i + size] for i in range(0, len(groups), size)]
        # Chunks read at once: all request slots unless the caller keeps some for other reads.
        window = max(1, min(self.settings.max_concurrency, max_in_flight or self.settings.max_concurrency))
        # `window` reads at once; a chunk whose read has answered but which waits for `keys_ready`
        # holds only its member ids, so more chunks may wait: 16 windows (xl, 52 chunks: 16.6 s ->
        # 13.5 s for +110 MiB; the cap bounds memory for any organization size).
        read_slots = asyncio.Semaphore(window)
        waiting_cap = window * 16
        tasks: set[asyncio.Task[list[tuple[str, list[str]]]]] = set()
        next_chunk = 0
        read_ok = asyncio.Event()  # a batched read answered: the other chunks may start
        try:
            while next_chunk < len(chunks) or tasks:
                # Until one batched read has worked (or been refused), run a single chunk: a PAT
                # without vso.identity then costs one refused request, not one per chunk in flight.
                probing = self._identities_refused is None and not read_ok.is_set() and counts["batched"] == 0 \
                    and self.identities.batch_available is None
                limit = 1 if probing else waiting_cap
                while next_chunk < len(chunks) and len(tasks) < limit:
                    tasks.add(asyncio.ensure_future(self._chunk(chunks[next_chunk], resolver, counts, read_ok,
                                                                read_slots)))
                    next_chunk += 1
                # A probing chunk may then wait long for `keys_ready`; its read answering ends the probe.
                probe = asyncio.ensure_future(read_ok.wait()) if probing else None
                done, _ = await asyncio.wait(tasks | ({probe} if probe else set()),
                                             return_when=asyncio.FIRST_COMPLETED)
                if probe is not None:
                    probe.cancel()
                    done.discard(probe)
                for t in done:
                    tasks.discard(t)
                    for item in cast(list[tuple[str, list[str]]], t.result()):  # the probe was set aside
                        yield item
        finally:
            for t in tasks:
                t.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            resolver.cancel()
            self._note_mode(counts)

    def _note_mode(self, counts: dict[str, int]) -> None:
        b, p = counts["batched"], counts["per_group"]
        mode = "batched" if b and not p else "per-group" if p and not b else "mixed" if b and p else ""
        if mode:
            self.stats.membership_mode = mode
        if p and self._identities_refused:
            note = (f"memberships: {p} group(s) read one by one through graph/memberships because "
                    f"{self._identities_refused}")
            if note not in self.stats.notes:
                self.stats.notes.append(note)

    async def _chunk(self, chunk: list[str], resolver: _Resolver, counts: dict[str, int],
                     read_ok: asyncio.Event, read_slots: asyncio.Semaphore) -> list[tuple[str, list[str]]]:
        if self._identities_refused is None:
            try:
                result = await self._chunk_batched(chunk, resolver, read_ok, read_slots)
                counts["batched"] += len(chunk)
                return result
            except (AuthenticationError, PermissionDeniedError, NotFoundError) as exc:
                if isinstance(exc, NotFoundError) and exc.type_key:  # a real 404 of a subject, not a route
                    raise
                if self._identities_refused is None:
                    log.warning("memberships: batched identities read unavailable (HTTP %s); "
                                "falling back to one graph call per group", exc.status)
                self._identities_refused = (
                    f"the identities API was refused (HTTP {exc.status}); give the PAT the "
                    "'Identity (Read)' scope (vso.identity) to read memberships in batches")
            except AzureDevOpsError as exc:
                if exc.status in (400, 414) and len(chunk) > 1:  # URL or item count too large: halve
                    half = len(chunk) // 2
                    return (await self._chunk(chunk[:half], resolver, counts, read_ok, read_slots)
                            + await self._chunk(chunk[half:], resolver, counts, read_ok, read_slots))
                raise
        counts["per_group"] += len(chunk)
        async with read_slots:
            return list(await asyncio.gather(*(self._per_group(g) for g in chunk)))

    async def _per_group(self, group: str) -> tuple[str, list[str]]:
        edges = await self.graph.list_memberships(group, direction="down")
        return group, [e["memberDescriptor"] for e in edges if e.get("memberDescriptor")]

    async def _chunk_batched(self, chunk: list[str], resolver: _Resolver, read_ok: asyncio.Event,
                             read_slots: asyncio.Semaphore) -> list[tuple[str, list[str]]]:
        resolver.reading += 1
        try:
            async with read_slots:
                identities = await self.identities.read_many(subject_descriptors=chunk, query_membership="Direct",
                                                             decoder=IDENTITY_MEMBERS_PAGE)
            read_ok.set()
            await resolver.keys_complete()  # still counted as reading: nothing is flushed before the map
        except BaseException:
            resolver.reading -= 1
            resolver.flush()
            raise
        # No await from here to resolve(): this chunk's keys join the queue before it is flushed.
        resolver.reading -= 1
        by_descriptor: dict[str, dict[str, Any]] = {}
        for ident in identities:
            if isinstance(ident, dict) and ident.get("subjectDescriptor"):
                by_descriptor[ident["subjectDescriptor"]] = ident
        for g, ident in by_descriptor.items():
            if ident.get("id"):
                resolver.known.setdefault(str(ident["id"]).lower(), g)
        # A group the batched answer left out is not a group without members: read it on its own.
        unanswered = [g for g in chunk if g not in by_descriptor]
        chunk = [g for g in chunk if g in by_descriptor]
        member_ids = {g: [str(m).lower() for m in by_descriptor[g].get("memberIds") or []] for g in chunk}
        await resolver.resolve({k for ids in member_ids.values() for k in ids})
        known = resolver.known
        out: list[tuple[str, list[str]]] = []
        recheck: list[str] = []
        unresolved = 0
        for g in chunk:
            members = []
            for k in member_ids[g]:
                d = known.get(k)
                if d:
                    members.append(d)
                else:
                    unresolved += 1
            if g.startswith("aadgp.") and len(member_ids[g]) in AAD_GROUP_SUSPECT_COUNTS:
                recheck.append(g)
                continue
            out.append((g, members))
        if unresolved:
            self.unresolved_member_ids += unresolved
            log.warning("memberships: %d member id(s) did not resolve to a subject (deleted meanwhile?)",
                        unresolved)
        if recheck:
            out.extend(await asyncio.gather(*(self._per_group(g) for g in recheck)))
        if unanswered:
            note = (f"memberships: {len(unanswered)} group(s) missing from a batched identities answer were read "
                    "one by one through graph/memberships")
            log.warning("%s", note)
            self.stats.notes.append(note)
            out.extend(await asyncio.gather(*(self._unanswered(g) for g in unanswered)))
        return out

    async def _unanswered(self, group: str) -> tuple[str, list[str]]:
        try:
            return await self._per_group(group)
        except NotFoundError:
            # Deleted since the groups were listed: it has no members now; said, not silent.
            note = f"memberships: group {group} was deleted during the sync (no members read)"
            log.warning("%s", note)
            self.stats.notes.append(note)
            return group, []

    # ---- misc -------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {"org": self.org, "urls": {k: getattr(self.urls, k) for k in
                                          ("core", "graph", "identities", "entitlements", "audit", "accounts")}}


class _Resolver:
    """Storage key -> subject descriptor look-ups, coalesced across the chunks in flight.

    A chunk registers the keys it needs and waits; keys are fetched 100 at a time as soon as a
    full batch is queued, and the remainder once no chunk is still reading its groups, so the
    number of look-up requests stays near ceil(unknown keys / batch size).
    """

    def __init__(self, identities: IdentitiesService, known: dict[str, str], batch: int) -> None:
        self.identities = identities
        self.known = known
        self.batch = batch
        self.reading = 0  # chunks whose group read is still in flight
        self._queue: list[str] = []
        self._futures: dict[str, asyncio.Future[None]] = {}
        self._jobs: set[asyncio.Task[None]] = set()
        self._pending: tuple[dict[str, str], Awaitable[Any]] | None = None
        self._merged: asyncio.Future[None] | None = None

    def later(self, source: dict[str, str], ready: Awaitable[Any]) -> None:
        """`source` (storage key -> descriptor) is complete once `ready` resolves; merge it then."""
        self._pending = (source, ready)

    async def keys_complete(self) -> None:
        if self._pending is None:
            return
        if self._merged is None:
            self._merged = asyncio.ensure_future(self._merge())
        await asyncio.shield(self._merged)

    async def _merge(self) -> None:
        assert self._pending is not None
        source, ready = self._pending
        await ready
        for k, v in source.items():
            self.known.setdefault(k.lower(), v)

    async def resolve(self, keys: set[str]) -> None:
        loop = asyncio.get_running_loop()
        waits = []
        for k in keys:
            if k in self.known:
                continue
            f = self._futures.get(k)
            if f is None:
                f = self._futures[k] = loop.create_future()
                self._queue.append(k)
            waits.append(f)
        self.flush()
        if waits:
            await asyncio.gather(*waits)

    def flush(self) -> None:
        # Keys another chunk's group read has taught us meanwhile need no look-up.
        if any(k in self.known for k in self._queue):
            for k in [k for k in self._queue if k in self.known]:
                f = self._futures.pop(k, None)
                if f is not None and not f.done():
                    f.set_result(None)
            self._queue = [k for k in self._queue if k not in self.known]
        while len(self._queue) >= self.batch or (self._queue and self.reading == 0):
            batch, self._queue = self._queue[:self.batch], self._queue[self.batch:]
            job = asyncio.ensure_future(self._fetch(batch))
            self._jobs.add(job)
            job.add_done_callback(self._jobs.discard)

    async def _fetch(self, batch: list[str]) -> None:
        try:
            found = await self.identities.read_many(identity_ids=batch, query_membership="None")
        except Exception as exc:  # the waiting chunks raise it; this task itself ends quietly
            for k in batch:
                f = self._futures.pop(k, None)
                if f is not None and not f.done():
                    f.set_exception(exc)
                    f.exception()  # retrieved: no "never retrieved" noise if no chunk waits anymore
            return
        except asyncio.CancelledError:
            for k in batch:
                f = self._futures.pop(k, None)
                if f is not None and not f.done():
                    f.cancel()
            raise
        for ident in found:
            if isinstance(ident, dict) and ident.get("id") and ident.get("subjectDescriptor"):
                self.known[str(ident["id"]).lower()] = ident["subjectDescriptor"]
        for k in batch:
            f = self._futures.pop(k, None)
            if f is not None and not f.done():
                f.set_result(None)

    def cancel(self) -> None:
        for job in list(self._jobs):
            job.cancel()
        for f in self._futures.values():
            if not f.done():
                f.cancel()
