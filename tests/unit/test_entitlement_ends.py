"""User entitlements read from both ends (`$orderBy=name asc` + `name desc`), and membership reads
that start before the entitlement keys are complete.

`EntitlementsService.iter_user_entitlement_tables` against a hand-written userentitlements endpoint
(httpx.MockTransport, 100 a page, key-based tokens like a Cosmos continuation: rows added or removed
elsewhere do not shift a walk) whose answers can be held back until the consumer has received a
number of pages, so which end answers first is chosen by the test; then against the simulator
in process (httpx.ASGITransport into create_app) for a medium organization.

Request counts the code guarantees (page size 100, `c = ceil(N / 100)`):
- N <= 200: c requests, `name asc` only (one more asc page finishes the list);
- N > 200: c <= requests <= c + 1, both orders. The read stops when the ends have met (a page holds
  an entitlement the other end returned) and the distinct entitlements reach totalCount, so two ends
  that meet exactly on a page boundary read one page more than a single chain.
Fixed after this file found them: a survivor lost when one entitlement is removed and another added
mid-read; the same token string in both orders taken for a repeat; a redundant identityIds look-up
of a group another chunk had read; a request more than one chain's for 101..300 entitlements.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import httpx
import pyarrow as pa
import pytest
from azdo_sim.app import create_app
from azdo_sim.generator import generate
from azdo_sim.state import OrgState, World
from azdo_sim.truth import ground_truth

from azdo_pipeline.auth import PatCredential
from azdo_pipeline.client import AzureDevOpsClient, AzureDevOpsError, ClientSettings

from .test_client_memberships import Directory, _service
from .test_client_support import FakeService, connect, json_response

pytestmark = pytest.mark.timeout(60)

PAGE = 100
ASC, DESC = "name asc", "name desc"
ENDPOINT = "/_apis/userentitlements"


# ---- a userentitlements endpoint with both orders ------------------------------------------------
class Entitlements:
    """GET userentitlements?$orderBy=name asc|desc[&continuationToken=]: 100 a page.

    A token stands for (order, page number, last row of that page); the next page is the rows after
    that row in the order, at the time of the answer. `desc` is the exact reverse of `asc` (ties by
    id), unless `ties_by_id_asc`: then rows of the same name come id-ascending in both orders.
    `holds[(order, page no)] = k` holds that answer until the consumer has received k pages
    (`received`, counted by `receive()`); `on_request(self, order, page no)` runs as a request
    arrives (to change the list mid-read).
    """

    def __init__(self, n: int = 0, *, names: Callable[[int], str] | None = None, total: str = "count",
                 ties_by_id_asc: bool = False) -> None:
        self.rows: dict[str, str] = {}  # id -> display name
        for i in range(n):
            self.add(f"e{i:05d}", names(i) if names else f"User {i:05d}")
        self.total = total  # count | absent | null
        self.ties_by_id_asc = ties_by_id_asc
        self.tokens: dict[str, tuple[str, int, tuple[str, str]]] = {}
        self.requests: list[tuple[str, str | None, int]] = []  # (order, token, page number)
        self.holds: dict[tuple[str, int], int] = {}
        self.on_request: Callable[[Entitlements, str, int], None] | None = None
        self.token_for: Callable[[str, int], str] | None = None  # (order, page no) -> token to send
        self.received = 0
        self.cancelled = 0
        self._held: list[tuple[int, asyncio.Future[None]]] = []  # (pages needed, released when received)
        self._n = itertools.count(1)

    def receive(self) -> None:
        """The consumer has one more page: release the answers held until then."""
        self.received += 1
        for need, released in self._held:
            if self.received >= need and not released.done():
                released.set_result(None)

    def add(self, ident: str, name: str) -> None:
        self.rows[ident] = name

    def _after(self, order: str, anchor: tuple[str, str] | None) -> list[str]:
        rows = sorted(self.rows.items(), key=lambda r: (r[1], r[0]))
        if order == DESC:
            if self.ties_by_id_asc:
                rows = sorted(sorted(self.rows.items()), key=lambda r: r[1], reverse=True)
            else:
                rows.reverse()
        if anchor is None:
            return [k for k, _ in rows]
        name, ident = anchor
        if order == ASC:
            return [k for k, v in rows if (v, k) > (name, ident)]
        if self.ties_by_id_asc:
            return [k for k, v in rows if v < name or (v == name and k > ident)]
        return [k for k, v in rows if (v, k) < (name, ident)]

    def count(self, order: str) -> int:
        return sum(1 for o, _, _ in self.requests if o == order)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        q = parse_qs(request.url.query.decode())
        order = q["$orderBy"][0]
        assert order in (ASC, DESC), order
        assert q["api-version"] == ["7.1"]
        token = q.get("continuationToken", [None])[0]
        if token is None:
            page_no, anchor = 1, None
        else:
            t_order, prev, anchor = self.tokens[token]
            assert t_order == order, "a token went back with another $orderBy"
            page_no = prev + 1
        self.requests.append((order, token, page_no))
        if self.on_request is not None:
            self.on_request(self, order, page_no)
        need = self.holds.get((order, page_no))
        if need is not None and self.received < need:
            held = (need, asyncio.get_running_loop().create_future())
            self._held.append(held)
            try:
                await held[1]
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
            finally:
                self._held.remove(held)
        rest = self._after(order, anchor)
        ids, more = rest[:PAGE], len(rest) > PAGE
        nxt = None
        if more:
            nxt = self.token_for(order, page_no) if self.token_for else f"+RID:~{next(self._n)}==#RT:{page_no}"
            self.tokens[nxt] = (order, page_no, (self.rows[ids[-1]], ids[-1]))
        members = [{"id": k, "user": {"descriptor": f"aad.{k}", "displayName": self.rows[k]},
                    "accessLevel": {"accountLicenseType": "express", "status": "active"}} for k in ids]
        body: dict[str, Any] = {"members": members, "items": members, "continuationToken": nxt}
        if self.total == "count":
            body["totalCount"] = len(self.rows)
        elif self.total == "null":
            body["totalCount"] = None
        return json_response(body)


def _service_for(fake: Entitlements) -> FakeService:
    svc = FakeService()
    svc.on("GET", ENDPOINT, fake)
    return svc


async def read_tables(client: AzureDevOpsClient, fake: Entitlements | None = None) -> list[pa.Table]:
    pages = []
    async for table in client.entitlements.iter_user_entitlement_tables():
        pages.append(table)
        if fake is not None:
            fake.receive()
    return pages


def keys_of(pages: list[pa.Table]) -> list[str]:
    return [k for t in pages for k in t.column("storage_key").to_pylist()]


def read(fake: Entitlements, timeout: float = 10.0) -> tuple[list[str], Any]:
    """Every storage key the table pages gave (in order, duplicates kept) and the client's stats."""
    async def go() -> tuple[list[str], Any]:
        async with await connect(_service_for(fake)) as c:
            pages = await read_tables(c, fake)
            return keys_of(pages), c.stats

    return asyncio.run(asyncio.wait_for(go(), timeout))


def read_via(handler: Callable[[httpx.Request], Any], timeout: float = 10.0) -> list[str]:
    """Every storage key the table pages gave, with `handler` answering GET userentitlements."""
    svc = FakeService()
    svc.on("GET", ENDPOINT, handler)

    async def go() -> list[str]:
        async with await connect(svc) as c:
            return keys_of(await read_tables(c))

    return asyncio.run(asyncio.wait_for(go(), timeout))


def pages_for(n: int) -> int:
    return max(1, math.ceil(n / PAGE))


SIZES = [0, 1, 99, 100, 101, 250, 1000, 2048]


# ---- every entitlement once, in about one chain's requests ---------------------------------------
@pytest.mark.parametrize("n", SIZES)
def test_every_entitlement_once_in_at_most_one_extra_request(n: int) -> None:
    fake = Entitlements(n)
    keys, stats = read(fake)
    assert sorted(keys) == sorted(fake.rows)  # every one, exactly once
    assert len(keys) == len(set(keys)) == n
    sent = len(fake.requests)
    assert stats.by_endpoint["GET userentitlements"] == sent
    assert fake.requests[0] == (ASC, None, 1)  # the first page is always asc, without a token
    if n <= 2 * PAGE:
        assert sent == pages_for(n) and {o for o, _, _ in fake.requests} == {ASC}
    else:
        assert {o for o, _, _ in fake.requests} == {ASC, DESC}
        assert fake.requests.count((DESC, None, 1)) == 1
        assert pages_for(n) <= sent <= pages_for(n) + 1, (n, fake.requests)


@pytest.mark.parametrize("n", [201, 250, 300, 301, 350, 1000, 1050, 2048])
def test_request_count_when_the_desc_end_answers_first(n: int) -> None:
    fake = Entitlements(n)
    fake.holds[(ASC, 2)] = 2  # asc page 2 answers only once desc page 1 was received
    keys, _ = read(fake)
    assert sorted(keys) == sorted(fake.rows)
    assert pages_for(n) <= len(fake.requests) <= pages_for(n) + 1, fake.requests
    assert fake.count(ASC) >= 2 and fake.count(DESC) >= 1


@pytest.mark.parametrize("n", [201, 250, 300, 301, 400, 1000, 2048])
def test_request_count_when_asc_page_2_answers_first(n: int) -> None:
    fake = Entitlements(n)
    fake.holds[(DESC, 1)] = 2  # desc page 1 answers only once asc page 2 was received
    keys, _ = read(fake)
    assert sorted(keys) == sorted(fake.rows)
    assert pages_for(n) <= len(fake.requests) <= pages_for(n) + 1, fake.requests


@pytest.mark.parametrize(("n", "hold"), [(150, None), (200, None), (250, (DESC, 1)), (300, (DESC, 1))])
def test_request_count_stays_at_the_single_chains(n: int, hold: tuple[str, int] | None) -> None:
    fake = Entitlements(n)
    if hold:
        fake.holds[hold] = 2
    keys, _ = read(fake)
    assert sorted(keys) == sorted(fake.rows)
    # 150/200: one more asc page finishes; 250/300 with desc page 1 late: asc pages 2 and 3 meet it
    # (250: asc page 3 overlaps; 300: the ends meet on a boundary, so one more page shows the overlap)
    assert len(fake.requests) <= pages_for(n) + (1 if n % PAGE == 0 and n > 2 * PAGE else 0), fake.requests


# ---- ties: the two orders are not exact reverses -------------------------------------------------
@pytest.mark.parametrize(("n", "distinct_names"), [(250, 1), (1000, 1), (1000, 3), (2048, 7), (101, 2)])
@pytest.mark.parametrize("hold", [None, (ASC, 2), (DESC, 1)])
def test_ties_every_entitlement_once(n: int, distinct_names: int, hold: tuple[str, int] | None) -> None:
    fake = Entitlements(n, names=lambda i: f"Same Name {i % distinct_names}", ties_by_id_asc=True)
    if hold and n > 2 * PAGE:  # up to 200 only the asc end is read
        fake.holds[hold] = 2
    # with one name, desc page 1 is asc page 1 again: the ends do not meet, a chain has to end
    assert fake._after(DESC, None)[:PAGE] != list(reversed(fake._after(ASC, None)))[:PAGE]
    keys, _ = read(fake)
    assert sorted(keys) == sorted(fake.rows)
    assert len(keys) == len(set(keys))
    assert len(fake.requests) <= 2 * pages_for(n), fake.requests  # at worst each chain reads to the end


# ---- no totalCount: one asc chain to the end -----------------------------------------------------
@pytest.mark.parametrize("total", ["absent", "null"])
@pytest.mark.parametrize("n", [0, 100, 101, 250, 1000])
def test_without_total_count_a_single_asc_chain_reads_to_the_end(n: int, total: str) -> None:
    fake = Entitlements(n, total=total)
    keys, _ = read(fake)
    assert keys == sorted(fake.rows)  # asc order, each once
    assert fake.count(DESC) == 0
    assert [p for _, _, p in fake.requests] == list(range(1, pages_for(n) + 1))


# ---- the list changes between pages -------------------------------------------------------------
@dataclass
class Change:
    at: tuple[str, int]  # the change happens as this request (order, page no) arrives
    remove: tuple[str, ...] = ()
    add: tuple[tuple[str, str], ...] = ()


def _apply(change: Change) -> Callable[[Entitlements, str, int], None]:
    def hook(fake: Entitlements, order: str, page_no: int) -> None:
        if (order, page_no) == change.at:
            for k in change.remove:
                del fake.rows[k]
            for k, name in change.add:
                fake.add(k, name)
    return hook


CHANGES = {
    "remove-unread-middle": Change((ASC, 2), remove=("e00500",)),
    "remove-read-first": Change((DESC, 1), remove=("e00000",)),
    "remove-several": Change((ASC, 3), remove=("e00450", "e00451", "e00999", "e00000")),
    "add-middle": Change((DESC, 1), add=(("n1", "User 00500x"),)),
    "add-both-ends": Change((ASC, 2), add=(("n1", "A first"), ("n2", "Z last"))),
    "add-several-middle": Change((DESC, 2), add=tuple((f"n{i}", f"User 00{i:03d}x") for i in range(300, 320))),
}


@pytest.mark.parametrize("hold", [None, (ASC, 2), (DESC, 1)])
@pytest.mark.parametrize("name", list(CHANGES))
def test_list_changing_mid_read_gives_no_duplicates_and_every_survivor(name: str, hold: tuple[str, int] | None
                                                                       ) -> None:
    change = CHANGES[name]
    fake = Entitlements(1000)
    before = set(fake.rows)
    fake.on_request = _apply(change)
    if hold:
        fake.holds[hold] = 2
    keys, _ = read(fake, timeout=10)
    survivors = before - set(change.remove)
    assert len(keys) == len(set(keys)), "duplicates"
    assert set(keys) >= survivors, sorted(survivors - set(keys))[:5]
    assert set(keys) <= before | {k for k, _ in change.add}
    assert len(fake.requests) <= 2 * pages_for(1000 + len(change.add))  # at worst each chain reads to the end


def test_one_removed_and_one_added_mid_read_loses_no_survivor() -> None:
    fake = Entitlements(300)  # up to 200 only the asc end is read
    before = set(fake.rows)
    # as desc page 1 is asked for: e00000 (already read by asc page 1) leaves, a new last name arrives,
    # so totalCount never changes and the count alone would stop before e00200..e00201 are read
    fake.on_request = _apply(Change((DESC, 1), remove=("e00000",), add=(("n1", "Zoe New"),)))
    fake.holds[(ASC, 2)] = 2  # the desc end answers first
    keys, _ = read(fake)
    assert len(keys) == len(set(keys))
    assert set(keys) >= before - {"e00000"}, sorted(before - {"e00000"} - set(keys))


# ---- continuation tokens -------------------------------------------------------------------------
@pytest.mark.parametrize(("total", "repeat_at"), [("count", (ASC, 2)), ("count", (ASC, 3)), ("count", (DESC, 2)),
                                                  ("absent", (ASC, 2)), ("absent", (ASC, 3))])
def test_a_repeated_continuation_token_is_an_error_not_a_loop(total: str, repeat_at: tuple[str, int]) -> None:
    fake = Entitlements(2048, total=total)
    issued: dict[tuple[str, int], str] = {}

    def token_for(order: str, page_no: int) -> str:
        if (order, page_no) == repeat_at:
            return issued[(order, page_no - 1)]  # the previous page's token again
        issued[(order, page_no)] = tok = f"+RID:~{order[5:]}{page_no}==#RT:{page_no}"
        return tok

    fake.token_for = token_for
    if repeat_at[0] == DESC:
        fake.holds[(ASC, 2)] = 2  # the desc chain gets going
    with pytest.raises(AzureDevOpsError, match="repeated a continuation token") as err:
        read(fake, timeout=10)
    assert err.value.endpoint == "GET userentitlements"
    assert len(fake.requests) <= pages_for(2048) + 1


def test_the_same_token_string_in_both_orders_is_not_a_repeat() -> None:
    fake = Entitlements(250)
    fake.token_for = lambda order, page_no: str(page_no * PAGE)  # an offset, the same for both orders
    fake.holds[(ASC, 2)] = 2  # the desc end answers first: its token '100' is the asc end's first
    keys, _ = read(fake)
    assert sorted(keys) == sorted(fake.rows)


def test_the_token_goes_back_url_encoded_with_its_order() -> None:
    fake = Entitlements(450)
    fake.token_for = lambda order, page_no: f"+RID:~{order[5:]}/{page_no}==#RT:{page_no}#TRC:{page_no * PAGE}"
    svc = _service_for(fake)

    async def go() -> list[str]:
        async with await connect(svc) as c:
            return keys_of(await read_tables(c, fake))

    keys = asyncio.run(asyncio.wait_for(go(), 10))  # the fake looks up each token: a mangled one would fail
    assert sorted(keys) == sorted(fake.rows)
    assert [(o, p) for o, t, p in fake.requests if t is None] == [(ASC, 1), (DESC, 1)]
    raw = [r.url.query.decode() for r in svc.requests if r.url.path.endswith(ENDPOINT)]
    tokens = [p.split("=", 1)[1] for q in raw for p in q.split("&") if p.startswith("continuationToken=")]
    assert len(tokens) == len(fake.requests) - 2
    assert all("+" not in t and "#" not in t and "=" not in t and "%2B" in t and "%23" in t for t in tokens)


# ---- the consumer stops early ---------------------------------------------------------------------
@pytest.mark.parametrize("stop_after", [1, 2, 3])
@pytest.mark.parametrize("closing", ["aclosing", "loop-shutdown"])
def test_consumer_stopping_early_leaves_no_task_behind(stop_after: int, closing: str,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    fake = Entitlements(2048)
    # Pages after the first that the consumer will not take stay in flight until cancelled.
    for order, page_no in ((ASC, 2), (ASC, 3), (ASC, 4), (DESC, 1), (DESC, 2), (DESC, 3)):
        fake.holds[(order, page_no)] = 10**6
    fake.holds.update({(ASC, 2): 1, (DESC, 1): 2} if stop_after == 3 else {(ASC, 2): 1} if stop_after == 2 else {})
    leftovers: list[asyncio.Task[Any]] = []

    async def go() -> int:
        got = 0
        mine = asyncio.all_tasks()  # this test's own (and asyncio.wait_for's)
        async with await connect(_service_for(fake)) as c:
            gen = c.entitlements.iter_user_entitlement_tables()
            if closing == "aclosing":
                async with contextlib.aclosing(gen):
                    async for _ in gen:
                        got += 1
                        fake.receive()
                        if got == stop_after:
                            break
                # aclose() returned: every task the read started is already over (no grace period)
                leftovers.extend(asyncio.all_tasks() - mine)
            else:  # no aclose: asyncio.run finalizes the generator at shutdown
                async for _ in gen:
                    got += 1
                    fake.receive()
                    if got == stop_after:
                        break
        return got

    caplog.set_level(logging.DEBUG, logger="asyncio")
    got = asyncio.run(asyncio.wait_for(go(), 10), debug=True)
    gc.collect()
    assert got == stop_after
    assert leftovers == []
    held = sum(1 for o, _, p in fake.requests if fake.holds.get((o, p)) == 10**6)
    assert held == (0 if stop_after == 1 else 1)  # stopped after page 2 or 3: one request still in flight
    assert fake.cancelled == held  # every request still held was cancelled, none left running
    text = "\n".join(r.getMessage() for r in caplog.records)
    for bad in ("Task was destroyed", "never retrieved", "was never awaited"):
        assert bad not in text, text


def test_a_failing_page_cancels_the_other_end() -> None:
    fake = Entitlements(2048)
    fake.holds[(ASC, 2)] = 10**6  # held, must be cancelled when desc page 1 fails

    real = fake.__call__

    async def handler(request: httpx.Request) -> httpx.Response:
        if "desc" in request.url.query.decode():  # (a 400 would be taken for a refused $orderBy)
            return json_response({"message": "nope", "typeKey": "X"}, 403)
        return await real(request)

    svc = FakeService()
    svc.on("GET", ENDPOINT, handler)

    async def go() -> None:
        async with await connect(svc) as c:
            await read_tables(c, fake)

    with pytest.raises(AzureDevOpsError) as err:
        asyncio.run(asyncio.wait_for(go(), 10))
    assert err.value.status == 403
    assert fake.cancelled == 1


# ---- the simulator, in process ------------------------------------------------------------------
ORG = "fabrikam"
NO_IDENTITY = {"vso.graph", "vso.project", "vso.memberentitlementmanagement"}


class Recorder(httpx.AsyncBaseTransport):
    """The simulator app through httpx.ASGITransport; notes every request (and what it asked for)."""

    def __init__(self, world: World) -> None:
        self.inner = httpx.ASGITransport(app=create_app(world), client=("127.0.0.1", 50000))
        self.log: list[dict[str, Any]] = []
        self.on_request: Callable[[dict[str, Any]], None] | None = None
        self.on_response: Callable[[dict[str, Any]], None] | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        entry: dict[str, Any] = {"method": request.method, "path": request.url.path,
                                 "params": dict(request.url.params), "status": None}
        if request.url.path.endswith("/_apis/identitybatch"):
            body = json.loads(request.content)
            entry["kind"] = "identityIds" if "identityIds" in body else "subjectDescriptors"
            entry["keys"] = len(body[entry["kind"]])
            entry["ids"] = [str(k).lower() for k in body[entry["kind"]]]
        self.log.append(entry)
        if self.on_request is not None:
            self.on_request(entry)
        resp = await self.inner.handle_async_request(request)
        entry["status"] = resp.status_code
        if self.on_response is not None:
            self.on_response(entry)
        return resp

    def count(self, suffix: str, method: str = "GET") -> int:
        return sum(1 for e in self.log if e["method"] == method and e["path"].endswith(suffix))

    def batches(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.log if e["path"].endswith("/_apis/identitybatch") and e.get("kind") == kind]


@dataclass
class Medium:
    world: World
    org: OrgState
    pat: str
    truth: dict[str, list[dict]]

    async def client(self, transport: Recorder, pat: str | None = None) -> AzureDevOpsClient:
        return await AzureDevOpsClient.connect(f"https://dev.azure.com/{ORG}", PatCredential(pat or self.pat),
                                               settings=ClientSettings(), transport=transport)


@pytest.fixture(scope="module")
def medium() -> Iterator[Medium]:
    world = World(seed=11)
    org = generate(world, ORG, size="medium", seed=11)
    pat = world.issue_pat(ORG, org.owner_key, {"app_token"}).token
    with world.lock:
        truth = ground_truth(org)
    yield Medium(world, org, pat, truth)


def test_simulator_medium_org_table_equals_the_entitlements(medium: Medium) -> None:
    transport = Recorder(medium.world)

    async def go() -> list[pa.Table]:
        async with await medium.client(transport) as c:
            return await read_tables(c)

    pages = asyncio.run(asyncio.wait_for(go(), 15))
    table = pa.concat_tables(pages)
    keys = table.column("storage_key").to_pylist()
    with medium.world.lock:
        state = set(medium.org.entitlements)
    licensed = {r["storage_key"]: r for r in medium.truth["users"] if r["license"] is not None}
    assert len(keys) == len(set(keys)) == len(state)
    assert set(keys) == set(state) == set(licensed)
    got = {r["storage_key"]: r for r in table.to_pylist()}
    for k, row in licensed.items():
        assert (got[k]["descriptor"], got[k]["license"], got[k]["status"]) == \
            (row["descriptor"], row["license"], row["status"]), k
    n = len(state)
    requests = [e for e in transport.log if e["path"].endswith(ENDPOINT)]
    orders = [e["params"].get("$orderBy") for e in requests]
    assert n > 20 * PAGE and set(orders) == {ASC, DESC}
    assert orders[0] == ASC and "continuationToken" not in requests[0]["params"]
    assert pages_for(n) <= len(requests) <= pages_for(n) + 1, (n, len(requests))
    assert all(e["status"] == 200 for e in requests)


def _storage_keys_from(pages: list[pa.Table], groups: list[dict]) -> dict[str, str]:
    keys: dict[str, str] = {}
    for t in pages:
        keys.update(zip(t.column("storage_key").to_pylist(), t.column("descriptor").to_pylist(), strict=True))
    keys.update({g["originId"]: g["descriptor"] for g in groups
                 if g.get("originId") and g["descriptor"].startswith("vssgp.")})
    return keys


def test_simulator_memberships_read_every_chunk_before_the_keys_are_ready(medium: Medium) -> None:
    transport = Recorder(medium.world)
    truth = sorted((r["container_descriptor"], r["member_descriptor"]) for r in medium.truth["memberships"])

    async def go() -> dict[str, Any]:
        async with await medium.client(transport) as c:
            groups = [g async for page in c.graph.iter_groups() for g in page]
            descriptors = [g["descriptor"] for g in groups]
            chunks = math.ceil(len(descriptors) / c.settings.membership_chunk_size)
            storage_keys: dict[str, str] = {}
            keys_ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            before = len(transport.log)
            pairs: list[tuple[str, list[str]]] = []
            resolved_early = 0  # pairs given before the keys were ready (must stay 0)
            answered = asyncio.Event()  # every chunk's group read has answered

            def note(entry: dict[str, Any]) -> None:  # every request says whether the keys were ready
                entry["keys_ready"] = keys_ready.done()

            def on_answer(entry: dict[str, Any]) -> None:
                done = [e for e in transport.batches("subjectDescriptors") if e["status"] is not None]
                if len(done) >= chunks:
                    answered.set()

            transport.on_request, transport.on_response = note, on_answer

            async def consume() -> None:
                nonlocal resolved_early
                async for item in c.memberships(descriptors, storage_keys=storage_keys, keys_ready=keys_ready):
                    resolved_early += not keys_ready.done()
                    pairs.append(item)

            task = asyncio.ensure_future(consume())
            await answered.wait()
            # The entitlement pages are read while the chunks' answers wait for the keys (the client
            # runs meanwhile); then the map is complete.
            pages = await read_tables(c)
            storage_keys.update(_storage_keys_from(pages, groups))
            early = {"batches": [dict(e) for e in transport.log[before:] if not e["keys_ready"]],
                     "pairs": resolved_early, "done": task.done()}
            keys_ready.set_result(None)
            await task
            return {"early": early, "pairs": pairs, "chunks": chunks, "groups": descriptors,
                    "mode": c.stats.membership_mode, "keys": {k.lower() for k in storage_keys}}

    out = asyncio.run(asyncio.wait_for(go(), 20))
    assert out["chunks"] >= 2, "the medium org must have more than one chunk of groups"
    early = out["early"]
    assert not early["done"] and early["pairs"] == 0  # nothing is resolved before the keys
    # What went out before the keys were ready: the chunks' group reads, every one, and nothing else
    # (no look-up, no second read); entitlement pages aside, which the test itself read meanwhile.
    early_batches = [e for e in early["batches"] if "kind" in e]
    reads = [e for e in early_batches if e["kind"] == "subjectDescriptors"]
    assert len(reads) == out["chunks"] and sum(e["keys"] for e in reads) == len(out["groups"])
    assert all(e["status"] == 200 for e in reads)
    assert [e for e in early_batches if e["kind"] != "subjectDescriptors"] == []  # no look-up yet
    assert [e["path"] for e in early["batches"] if "kind" not in e and not e["path"].endswith("/userentitlements")] \
        == []
    assert sorted((g, m) for g, ms in out["pairs"] for m in ms) == truth
    assert out["mode"] == "batched"
    # Look-ups come after the keys, and only for ids the map cannot hold (service accounts and
    # principals, Entra groups): none of the map's keys is looked up.
    lookups = transport.batches("identityIds")
    assert len(lookups) <= 1
    assert all(set(e["ids"]).isdisjoint(out["keys"]) for e in lookups)


def test_simulator_without_identity_scope_one_refused_probe_and_no_wait_for_the_keys(medium: Medium) -> None:
    """The probe with a PAT lacking vso.identity: one refused identitybatch, then per-group Graph reads,
    which do not need the keys, so the read ends although keys_ready never resolves.

    (The probe alone is already covered by tests/unit/test_client_memberships.py
    test_falls_back_to_per_group_graph_reads_and_says_so and tests/integration/test_client_sim.py
    test_memberships_batched_equal_truth_in_far_fewer_requests; this adds keys_ready.)
    """
    transport = Recorder(medium.world)
    pat = medium.world.issue_pat(ORG, medium.org.owner_key, NO_IDENTITY).token
    truth = sorted((r["container_descriptor"], r["member_descriptor"]) for r in medium.truth["memberships"])

    async def go() -> tuple[list[tuple[str, list[str]]], int, Any, bool]:
        async with await medium.client(transport, pat) as c:
            groups = [g["descriptor"] async for page in c.graph.iter_groups() for g in page]
            keys_ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()  # never resolves
            pairs = [p async for p in c.memberships(groups, storage_keys={}, keys_ready=keys_ready)]
            return pairs, len(groups), c.stats, keys_ready.done()

    pairs, n_groups, stats, ready = asyncio.run(asyncio.wait_for(go(), 20))
    assert not ready
    probes = transport.batches("subjectDescriptors")
    assert len(probes) == 1 and probes[0]["status"] in (401, 403)
    assert transport.count("/_apis/identities") == 0
    assert sum(1 for e in transport.log if "/_apis/graph/Memberships/" in e["path"]) == n_groups
    assert n_groups > 500
    assert sorted((g, m) for g, ms in pairs for m in ms) == truth
    assert stats.membership_mode == "per-group"
    assert any("vso.identity" in note for note in stats.notes)


def _posts(svc: FakeService) -> list[dict[str, Any]]:
    return [json.loads(r.content) for r in svc.requests
            if r.method == "POST" and str(r.url).split("?")[0].endswith("/_apis/identitybatch")]


@pytest.mark.parametrize(("n_groups", "chunk"), [(300, 50), (1200, 500), (3900, 500)])
def test_fake_memberships_every_chunk_is_read_before_the_keys(n_groups: int, chunk: int) -> None:
    d = Directory(n_groups=n_groups, n_users=n_groups + 10)
    svc = FakeService()
    answer = _service(d)
    settings = ClientSettings(membership_chunk_size=chunk)
    chunks = math.ceil(n_groups / chunk)
    assert 1 < chunks <= settings.max_concurrency  # beyond the window a chunk starts only as another ends
    state: dict[str, Any] = {}
    early: list[dict[str, Any]] = []  # identitybatch bodies sent before the keys were ready

    def post(request: httpx.Request) -> httpx.Response:
        if not state["ready"].done():
            early.append(json.loads(request.content))
        resp = answer(request)
        if len(early) >= chunks:
            state["answered"].set()
        return resp

    svc.on("POST", "/_apis/identitybatch", post)

    async def go() -> tuple[int, dict[str, list[str]]]:
        async with await connect(svc, settings=settings) as c:
            keys: dict[str, str] = {}
            ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            state.update(ready=ready, answered=asyncio.Event())
            pairs: list[tuple[str, list[str]]] = []
            resolved_early = 0

            async def consume() -> None:
                nonlocal resolved_early
                async for item in c.memberships(list(d.groups.values()), storage_keys=keys, keys_ready=ready):
                    resolved_early += not ready.done()
                    pairs.append(item)

            task = asyncio.ensure_future(consume())
            await state["answered"].wait()
            await _loop_turns(50)  # the client handles the answers, then waits for the keys
            assert not task.done()
            keys.update(d.users)  # the entitlement pages arrived
            ready.set_result(None)
            await task
            return resolved_early, {g: sorted(ms) for g, ms in pairs}

    resolved_early, got = asyncio.run(asyncio.wait_for(go(), 10))
    assert resolved_early == 0
    # Before the keys: each chunk's group read once, and nothing else (no look-up).
    assert len(early) == chunks and all("subjectDescriptors" in b for b in early)
    assert sorted(k for b in early for k in b["subjectDescriptors"]) == sorted(d.groups.values())
    assert got == d.expected()
    # No user (they are in the map) is ever looked up; a look-up can only be of a group key.
    looked_up = {k for b in _posts(svc) if "identityIds" in b for k in b["identityIds"]}
    assert looked_up <= set(d.groups)


async def _loop_turns(n: int) -> None:
    """Let every callback that is ready run, n turns of the event loop (no wall-clock wait: the fake
    service answers inside the loop)."""
    for _ in range(n):
        await asyncio.sleep(0)


def test_no_look_up_of_a_group_another_chunk_has_read() -> None:
    d = Directory(n_groups=150, n_users=160)  # group i has group i-1 as a member
    svc = FakeService()
    sync = _service(d)
    state: dict[str, Any] = {}

    async def post(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        # the second chunk (groups 50..99) answers only after the keys are ready; the others before
        if "vssgp.group50" in body.get("subjectDescriptors", []):
            state["second_asked"].set()
            await state["ready"]
            await _loop_turns(20)  # the client takes the keys in first
            return sync(request)
        resp = sync(request)
        if "subjectDescriptors" in body:
            state["others_answered"] += 1
            if state["others_answered"] == 2:
                state["first_and_third"].set()
        return resp

    svc.on("POST", "/_apis/identitybatch", post)

    async def go() -> dict[str, list[str]]:
        async with await connect(svc, settings=ClientSettings(membership_chunk_size=50)) as c:
            keys: dict[str, str] = {}
            ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            state.update(ready=ready, second_asked=asyncio.Event(), first_and_third=asyncio.Event(),
                         others_answered=0)

            async def fill() -> None:
                await state["second_asked"].wait()
                await state["first_and_third"].wait()
                await _loop_turns(20)  # their answers are taken in while the keys are not ready
                keys.update(d.users)
                ready.set_result(None)

            filler = asyncio.ensure_future(fill())
            got = {g: sorted(ms) async for g, ms in c.memberships(list(d.groups.values()), storage_keys=keys,
                                                                   keys_ready=ready)}
            await filler
            return got

    assert asyncio.run(asyncio.wait_for(go(), 10)) == d.expected()
    looked_up = [k for b in _posts(svc) if "identityIds" in b for k in b["identityIds"]]
    assert looked_up == [], f"looked up {looked_up}: group ids the reads of the chunks had returned"


# ---- a service that refuses $orderBy ----------------------------------------------------------------
@pytest.mark.parametrize("refuse", ["both", "desc"])
@pytest.mark.parametrize("n", [50, 350])
def test_orderby_refused_falls_back_to_one_end(refuse: str, n: int) -> None:
    fake = Entitlements(n)
    plain = Entitlements(n)  # the unordered list (the fake's asc order stands for the service's own)
    inner = fake.__call__

    async def handler(request: httpx.Request) -> httpx.Response:
        q = parse_qs(request.url.query.decode())
        order = q.get("$orderBy", [None])[0]
        if order is None:
            plain_q = request.url.copy_merge_params({"$orderBy": ASC})
            return await plain(httpx.Request("GET", plain_q))
        if refuse == "both" or order == DESC:
            fake.requests.append((order, None, 0))
            return json_response({"message": "The $orderBy is not valid.", "typeKey": "ArgumentException"},
                                 status=400)
        return await inner(request)

    keys = read_via(handler)
    assert sorted(keys) == sorted(fake.rows) and len(keys) == len(set(keys))
    if refuse == "both":
        assert len(plain.requests) == pages_for(n)  # the whole list, unordered, once


@pytest.mark.parametrize("n", [250, 1000, 2048])
def test_a_service_ignoring_orderby_is_read_once_from_one_end(n: int) -> None:
    """desc page 1 repeating asc page 1 means $orderBy is ignored: one end, the list read once."""
    fake = Entitlements(n)
    inner = fake.__call__

    async def handler(request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.params.get("$orderBy") == DESC:  # answer as if the order were not there
            url = url.copy_merge_params({"$orderBy": ASC})
        return await inner(httpx.Request("GET", url))

    keys = read_via(handler)
    assert sorted(keys) == sorted(fake.rows) and len(keys) == len(set(keys))
    assert len(fake.requests) <= pages_for(n) + 1, fake.requests  # the one desc page, then asc alone
