"""Graph writes, filters and paging of every Graph list (graph.json + examples; D3, D5, E4)."""

from __future__ import annotations

import pytest

from . import spec
from .conftest import VSSPS, ContractWorld, Sim
from .helpers import assert_contract

V = "api-version=7.1-preview.1"


def test_group_create_in_project(sim_rw: Sim, cw_rw: ContractWorld) -> None:
    scope = sim_rw.json_ok("GET", f"{VSSPS}/_apis/graph/descriptors/{cw_rw.project.id}?{V}")["value"]
    r = sim_rw.post(f"{VSSPS}/_apis/graph/groups?scopeDescriptor={scope}&{V}",
                    json={"displayName": "Project Developers", "description": "created by a contract test"})
    assert r.status_code == 201, r.text  # E4: the examples answer 201 (the spec says 200)
    body = r.json()
    vsts_examples = [ex.body for ex in spec.examples_for("graph", "Groups_Create")
                     if ex.body["descriptor"].startswith("vssgp.")]
    assert_contract("graph", "Groups_Create", body, example_bodies=vsts_examples)
    assert r.headers["location"] == body["url"]  # as the examples' `location` header
    assert body["principalName"] == f"[{cw_rw.project.name}]\\Project Developers"
    assert body["domain"] == f"vstfs:///Classification/TeamProject/{cw_rw.project.id}"


def test_group_create_in_organization_and_delete(sim_rw: Sim, cw_rw: ContractWorld) -> None:
    r = sim_rw.post(f"{VSSPS}/_apis/graph/groups?{V}", json={"displayName": "Developers", "description": "x"})
    assert r.status_code == 201, r.text
    body = r.json()
    (org_example,) = [ex.body for ex in spec.examples_for("graph", "Groups_Create")
                      if ex.rel.endswith("/CreateGroup.json")]
    assert_contract("graph", "Groups_Create", body, example_bodies=[org_example])
    assert body["domain"] == f"vstfs:///Framework/IdentityDomain/{cw_rw.org.id}"
    r = sim_rw.request("DELETE", f"{VSSPS}/_apis/graph/groups/{body['descriptor']}?{V}")
    assert r.status_code == 204 and r.content == b""  # Groups/DeleteGroup.json


def test_materialize_entra_group_by_origin_id(sim_rw: Sim, cw_rw: ContractWorld) -> None:
    oid = cw_rw.world.new_guid()
    cw_rw.world.entra_objects[oid] = "group"
    r = sim_rw.post(f"{VSSPS}/_apis/graph/groups?{V}", json={"originId": oid})
    assert r.status_code == 201, r.text
    body = r.json()
    aad_examples = [ex.body for ex in spec.examples_for("graph", "Groups_Create")
                    if ex.body["descriptor"].startswith("aadgp.")]
    assert aad_examples
    assert_contract("graph", "Groups_Create", body, example_bodies=aad_examples,
                    allow_undeclared=["$.isCrossProject"])  # D5/E8
    assert body["originId"] == oid and body["descriptor"].startswith("aadgp.")


def test_groups_list_by_project_scope(sim: Sim, cw: ContractWorld) -> None:
    scope = sim.json_ok("GET", f"{VSSPS}/_apis/graph/descriptors/{cw.project.id}?{V}")["value"]
    body = sim.json_ok("GET", f"{VSSPS}/_apis/graph/groups?scopeDescriptor={scope}&{V}")
    assert_contract("graph", "Groups_List", body, allow_undeclared=["$.value[*].isCrossProject"])
    domains = {g["domain"] for g in body["value"]}
    assert domains == {f"vstfs:///Classification/TeamProject/{cw.project.id}"}
    assert cw.custom_group.descriptor in {g["descriptor"] for g in body["value"]}


@pytest.mark.parametrize("types,expected", [("svc", {"svc"}), ("aad,msa", {"aad", "msa"}), ("nosuchtype", set())])
def test_users_list_subject_types(sim: Sim, types: str, expected: set[str]) -> None:
    """Unknown subjectTypes match nothing, no 400 (behaviour doc §3.1)."""
    body = sim.json_ok("GET", f"{VSSPS}/_apis/graph/users?subjectTypes={types}&{V}")
    assert_contract("graph", "Users_List", body)
    assert {u["descriptor"].split(".")[0] for u in body["value"]} == expected


@pytest.mark.parametrize("resource,op,extra", [
    ("groups", "Groups_List", ["$.value[*].isCrossProject"]),
    ("serviceprincipals", "Service Principals_List", []),
    ("users", "Users_List", []),
])
def test_every_graph_list_pages_by_header(sim_rw: Sim, cw_rw: ContractWorld, monkeypatch: pytest.MonkeyPatch,
                                          resource: str, op: str, extra: list[str]) -> None:
    """D3: follow X-MS-ContinuationToken until it is missing; never stop on a short page."""
    from azdo_sim import routes_graph

    for i in range(3):
        cw_rw.org.add_service_principal(display_name=f"sp-{i}")
    monkeypatch.setattr(routes_graph, "PAGE_SIZE", 2)
    expected = {"groups": cw_rw.org.group_order, "serviceprincipals": cw_rw.org.sp_order,
                "users": cw_rw.org.user_order}[resource]
    seen: list[str] = []
    params = {"api-version": "7.1-preview.1"}
    for _ in range(100):
        r = sim_rw.get(f"{VSSPS}/_apis/graph/{resource}", params=params)
        assert r.status_code == 200, r.text
        assert_contract("graph", op, r.json(), allow_undeclared=extra)
        assert "continuationToken" not in r.json()
        seen += [s["descriptor"] for s in r.json()["value"]]
        token = r.headers.get("X-MS-ContinuationToken")
        if token is None:
            break
        params["continuationToken"] = token
    assert sorted(seen) == sorted(expected) and len(seen) == len(set(seen))


def test_subject_query(sim: Sim, cw: ContractWorld) -> None:
    """No official example: the schema only (a list of GraphSubject; derived members as in D7)."""
    body = sim.json_ok("POST", f"{VSSPS}/_apis/graph/subjectquery?{V}",
                       json={"query": cw.member.display_name.split()[0], "subjectKind": ["User"]})
    spec.assert_valid("graph", "Subject Query_Query", body,
                      allow_undeclared=[f"$.value[*].{k}" for k in ("domain", "principalName", "mailAddress",
                                                                     "metaType", "description", "isCrossProject")])
    assert cw.member.descriptor in {s["descriptor"] for s in body["value"]}


def test_filtered_pages_can_be_empty_and_still_carry_the_token(sim: Sim, cw: ContractWorld,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """D3 / behaviour doc §2: the page is read first and filtered after, so a filtered page may be empty
    while X-MS-ContinuationToken says more follows; a client must not stop there."""
    from azdo_sim import routes_graph

    monkeypatch.setattr(routes_graph, "PAGE_SIZE", 2)
    params = {"api-version": "7.1-preview.1", "subjectTypes": "svc"}
    pages: list[tuple[int, bool]] = []
    found: list[str] = []
    for _ in range(20):
        r = sim.get(f"{VSSPS}/_apis/graph/users", params=params)
        assert r.status_code == 200, r.text
        assert_contract("graph", "Users_List", r.json())
        token = r.headers.get("X-MS-ContinuationToken")
        pages.append((len(r.json()["value"]), token is not None))
        found += [u["descriptor"] for u in r.json()["value"]]
        if token is None:
            break
        params["continuationToken"] = token
    assert (0, True) in pages, pages  # an empty page that still carries a token
    assert found == [cw.svc.descriptor]
