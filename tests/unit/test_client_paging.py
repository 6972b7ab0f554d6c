"""Discovery for the three URL forms and each endpoint's paging style (httpx.MockTransport)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from azdo_pipeline.client import AzureDevOpsClient, ClientSettings, org_name_from_url
from azdo_pipeline.client.discovery import AREA_IDS

from .test_client_support import FakeService, collect, connect, json_response, run


def _ent(key: str) -> dict[str, object]:
    return {"id": key, "user": {"descriptor": f"aad.{key}"}}


@pytest.mark.parametrize(("org_url", "graph_base"), [
    ("https://dev.azure.com/fabrikam", "https://vssps.dev.azure.com/fabrikam"),
    ("https://fabrikam.visualstudio.com/", "https://fabrikam.vssps.visualstudio.com"),
    ("https://127.0.0.1:8443/fabrikam", "https://127.0.0.1:8443/vssps/fabrikam"),
])
def test_discovery_three_url_forms(org_url: str, graph_base: str) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        assert str(request.url).startswith(org_url.rstrip("/") + "/_apis/resourceAreas")
        return json_response({"count": 1, "value": [
            {"id": AREA_IDS["graph"], "name": "Graph", "locationUrl": graph_base + "/"}]})

    async def go() -> AzureDevOpsClient:
        return await AzureDevOpsClient.connect(org_url, _Cred(), transport=httpx.MockTransport(handler))

    client = run(go())
    assert client.org == "fabrikam"
    assert client.urls.graph == graph_base
    assert client.urls.identities == org_url.rstrip("/")  # not listed: the org URL
    assert "authorization" not in seen[0].headers  # discovery needs no credential
    assert seen[0].headers["x-tfs-fedauthredirect"] == "Suppress"
    run(client.aclose())


def test_org_name_from_url_forms() -> None:
    assert org_name_from_url("https://dev.azure.com/contoso/") == "contoso"
    assert org_name_from_url("https://contoso.visualstudio.com") == "contoso"
    assert org_name_from_url("https://127.0.0.1:9/contoso") == "contoso"


class _Cred:
    async def auth_header(self) -> str:
        return "Basic x"

    async def on_unauthorized(self) -> bool:
        return False


def test_graph_paging_follows_header_through_short_and_empty_pages() -> None:
    svc = FakeService()
    pages = {None: (["a", "b", "c"], "t1"), "t1": ([], "t2"), "t2": (["d"], "t3"), "t3": (["e", "f"], None)}

    def users(request: httpx.Request) -> httpx.Response:
        q = parse_qs(urlsplit(str(request.url)).query)
        assert q["api-version"] == ["7.1-preview.1"]
        items, nxt = pages[q.get("continuationToken", [None])[0]]
        headers = {"X-MS-ContinuationToken": nxt} if nxt else {}
        return json_response({"count": len(items), "value": [{"descriptor": i} for i in items]}, headers=headers)

    svc.on("GET", "/_apis/graph/users", users)

    async def go() -> list[list[dict]]:
        async with await connect(svc) as c:
            got = await collect(c.graph.iter_users())
            assert c.stats.by_endpoint["GET graph/users"] == 4
            return got

    got = run(go())
    assert [d["descriptor"] for page in got for d in page] == list("abcdef")
    assert [len(p) for p in got] == [3, 0, 1, 2]  # the empty page did not stop paging


def test_entitlement_token_is_url_encoded_and_paging_stops_only_without_token() -> None:
    svc = FakeService()
    token1 = "+RID:~abc==#RT:1#TRC:100#ISV:2"
    token2 = "+RID:~def+/==#RT:2#TRC:100"
    raw_queries: list[str] = []

    def ents(request: httpx.Request) -> httpx.Response:
        raw = request.url.query.decode()
        raw_queries.append(raw)
        tok = parse_qs(raw).get("continuationToken", [None])[0]
        if tok is None:
            return json_response({"members": [_ent("u1")], "items": [_ent("u1")], "continuationToken": token1})
        if tok == token1:  # an empty page that still carries a token
            return json_response({"members": [], "items": [], "continuationToken": token2})
        assert tok == token2
        return json_response({"members": [_ent("u2")], "items": [_ent("u2")], "continuationToken": None})

    svc.on("GET", "/_apis/userentitlements", ents)

    async def go() -> list[list[dict]]:
        async with await connect(svc) as c:
            return await collect(c.entitlements.iter_user_entitlements())

    got = run(go())
    assert [e["id"] for p in got for e in p] == ["u1", "u2"]
    assert len(raw_queries) == 3
    # + # = never travel raw: they would corrupt the token
    for raw in raw_queries[1:]:
        tok_part = next(p for p in raw.split("&") if p.startswith("continuationToken="))
        assert "+" not in tok_part and "#" not in tok_part and "=" not in tok_part.split("=", 1)[1]
        assert "%2B" in tok_part and "%23" in tok_part and "%3D" in tok_part


@pytest.mark.parametrize(("n_teams", "expected_requests"), [(250, 3), (200, 3), (99, 1), (0, 1)])
def test_teams_skip_paging_has_no_100_cap(n_teams: int, expected_requests: int) -> None:
    svc = FakeService()
    teams = [{"id": f"t{i}", "projectId": "p"} for i in range(n_teams)]

    def handler(request: httpx.Request) -> httpx.Response:
        q = parse_qs(urlsplit(str(request.url)).query)
        assert q["api-version"] == ["7.1-preview.3"]
        top, skip = int(q["$top"][0]), int(q["$skip"][0])
        page = teams[skip:skip + min(top, 100)]
        return json_response({"count": len(page), "value": page})

    svc.on("GET", "/_apis/teams", handler)

    async def go() -> list[list[dict]]:
        async with await connect(svc) as c:
            return await collect(c.core.iter_teams())

    got = run(go())
    assert [t["id"] for p in got for t in p] == [t["id"] for t in teams]
    assert svc.count("GET", "/_apis/teams") == expected_requests


def test_team_members_skip_paging() -> None:
    svc = FakeService()
    members = [{"isTeamAdmin": i == 0, "identity": {"id": f"m{i}", "descriptor": f"aad.m{i}"}} for i in range(130)]

    def handler(request: httpx.Request) -> httpx.Response:
        q = parse_qs(urlsplit(str(request.url)).query)
        skip = int(q["$skip"][0])
        return json_response({"count": 0, "value": members[skip:skip + 100]})

    svc.on("GET", "/_apis/projects/p1/teams/t1/members", handler)

    async def go() -> list[list[dict]]:
        async with await connect(svc) as c:
            return await collect(c.core.iter_team_members("p1", "t1"))

    got = run(go())
    assert sum(len(p) for p in got) == 130
    assert svc.count("GET", "/members") == 2


def test_projects_follow_integer_header_token() -> None:
    svc = FakeService()
    projects = [{"id": f"p{i}"} for i in range(230)]

    def handler(request: httpx.Request) -> httpx.Response:
        q = parse_qs(urlsplit(str(request.url)).query)
        start = int(q.get("continuationToken", ["0"])[0])
        page = projects[start:start + 100]
        nxt = start + len(page)
        headers = {"x-ms-continuationtoken": str(nxt)} if nxt < len(projects) else {}
        return json_response({"count": len(page), "value": page}, headers=headers)

    svc.on("GET", "/_apis/projects", handler)

    async def go() -> list[list[dict]]:
        async with await connect(svc) as c:
            return await collect(c.core.iter_projects())

    got = run(go())
    assert [p["id"] for page in got for p in page] == [p["id"] for p in projects]
    assert svc.count("GET", "/_apis/projects") == 3


def test_audit_follows_token_while_has_more() -> None:
    svc = FakeService()
    # real entries always carry id and timestamp (audit spec example)
    entries = [{"id": f"e{i}", "timestamp": f"2026-01-01T00:00:0{i}Z"} for i in range(5)]

    def handler(request: httpx.Request) -> httpx.Response:
        q = parse_qs(urlsplit(str(request.url)).query)
        assert q["api-version"] == ["7.1-preview.1"] and q["skipAggregation"] == ["true"]
        size = int(q["batchSize"][0])
        tok = q.get("continuationToken", [None])[0]
        start = 0 if tok is None else [e["id"] for e in entries].index(tok) + 1
        page = entries[start:start + size]
        more = start + size < len(entries)
        return json_response({"decoratedAuditLogEntries": page,
                              "continuationToken": page[-1]["id"] if page else None, "hasMore": more})

    svc.on("GET", "/_apis/audit/auditlog", handler)

    async def go() -> list[list[dict]]:
        async with await connect(svc) as c:
            return await collect(c.audit.iter_entries("2026-01-01T00:00:00Z", batch_size=2))

    got = run(go())
    assert [e["id"] for p in got for e in p] == [e["id"] for e in entries]
    assert svc.count("GET", "/_apis/audit/auditlog") == 3


def test_accounts_profile_then_member_id() -> None:
    svc = FakeService()
    svc.on("GET", "/app/_apis/profile/profiles/me", lambda r: json_response({"id": "me-1"}))

    def accounts(request: httpx.Request) -> httpx.Response:
        assert parse_qs(urlsplit(str(request.url)).query)["memberId"] == ["me-1"]
        return json_response({"count": 1, "value": [{"accountId": "a1", "accountName": "fabrikam"}]})

    svc.on("GET", "/app/_apis/accounts", accounts)

    async def go() -> list[dict]:
        async with await connect(svc, settings=ClientSettings()) as c:
            return await c.accounts.list_organizations()

    assert run(go()) == [{"accountId": "a1", "accountName": "fabrikam"}]


def test_accounts_area_missing_from_org_list_uses_the_global_lookup() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        calls.append(url.split("?")[0])
        if url.startswith("https://dev.azure.com/fabrikam/_apis/resourceAreas"):
            return json_response({"count": 1, "value": [
                {"id": AREA_IDS["graph"], "locationUrl": "https://vssps.dev.azure.com/fabrikam/"}]})
        if url.startswith(f"https://dev.azure.com/_apis/resourceAreas/{AREA_IDS['accounts']}"):
            assert "accountName=fabrikam" in url and "authorization" not in request.headers
            return json_response({"id": AREA_IDS["accounts"], "locationUrl": "https://app.vssps.visualstudio.com/"})
        if url.startswith("https://app.vssps.visualstudio.com/_apis/profile/profiles/me"):
            return json_response({"id": "me"})
        if url.startswith("https://app.vssps.visualstudio.com/_apis/accounts"):
            return json_response({"count": 1, "value": [{"accountId": "a1", "accountName": "fabrikam"}]})
        return httpx.Response(404, text="Page not found.", headers={"content-type": "text/plain"})

    async def go() -> list[dict]:
        async with await AzureDevOpsClient.connect("https://dev.azure.com/fabrikam", _Cred(),
                                                   transport=httpx.MockTransport(handler)) as c:
            first = await c.accounts.list_organizations()
            await c.accounts.list_organizations()
            return first

    assert run(go()) == [{"accountId": "a1", "accountName": "fabrikam"}]
    assert sum("resourceAreas/" in u for u in calls) == 1  # looked up once, then remembered


def test_unknown_organization_names_the_url_setting() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return json_response({"message": "TF400813: Organization 'nope' not found.",
                              "typeKey": "HostDoesNotExistException"}, 404)

    async def go() -> None:
        await AzureDevOpsClient.connect("https://dev.azure.com/nope", _Cred(), transport=httpx.MockTransport(handler))

    with pytest.raises(Exception, match="check the organization url"):
        run(go())
