"""Error mapping (203/HTML/401/403/404), 401 refresh, scope naming, and secrets never leaking."""

from __future__ import annotations

import base64
import logging

import httpx
import pytest

from azdo_pipeline.auth import PatCredential
from azdo_pipeline.client import (
    AuthenticationError,
    AzureDevOpsError,
    NotFoundError,
    PermissionDeniedError,
)

from .test_client_support import PAT, FakeCredential, FakeService, collect, connect, json_response, run

HTML = "<html><head><title>Sign In</title></head><body>Azure DevOps</body></html>"


@pytest.mark.parametrize("answer", [
    httpx.Response(203, text=HTML, headers={"content-type": "text/html; charset=utf-8"}),
    httpx.Response(200, text=HTML, headers={"content-type": "text/html"}),
])
def test_203_or_html_is_an_authentication_failure(answer: httpx.Response) -> None:
    svc = FakeService()
    svc.on("GET", "/_apis/graph/users", lambda r: answer)

    async def go() -> None:
        async with await connect(svc) as c:
            with pytest.raises(AuthenticationError) as e:
                await collect(c.graph.iter_users())
            assert "sign-in page" in str(e.value)

    run(go())


@pytest.mark.parametrize(("call", "path", "label", "scope_id"), [
    (lambda c: collect(c.graph.iter_users()), "/_apis/graph/users", "Graph (Read)", "vso.graph"),
    (lambda c: c.graph.add_membership("vssgp.c", "aad.m"), "/_apis/graph/memberships/aad.m/vssgp.c",
     "Graph (Read", "vso.graph"),
    (lambda c: collect(c.core.iter_projects()), "/_apis/projects", "Project and Team (Read)", "vso.project"),
    (lambda c: collect(c.entitlements.iter_user_entitlements()), "/_apis/userentitlements",
     "Member Entitlement Management (Read)", "vso.memberentitlementmanagement"),
    (lambda c: collect(c.audit.iter_entries("2026-01-01T00:00:00Z")), "/_apis/audit/auditlog",
     "Audit Log (Read)", "vso.auditlog"),
])
def test_401_names_the_scope_of_the_route(call, path: str, label: str, scope_id: str) -> None:
    svc = FakeService()
    body = {"$id": "1", "message": "TF400813: The user '' is not authorized to access this resource.",
            "typeKey": "UnauthorizedRequestException"}
    for method in ("GET", "HEAD", "PUT"):
        svc.on(method, path, lambda r: json_response(body, 401, {"WWW-Authenticate": "Basic realm=x"}))
    cred = FakeCredential()

    async def go() -> None:
        async with await connect(svc, credential=cred) as c:
            with pytest.raises(AuthenticationError) as e:
                await call(c)
            msg = str(e.value)
            assert label in msg and scope_id in msg and "TF400813" in msg
            assert e.value.status == 401

    run(go())
    assert cred.refreshes == 1  # the credential got exactly one chance to refresh


def test_401_then_refresh_succeeds() -> None:
    svc = FakeService()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers["authorization"] == "Bearer new":
            return json_response({"value": "sk-1"})
        return json_response({"message": "expired"}, 401)

    svc.on("GET", "/_apis/graph/storagekeys/aad.x", handler)
    cred = FakeCredential(header="Bearer old", refresh_to="Bearer new")

    async def go() -> None:
        async with await connect(svc, credential=cred) as c:
            assert await c.graph.storage_key("aad.x") == "sk-1"

    run(go())
    assert cred.refreshes == 1


def test_403_404_and_plain_page_not_found() -> None:
    svc = FakeService()
    svc.on("GET", "/_apis/graph/groups/vssgp.a", lambda r: json_response(
        {"message": "VS403325: The graph subject with descriptor 'vssgp.a' could not be found.",
         "typeKey": "GraphSubjectNotFoundException"}, 404))
    svc.on("GET", "/_apis/graph/users/aad.b", lambda r: json_response(
        {"message": "Access Denied", "typeKey": "InvalidAccessException"}, 403))

    async def go() -> None:
        async with await connect(svc) as c:
            with pytest.raises(NotFoundError) as e1:
                await c.graph.get_group("vssgp.a")
            assert e1.value.type_key == "GraphSubjectNotFoundException"
            with pytest.raises(PermissionDeniedError):
                await c.graph.get_user("aad.b")
            with pytest.raises(NotFoundError) as e3:
                await c.graph.get_user("aad.unknown-route")
            assert "unknown route" in str(e3.value)

    run(go())


def test_membership_helpers_are_idempotent() -> None:
    svc = FakeService()
    edges = {("vssgp.c", "aad.m")}

    def head(request: httpx.Request) -> httpx.Response:
        parts = str(request.url).split("?")[0].split("/")
        return httpx.Response(200 if (parts[-1], parts[-2]) in edges else 404)

    def put(request: httpx.Request) -> httpx.Response:
        parts = str(request.url).split("?")[0].split("/")
        edges.add((parts[-1], parts[-2]))
        return json_response({"containerDescriptor": parts[-1], "memberDescriptor": parts[-2]}, 201)

    def delete(request: httpx.Request) -> httpx.Response:
        parts = str(request.url).split("?")[0].split("/")
        edges.discard((parts[-1], parts[-2]))
        return httpx.Response(200)

    for m in ("aad.m", "aad.n"):
        svc.on("HEAD", f"/memberships/{m}/vssgp.c", head)
        svc.on("PUT", f"/memberships/{m}/vssgp.c", put)
        svc.on("DELETE", f"/memberships/{m}/vssgp.c", delete)

    async def go() -> None:
        async with await connect(svc) as c:
            assert await c.graph.add_membership("vssgp.c", "aad.m") is False  # already there
            assert await c.graph.add_membership("vssgp.c", "aad.n") is True
            assert await c.graph.has_membership("vssgp.c", "aad.n") is True
            assert await c.graph.remove_membership("vssgp.c", "aad.n") is True
            assert await c.graph.remove_membership("vssgp.c", "aad.n") is False

    run(go())
    assert svc.count("PUT", "/memberships/aad.m/vssgp.c") == 0
    assert edges == {("vssgp.c", "aad.m")}


def test_secrets_never_in_repr_errors_logs_or_stats(caplog: pytest.LogCaptureFixture) -> None:
    cred = PatCredential(PAT)
    basic = base64.b64encode(f":{PAT}".encode()).decode()
    assert PAT not in repr(cred) and PAT not in str(cred)
    svc = FakeService()

    # A hostile or buggy server echoes the Authorization header and the PAT in its error text.
    def echo(request: httpx.Request) -> httpx.Response:
        auth = request.headers["authorization"]
        assert auth == f"Basic {basic}"
        return json_response({"message": f"bad header {auth} token {PAT}", "typeKey": "X"}, 400,
                             {"X-TFS-ServiceError": PAT})

    def echo_500(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, text=f"boom {PAT}")

    svc.on("GET", "/_apis/graph/users", echo)
    svc.on("GET", "/_apis/graph/groups", echo_500)
    caplog.set_level(logging.DEBUG)

    async def go() -> list[str]:
        texts = []
        async with await connect(svc, credential=cred) as c:
            for it in (c.graph.iter_users(), c.graph.iter_groups()):
                with pytest.raises(AzureDevOpsError) as e:
                    await collect(it)
                texts += [str(e.value), repr(e.value), e.value.message, e.value.url]
            texts.append(repr(c.stats.as_dict()))
            texts.append(repr(c))
        return texts

    texts = run(go())
    texts += [r.getMessage() for r in caplog.records]
    for t in texts:
        assert PAT not in t and basic not in t


def test_pat_header_is_basic_with_empty_user() -> None:
    header = run(PatCredential("abcdefgh12345678").auth_header())
    assert header == "Basic " + base64.b64encode(b":abcdefgh12345678").decode()
