"""The client against the simulator over real HTTP + TLS on 127.0.0.1 (no simulator-specific code:
only the base URL and `ca_bundle=server.ca_file`). Every iterator must equal the ground truth."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from azdo_sim.generator import generate
from azdo_sim.server import SimulatorServer
from azdo_sim.state import World
from azdo_sim.truth import ground_truth

from azdo_pipeline.auth import PatCredential
from azdo_pipeline.client import (
    AuthenticationError,
    AzureDevOpsClient,
    ClientSettings,
    NotFoundError,
    TransientError,
)

pytestmark = pytest.mark.timeout(120)
ORG = "fabrikam"


class Sim:
    def __init__(self, size: str) -> None:
        self.world = World(seed=1)
        self.org = generate(self.world, ORG, size=size, seed=1)
        self.pat = self.world.issue_pat(ORG, self.org.owner_key, {"app_token"}).token
        self.server = SimulatorServer(self.world)

    def settings(self, **kw: Any) -> ClientSettings:
        return ClientSettings(ca_bundle=self.server.ca_file, **kw)

    async def client(self, pat: str | None = None, **kw: Any) -> AzureDevOpsClient:
        return await AzureDevOpsClient.connect(self.server.org_url(ORG), PatCredential(pat or self.pat),
                                               settings=self.settings(**kw))

    def truth(self) -> dict[str, list[dict]]:
        with self.world.lock:
            return ground_truth(self.org)


@pytest.fixture(scope="module")
def small() -> Iterator[Sim]:
    sim = Sim("small")
    sim.server.start()
    try:
        yield sim
    finally:
        sim.server.stop()


@pytest.fixture
def fresh() -> Iterator[Sim]:
    """A tiny org of its own (tests that mutate state or configure faults)."""
    sim = Sim("tiny")
    sim.server.start()
    try:
        yield sim
    finally:
        sim.server.stop()


async def _all(it: Any) -> list[dict]:
    return [x async for page in it for x in page]


def test_every_iterator_equals_ground_truth(small: Sim) -> None:
    truth = small.truth()

    async def go() -> dict[str, Any]:
        async with await small.client() as c:
            out = {
                "users": await _all(c.graph.iter_users()),
                "groups": await _all(c.graph.iter_groups()),
                "sps": await _all(c.graph.iter_service_principals()),
                "projects": await _all(c.core.iter_projects()),
                "teams": await _all(c.core.iter_teams()),
                "ents": await _all(c.entitlements.iter_user_entitlements()),
            }
            out["team_members"] = {t["id"]: await _all(c.core.iter_team_members(t["projectId"], t["id"]))
                                   for t in out["teams"]}
            return out

    got = asyncio.run(go())
    users = {u["descriptor"] for u in got["users"]}
    assert {r["descriptor"] for r in truth["users"]} == {d for d in users if d.split(".")[0] in ("aad", "msa")}
    assert {r["descriptor"] for r in truth["service_accounts"]} == {d for d in users if d.startswith("svc.")}
    assert len(users) == len(got["users"])  # no duplicates across pages
    assert sorted(g["descriptor"] for g in got["groups"]) == sorted(r["descriptor"] for r in truth["groups"])
    assert sorted(s["descriptor"] for s in got["sps"]) == sorted(r["descriptor"] for r in truth["service_principals"])
    assert sorted(p["id"] for p in got["projects"]) == sorted(r["id"] for r in truth["projects"])
    assert sorted(t["id"] for t in got["teams"]) == sorted(r["id"] for r in truth["teams"])
    licensed = {r["storage_key"] for r in truth["users"] if r["license"] is not None}
    assert {e["id"] for e in got["ents"]} >= licensed
    members = sorted((tid, m["identity"]["descriptor"], bool(m.get("isTeamAdmin")))
                     for tid, ms in got["team_members"].items() for m in ms)
    assert members == sorted((r["team_id"], r["member_descriptor"], r["is_team_admin"])
                             for r in truth["team_members"] if r["is_member"])  # the route lists members only


def _edges(pairs: list[tuple[str, list[str]]]) -> list[tuple[str, str]]:
    return sorted((g, m) for g, ms in pairs for m in ms)


def test_memberships_batched_equal_truth_in_far_fewer_requests(small: Sim) -> None:
    truth = sorted((r["container_descriptor"], r["member_descriptor"]) for r in small.truth()["memberships"])
    full_scopes = {"app_token"}
    no_identity = {"vso.graph", "vso.project", "vso.memberentitlementmanagement"}
    results: dict[str, Any] = {}
    for label, scopes in (("batched", full_scopes), ("per-group", no_identity)):
        pat = small.world.issue_pat(ORG, small.org.owner_key, scopes).token

        async def go(pat: str = pat) -> tuple[list, Any, int]:
            async with await small.client(pat) as c:
                groups = [g["descriptor"] for g in await _all(c.graph.iter_groups())]
                keys = {e["id"]: e["user"]["descriptor"] for e in await _all(c.entitlements.iter_user_entitlements())}
                before = c.stats.total
                pairs = [p async for p in c.memberships(groups, storage_keys=keys)]
                return pairs, c.stats, c.stats.total - before

        pairs, stats, n = asyncio.run(go())
        assert _edges(pairs) == truth, label
        results[label] = (n, stats, len({g for g, _ in pairs}))
    n_groups = results["batched"][2]
    batched, per_group = results["batched"][0], results["per-group"][0]
    print(f"\nmemberships of {n_groups} groups ({len(truth)} edges): batched {batched} requests, "
          f"per-group {per_group} requests")
    assert results["batched"][1].membership_mode == "batched"
    assert batched * 10 <= n_groups
    assert results["per-group"][1].membership_mode == "per-group"
    assert per_group == n_groups + 1  # + the one refused identitybatch request
    assert any("vso.identity" in note for note in results["per-group"][1].notes)


def test_audit_entries_equal_the_retained_log(small: Sim) -> None:
    with small.world.lock:
        expected = {e.id for e in small.org.audit_window()}
        start = min(e.timestamp for e in small.org.audit_window())

    async def go() -> list[dict]:
        async with await small.client() as c:
            return await _all(c.audit.iter_entries(start, batch_size=50))

    got = asyncio.run(go())
    ids = [e["id"] for e in got]
    assert len(ids) == len(set(ids))
    assert expected <= set(ids)  # reading the log adds AuditLog.AccessLog entries of its own
    assert {e["actionId"] for e in got if e["id"] not in expected} <= {"AuditLog.AccessLog"}


def test_accounts_need_an_all_organizations_pat(small: Sim) -> None:
    all_orgs = small.world.issue_pat(None, small.org.owner_key, {"vso.profile"}).token

    async def go(pat: str) -> list[dict]:
        async with await small.client(pat) as c:
            return await c.accounts.list_organizations()

    assert [a["accountName"] for a in asyncio.run(go(all_orgs))] == [ORG]
    with pytest.raises(AuthenticationError, match="All accessible organizations"):
        asyncio.run(go(small.pat))


def test_bad_pat_and_missing_scope_give_clear_errors(small: Sim) -> None:
    project_only = small.world.issue_pat(ORG, small.org.owner_key, {"vso.project"}).token

    async def go(pat: str) -> None:
        async with await small.client(pat) as c:
            await _all(c.graph.iter_users())

    with pytest.raises(AuthenticationError) as e:
        asyncio.run(go("not-a-real-pat-0000000000000000000000000000"))
    assert "not-a-real-pat" not in str(e.value)
    with pytest.raises(AuthenticationError, match=r"'Graph \(Read\)' scope \(vso.graph\)"):
        asyncio.run(go(project_only))


def test_faults_503_drops_and_429_end_in_a_correct_read(fresh: Sim) -> None:
    truth = sorted(r["descriptor"] for r in fresh.truth()["groups"])
    fresh.world.faults.configure({"rules": [
        {"path": "graph/groups", "status": 503, "count": 2},
        {"path": "graph/groups", "drop": True, "count": 1},
        {"path": "graph/groups", "status": 429, "count": 1, "headers": {"Retry-After": "1"}},
    ]})

    async def go() -> tuple[list[str], Any]:
        async with await fresh.client(backoff_base=0.05) as c:
            return sorted(g["descriptor"] for g in await _all(c.graph.iter_groups())), c.stats

    got, stats = asyncio.run(go())
    assert got == truth
    assert stats.retries == 4 and stats.throttled >= 1


def test_persistent_5xx_is_a_clear_bounded_failure(fresh: Sim) -> None:
    fresh.world.faults.configure({"rules": [{"path": "graph/users", "status": 500, "count": -1}]})

    async def go() -> None:
        async with await fresh.client(max_retries=2, backoff_base=0.01) as c:
            await _all(c.graph.iter_users())

    with pytest.raises(TransientError) as e:
        asyncio.run(go())
    assert e.value.status == 500


def test_membership_provisioning_round_trip(fresh: Sim) -> None:
    with fresh.world.lock:
        group = next(g for g in fresh.org.groups() if g.subject_type == "vssgp" and g.project_id)
        user = next(u for u in fresh.org.users() if u.subject_type == "aad"
                    and u.descriptor not in fresh.org.members(group.descriptor))

    async def go() -> list[bool]:
        async with await fresh.client() as c:
            g, u = group.descriptor, user.descriptor
            return [await c.graph.add_membership(g, u), await c.graph.add_membership(g, u),
                    await c.graph.has_membership(g, u), await c.graph.remove_membership(g, u),
                    await c.graph.remove_membership(g, u), await c.graph.has_membership(g, u)]

    assert asyncio.run(go()) == [True, False, True, True, False, False]
    with fresh.world.lock:
        assert user.descriptor not in fresh.org.members(group.descriptor)


def test_storage_keys_and_descriptors_round_trip(fresh: Sim) -> None:
    with fresh.world.lock:
        user = next(u for u in fresh.org.users() if u.subject_type == "aad")

    async def go() -> tuple[str, str]:
        async with await fresh.client() as c:
            key = await c.graph.storage_key(user.descriptor)
            return key, await c.graph.descriptor_of(key)

    assert asyncio.run(go()) == (user.storage_key, user.descriptor)

    async def missing() -> None:
        async with await fresh.client() as c:
            await c.graph.get_group("vssgp.Uy0xLTktMTIzNA")

    with pytest.raises(NotFoundError):
        asyncio.run(missing())


def test_create_account_then_already_exists(fresh: Sim) -> None:
    async def go() -> list[dict]:
        async with await fresh.client() as c:
            return [await c.entitlements.add_user_entitlement("newhire@contoso.com", "stakeholder"),
                    await c.entitlements.add_user_entitlement("newhire@contoso.com", "stakeholder")]

    first, second = asyncio.run(go())
    assert first["outcome"] == "created", first
    assert second["outcome"] == "already_exists", second
    with fresh.world.lock:
        licensed = [e for e in fresh.org.entitlements.values()
                    if fresh.org.by_storage_key(e.user_key).mail_address == "newhire@contoso.com"]
    assert len(licensed) == 1 and licensed[0].account_license_type == "stakeholder"


def test_usage_throttling_slows_down_and_completes(fresh: Sim) -> None:
    """The simulator's TSTU model: X-RateLimit-* headers, then delays, then 429 + Retry-After."""
    truth = sorted((r["container_descriptor"], r["member_descriptor"]) for r in fresh.truth()["memberships"])
    fresh.world.faults.configure({"throttle": {"budget": 12, "window_seconds": 2, "max_delay_seconds": 0.05}})
    no_identity = fresh.world.issue_pat(ORG, fresh.org.owner_key, {"vso.graph"}).token  # one call per group

    async def go() -> tuple[list, Any]:
        async with await fresh.client(no_identity) as c:
            groups = [g["descriptor"] for g in await _all(c.graph.iter_groups())]
            pairs = [p async for p in c.memberships(groups)]
            return pairs, c.stats

    pairs, stats = asyncio.run(go())
    assert _edges(pairs) == truth
    assert stats.throttled > 0 and stats.waited_seconds > 0
    print(f"\nthrottled: {stats.total} requests, {stats.throttled} throttled answers, "
          f"{stats.retries} retries, waited {stats.waited_seconds:.1f}s")


def test_expired_pat_is_an_authentication_error(fresh: Sim) -> None:
    from datetime import timedelta

    expired = fresh.world.issue_pat(ORG, fresh.org.owner_key, {"app_token"}, lifetime=timedelta(seconds=-1)).token

    async def go() -> None:
        async with await fresh.client(expired) as c:
            await _all(c.graph.iter_users())

    with pytest.raises(AuthenticationError) as e:
        asyncio.run(go())
    assert e.value.status == 401 and expired not in str(e.value)


def test_medium_org_lists_and_batched_memberships_equal_truth() -> None:
    sim = Sim("medium")
    sim.server.start()
    try:
        truth = sim.truth()

        async def go() -> tuple[dict[str, Any], Any, int]:
            async with await sim.client() as c:
                out = {"users": await _all(c.graph.iter_users()), "groups": await _all(c.graph.iter_groups()),
                       "teams": await _all(c.core.iter_teams()), "projects": await _all(c.core.iter_projects()),
                       "ents": await _all(c.entitlements.iter_user_entitlements())}
                keys = {e["id"]: e["user"]["descriptor"] for e in out["ents"]}
                keys.update({g["originId"]: g["descriptor"] for g in out["groups"]
                             if g["descriptor"].startswith("vssgp.")})
                before = c.stats.total
                out["pairs"] = [p async for p in c.memberships([g["descriptor"] for g in out["groups"]],
                                                               storage_keys=keys)]
                return out, c.stats, c.stats.total - before

        got, stats, n = asyncio.run(go())
    finally:
        sim.server.stop()
    assert sorted(u["descriptor"] for u in got["users"] if u["descriptor"].split(".")[0] in ("aad", "msa")) == \
        [r["descriptor"] for r in truth["users"]]
    assert sorted(g["descriptor"] for g in got["groups"]) == [r["descriptor"] for r in truth["groups"]]
    assert sorted(t["id"] for t in got["teams"]) == sorted(r["id"] for r in truth["teams"])  # > 100 teams
    assert len(got["teams"]) > 100
    assert sorted(p["id"] for p in got["projects"]) == sorted(r["id"] for r in truth["projects"])
    assert _edges(got["pairs"]) == sorted((r["container_descriptor"], r["member_descriptor"])
                                          for r in truth["memberships"])
    print(f"\nmedium: {len(got['groups'])} groups, {len(truth['memberships'])} edges, memberships in {n} requests; "
          f"by endpoint {dict(stats.by_endpoint)}")
    assert n * 20 < len(got["groups"])
