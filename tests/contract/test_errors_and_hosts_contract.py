"""What the specs do not show: error bodies, auth answers and host styles (behaviour doc §1.3, §6)."""

from __future__ import annotations

import re

import httpx
import pytest

from .conftest import CORE, VSSPS, ContractWorld, Sim

V = "api-version=7.1-preview.1"
ERROR_KEYS = {"$id", "innerException", "message", "typeName", "typeKey", "errorCode", "eventId"}


def _assert_error(r: httpx.Response, status: int, type_key: str, message_prefix: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert ERROR_KEYS <= set(body) <= ERROR_KEYS | {"customProperties"}, body
    assert body["typeKey"] == type_key and body["typeName"].split(",")[0].endswith("." + type_key)
    assert body["message"].startswith(message_prefix), body["message"]
    assert isinstance(body["errorCode"], int) and isinstance(body["eventId"], int)


def test_unknown_subject_is_a_json_404(sim: Sim) -> None:
    r = sim.get(f"{VSSPS}/_apis/graph/users/aad.bm9wZQ?{V}")
    _assert_error(r, 404, "GraphSubjectNotFoundException", "VS403325: The graph subject with descriptor")


def test_missing_membership_is_a_json_404(sim: Sim, cw: ContractWorld) -> None:
    r = sim.get(f"{VSSPS}/_apis/graph/memberships/{cw.msa.descriptor}/{cw.team.group_descriptor}?{V}")
    _assert_error(r, 404, "GraphMembershipNotFoundException", "VS403328: The graph membership for member")
    assert "could not be found" in r.json()["message"]  # what clients string-match (behaviour doc §4.1)


def test_unknown_route_is_plain_text(sim: Sim) -> None:
    r = sim.get(f"{VSSPS}/_apis/graph/nosuchthing?{V}")
    assert r.status_code == 404 and r.text == "Page not found."
    assert r.headers["content-type"].startswith("text/plain")


def test_missing_api_version(sim: Sim) -> None:
    _assert_error(sim.get(f"{VSSPS}/_apis/graph/users"), 400, "VssVersionNotSpecifiedException", "No api-version")


def test_bad_pat_with_suppress_is_401_json(cw: ContractWorld) -> None:
    r = Sim(cw.world, "not-a-token").get(f"{VSSPS}/_apis/graph/users?{V}")
    _assert_error(r, 401, "UnauthorizedRequestException", "TF400813:")
    assert r.headers["www-authenticate"].startswith("Basic realm=")


def test_bad_pat_without_suppress_is_203_html(cw: ContractWorld) -> None:
    client = Sim(cw.world, "not-a-token")
    del client.headers["X-TFS-FedAuthRedirect"]
    r = client.get(f"{VSSPS}/_apis/graph/users?{V}")
    assert r.status_code == 203 and r.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize("url,pattern", [
    ("https://fabrikam.vssps.visualstudio.com/_apis/graph/users?" + V,
     r"^https://fabrikam\.vssps\.visualstudio\.com/_apis/Graph/Users/[a-z]+\.[A-Za-z0-9_-]+$"),
    (f"{VSSPS}/_apis/graph/users?" + V,
     r"^https://vssps\.dev\.azure\.com/fabrikam/_apis/Graph/Users/[a-z]+\.[A-Za-z0-9_-]+$"),
    ("https://fabrikam.visualstudio.com/_apis/projects?api-version=7.1",
     r"^https://fabrikam\.visualstudio\.com/_apis/projects/[0-9a-f-]{36}$"),
    (f"{CORE}/_apis/projects?api-version=7.1", r"^https://dev\.azure\.com/fabrikam/_apis/projects/[0-9a-f-]{36}$"),
])
def test_urls_echo_the_host_style_used(sim: Sim, url: str, pattern: str) -> None:
    body = sim.json_ok("GET", url)
    assert body["value"]
    for item in body["value"]:
        assert re.match(pattern, item["url"]), item["url"]


def test_route_keywords_are_case_insensitive(sim: Sim) -> None:
    """The examples call `_apis/graph/Users`, `_apis/graph/SubjectLookup`, … (mixed case)."""
    a = sim.json_ok("GET", f"{VSSPS}/_apis/graph/users?{V}")
    b = sim.json_ok("GET", f"https://vssps.dev.azure.com/Fabrikam/_apis/Graph/Users?{V}")
    assert [u["descriptor"] for u in a["value"]] == [u["descriptor"] for u in b["value"]]


def test_subject_lookup_unknown_key_is_null_and_500_is_the_limit(sim: Sim, cw: ContractWorld) -> None:
    """Behaviour doc §4.2: unknown keys resolve to null; more than 500 keys → 400 TooManyRequestedItems."""
    from . import spec
    from .helpers import assert_contract

    url = f"{VSSPS}/_apis/graph/subjectlookup?{V}"
    unknown = "aad.bm9uZXhpc3RlbnQ"
    body = sim.json_ok("POST", url, json={"lookupKeys": [{"descriptor": cw.member.descriptor},
                                                         {"descriptor": unknown}]})
    assert body["value"][unknown] is None
    examples = [ex.body for ex in spec.examples_for("graph", "Subject Lookup_Lookup Subjects")]
    assert_contract("graph", "Subject Lookup_Lookup Subjects", body, maps={"$.value"}, example_bodies=examples,
                    allow_null={"$.value.{key}": "behaviour doc §4.2: unknown keys resolve to null"},
                    allow_undeclared=[f"$.value.{{key}}.{k}" for k in ("domain", "principalName", "mailAddress",
                                                                        "metaType")],
                    allow_extra={"$.value.{key}.metaType": "D11 docs/spec-deviations.md"})
    r = sim.post(url, json={"lookupKeys": [{"descriptor": f"aad.eDE{i}"} for i in range(501)]})
    _assert_error(r, 400, "TooManyRequestedItemsException", "TF400049:")


def test_entra_group_membership_is_read_only(sim: Sim, cw: ContractWorld) -> None:
    """Behaviour doc §4.1/§10: aadgp containers cannot be changed through Azure DevOps."""
    r = sim.put(f"{VSSPS}/_apis/graph/memberships/{cw.owner.descriptor}/{cw.entra_group.descriptor}?{V}")
    assert r.status_code == 403 and r.json()["typeKey"] == "InvalidAccessException"
    assert not cw.org.is_member(cw.entra_group.descriptor, cw.owner.descriptor)
