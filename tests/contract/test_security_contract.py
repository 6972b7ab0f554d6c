"""Security routes (dev.azure.com): access control lists against security/7.1/security.json + examples.

Each official example of `Access Control Lists_Query` is replayed with its own query parameters
(its token / descriptor swapped for ones of the contract world) and the answer is compared in shape
with that example alone, so the extended-info variant must carry `includeExtendedInfo` / `extendedInfo`
and the plain variants must not.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlencode

import pytest

from . import spec
from .conftest import CORE, ContractWorld, Sim
from .helpers import assert_contract

OP = "Access Control Lists_Query"
IDENTITY_NS = "5a27515b-ccd7-42c9-84f1-54c998f03866"
MAPS = {"$.value[*].acesDictionary"}  # keyed by identity descriptor (data, not members)
EXAMPLES = {ex.path.name: ex for ex in spec.examples_for("security", OP)}


def _url(params: dict[str, str], *, base: str = CORE, version: str = "7.1") -> str:
    query = urlencode({**params, "api-version": version})
    return f"{base}/_apis/accesscontrollists/{IDENTITY_NS}?{query}"


def _example_params(name: str) -> dict[str, str]:
    with EXAMPLES[name].path.open(encoding="utf-8-sig") as fh:  # the spec files start with a BOM
        return dict(json.load(fh)["parameters"])


def test_examples_are_the_identity_namespace() -> None:
    """What the replay below relies on: five examples, all of the Identity namespace."""
    assert len(EXAMPLES) == 5
    assert spec.operation("security", OP).template == "/{organization}/_apis/accesscontrollists/{securityNamespaceId}"
    for name, ex in EXAMPLES.items():
        assert _example_params(name)["securityNamespaceId"] == IDENTITY_NS
        assert ex.body["count"] == len(ex.body["value"])


def _example_id(name: str) -> str:
    """`GET__accesscontrollists__securityNamespaceId___token-_existingToken_.json` -> `token-_existingToken_`."""
    return name.removesuffix(".json").split("securityNamespaceId_")[-1].lstrip("_") or "all"


@pytest.mark.parametrize("name", sorted(EXAMPLES), ids=_example_id)
def test_access_control_lists_like_each_example(sim: Sim, cw: ContractWorld, name: str) -> None:
    ex = EXAMPLES[name]
    params = {k: v for k, v in _example_params(name).items() if k not in ("securityNamespaceId", "organization")}
    pa = cw.org.identities[cw.project.role_groups["project_administrators"]].identity_descriptor
    if "token" in params:
        params["token"] = cw.project.id
    if "descriptors" in params:
        params["descriptors"] = pa
    body = sim.json_ok("GET", _url(params))
    assert_contract("security", OP, body, maps=MAPS, example_bodies=[ex.body])
    assert body["count"] == len(body["value"]) > 0
    assert list(body) == ["count", "value"]
    for acl in body["value"]:
        expected_keys = ["inheritPermissions", "token", "acesDictionary"]
        if params.get("includeExtendedInfo") == "True":
            expected_keys.append("includeExtendedInfo")
        assert list(acl) == expected_keys  # the examples' key order
        for key, ace in acl["acesDictionary"].items():
            assert ace["descriptor"] == key and list(ace)[:3] == ["descriptor", "allow", "deny"]
            assert re.fullmatch(r"[A-Za-z.]+;.+", key)
    tokens = [acl["token"] for acl in body["value"]]
    assert tokens == sorted(tokens)
    if "token" in params and params.get("recurse") != "True":
        assert tokens == [cw.project.id]
    if params.get("recurse") == "True":
        assert tokens == [cw.project.id, f"{cw.project.id}\\{cw.team.id}"]
    if "descriptors" in params:
        # only real ACEs of the asked identity; the example also lists the other ACLs with an
        # allow 0 / deny 0 entry for it (routes_security docstring: the simulator drops those ACLs)
        assert {d for acl in body["value"] for d in acl["acesDictionary"]} == {pa}


def test_access_control_lists_hold_the_team_admin_ace(sim: Sim, cw: ContractWorld) -> None:
    body = sim.json_ok("GET", _url({"token": f"{cw.project.id}\\{cw.team.id}", "includeExtendedInfo": "true"}))
    # all examples: the extended-info one shows only a project token, the recurse one a team token
    assert_contract("security", OP, body, maps=MAPS)
    (acl,) = body["value"]
    d = cw.member.identity_descriptor
    assert acl["acesDictionary"] == {d: {"descriptor": d, "allow": 31, "deny": 0,
                                         "extendedInfo": {"effectiveAllow": 31}}}


@pytest.mark.parametrize("base", ["https://fabrikam.visualstudio.com", "https://fabrikam.visualstudio.com/DefaultCollection"])
def test_access_control_lists_on_the_legacy_host(sim: Sim, cw: ContractWorld, base: str) -> None:
    cloud = sim.json_ok("GET", _url({}))
    legacy = sim.json_ok("GET", _url({}, base=base, version="7.1-preview.1"))
    assert_contract("security", OP, legacy, maps=MAPS)
    assert legacy == cloud


def test_access_control_lists_of_another_namespace_are_empty(sim: Sim, cw: ContractWorld) -> None:
    body = sim.json_ok("GET", f"{CORE}/_apis/accesscontrollists/2e9eb7ed-3c0a-47d4-87c1-0ffdd275fd87?api-version=7.1")
    assert body == {"count": 0, "value": []}
    spec.assert_valid("security", OP, body)


def test_access_control_lists_bad_namespace_is_a_json_400(sim: Sim) -> None:
    r = sim.get(f"{CORE}/_apis/accesscontrollists/not-a-guid?api-version=7.1")
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["typeKey"] == "ArgumentException" and "securityNamespaceId" in body["message"]
    assert {"$id", "innerException", "message", "typeName", "typeKey", "errorCode", "eventId"} <= set(body)
