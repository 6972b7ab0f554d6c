"""Graph (vssps) routes against graph/7.1/graph.json and its official examples.

Deviation ids (D…, E…) refer to docs/spec-deviations.md.
"""

from __future__ import annotations

import base64
import re

import pytest

from . import spec
from .conftest import VSSPS, ContractWorld, Sim
from .helpers import assert_contract, contract_errors, msa_variant

V = "api-version=7.1-preview.1"
USER_TYPES = {"aad", "msa", "svc", "bnd", "imp", "acs", "unusr", "win", "agg", "csp"}  # behaviour doc §3.1


def _example_items(area: str, op: str, prefix: str | None = None) -> list[dict]:
    """List items of an operation's examples (optionally only one descriptor prefix)."""
    items = [i for ex in spec.examples_for(area, op) for i in ex.body["value"]]
    return [i for i in items if prefix is None or i["descriptor"].startswith(prefix + ".")]


def _assert_subject_urls(subject: dict, resource: str) -> None:
    d = subject["descriptor"]
    assert subject["url"] == f"{VSSPS}/_apis/Graph/{resource}/{d}"
    links = subject["_links"]
    assert links["self"]["href"] == subject["url"]
    for key, res in (("memberships", "Memberships"), ("membershipState", "MembershipStates"),
                     ("storageKey", "StorageKeys")):
        assert links[key]["href"] == f"{VSSPS}/_apis/Graph/{res}/{d}", key
    if "avatar" in links:
        assert links["avatar"]["href"] == f"https://dev.azure.com/fabrikam/_apis/GraphProfile/MemberAvatars/{d}"


# ---- users -------------------------------------------------------------------------------------

def test_users_list(sim: Sim, cw: ContractWorld) -> None:
    r = sim.get(f"{VSSPS}/_apis/graph/users?{V}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert_contract("graph", "Users_List", body)
    assert set(body) == {"count", "value"} and body["count"] == len(body["value"])
    prefixes = {u["descriptor"].split(".")[0] for u in body["value"]}
    assert prefixes <= USER_TYPES and {"aad", "msa", "svc"} <= prefixes  # never aadsp (behaviour doc §3.1)
    assert {u["descriptor"] for u in body["value"]} >= {cw.owner.descriptor, cw.svc.descriptor}
    for u in body["value"]:
        _assert_subject_urls(u, "Users")
    # D3: one complete page carries no continuation token, neither in the body nor in the header
    assert "x-ms-continuationtoken" not in r.headers
    assert "continuationToken" not in body


def test_users_list_pages_with_the_continuation_header(sim: Sim, cw: ContractWorld,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """D3: the next page is announced only by the X-MS-ContinuationToken header."""
    from azdo_sim import routes_graph

    monkeypatch.setattr(routes_graph, "PAGE_SIZE", 2)
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        params = {"api-version": "7.1-preview.1"}
        if token:
            params["continuationToken"] = token
        r = sim.get(f"{VSSPS}/_apis/graph/users", params=params)
        assert r.status_code == 200, r.text
        assert_contract("graph", "Users_List", r.json())
        seen += [u["descriptor"] for u in r.json()["value"]]
        pages += 1
        # the real header name (HTTP names are case-insensitive; the spec spells it this way)
        assert spec.operation("graph", "Users_List").response_headers == ("X-MS-ContinuationToken",)
        token = r.headers.get("X-MS-ContinuationToken")
        if not token:
            break
        assert pages < 20
    assert pages >= 3
    assert sorted(seen) == sorted(cw.org.user_order) and len(seen) == len(set(seen))


@pytest.mark.parametrize("who,prefix", [("member", "aad"), ("guest", "aad"), ("msa", "msa"), ("svc", "svc")])
def test_users_get(sim: Sim, cw: ContractWorld, who: str, prefix: str) -> None:
    ident = getattr(cw, who)
    body = sim.json_ok("GET", f"{VSSPS}/_apis/graph/users/{ident.descriptor}?{V}")
    # GetUserAAD.json shows an aad user without metaType while GetAllUsers.json shows metaType on every
    # aad user (D11): compare with both, item by item of the same descriptor prefix.
    examples = [ex.body for ex in spec.examples_for("graph", "Users_Get")] if prefix == "aad" else []
    examples += _example_items("graph", "Users_List", prefix)
    if prefix == "msa":  # no official example shows an msa user
        examples += [msa_variant(u) for u in _example_items("graph", "Users_List", "aad")]
    assert_contract("graph", "Users_Get", body, example_bodies=examples)
    assert body["descriptor"] == ident.descriptor and body["subjectKind"] == "user"
    _assert_subject_urls(body, "Users")
    if prefix == "svc":
        assert "metaType" not in body and body["domain"] == "Build" and body["origin"] == "vsts"
    else:
        assert body["metaType"] == ident.meta_type


# ---- groups ------------------------------------------------------------------------------------

def test_groups_list(sim: Sim, cw: ContractWorld) -> None:
    body = sim.json_ok("GET", f"{VSSPS}/_apis/graph/groups?{V}")
    assert_contract("graph", "Groups_List", body, allow_undeclared=["$.value[*].isCrossProject"])
    prefixes = {g["descriptor"].split(".")[0] for g in body["value"]}
    assert prefixes == {"vssgp", "aadgp"}
    for g in body["value"]:
        _assert_subject_urls(g, "Groups")
        assert "avatar" not in g["_links"]  # group examples carry no avatar link
        if g["descriptor"].startswith("aadgp."):
            assert g["isCrossProject"] is True and g["origin"] == "aad"  # D5
            assert g["principalName"] == f"[TEAM FOUNDATION]\\{g['displayName']}"
        else:
            assert g["origin"] == "vsts" and "isCrossProject" not in g
            assert re.fullmatch(r"vstfs:///(Classification/TeamProject|Framework/IdentityDomain)/[0-9a-f-]{36}",
                                g["domain"]), g["domain"]
            assert re.fullmatch(r"\[[^\]]+\]\\.+", g["principalName"]), g["principalName"]


@pytest.mark.parametrize("which", ["entra_group", "custom_group"])
def test_groups_get(sim: Sim, cw: ContractWorld, which: str) -> None:
    g = getattr(cw, which)
    body = sim.json_ok("GET", f"{VSSPS}/_apis/graph/groups/{g.descriptor}?{V}")
    prefix = g.descriptor.split(".")[0]
    examples = [ex.body for ex in spec.examples_for("graph", "Groups_Get")] if prefix == "aadgp" else []
    examples += _example_items("graph", "Groups_List", prefix)
    assert_contract("graph", "Groups_Get", body, example_bodies=examples,
                    allow_undeclared=["$.isCrossProject"])
    _assert_subject_urls(body, "Groups")
    assert body["descriptor"] == g.descriptor and body["originId"] == g.origin_id


# ---- service principals ------------------------------------------------------------------------

def test_service_principals_list_and_get(sim: Sim, cw: ContractWorld) -> None:
    body = sim.json_ok("GET", f"{VSSPS}/_apis/graph/serviceprincipals?{V}")
    assert_contract("graph", "Service Principals_List", body)
    assert {s["descriptor"].split(".")[0] for s in body["value"]} == {"aadsp"}
    one = sim.json_ok("GET", f"{VSSPS}/_apis/graph/serviceprincipals/{cw.sp.descriptor}?{V}")
    assert_contract("graph", "Service Principals_Get", one)
    assert one["applicationId"] == cw.sp.application_id and one["subjectKind"] == "servicePrincipal"
    _assert_subject_urls(one, "ServicePrincipals")


# ---- memberships -------------------------------------------------------------------------------

def _memberships(sim: Sim, d: str, direction: str) -> dict:
    return sim.json_ok("GET", f"{VSSPS}/_apis/graph/Memberships/{d}?direction={direction}&depth=1&{V}")


@pytest.mark.parametrize("direction", ["up", "down"])
def test_memberships_list_schema_and_direct_edges(sim: Sim, cw: ContractWorld, direction: str) -> None:
    d = cw.member.descriptor if direction == "up" else cw.team.group_descriptor
    body = _memberships(sim, d, direction)
    assert spec.validate("graph", "Memberships_List", body) == []
    pairs = {(m["memberDescriptor"], m["containerDescriptor"]) for m in body["value"]}
    if direction == "up":
        assert pairs == {(d, c) for c in cw.org.member_of(d)}
    else:
        assert pairs == {(m, d) for m in cw.org.members(d)}
    assert body["count"] == len(body["value"])


@pytest.mark.parametrize("direction", ["up", "down"])
def test_memberships_list_shape(sim: Sim, cw: ContractWorld, direction: str) -> None:
    d = cw.member.descriptor if direction == "up" else cw.team.group_descriptor
    assert_contract("graph", "Memberships_List", _memberships(sim, d, direction))


def test_membership_get(sim: Sim, cw: ContractWorld) -> None:
    m, c = cw.member.descriptor, cw.team.group_descriptor
    body = sim.json_ok("GET", f"{VSSPS}/_apis/graph/memberships/{m}/{c}?{V}")
    assert_contract("graph", "Memberships_Get", body)
    assert (body["memberDescriptor"], body["containerDescriptor"]) == (m, c)
    assert body["_links"]["self"]["href"] == f"{VSSPS}/_apis/Graph/Memberships/{m}/{c}"
    assert body["_links"]["member"]["href"] == f"{VSSPS}/_apis/Graph/Users/{m}"
    assert body["_links"]["container"]["href"] == f"{VSSPS}/_apis/Graph/Groups/{c}"


def test_membership_head(sim: Sim, cw: ContractWorld) -> None:
    m, c = cw.member.descriptor, cw.team.group_descriptor
    r = sim.request("HEAD", f"{VSSPS}/_apis/graph/memberships/{m}/{c}?{V}")
    assert r.status_code == 200 and r.content == b""
    r = sim.request("HEAD", f"{VSSPS}/_apis/graph/memberships/{cw.msa.descriptor}/{c}?{V}")
    assert r.status_code == 404 and r.content == b""


def test_membership_put_and_delete(sim_rw: Sim, cw_rw: ContractWorld) -> None:
    """D4: PUT answers 201 Created with a GraphMembership body, again when the edge exists."""
    m, c = cw_rw.msa.descriptor, cw_rw.team.group_descriptor
    url = f"{VSSPS}/_apis/graph/memberships/{m}/{c}?{V}"
    for _ in range(2):
        r = sim_rw.put(url)
        assert r.status_code == 201, r.text
        # the Add example adds a group, GetMembershipUser.json a user: the same GraphMembership type
        assert_contract("graph", "Memberships_Add", r.json(), example_bodies=[
            ex.body for op in ("Memberships_Add", "Memberships_Get") for ex in spec.examples_for("graph", op)])
        assert (r.json()["memberDescriptor"], r.json()["containerDescriptor"]) == (m, c)
    assert cw_rw.org.is_member(c, m)
    r = sim_rw.request("DELETE", url)
    assert r.status_code == 200 and r.content == b""  # DeleteMembershipUser.json: 200, no body
    assert not cw_rw.org.is_member(c, m)


def test_membership_state(sim: Sim, cw: ContractWorld) -> None:
    body = sim.json_ok("GET", f"{VSSPS}/_apis/graph/membershipstates/{cw.member.descriptor}?{V}")
    assert_contract("graph", "Membership States_Get", body)
    assert body["active"] is True


# ---- descriptors, storage keys, lookup ---------------------------------------------------------

def test_descriptor_and_storage_key_round_trip(sim: Sim, cw: ContractWorld) -> None:
    d = sim.json_ok("GET", f"{VSSPS}/_apis/graph/descriptors/{cw.member.storage_key}?{V}")
    assert_contract("graph", "Descriptors_Get", d)
    assert d["value"] == cw.member.descriptor
    k = sim.json_ok("GET", f"{VSSPS}/_apis/graph/storagekeys/{cw.member.descriptor}?{V}")
    assert_contract("graph", "Storage Keys_Get", k)
    assert k["value"] == cw.member.storage_key


def test_descriptor_of_a_project_is_a_scope(sim: Sim, cw: ContractWorld) -> None:
    d = sim.json_ok("GET", f"{VSSPS}/_apis/graph/descriptors/{cw.project.id}?{V}")
    spec.assert_valid("graph", "Descriptors_Get", d)
    (ex,) = spec.examples_for("graph", "Descriptors_Get")  # the example resolves a user, not a scope
    assert set(d) == set(ex.body) and set(d["_links"]) == set(ex.body["_links"])
    assert d["value"].startswith("scp.")
    assert d["_links"]["self"]["href"] == f"{VSSPS}/_apis/Graph/Descriptors/{cw.project.id}"
    assert d["_links"]["subject"]["href"] == f"{VSSPS}/_apis/Graph/Scopes/{d['value']}"
    raw = d["value"].split(".", 1)[1]
    assert base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode() == cw.project.id


def test_subject_lookup(sim: Sim, cw: ContractWorld) -> None:
    keys = [cw.member.descriptor, cw.entra_group.descriptor, cw.custom_group.descriptor]
    body = sim.json_ok("POST", f"{VSSPS}/_apis/graph/subjectlookup?{V}",
                       json={"lookupKeys": [{"descriptor": k} for k in keys]})
    # D7/E9: values are the derived GraphUser/GraphGroup; D11: metaType is optional on users
    examples = [ex.body for ex in spec.examples_for("graph", "Subject Lookup_Lookup Subjects")]
    examples.append({"count": 0, "value": {i["descriptor"]: i for i in _example_items("graph", "Users_List", "aad")
                                           + _example_items("graph", "Groups_List")}})
    assert_contract("graph", "Subject Lookup_Lookup Subjects", body, maps={"$.value"}, example_bodies=examples,
                    allow_undeclared=[f"$.value.{{key}}.{k}" for k in
                                      ("domain", "principalName", "mailAddress", "description", "isCrossProject",
                                       "metaType")])
    assert set(body["value"]) == set(keys) and body["count"] == 3


def test_shape_check_would_catch_a_broken_users_body(sim: Sim) -> None:
    """Negative control through a real response: the same comparison fails once the body is damaged."""
    body = sim.json_ok("GET", f"{VSSPS}/_apis/graph/users?{V}")
    del body["value"][0]["descriptor"]
    body["value"][-1]["originId"] = 7
    errors = contract_errors("graph", "Users_List", body)
    assert "shape $.value[*]: missing key 'descriptor'" in errors
    assert any(e.startswith("shape $.value[*].originId: type number") for e in errors), errors
    assert any(e.startswith("schema $.value[") and "originId" in e for e in errors), errors


def test_memberships_list_default_direction_is_up(sim: Sim, cw: ContractWorld) -> None:
    """Behaviour doc §4.1: without `direction` the list goes Up (the subject's containers)."""
    d = cw.member.descriptor
    body = sim.json_ok("GET", f"{VSSPS}/_apis/graph/Memberships/{d}?{V}")
    assert spec.validate("graph", "Memberships_List", body) == []
    assert {m["containerDescriptor"] for m in body["value"]} == cw.org.member_of(d)
    assert {m["memberDescriptor"] for m in body["value"]} == {d}
