"""IMS identities (vssps) against ims/7.1/identities.json and its official examples (SearchBy*.json)."""

from __future__ import annotations

import re

import pytest

from . import spec
from .conftest import VSSPS, ContractWorld, Sim
from .helpers import assert_contract

OP = "Identities_Read Identities"
PROPS = "$.value[*].properties"  # a PropertiesCollection: {"Name": {"$type", "$value"}} (rule R9)


def _read(sim: Sim, query: str) -> dict:
    return sim.json_ok("GET", f"{VSSPS}/_apis/identities?{query}&api-version=7.1")


def _check(body: dict) -> None:
    assert_contract("ims", OP, body, maps={PROPS})
    for ident in body["value"]:
        assert re.fullmatch(r"[0-9a-f-]{36}", ident["id"])
        assert ";" in ident["descriptor"]  # legacy IdentityDescriptor string (R8)
        assert all(set(p) == {"$type", "$value"} for p in ident["properties"].values())


@pytest.mark.parametrize("qm", ["None", "Direct"])
def test_identities_by_ids(sim: Sim, cw: ContractWorld, qm: str) -> None:
    body = _read(sim, f"identityIds={cw.member.storage_key},{cw.team.id}&queryMembership={qm}")
    _check(body)
    by_id = {i["id"]: i for i in body["value"]}
    assert set(by_id) == {cw.member.storage_key, cw.team.id}
    team = by_id[cw.team.id]
    assert team["isContainer"] is True and team["subjectDescriptor"] == cw.team.group_descriptor
    if qm == "Direct":
        member_keys = {cw.org.identities[m].storage_key for m in cw.org.members(cw.team.group_descriptor)}
        assert set(team["memberIds"]) == member_keys
        assert len(team["members"]) == len(member_keys)
    else:
        assert team["members"] == [] and team["memberIds"] == []


def test_identities_by_subject_descriptors(sim: Sim, cw: ContractWorld) -> None:
    body = _read(sim, f"subjectDescriptors={cw.member.descriptor},{cw.custom_group.descriptor}"
                      "&queryMembership=None")
    _check(body)
    assert [i["subjectDescriptor"] for i in body["value"]] == [cw.member.descriptor, cw.custom_group.descriptor]


def test_identities_by_legacy_descriptors(sim: Sim, cw: ContractWorld) -> None:
    body = _read(sim, f"descriptors={cw.member.identity_descriptor}&queryMembership=None")
    _check(body)
    assert [i["id"] for i in body["value"]] == [cw.member.storage_key]


def test_identities_search_by_mail(sim: Sim, cw: ContractWorld) -> None:
    body = _read(sim, f"searchFilter=General&filterValue={cw.member.mail_address}&queryMembership=None")
    _check(body)
    assert [i["id"] for i in body["value"]] == [cw.member.storage_key]


def test_identities_examples_cover_what_we_compare_with() -> None:
    """The comparison above uses all five official examples (users and groups)."""
    exs = spec.examples_for("ims", OP)
    assert len(exs) == 5
    assert any(i.get("isContainer") for ex in exs for i in ex.body["value"])


def test_identity_batch_answers_like_the_read(sim: Sim, cw: ContractWorld) -> None:
    """POST identitybatch is not in the specs (behaviour doc §4.2); it returns the same Identity list,
    so it is held to the Identities_Read schema and examples."""
    keys = [cw.team.id, cw.member.storage_key]
    body = sim.json_ok("POST", f"{VSSPS}/_apis/identitybatch?api-version=7.1-preview.1",
                       json={"identityIds": keys, "queryMembership": "Direct"})
    _check(body)
    assert [i["id"] for i in body["value"]] == keys
    read = _read(sim, f"identityIds={','.join(keys)}&queryMembership=Direct")
    assert body == read
