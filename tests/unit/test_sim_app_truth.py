"""Ground truth (truth.py) agrees with what the simulator's own routes report.

truth.py reads state directly so integration tests never share a bug with the client; this test
makes sure the two views of the simulator cannot drift apart (a field the routes render
differently from state would otherwise make every sync look wrong). Plain HTTP reads, no client.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from azdo_sim.server import in_process_client
from azdo_sim.truth import ground_truth

from tests.conftest import ORG, TinySim, basic_auth

G = "https://vssps.dev.azure.com/fabrikam/_apis/graph"
GRAPH_V = {"api-version": "7.1-preview.1"}
PROJECT_DOMAIN = "vstfs:///Classification/TeamProject/"


@pytest.fixture(params=["tiny", "small"])
def tiny(request: pytest.FixtureRequest) -> TinySim:
    """Overrides conftest's `tiny`: each test runs on a generated tiny and small organization."""
    from azdo_sim.generator import generate
    from azdo_sim.state import World

    world = World(seed=5)
    org = generate(world, ORG, size=request.param, seed=5)
    return TinySim(world, org, world.issue_pat(ORG, org.owner_key, {"app_token"}).token)


@pytest.fixture
def wire(tiny: TinySim) -> Iterator[httpx.Client]:
    c = in_process_client(tiny.world, base_url="https://dev.azure.com",
                          headers={"Authorization": basic_auth(tiny.pat), "X-TFS-FedAuthRedirect": "Suppress"})
    yield c
    c.close()


def graph_list(c: httpx.Client, what: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    token = None
    for _ in range(1000):
        params = dict(GRAPH_V, **({"continuationToken": token} if token else {}))
        r = c.get(f"{G}/{what}", params=params)
        assert r.status_code == 200, r.text
        out += r.json()["value"]
        token = r.headers.get("X-MS-ContinuationToken")
        if not token:
            return out
    raise AssertionError("paging did not end")


def ts(text: str | None) -> datetime | None:
    if not text or text.startswith("0001-01-01"):
        return None
    head, _, frac = text.rstrip("Z").partition(".")
    value = datetime.fromisoformat(head).replace(tzinfo=UTC)
    return value.replace(microsecond=int((frac + "000000")[:6])) if frac else value


def test_identities_match_the_graph_api(tiny: TinySim, wire: httpx.Client) -> None:
    truth = ground_truth(tiny.org)
    users = {u["descriptor"]: u for u in graph_list(wire, "users")}
    for row in truth["users"]:
        u = users.pop(row["descriptor"])
        assert (u["origin"], u["originId"], u["principalName"], u["displayName"], u["mailAddress"],
                u["domain"], u.get("metaType")) == (
            row["origin"], row["origin_id"], row["principal_name"], row["display_name"],
            row["mail_address"], row["domain"], row["meta_type"]), row["descriptor"]
    for row in truth["service_accounts"]:
        u = users.pop(row["descriptor"])
        assert (u["principalName"], u["displayName"], u["domain"], u["origin"], u["originId"]) == (
            row["principal_name"], row["display_name"], row["domain"], row["origin"], row["origin_id"])
    assert users == {}, "Graph lists users that ground truth lacks"

    sps = {s["descriptor"]: s for s in graph_list(wire, "serviceprincipals")}
    assert set(sps) == {r["descriptor"] for r in truth["service_principals"]}
    for row in truth["service_principals"]:
        s = sps[row["descriptor"]]
        assert (s["displayName"], s["applicationId"], s["originId"], s["domain"]) == (
            row["display_name"], row["application_id"], row["origin_id"], row["domain"])

    groups = {g["descriptor"]: g for g in graph_list(wire, "groups")}
    assert set(groups) == {r["descriptor"] for r in truth["groups"]}
    for row in truth["groups"]:
        g = groups[row["descriptor"]]
        domain = g["domain"]
        assert (g["displayName"], g["principalName"], g["description"], g["origin"], g["originId"],
                domain) == (row["display_name"], row["principal_name"], row["description"], row["origin"],
                            row["origin_id"], row["domain"]), row["descriptor"]
        project = domain[len(PROJECT_DOMAIN):] if domain.startswith(PROJECT_DOMAIN) else None
        assert (project, "project" if project else "organization") == (row["project_id"], row["scope"])
        assert row["kind"] == row["descriptor"].split(".", 1)[0]
        if row["kind"] == "vssgp":
            assert row["storage_key"] == g["originId"]
            r = wire.get(f"{G}/storagekeys/{row['descriptor']}", params=GRAPH_V)
            assert r.status_code == 200 and r.json()["value"] == row["storage_key"]
        else:
            assert row["storage_key"] is None  # schemas.GROUPS: null for Entra groups


def test_memberships_match_the_graph_api(tiny: TinySim, wire: httpx.Client) -> None:
    truth = ground_truth(tiny.org)
    edges: set[tuple[str, str]] = set()
    for g in truth["groups"]:
        r = wire.get(f"{G}/memberships/{g['descriptor']}", params=dict(GRAPH_V, direction="down"))
        assert r.status_code == 200, r.text
        edges |= {(m["containerDescriptor"], m["memberDescriptor"]) for m in r.json()["value"]}
    assert edges == {(m["container_descriptor"], m["member_descriptor"]) for m in truth["memberships"]}


def test_entitlements_match_the_user_entitlements_api(tiny: TinySim, wire: httpx.Client) -> None:
    truth = {u["storage_key"]: u for u in ground_truth(tiny.org)["users"]}
    seen: dict[str, dict[str, Any]] = {}
    token = None
    for _ in range(1000):
        params = {"api-version": "7.1", **({"continuationToken": token} if token else {})}
        body = wire.get(f"https://vsaex.dev.azure.com/{ORG}/_apis/userentitlements", params=params).json()
        seen.update({m["id"]: m for m in body["members"]})
        token = body.get("continuationToken")
        if not token:
            break
    licensed = {k: v for k, v in truth.items() if v["license"] is not None}
    assert set(seen) == set(licensed)
    for key, m in seen.items():
        row, level = licensed[key], m["accessLevel"]
        assert (level["accountLicenseType"], level["licensingSource"], level["msdnLicenseType"],
                level["licenseDisplayName"], level["status"]) == (
            row["license"], row["licensing_source"], row["msdn_license_type"], row["license_display_name"],
            row["status"])
        assert ts(m.get("lastAccessedDate")) == row["last_accessed"]
        assert ts(m.get("dateCreated")) == row["date_created"]
        assert m["user"]["descriptor"] == row["descriptor"]


def test_projects_and_teams_match_the_core_api(tiny: TinySim, wire: httpx.Client) -> None:
    truth = ground_truth(tiny.org)
    projects = wire.get(f"/{ORG}/_apis/projects", params={"api-version": "7.1", "$top": 1000}).json()["value"]
    assert {p["id"]: (p["name"], p.get("description"), p["state"], p["visibility"], p["revision"],
                      ts(p["lastUpdateTime"])) for p in projects} == {
        r["id"]: (r["name"], r["description"], r["state"], r["visibility"], r["revision"],
                  r["last_update_time"]) for r in truth["projects"]}
    teams = wire.get(f"/{ORG}/_apis/teams", params={"api-version": "7.1-preview.3", "$top": 1000}).json()["value"]
    assert {t["id"]: (t["name"], t.get("description", ""), t["projectId"], t["projectName"]) for t in teams} == {
        r["id"]: (r["name"], r["description"], r["project_id"], r["project_name"]) for r in truth["teams"]}
    members: set[tuple[str, str, str, str, bool]] = set()
    for t in teams:
        url = f"/{ORG}/_apis/projects/{t['projectId']}/teams/{t['id']}/members"
        for m in wire.get(url, params={"api-version": "7.1", "$top": 1000}).json()["value"]:
            ident = m["identity"]
            members.add((t["id"], ident["descriptor"], ident["id"], ident["displayName"],
                         bool(m.get("isTeamAdmin"))))
    # The members route lists members only; administrators who are not members are ACL entries.
    assert members == {(r["team_id"], r["member_descriptor"], r["member_storage_key"], r["display_name"],
                        r["is_team_admin"]) for r in truth["team_members"] if r["is_member"]}
