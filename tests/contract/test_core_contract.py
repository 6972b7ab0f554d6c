"""Core routes (dev.azure.com): projects, teams, team members against core/7.1/core.json + examples;
resource areas and connectionData (no spec in the shared folder) against the behaviour doc.
"""

from __future__ import annotations

import re

import pytest

from . import spec
from .conftest import CORE, VSSPS, ContractWorld, Sim
from .helpers import assert_contract

V = "api-version=7.1"
D12 = "D12 docs/spec-deviations.md: member declared by the 7.1 schema, example recorded at api 1.0-2.2"
PROJECT_EXTRA = {f"$.value[*].{k}": D12 for k in ("revision", "visibility", "lastUpdateTime")}
TEAM_EXTRA = {f"$.value[*].{k}": D12 for k in ("projectId", "projectName")}
GUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def test_projects_list(sim: Sim, cw: ContractWorld) -> None:
    r = sim.get(f"{CORE}/_apis/projects?{V}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert_contract("core", "Projects_List", body, allow_extra=PROJECT_EXTRA)
    assert [p["id"] for p in body["value"]] == cw.org.project_order
    for p in body["value"]:
        assert p["url"] == f"{CORE}/_apis/projects/{p['id']}"
    assert "x-ms-continuationtoken" not in r.headers


def test_projects_list_continuation_header(sim: Sim, cw: ContractWorld) -> None:
    """D8: with more projects left the next offset comes in X-MS-ContinuationToken (an integer)."""
    r = sim.get(f"{CORE}/_apis/projects?$top=1&{V}")
    assert r.status_code == 200
    assert_contract("core", "Projects_List", r.json(), allow_extra=PROJECT_EXTRA)
    token = r.headers.get("X-MS-ContinuationToken")
    assert token is not None and token.isdigit()
    r2 = sim.get(f"{CORE}/_apis/projects?$top=1&continuationToken={token}&{V}")
    assert [p["id"] for p in r.json()["value"] + r2.json()["value"]] == cw.org.project_order
    assert "x-ms-continuationtoken" not in r2.headers


def test_project_get(sim: Sim, cw: ContractWorld) -> None:
    body = sim.json_ok("GET", f"{CORE}/_apis/projects/{cw.project.id}?{V}")
    spec.assert_valid("core", "Projects_Get", body)  # no official example for this operation
    (ex,) = spec.examples_for("core", "Projects_List")
    assert set(ex.body["value"][0]) <= set(body)  # at least what a list item has
    assert body["id"] == cw.project.id and body["name"] == cw.project.name
    assert body["defaultTeam"]["id"] == cw.team.id
    assert body["_links"]["self"]["href"] == f"{CORE}/_apis/projects/{cw.project.id}"


@pytest.mark.parametrize("url,op", [
    ("{CORE}/_apis/projects/{pid}/teams?api-version=7.1", "Teams_Get Teams"),
    ("{CORE}/_apis/teams?api-version=7.1-preview.3", "Teams_Get All Teams"),
])
def test_teams_list(sim: Sim, cw: ContractWorld, url: str, op: str) -> None:
    body = sim.json_ok("GET", url.format(CORE=CORE, pid=cw.project.id))
    assert_contract("core", op, body, allow_extra=TEAM_EXTRA)
    for t in body["value"]:
        assert re.fullmatch(rf"{CORE}/_apis/projects/{GUID}/teams/{GUID}", t["url"]), t["url"]
        # a team's id is its group's identity id (behaviour doc §3.5)
        assert t["identityUrl"] == f"{VSSPS}/_apis/Identities/{t['id']}"
    assert cw.team.id in {t["id"] for t in body["value"]}


def test_team_get(sim: Sim, cw: ContractWorld) -> None:
    body = sim.json_ok("GET", f"{CORE}/_apis/projects/{cw.project.id}/teams/{cw.team.id}?{V}")
    assert_contract("core", "Teams_Get", body, allow_extra={"$.projectId": D12, "$.projectName": D12})
    assert body["id"] == cw.team.id and body["projectId"] == cw.project.id


def test_team_members(sim: Sim, cw: ContractWorld) -> None:
    body = sim.json_ok("GET", f"{CORE}/_apis/projects/{cw.project.id}/teams/{cw.team.id}/members?{V}")
    assert_contract("core", "Teams_Get Team Members With Extended Properties", body,
                    allow_extra={"$.value[*].identity.descriptor": D12, "$.value[*].identity._links": D12})
    ids = {m["identity"]["id"]: m for m in body["value"]}
    expected = {cw.org.identities[d].storage_key for d in cw.org.members(cw.team.group_descriptor)}
    assert set(ids) == expected
    assert ids[cw.member.storage_key]["isTeamAdmin"] is True
    assert ids[cw.guest.storage_key]["isTeamAdmin"] is False
    for m in body["value"]:
        ident = m["identity"]
        assert ident["url"] == f"{VSSPS}/_apis/Identities/{ident['id']}"
        assert ident["imageUrl"].startswith(f"{CORE}/_api")


# ---- no spec in the shared folder: behaviour doc §1.2 ----------------------------------------

AREA_HOSTS = {  # behaviour doc §1.1
    "79134c72-4a58-4b42-976c-04e7115f32bf": "https://dev.azure.com/fabrikam/",
    "bb1e7ec9-e901-4b68-999a-de7012b920f8": "https://vssps.dev.azure.com/fabrikam/",
    "4e40f190-2e3f-4d9f-8331-c7788e833080": "https://dev.azure.com/fabrikam/",
    "8a3d49b8-91f0-46ef-b33d-dda338c25db3": "https://vssps.dev.azure.com/fabrikam/",
    "68ddce18-2501-45f1-a17b-7931a9922690": "https://vsaex.dev.azure.com/fabrikam/",
    "94ff054d-5ee1-413d-9341-3f4a7827de2e": "https://auditservice.dev.azure.com/fabrikam/",
}


def test_resource_areas(sim: Sim) -> None:
    body = sim.json_ok("GET", f"{CORE}/_apis/resourceAreas?api-version=5.0-preview.1")
    assert set(body) == {"count", "value"} and body["count"] == len(body["value"])
    by_id = {a["id"]: a for a in body["value"]}
    for area in body["value"]:
        assert set(area) == {"id", "name", "locationUrl"}
    for area_id, url in AREA_HOSTS.items():
        assert by_id[area_id]["locationUrl"].lower() == url
        one = sim.json_ok("GET", f"{CORE}/_apis/resourceAreas/{area_id}?api-version=5.0-preview.1")
        assert one == by_id[area_id]
    # the global lookup needs no organization in the path
    glob = sim.json_ok("GET", "https://dev.azure.com/_apis/resourceAreas/bb1e7ec9-e901-4b68-999a-de7012b920f8"
                              "?accountName=fabrikam&api-version=5.0-preview.1")
    assert glob == by_id["bb1e7ec9-e901-4b68-999a-de7012b920f8"]


def test_connection_data(sim: Sim, cw: ContractWorld) -> None:
    body = sim.json_ok("GET", f"{CORE}/_apis/connectionData")
    user = body["authenticatedUser"]
    assert user["id"] == cw.owner.storage_key and user["subjectDescriptor"] == cw.owner.descriptor
    assert ";" in user["descriptor"]
    assert body["authorizedUser"]["id"] == cw.owner.storage_key
    assert body["instanceId"] == cw.org.id
