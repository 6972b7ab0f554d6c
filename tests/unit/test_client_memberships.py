"""Batched membership reads (identitybatch / GET identities / per-group fallback) and account creation."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from azdo_pipeline.client import ClientSettings

from .test_client_support import FakeService, collect, connect, json_response, run


class Directory:
    """250 groups; group i has users u{i}, u{i+1} and (for i > 0) group i-1 as direct members."""

    def __init__(self, n_groups: int = 250, n_users: int = 260) -> None:
        self.users = {f"00000000-0000-0000-0000-{i:012d}": f"aad.user{i}" for i in range(n_users)}
        self.groups = {f"10000000-0000-0000-0000-{i:012d}": f"vssgp.group{i}" for i in range(n_groups)}
        self.key_of = {d: k for k, d in {**self.users, **self.groups}.items()}
        ukeys, gkeys = list(self.users), list(self.groups)
        self.members: dict[str, list[str]] = {}
        for i, g in enumerate(self.groups.values()):
            m = [ukeys[i], ukeys[i + 1]]
            if i:
                m.append(gkeys[i - 1])
            self.members[g] = m

    def identity(self, key: str | None = None, descriptor: str | None = None, direct: bool = False) -> dict | None:
        if descriptor is not None:
            key = self.key_of.get(descriptor)
        if key is None:
            return None
        d = {**self.users, **self.groups}.get(key)
        if d is None:
            return None
        body = {"id": key, "subjectDescriptor": d, "descriptor": f"legacy;{d}"}
        if direct:
            body["memberIds"] = list(self.members.get(d, []))
        return body

    def answer(self, kind: str, keys: list[str], qm: str) -> httpx.Response:
        direct = qm.lower() == "direct"
        value = [self.identity(key=k, direct=direct) if kind == "identityIds"
                 else self.identity(descriptor=k, direct=direct) for k in keys]
        return json_response({"count": len(value), "value": value})

    def expected(self) -> dict[str, list[str]]:
        every = {**self.users, **self.groups}
        return {g: sorted(every[k] for k in ms) for g, ms in self.members.items()}


def _service(d: Directory, *, batch: bool = True, identities_status: int | None = None) -> FakeService:
    svc = FakeService()

    def post(request: httpx.Request) -> httpx.Response:
        if identities_status:
            return json_response({"message": "TF400813: not authorized"}, identities_status)
        body = json.loads(request.content)
        kind = "identityIds" if "identityIds" in body else "subjectDescriptors"
        return d.answer(kind, body[kind], body.get("queryMembership", "None"))

    def get(request: httpx.Request) -> httpx.Response:
        if identities_status:
            return json_response({"message": "TF400813: not authorized"}, identities_status)
        raw = request.url.query.decode()
        assert len(raw) <= 2048, "GET identities must stay under IIS's maxQueryString"
        q = parse_qs(raw)
        kind = "identityIds" if "identityIds" in q else "subjectDescriptors"
        return d.answer(kind, q[kind][0].split(","), q["queryMembership"][0])

    def graph(request: httpx.Request) -> httpx.Response:
        g = str(request.url).split("?")[0].rsplit("/", 1)[1]
        q = parse_qs(urlsplit(str(request.url)).query)
        assert q["direction"] == ["down"]
        every = {**d.users, **d.groups}
        return json_response({"count": 0, "value": [{"containerDescriptor": g, "memberDescriptor": every[k]}
                                                    for k in d.members[g]]})

    if batch:
        svc.on("POST", "/_apis/identitybatch", post)
    svc.on("GET", "/_apis/identities", get)
    for g in d.groups.values():
        svc.on("GET", f"/_apis/graph/Memberships/{g}", graph)
    return svc


def _read(svc: FakeService, groups: list[str], known: dict[str, str] | None,
          settings: ClientSettings | None = None) -> tuple[dict[str, list[str]], object]:
    async def go():
        async with await connect(svc, settings=settings) as c:
            got = {g: sorted(ms) for g, ms in await collect(c.memberships(groups, storage_keys=known))}
            return got, c.stats

    return run(go())


def test_batched_memberships_use_far_fewer_requests_than_groups() -> None:
    d = Directory()
    svc = _service(d)
    known = dict(list(d.users.items())[:200])  # e.g. from user entitlement ids; 60 users unknown
    got, stats = _read(svc, list(d.groups.values()), known)
    assert got == d.expected()
    requests = svc.count("POST", "/_apis/identitybatch")
    # 3 chunks of groups + a few look-ups of unknown users: nowhere near 250 requests
    assert requests <= 8, requests
    assert svc.count("GET", "/_apis/graph/Memberships") == 0
    assert stats.membership_mode == "batched"


def test_get_identities_when_identitybatch_is_missing_packs_under_query_limit() -> None:
    d = Directory(n_groups=60, n_users=70)
    svc = _service(d, batch=False)
    got, stats = _read(svc, list(d.groups.values()), dict(d.users))
    assert got == d.expected()
    gets = svc.count("GET", "/_apis/identities")
    assert 1 < gets < 60
    assert stats.membership_mode == "batched"


def test_keys_that_arrive_later_are_used_before_any_look_up() -> None:
    """Groups are read while the caller still fills the storage-key map; ids resolve only after."""
    import asyncio

    d = Directory(n_groups=40, n_users=50)
    svc = _service(d)
    answer = next(handler for method, _, handler in svc.routes if method == "POST")
    answered: list[asyncio.Event] = []

    def answer_then_say_so(request: httpx.Request) -> httpx.Response:
        response = answer(request)
        answered[0].set()
        return response

    svc.routes.insert(0, ("POST", "/_apis/identitybatch", answer_then_say_so))

    async def go():
        keys: dict[str, str] = {}
        answered.append(asyncio.Event())

        async def fill_later() -> None:  # e.g. the entitlement pages, still arriving
            await answered[0].wait()  # the groups have been read while the map was still empty
            keys.update(d.users)

        ready = asyncio.ensure_future(fill_later())
        async with await connect(svc) as c:
            got = {g: sorted(ms) for g, ms in await collect(c.memberships(list(d.groups.values()),
                                                                        storage_keys=keys, keys_ready=ready))}
            return got

    assert run(go()) == d.expected()
    # one batched read of the 40 groups; the users came from the map, groups from that read: no look-up
    assert svc.count("POST", "/_apis/identitybatch") == 1


@pytest.mark.parametrize("status", [401, 403])
def test_falls_back_to_per_group_graph_reads_and_says_so(status: int) -> None:
    d = Directory(n_groups=30, n_users=40)
    svc = _service(d, identities_status=status)
    got, stats = _read(svc, list(d.groups.values()), {}, ClientSettings(membership_chunk_size=5))
    assert got == d.expected()
    assert svc.count("GET", "/_apis/graph/Memberships/vssgp.group0") == 1
    assert svc.count("POST", "/_apis/identitybatch") == 1  # one refused probe, not one per chunk
    assert stats.membership_mode == "per-group"
    assert any("vso.identity" in n and "30 group(s)" in n for n in stats.notes)


# ---- account creation ---------------------------------------------------------------------
def _ent_service(existing: set[str], *, fail_first_post_after_processing: bool = False,
                 op_errors: list | None = None) -> FakeService:
    svc = FakeService()
    state = {"posts": 0}

    def get(request: httpx.Request) -> httpx.Response:
        flt = parse_qs(request.url.query.decode()).get("$filter", [""])[0]
        name = flt.split("'")[1] if "'" in flt else None
        members = [{"id": f"id-{p}", "user": {"principalName": p, "descriptor": f"aad.{p}"},
                    "accessLevel": {"licenseDisplayName": "Basic", "status": "active"}}
                   for p in sorted(existing) if name is None or p == name]
        return json_response({"members": members, "items": members, "continuationToken": None})

    def post(request: httpx.Request) -> httpx.Response:
        state["posts"] += 1
        body = json.loads(request.content)
        p = body["user"]["principalName"]
        if op_errors:
            return json_response({"isSuccess": False, "operationResult": {"isSuccess": False, "errors": op_errors}})
        existing.add(p)
        if fail_first_post_after_processing and state["posts"] == 1:
            raise httpx.RemoteProtocolError("connection dropped after the server processed the POST")
        ent = {"id": f"id-{p}", "user": {"principalName": p, "descriptor": f"bnd.{p}"},
               "accessLevel": {**body["accessLevel"], "licenseDisplayName": "Basic", "status": "pending"}}
        return json_response({"isSuccess": True, "userEntitlement": ent,
                              "operationResult": {"isSuccess": True, "errors": [], "result": ent}})

    svc.on("GET", "/_apis/userentitlements", get)
    svc.on("POST", "/_apis/userentitlements", post)
    svc.state = state  # type: ignore[attr-defined]
    return svc


def _add(svc: FakeService, principal: str, license: str) -> dict:
    async def go():
        async with await connect(svc) as c:
            return await c.entitlements.add_user_entitlement(principal, license)

    return run(go())


def test_create_account_created_then_already_exists() -> None:
    existing: set[str] = set()
    svc = _ent_service(existing)
    out = _add(svc, "new@fabrikam.com", "express")
    assert out["outcome"] == "created" and out["user_id"] == "id-new@fabrikam.com"
    body = json.loads(next(r for r in svc.requests if r.method == "POST").content)
    assert body["accessLevel"] == {"accountLicenseType": "express", "licensingSource": "account"}
    assert _add(svc, "new@fabrikam.com", "express")["outcome"] == "already_exists"
    assert svc.state["posts"] == 1


def test_create_account_after_dropped_answer_checks_before_posting_again() -> None:
    svc = _ent_service(set(), fail_first_post_after_processing=True)
    out = _add(svc, "x@fabrikam.com", "stakeholder")
    assert out["outcome"] == "created"
    assert svc.state["posts"] == 1  # not posted twice


def test_create_account_refusal_reports_operation_errors() -> None:
    svc = _ent_service(set(), op_errors=[{"key": 5032, "value": "Access Denied: needs Add Users"}])
    out = _add(svc, "y@fabrikam.com", "vs_subscriber")
    assert out["outcome"] == "failed" and out["errors"][0]["code"] == 5032
    body = json.loads(next(r for r in svc.requests if r.method == "POST").content)
    assert body["accessLevel"]["licensingSource"] == "msdn"


def test_unknown_licence_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown licence"):
        _add(_ent_service(set()), "z@fabrikam.com", "gold")


def test_unknown_member_lookups_are_coalesced_across_chunks() -> None:
    d = Directory(n_groups=250, n_users=260)
    svc = _service(d)
    # Nothing known up front: 260 users + 249 nested groups to resolve; the groups resolve from the
    # chunk reads themselves where possible, the rest in full batches of 100.
    got, _ = _read(svc, list(d.groups.values()), {}, ClientSettings(membership_chunk_size=50))
    assert got == d.expected()
    lookups = sum(1 for r in svc.requests if r.method == "POST" and b"identityIds" in r.content)
    assert lookups <= 7, lookups  # ceil(509 / 100) = 6, +1 for the probing first chunk


def test_create_account_after_a_503_looks_first_then_posts_again() -> None:
    svc = FakeService()
    existing: set[str] = set()
    posts = {"n": 0}

    def get(request: httpx.Request) -> httpx.Response:
        members = [{"id": "id-1", "user": {"principalName": p}} for p in existing]
        return json_response({"members": members, "continuationToken": None})

    def post(request: httpx.Request) -> httpx.Response:
        posts["n"] += 1
        if posts["n"] == 1:
            return httpx.Response(503, text="Service Unavailable")  # not processed
        existing.add(json.loads(request.content)["user"]["principalName"])
        return json_response({"isSuccess": True, "operationResult": {"isSuccess": True, "errors": [],
                                                                       "result": {"id": "id-1"}}})

    svc.on("GET", "/_apis/userentitlements", get)
    svc.on("POST", "/_apis/userentitlements", post)
    out = _add(svc, "a@fabrikam.com", "express")
    assert out["outcome"] == "created" and posts["n"] == 2
    # pre-check, re-check after the 503: the POST itself was never retried blindly by the transport
    assert svc.count("GET", "/_apis/userentitlements") == 2


def test_identitybatch_400_halves_the_batch_size() -> None:
    d = Directory(n_groups=120, n_users=130)
    svc = FakeService()
    sizes: list[int] = []

    def post(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        kind = "identityIds" if "identityIds" in body else "subjectDescriptors"
        sizes.append(len(body[kind]))
        if len(body[kind]) > 40:
            return json_response({"message": "too many", "typeKey": "TooManyRequestedItemsException"}, 400)
        return d.answer(kind, body[kind], body.get("queryMembership", "None"))

    svc.on("POST", "/_apis/identitybatch", post)
    got, _ = _read(svc, list(d.groups.values()), dict(d.users), ClientSettings(membership_chunk_size=120))
    assert got == d.expected()
    assert sizes[:3] == [120, 60, 30]  # then stays at 30


def test_entra_group_with_a_suspiciously_round_member_count_is_reread_through_graph() -> None:
    d = Directory(n_groups=3, n_users=200)
    svc = _service(d)  # its per-group Graph routes cover the vssgp groups only
    aad = "aadgp.entra"
    key = "20000000-0000-0000-0000-000000000000"
    d.groups[key] = aad
    d.key_of[aad] = key
    d.members[aad] = list(d.users)[:99]  # what a capped answer would look like
    truth = d.expected()
    full = sorted({**d.users}[k] for k in list(d.users)[:150])

    def graph(request: httpx.Request) -> httpx.Response:  # Graph is not capped: it has 150
        return json_response({"value": [{"containerDescriptor": aad, "memberDescriptor": m} for m in full]})

    svc.on("GET", f"/_apis/graph/Memberships/{aad}", graph)
    got, _ = _read(svc, list(d.groups.values()), dict(d.users))
    assert got[aad] == full
    assert {g: v for g, v in got.items() if g != aad} == {g: v for g, v in truth.items() if g != aad}
