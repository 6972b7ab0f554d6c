"""The simulator app shell: host mapping, case-insensitive paths, auth answers, faults, throttling,
discovery, admin API and ground truth (in-process, over httpx's ASGI transport)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from azdo_sim import http as sim_http
from azdo_sim.app import create_app, map_host, normalise_path
from azdo_sim.faults import Faults
from azdo_sim.server import InProcessTransport
from azdo_sim.state import World
from azdo_sim.truth import TABLES, ground_truth
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from azdo_pipeline import schemas
from tests.conftest import ORG, TinySim, basic_auth

GRAPH_AREA = "bb1e7ec9-e901-4b68-999a-de7012b920f8"
SUPPRESS = {"X-TFS-FedAuthRedirect": "Suppress"}
PROJECTS = "/fabrikam/_apis/projects?api-version=7.1"


# ---- helpers -----------------------------------------------------------------------------------


async def _echo(request: Request) -> Response:
    """Test route: what the route saw (path params, caller, auth error)."""
    scope = request.query_params.get("scope")
    if scope:
        sim_http.need(request, scope)
    c = sim_http.caller(request)
    return JSONResponse({"params": dict(request.path_params), "kind": c.kind, "user": c.user_key,
                         "auth_error": request.state._state.get("auth_error"),
                         "style": request.scope.get("sim.style")})


TEST_ROUTES: list[BaseRoute] = [
    Route("/{org}/_apis/simtest/users/{descriptor}", _echo, methods=["GET"]),
    Route("/{org}/_apis/simtest/scoped", _echo, methods=["GET"]),
    Route("/v1.0/simtest", _echo, methods=["GET"]),
]


@pytest.fixture
def client_for() -> Iterator:
    made: list[httpx.Client] = []

    def make(world: World, *, pat: str | None = None, base_url: str = "https://dev.azure.com",
             suppress: bool = True, extra: bool = False) -> httpx.Client:
        app = create_app(world, extra_routes=TEST_ROUTES if extra else None)
        headers = dict(SUPPRESS) if suppress else {}
        if pat:
            headers["Authorization"] = basic_auth(pat)
        c = httpx.Client(transport=InProcessTransport(app), base_url=base_url, headers=headers)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


# ---- host mapping and case ---------------------------------------------------------------------


@pytest.mark.parametrize(("host", "path", "style", "internal"), [
    ("dev.azure.com", "/fabrikam/_apis/projects", "cloud", "/fabrikam/_apis/projects"),
    ("vssps.dev.azure.com", "/fabrikam/_apis/graph/users", "cloud", "/vssps/fabrikam/_apis/graph/users"),
    ("vsaex.dev.azure.com", "/fabrikam/_apis/userentitlements", "cloud", "/vsaex/fabrikam/_apis/userentitlements"),
    ("auditservice.dev.azure.com", "/fabrikam/_apis/audit/auditlog", "cloud",
     "/auditservice/fabrikam/_apis/audit/auditlog"),
    ("app.vssps.visualstudio.com", "/_apis/accounts", "cloud", "/app.vssps/_apis/accounts"),
    ("fabrikam.visualstudio.com", "/_apis/projects", "legacy", "/fabrikam/_apis/projects"),
    ("fabrikam.visualstudio.com", "/DefaultCollection/_apis/projects", "legacy", "/fabrikam/_apis/projects"),
    ("fabrikam.vssps.visualstudio.com", "/_apis/graph/users", "legacy", "/vssps/fabrikam/_apis/graph/users"),
    ("fabrikam.vsaex.visualstudio.com", "/_apis/userentitlements", "legacy",
     "/vsaex/fabrikam/_apis/userentitlements"),
    ("login.microsoftonline.com", "/t/oauth2/v2.0/token", "cloud", "/t/oauth2/v2.0/token"),
    ("graph.microsoft.com", "/v1.0/groups/x", "cloud", "/v1.0/groups/x"),
    ("127.0.0.1", "/vssps/fabrikam/_apis/graph/users", "loopback", "/vssps/fabrikam/_apis/graph/users"),
    ("localhost", "/fabrikam/_apis/projects", "loopback", "/fabrikam/_apis/projects"),
])
def test_map_host(host: str, path: str, style: str, internal: str) -> None:
    assert map_host(host, path) == (style, internal)


def test_normalise_path_lowercases_keywords_only() -> None:
    assert normalise_path("/Fabrikam/_APIS/Graph/Users/aad.AbCd") == "/Fabrikam/_apis/graph/users/aad.AbCd"
    assert normalise_path("/VSSPS/fabrikam/_apis/Graph/Memberships/aad.X/vssgp.Y") == \
        "/vssps/fabrikam/_apis/graph/memberships/aad.X/vssgp.Y"
    # a project named like a keyword keeps its case; the keyword after it is still normalised
    assert normalise_path("/f/_apis/Projects/Members/Teams/Users/Members") == \
        "/f/_apis/projects/Members/teams/Users/members"
    # nothing before _apis is touched (org names keep their case)
    assert normalise_path("/Users/_apis/ResourceAreas") == "/Users/_apis/resourceareas"


def test_bodies_echo_cloud_legacy_and_loopback_hosts(tiny: TinySim, client_for) -> None:
    c = client_for(tiny.world)
    cloud = {a["name"]: a["locationUrl"] for a in c.get("https://dev.azure.com/fabrikam/_apis/resourceAreas").json()["value"]}
    assert cloud["Graph"] == "https://vssps.dev.azure.com/fabrikam/"
    assert cloud["core"] == "https://dev.azure.com/fabrikam/"
    assert cloud["MemberEntitlementManagement"] == "https://vsaex.dev.azure.com/fabrikam/"
    assert cloud["Audit"] == "https://auditservice.dev.azure.com/fabrikam/"
    legacy = {a["name"]: a["locationUrl"]
              for a in c.get("https://fabrikam.visualstudio.com/_apis/resourceAreas").json()["value"]}
    assert legacy["Graph"] == "https://fabrikam.vssps.visualstudio.com/"
    assert legacy["core"] == "https://fabrikam.visualstudio.com/"
    loop = {a["name"]: a["locationUrl"]
            for a in c.get("http://127.0.0.1:8765/fabrikam/_apis/resourceAreas").json()["value"]}
    assert loop["Graph"] == "http://127.0.0.1:8765/vssps/fabrikam/"
    assert loop["Account"] == "http://127.0.0.1:8765/app.vssps/"
    # legacy vssps host reaches the vssps routes
    r = c.get("https://fabrikam.vssps.visualstudio.com/_apis/graph/users?api-version=7.1-preview.1",
              headers={"Authorization": basic_auth(tiny.pat)})
    assert r.status_code == 200
    assert r.json()["value"][0]["url"].startswith("https://fabrikam.vssps.visualstudio.com/_apis/")


def test_paths_are_case_insensitive_but_values_keep_case(tiny: TinySim, client_for) -> None:
    c = client_for(tiny.world, pat=tiny.pat, extra=True)
    r = c.get("/fabrikam/_APIS/ResourceAreas/" + GRAPH_AREA.upper())
    assert r.status_code == 200 and r.json()["id"] == GRAPH_AREA
    r = c.get("/fabrikam/_Apis/SimTest/USERS/aad.AbCdEf")  # SimTest is not a keyword: route must not match
    assert r.status_code == 404
    r = c.get("/fabrikam/_Apis/simtest/USERS/aad.AbCdEf")
    assert r.json()["params"] == {"org": "fabrikam", "descriptor": "aad.AbCdEf"}
    r = c.get("/FABRIKAM/_apis/Projects?api-version=7.1")
    assert r.status_code == 200 and r.json()["count"] == len(tiny.org.projects)


def test_unknown_route_is_plain_text_404_and_405_is_not_starlettes(tiny: TinySim, client_for) -> None:
    c = client_for(tiny.world, pat=tiny.pat)
    for url in ("/fabrikam/_apis/nothing-here", "/no/such/route", "/_sim/nope"):
        r = c.get(url)
        assert r.status_code == 404
        assert r.text == "Page not found."
        assert r.headers["content-type"].startswith("text/plain")
    r = c.delete("/fabrikam/_apis/resourceareas")
    assert r.status_code == 405
    assert r.json()["message"] == "The requested resource does not support http method 'DELETE'."


# ---- auth ----------------------------------------------------------------------------------------


def test_bad_pat_gives_203_html_without_suppress_and_401_with_it(tiny: TinySim, client_for) -> None:
    bad = {"Authorization": basic_auth("not-a-real-token")}
    plain = client_for(tiny.world, suppress=False)
    r = plain.get(PROJECTS, headers=bad)
    assert r.status_code == 203
    assert r.headers["content-type"].startswith("text/html")
    assert "Sign In" in r.text
    r = plain.post("/fabrikam/_apis/projects?api-version=7.1", headers=bad, json={})
    assert r.status_code == 203
    # PATCH never gets the sign-in page, even without Suppress
    r = plain.patch("/fabrikam/_apis/projects/x?api-version=7.1", headers=bad, json={})
    assert r.status_code == 401
    suppressed = client_for(tiny.world)
    r = suppressed.get(PROJECTS, headers=bad)
    assert r.status_code == 401
    body = r.json()
    assert body["typeKey"] == "UnauthorizedRequestException"
    assert body["message"] == "TF400813: The user '' is not authorized to access this resource."
    assert r.headers["WWW-Authenticate"] == 'Basic realm="https://dev.azure.com/"'
    assert r.headers["X-TFS-ProcessId"]
    # malformed Basic and unknown schemes are bad credentials too
    assert suppressed.get(PROJECTS, headers={"Authorization": "Basic %%%"}).status_code == 401
    assert suppressed.get(PROJECTS, headers={"Authorization": "Negotiate abc"}).status_code == 401


def test_anonymous_is_allowed_for_discovery_but_not_for_routes(tiny: TinySim, client_for) -> None:
    c = client_for(tiny.world)
    assert c.get("/fabrikam/_apis/resourceAreas").status_code == 200
    r = c.get(PROJECTS)
    assert r.status_code == 401
    assert r.json()["typeKey"] == "UnauthorizedRequestException"
    plain = client_for(tiny.world, suppress=False)
    assert plain.get(PROJECTS).status_code == 203


def test_any_user_name_works_with_a_pat(tiny: TinySim, client_for) -> None:
    c = client_for(tiny.world)
    header = "Basic " + base64.b64encode(f"someone@example.com:{tiny.pat}".encode()).decode()
    assert c.get(PROJECTS, headers={"Authorization": header}).status_code == 200


def test_expired_pat(tiny: TinySim, client_for) -> None:
    pat = tiny.world.issue_pat(ORG, tiny.org.owner_key, {"app_token"}, lifetime=timedelta(seconds=60))
    c = client_for(tiny.world, pat=pat.token)
    assert c.get(PROJECTS).status_code == 200
    tiny.world.clock.advance(timedelta(seconds=61))
    r = c.get(PROJECTS)
    assert r.status_code == 401
    assert r.json()["typeKey"] == "AccessCheckException"
    assert r.json()["message"] == "Access Denied: The Personal Access Token used has expired."
    plain = client_for(tiny.world, pat=pat.token, suppress=False)
    assert plain.get(PROJECTS).status_code == 203


def test_pat_bound_to_another_org(tiny: TinySim, client_for) -> None:
    other = tiny.world.new_org("contoso")
    pat = tiny.world.issue_pat("contoso", tiny.org.owner_key, {"app_token"})
    c = client_for(tiny.world, pat=pat.token)
    r = c.get(PROJECTS)
    assert r.status_code == 401
    assert r.json()["message"].startswith("TF400813: The user '")
    assert other.name == "contoso"
    # an all-organizations PAT works in every org
    everywhere = tiny.world.issue_pat(None, tiny.org.owner_key, {"app_token"})
    assert client_for(tiny.world, pat=everywhere.token).get(PROJECTS).status_code == 200


def test_missing_scope_is_401_and_implied_scopes_pass(tiny: TinySim, client_for) -> None:
    key = tiny.org.owner_key
    narrow = tiny.world.issue_pat(ORG, key, {"vso.project"})
    broad = tiny.world.issue_pat(ORG, key, {"vso.graph_manage"})
    url = "/fabrikam/_apis/simtest/scoped?scope=vso.graph"
    r = client_for(tiny.world, pat=narrow.token, extra=True).get(url)
    assert r.status_code == 401
    assert r.json()["message"] == f"TF400813: The user '{key}' is not authorized to access this resource."
    r = client_for(tiny.world, pat=broad.token, extra=True).get(url)
    assert r.status_code == 200 and r.json()["kind"] == "pat" and r.json()["user"] == key
    # and a real route: projects needs vso.project
    assert client_for(tiny.world, pat=broad.token).get(PROJECTS).status_code == 401
    assert client_for(tiny.world, pat=narrow.token).get(PROJECTS).status_code == 200


def test_bad_bearer_on_ado_is_401_but_msgraph_decides_itself(tiny: TinySim, client_for) -> None:
    c = client_for(tiny.world, extra=True)
    bearer = {"Authorization": "Bearer eyJnot.a.token"}
    r = c.get(PROJECTS, headers=bearer)
    assert r.status_code == 401 and r.json()["typeKey"] == "UnauthorizedRequestException"
    r = c.get("https://graph.microsoft.com/v1.0/simtest", headers=bearer)
    assert r.status_code == 200
    assert r.json()["kind"] == "anonymous" and r.json()["auth_error"] == "invalid"
    r = c.get("https://graph.microsoft.com/v1.0/simtest")
    assert r.json()["auth_error"] is None


# ---- faults ----------------------------------------------------------------------------------


def _areas(c: httpx.Client) -> httpx.Response:
    return c.get("/fabrikam/_apis/resourceAreas")


def test_error_rate_is_503_json_and_deterministic(tiny: TinySim, client_for) -> None:
    c = client_for(tiny.world, pat=tiny.pat)
    tiny.world.faults.configure({"error_rate": 1.0})
    r = _areas(c)
    assert r.status_code == 503
    assert r.json()["typeKey"] == "ServiceUnavailableException"
    tiny.world.faults.configure({"error_rate": 0.3, "seed": 11})
    first = [_areas(c).status_code for _ in range(60)]
    tiny.world.faults.configure({"error_rate": 0.3, "seed": 11})
    second = [_areas(c).status_code for _ in range(60)]
    assert first == second
    assert 5 <= first.count(503) <= 35 and first.count(200) > 20
    # admin API is never faulted
    tiny.world.faults.configure({"error_rate": 1.0})
    assert c.get("/_sim/counters").status_code == 200


def test_latency(tiny: TinySim, client_for) -> None:
    c = client_for(tiny.world)
    tiny.world.faults.configure({"latency_ms": [120, 120]})
    t0 = time.monotonic()
    assert _areas(c).status_code == 200
    assert time.monotonic() - t0 >= 0.11


def test_scripted_faults(tiny: TinySim, client_for) -> None:
    c = client_for(tiny.world, pat=tiny.pat)
    r = c.post("/_sim/faults/rules", json={"path": "/_apis/projects", "count": 2, "status": 500})
    assert r.status_code == 201
    c.post("/_sim/faults/rules", json={"path": "resourceareas", "method": "GET", "count": 1,
                                       "status": 429, "headers": {"Retry-After": "3"}})
    assert [c.get(PROJECTS).status_code for _ in range(3)] == [500, 500, 200]
    r = _areas(c)
    assert r.status_code == 429 and r.headers["Retry-After"] == "3"
    assert _areas(c).status_code == 200
    rules = c.get("/_sim/faults").json()["rules"]
    assert [(x["count"], x["hits"]) for x in rules] == [(0, 2), (0, 1)]
    # rules never touch the admin API
    c.put("/_sim/faults", json={"rules": [{"path": ".*", "count": -1, "status": 503}]})
    assert c.get("/_sim/counters").status_code == 200
    assert _areas(c).status_code == 503
    # a rule may fault Entra / Microsoft Graph paths (random faults do not)
    c.put("/_sim/faults", json={"error_rate": 1.0,
                                "rules": [{"path": "^/v1\\.0/", "count": 1, "status": 504}]})
    assert c.get("https://graph.microsoft.com/v1.0/groups/x").status_code == 504
    assert c.get("https://graph.microsoft.com/v1.0/groups/x").status_code != 503


def test_faults_config_validation_and_clear(tiny: TinySim, client_for) -> None:
    c = client_for(tiny.world)
    assert c.put("/_sim/faults", json={"error_rate": 2}).status_code == 400
    assert c.put("/_sim/faults", json={"error_status": 404}).status_code == 400
    assert c.put("/_sim/faults", json={"rules": [{"path": "("}]}).status_code == 400
    assert c.put("/_sim/faults", json={"rules": [{"path": "x"}]}).status_code == 400
    cfg = c.put("/_sim/faults", json={"latency_ms": [1, 5], "drop_rate": 0.1, "seed": 3}).json()
    assert cfg["latency_ms"] == [1, 5] and cfg["drop_rate"] == 0.1 and cfg["seed"] == 3
    cleared = c.delete("/_sim/faults").json()
    assert cleared["drop_rate"] == 0 and cleared["rules"] == [] and cleared["throttle"] is None


def test_throttling_headers_delay_and_429(tiny: TinySim, client_for) -> None:
    c = client_for(tiny.world, pat=tiny.pat)
    tiny.world.faults.configure({"throttle": {"budget": 10, "window_seconds": 300, "delay_band": 0.5,
                                              "max_delay_seconds": 0.05}})
    responses = [c.get(PROJECTS) for _ in range(16)]
    codes = [r.status_code for r in responses]
    assert codes == [200] * 15 + [429]
    # below 50% of the budget: no rate-limit headers
    assert all("X-RateLimit-Limit" not in r.headers for r in responses[:5])
    # past 50%: the headers appear, before any delay
    sixth = responses[5].headers
    assert sixth["X-RateLimit-Limit"] == "10" and sixth["X-RateLimit-Remaining"] == "4"
    assert sixth["X-RateLimit-Resource"] and int(sixth["X-RateLimit-Reset"]) > time.time()
    assert "X-RateLimit-Delay" not in sixth
    # over budget, inside the band: delayed but still 200
    delayed = responses[10:15]
    assert all(float(r.headers["X-RateLimit-Delay"]) > 0 for r in delayed)
    assert all(r.headers["X-RateLimit-Remaining"] == "0" for r in delayed)
    blocked = responses[15]
    assert int(blocked.headers["Retry-After"]) >= 1
    assert blocked.headers["X-RateLimit-Limit"] == "10"
    body = blocked.json()
    assert body["message"].startswith("TF400733: The request has been canceled: Request was blocked due "
                                      "to exceeding usage of resource '")
    assert "' in namespace '" in body["message"]
    # another identity has its own budget
    other = tiny.world.issue_pat(ORG, next(u.storage_key for u in tiny.org.users()
                                           if u.storage_key != tiny.org.owner_key), {"app_token"})
    fresh = client_for(tiny.world, pat=other.token).get(PROJECTS)
    assert fresh.status_code != 429 and "X-RateLimit-Limit" not in fresh.headers
    # the window slides on the world clock: after Retry-After the caller gets through
    tiny.world.clock.advance(timedelta(seconds=int(blocked.headers["Retry-After"])))
    assert c.get(PROJECTS).status_code == 200
    tiny.world.clock.advance(timedelta(seconds=301))
    r = c.get(PROJECTS)
    assert r.status_code == 200 and "X-RateLimit-Limit" not in r.headers


def test_throttle_costs_per_path() -> None:
    f = Faults({"throttle": {"budget": 10, "costs": {"graph/users": 4}, "list_cost": 2}})
    d = f.decide("GET", "/vssps/o/_apis/graph/users", identity="u", now=1000.0, random_ok=True)
    assert d.status is None and f.usage_of("u", 1000.0) == 4
    f.decide("GET", "/o/_apis/projects", identity="u", now=1000.0, random_ok=True)
    assert f.usage_of("u", 1000.0) == 6
    f.decide("GET", "/o/_apis/projects/abc", identity="u", now=1000.0, random_ok=True)
    assert f.usage_of("u", 1000.0) == 7
    assert f.usage_of("u", 1301.0) == 0


# ---- counting, clock, admin ---------------------------------------------------------------------


def test_counters_per_route_template(tiny: TinySim, client_for) -> None:
    c = client_for(tiny.world, pat=tiny.pat)
    c.delete("/_sim/counters")
    for _ in range(3):
        _areas(c)
    c.get(f"https://vssps.dev.azure.com/fabrikam/_apis/resourceareas/{GRAPH_AREA}")
    c.get(PROJECTS)
    c.get("/nowhere")
    counts = c.get("/_sim/counters").json()
    assert counts["counts"]["GET /{org}/_apis/resourceareas"] == 3
    assert counts["counts"]["GET /vssps/{org}/_apis/resourceareas/{area_id}"] == 1
    assert counts["counts"]["GET <no route>"] == 1
    assert counts["total"] == 6
    assert not any(k.startswith("GET /_sim") for k in counts["counts"])  # admin calls are not counted
    assert c.delete("/_sim/counters").json()["total"] == 0
    assert tiny.world.request_counts.total() == 0


def test_clock_advance(tiny: TinySim, client_for) -> None:
    c = client_for(tiny.world)
    before = c.get("/_sim/clock").json()["epoch"]
    after = c.post("/_sim/clock/advance", json={"seconds": 3600}).json()["epoch"]
    assert 3600 <= after - before < 3660
    assert c.post("/_sim/clock/advance", json={"seconds": -5}).status_code == 400


def test_admin_pat_creation(tiny: TinySim, client_for) -> None:
    c = client_for(tiny.world)
    owner = tiny.org.by_storage_key(tiny.org.owner_key)
    assert owner is not None
    r = c.post("/_sim/pats", json={"org": ORG, "user": owner.principal_name.upper(),
                                   "scopes": ["vso.project"], "expires_in_seconds": 60})
    assert r.status_code == 201
    body = r.json()
    assert body["user_key"] == owner.storage_key and body["scopes"] == ["vso.project"]
    assert c.get(PROJECTS, headers={"Authorization": basic_auth(body["token"])}).status_code == 200
    # default user is the owner; default scope full access
    r = c.post("/_sim/pats", json={"org": None})
    assert r.json()["user_key"] == tiny.org.owner_key and r.json()["scopes"] == ["app_token"]
    assert r.json()["org"] is None
    assert c.post("/_sim/pats", json={"org": ORG, "user": "nobody@nowhere"}).status_code == 404
    c.post("/_sim/clock/advance", json={"seconds": 61})
    r = c.get(PROJECTS, headers={"Authorization": basic_auth(body["token"])})
    assert r.status_code == 401 and r.json()["typeKey"] == "AccessCheckException"


def test_admin_orgs_settings_entra_and_export(tiny: TinySim, client_for) -> None:
    c = client_for(tiny.world)
    orgs = c.get("/_sim/orgs").json()
    assert orgs["count"] == 1 and orgs["value"][0]["name"] == ORG
    assert orgs["value"][0]["users"] == len(tiny.org.user_order)
    assert c.put("/_sim/fabrikam/settings", json={"auditing_enabled": False}).json() == {
        "auditing_enabled": False}
    assert tiny.org.auditing_enabled is False
    assert c.put("/_sim/nope/settings", json={}).status_code == 404
    r = c.put("/_sim/entra", json={"propagation_delay_seconds": 30}).json()
    assert r["propagation_delay_seconds"] == 30
    assert tiny.world.propagation_delay == timedelta(seconds=30)
    export = c.get("/_sim/fabrikam/export").json()
    assert set(export) == set(TABLES)
    assert len(export["users"]) == sum(1 for u in tiny.org.users() if u.subject_type in ("aad", "msa"))
    assert len(export["projects"]) == len(tiny.org.projects)


def test_admin_mutations(tiny: TinySim, client_for) -> None:
    c = client_for(tiny.world)
    before = ground_truth(tiny.org)
    r = c.post("/_sim/fabrikam/mutations/random", json={"count": 5, "seed": 3})
    assert r.status_code == 200, r.text
    assert r.json()["applied"] == 5
    assert ground_truth(tiny.org) != before
    assert c.post("/_sim/fabrikam/mutations", json={"not": "a list"}).status_code == 400


def test_settle_runs_on_each_request(tiny: TinySim, client_for) -> None:
    """Entra → Azure DevOps propagation becomes visible on the first request after the delay."""
    w, org = tiny.world, tiny.org
    group = org.create_group(display_name="Late Group", entra_oid=w.new_guid(), audit=False)
    user = next(u for u in org.users() if u.subject_type == "aad")
    w.propagation_delay = timedelta(seconds=30)
    w.entra_write(group.origin_id, user.origin_id, True)
    c = client_for(w)
    _areas(c)
    assert not org.is_member(group.descriptor, user.descriptor)
    w.clock.advance(timedelta(seconds=31))
    _areas(c)
    assert org.is_member(group.descriptor, user.descriptor)


# ---- discovery ------------------------------------------------------------------------------------


def test_discovery_list_single_and_global(tiny: TinySim, client_for) -> None:
    c = client_for(tiny.world)
    listing = _areas(c).json()
    assert listing["count"] == len(listing["value"]) == 7
    ids = {a["id"] for a in listing["value"]}
    assert {GRAPH_AREA, "4e40f190-2e3f-4d9f-8331-c7788e833080", "79134c72-4a58-4b42-976c-04e7115f32bf",
            "8a3d49b8-91f0-46ef-b33d-dda338c25db3", "68ddce18-2501-45f1-a17b-7931a9922690",
            "94ff054d-5ee1-413d-9341-3f4a7827de2e", "0d55247a-1c47-4462-9b1f-5e2125590ee6"} == ids
    single = c.get(f"/fabrikam/_apis/resourceAreas/{GRAPH_AREA}?api-version=5.0-preview.1").json()
    assert single == {"id": GRAPH_AREA, "name": "Graph", "locationUrl": "https://vssps.dev.azure.com/fabrikam/"}
    profile = c.get("/fabrikam/_apis/resourceAreas/4e40f190-2e3f-4d9f-8331-c7788e833080").json()
    assert profile["locationUrl"] == "https://dev.azure.com/fabrikam/"
    glob = c.get(f"/_apis/resourceAreas/{GRAPH_AREA}?accountName=FABRIKAM").json()
    assert glob["locationUrl"] == "https://vssps.dev.azure.com/fabrikam/"
    by_host = c.get(f"/_apis/resourceAreas/{GRAPH_AREA}", params={"hostId": tiny.org.id}).json()
    assert by_host == glob
    assert c.get(f"/_apis/resourceAreas/{GRAPH_AREA}").status_code == 400
    r = c.get(f"/_apis/resourceAreas/{GRAPH_AREA}?accountName=nope")
    assert r.status_code == 404 and r.json()["typeKey"] == "HostDoesNotExistException"
    assert c.get("/nope/_apis/resourceAreas").status_code == 404
    assert c.get("/fabrikam/_apis/resourceAreas/00000000-0000-0000-0000-000000000000").status_code == 404


def test_options_lists_served_locations(tiny: TinySim, client_for) -> None:
    c = client_for(tiny.world)
    r = c.options("https://vssps.dev.azure.com/fabrikam/_apis")
    assert r.status_code == 200
    locs = {x["id"]: x for x in r.json()["value"]}
    assert r.json()["count"] == len(locs)
    users = locs["005e26ec-6b77-4e4f-a986-b3827bf241f5"]
    assert users["area"] == "Graph" and users["resourceName"] == "Users"
    assert users["routeTemplate"] == "_apis/{area}/{resource}/{userDescriptor}"
    assert set(users) == {"id", "area", "resourceName", "routeTemplate", "resourceVersion", "minVersion",
                          "maxVersion", "releasedVersion"}
    core = {x["resourceName"] for x in c.options("https://dev.azure.com/fabrikam/_apis/").json()["value"]}
    assert {"projects", "teams", "members", "ResourceAreas"} <= core
    assert "Users" not in core  # only the locations served on that host
    accounts = c.options("https://app.vssps.visualstudio.com/_apis").json()["value"]
    assert [a["resourceName"] for a in accounts] == ["Accounts"]
    assert c.options("https://vssps.dev.azure.com/nope/_apis").status_code == 404


# ---- ground truth -------------------------------------------------------------------------------


def test_ground_truth_columns_match_the_raw_schemas(tiny: TinySim) -> None:
    truth = ground_truth(tiny.org)
    for table in TABLES:
        names = schemas.RAW_TABLES[table].names
        assert truth[table], table
        for row in truth[table]:
            assert list(row) == names, table
    # values are typed as the schemas say and keys are unique
    for table, rows in truth.items():
        key = schemas.key_columns(schemas.RAW_TABLES[table])
        assert len({tuple(r[k] for k in key) for r in rows}) == len(rows), table
    import pyarrow as pa

    for table, rows in truth.items():
        pa.Table.from_pylist(rows, schema=schemas.RAW_TABLES[table])  # raises on a type mismatch


def test_ground_truth_content(tiny: TinySim) -> None:
    org = tiny.org
    truth = ground_truth(org)
    kinds = {r["member_kind"] for r in truth["memberships"]}
    assert kinds <= {"user", "service_account", "service_principal", "group"}
    assert len(truth["memberships"]) == org.membership_count()
    by_d = {r["descriptor"]: r for r in truth["users"]}
    for u in org.users():
        if u.subject_type == "svc":
            assert u.descriptor not in by_d
            continue
        row = by_d[u.descriptor]
        ent = org.entitlements.get(u.storage_key)
        assert row["license"] == (ent.account_license_type if ent else None)
        if ent is not None and ent.last_accessed.year == 1:
            assert row["last_accessed"] is None
    admins = [r for r in truth["team_members"] if r["is_team_admin"]]
    assert all(r["member_descriptor"] in org.teams[r["team_id"]].admins for r in admins)
    assert {r["kind"] for r in truth["groups"]} <= {"vssgp", "aadgp"}


def test_export_is_json_serialisable(tiny: TinySim, client_for) -> None:
    c = client_for(tiny.world)
    body = c.get("/_sim/fabrikam/export").text
    data = json.loads(body)
    assert data["projects"][0]["last_update_time"].endswith("+00:00")


def test_ado_answers_carry_activity_ids(tiny: TinySim, client_for) -> None:
    c = client_for(tiny.world, pat=tiny.pat)
    a, b = c.get(PROJECTS), c.get("/nowhere")
    assert a.headers["ActivityId"] != b.headers["ActivityId"]
    assert a.headers["X-VSS-E2EID"] == a.headers["ActivityId"]
    assert "ActivityId" not in c.get("/_sim/clock").headers


def test_admin_scripted_mutations_with_iso_times(tiny: TinySim, client_for) -> None:
    c = client_for(tiny.world)
    target = tiny.world.clock.now() + timedelta(hours=2)
    later = target.isoformat().replace("+00:00", "Z")
    r = c.post("/_sim/fabrikam/mutations", json=[{"op": "create_group", "name": "Night Shift", "at": later}])
    assert r.status_code == 200, r.text
    assert r.json()["result"][0]["ok"] is True
    assert any(g.display_name == "Night Shift" for g in tiny.org.groups())
    assert tiny.world.clock.now() >= target  # the op waited for its time
    assert c.post("/_sim/fabrikam/mutations", json=[{"op": "x", "at": "not a time"}]).status_code == 400


def test_export_selected_tables_and_throttle_usage(tiny: TinySim, client_for) -> None:
    c = client_for(tiny.world, pat=tiny.pat)
    assert set(c.get("/_sim/fabrikam/export?tables=projects,teams").json()) == {"projects", "teams"}
    assert c.get("/_sim/fabrikam/export?tables=nope").status_code == 400
    c.put("/_sim/faults", json={"throttle": {"budget": 100}})
    for _ in range(3):
        c.get(PROJECTS)
    assert c.get("/_sim/faults").json()["usage"] == {tiny.org.owner_key: 3}


def test_in_process_drop_is_a_remote_protocol_error(tiny: TinySim, client_for) -> None:
    c = client_for(tiny.world)
    tiny.world.faults.configure({"rules": [{"path": "resourceareas", "count": 1, "drop": True}]})
    with pytest.raises(httpx.RemoteProtocolError):
        _areas(c)
    assert _areas(c).status_code == 200


@pytest.mark.anyio
async def test_async_asgi_client_fixture(async_asgi_client: httpx.AsyncClient, tiny: TinySim) -> None:
    r = await async_asgi_client.get(PROJECTS)
    assert r.status_code == 200 and r.json()["count"] == len(tiny.org.projects)


def test_asgi_client_fixture(asgi_client: httpx.Client, tiny: TinySim) -> None:
    r = asgi_client.get("https://vssps.dev.azure.com/fabrikam/_apis/graph/users?api-version=7.1-preview.1")
    assert r.status_code == 200
    assert r.json()["value"][0]["url"].startswith("https://vssps.dev.azure.com/fabrikam/")


def test_valid_pat_of_someone_outside_the_org_is_401(tiny: TinySim, client_for) -> None:
    contoso = tiny.world.new_org("contoso")
    outsider = contoso.add_user(kind="aad", display_name="Out Sider", principal_name="out@contoso.com")
    pat = tiny.world.issue_pat(None, outsider.storage_key, {"app_token"})  # all organizations
    c = client_for(tiny.world, pat=pat.token)
    r = c.get(PROJECTS)
    assert r.status_code == 401
    assert r.json()["message"] == (f"TF400813: The user '{outsider.storage_key}' is not authorized to "
                                   "access this resource.")
    assert _areas(c).status_code == 200  # discovery stays open
    assert c.get("/contoso/_apis/projects?api-version=7.1").status_code == 200
    # removing a user from the organization locks their PAT out
    member = next(u for u in tiny.org.users() if u.storage_key != tiny.org.owner_key
                  and u.subject_type in ("aad", "msa"))
    own = tiny.world.issue_pat(ORG, member.storage_key, {"app_token"})
    mc = client_for(tiny.world, pat=own.token)
    assert mc.get(PROJECTS).status_code == 200
    tiny.org.remove_user(member.storage_key)
    assert mc.get(PROJECTS).status_code == 401


def test_random_faults_reach_entra_and_graph_only_when_asked(tiny: TinySim, client_for) -> None:
    c = client_for(tiny.world)
    token_url = f"https://login.microsoftonline.com/{tiny.world.tenant_id}/oauth2/v2.0/token"
    tiny.world.faults.configure({"error_rate": 1.0})
    assert c.post(token_url, data={"grant_type": "client_credentials"}).status_code != 503
    assert c.get("https://graph.microsoft.com/v1.0/groups/x").status_code != 503
    tiny.world.faults.configure({"error_rate": 1.0, "include_entra": True})
    r = c.post(token_url, data={"grant_type": "client_credentials"})
    assert r.status_code == 503 and r.json()["error"] == "temporarily_unavailable"
    r = c.get("https://graph.microsoft.com/v1.0/groups/x")
    assert r.status_code == 503 and r.json()["error"]["code"] == "serviceNotAvailable"


def test_percent_escapes_survive_host_mapping(tiny: TinySim, client_for) -> None:
    c = client_for(tiny.world, pat=tiny.pat, extra=True)
    r = c.get("https://fabrikam.visualstudio.com/_apis/simtest/Users/a%20b%2Bc")
    assert r.status_code == 200
    assert r.json()["params"]["descriptor"] == "a b+c"
    assert r.json()["style"] == "legacy"
