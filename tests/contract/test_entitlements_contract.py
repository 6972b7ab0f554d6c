"""Member entitlement management (vsaex) against memberEntitlementManagement.json + examples."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from . import spec
from .conftest import VSAEX, ContractWorld, Sim
from .helpers import assert_contract, msa_variant

V = "api-version=7.1-preview.3"
AREA = "mem"
D2 = "D2 docs/spec-deviations.md"
D11 = "D11 docs/spec-deviations.md: metaType optional on GraphUser"
D13 = "D13 docs/spec-deviations.md: dateCreated"


def _get_examples() -> list[dict[str, Any]]:
    """The entitlement example (an aad user), plus the same with an msa user (helpers.msa_variant)."""
    (ex,) = spec.examples_for(AREA, "User Entitlements_Get")
    return [ex.body, dict(ex.body, user=msa_variant(ex.body["user"]))]


def _entitlement_kwargs(prefix: str) -> dict[str, Any]:
    """Allowances for one UserEntitlement at `prefix` (e.g. `$` or `$.items[*]`)."""
    return {
        "allow_undeclared": [f"{prefix}.extensions"],  # E12/D6
        "allow_extra": {f"{prefix}.dateCreated": D13},
    }


def test_user_entitlements_list(sim: Sim, cw: ContractWorld) -> None:
    body = sim.json_ok("GET", f"{VSAEX}/_apis/userentitlements?{V}")
    # D2: the real body has members besides items (and the spec has no example for this operation)
    assert {"members", "items", "totalCount"} <= set(body) <= {"members", "items", "totalCount",
                                                                 "continuationToken"}
    assert body["members"] == body["items"]
    assert body.get("continuationToken") is None  # one page: no token (null or absent)
    items, members = _entitlement_kwargs("$.items[*]"), _entitlement_kwargs("$.members[*]")
    examples = _get_examples()
    assert_contract(AREA, "User Entitlements_Search User Entitlements", body,
                    example_bodies=[{"items": examples, "members": examples, "totalCount": 1,
                                     "continuationToken": None}],  # PagedUserEntitlementsList + D2
                    allow_undeclared=["$.members", *items["allow_undeclared"]],
                    allow_extra={**items["allow_extra"], **members["allow_extra"]})
    ids = {e["id"] for e in body["items"]}
    users = {k for k in cw.org.entitlements if cw.org.by_storage_key(k).subject_kind == "user"}
    assert users <= ids <= set(cw.org.entitlements)  # whether service principals are listed too is UNVERIFIED
    assert body["totalCount"] == len(ids)


def test_user_entitlements_paging_token_in_the_body(sim_rw: Sim, cw_rw: ContractWorld) -> None:
    """D2: more than one page: an opaque token in the body, URL-encoded on the next call."""
    for i in range(120):
        u = cw_rw.org.add_user(kind="aad", display_name=f"Bulk {i}", principal_name=f"bulk{i}@fabrikam.example")
        cw_rw.org.set_entitlement(u.storage_key, "stakeholder", audit=False)
    seen: list[str] = []
    tokens: list[str] = []
    token: str | None = None
    for _ in range(10):
        url = f"{VSAEX}/_apis/userentitlements?{V}" + (f"&continuationToken={quote(token, safe='')}" if token
                                                       else "")
        body = sim_rw.json_ok("GET", url)
        spec.assert_valid(AREA, "User Entitlements_Search User Entitlements", body,
                          allow_undeclared=["$.members", "$.items[*].extensions"])
        seen += [e["id"] for e in body["items"]]
        token = body.get("continuationToken")
        if not token:
            break
        assert isinstance(token, str)
        tokens.append(token)
    assert tokens, "120+ entitlements must take more than one page"
    users = {k for k in cw_rw.org.entitlements if cw_rw.org.by_storage_key(k).subject_kind == "user"}
    assert users <= set(seen) <= set(cw_rw.org.entitlements) and len(seen) == len(set(seen))


@pytest.mark.parametrize("who", ["owner", "guest", "msa"])
def test_user_entitlement_get(sim: Sim, cw: ContractWorld, who: str) -> None:
    ident = getattr(cw, who)
    body = sim.json_ok("GET", f"{VSAEX}/_apis/userentitlements/{ident.storage_key}?{V}")
    assert_contract(AREA, "User Entitlements_Get", body, example_bodies=_get_examples(), **_entitlement_kwargs("$"))
    assert body["id"] == ident.storage_key and body["user"]["descriptor"] == ident.descriptor
    ent = cw.org.entitlements[ident.storage_key]
    assert body["accessLevel"]["accountLicenseType"] == ent.account_license_type
    assert body["accessLevel"]["licenseDisplayName"] == ent.license_display_name


def test_user_links_match_the_entitlement_examples(sim: Sim, cw: ContractWorld) -> None:
    """Was F1: the entitlement examples write user links in lower case and without an avatar."""
    body = sim.json_ok("GET", f"{VSAEX}/_apis/userentitlements/{cw.owner.storage_key}?{V}")
    assert_contract(AREA, "User Entitlements_Get", body, allow_undeclared=["$.extensions"],
                    allow_extra={"$.dateCreated": D13})
    d = cw.owner.descriptor
    assert body["user"]["url"] == f"https://vssps.dev.azure.com/fabrikam/_apis/graph/users/{d}"
    assert "avatar" not in body["user"]["_links"]


def _post(sim: Sim, principal: str, project_id: str) -> dict[str, Any]:
    return sim.json_ok("POST", f"{VSAEX}/_apis/userentitlements?{V}", json={
        "accessLevel": {"accountLicenseType": "express", "licensingSource": "account"},
        "user": {"principalName": principal, "subjectKind": "user"},
        "projectEntitlements": [{"group": {"groupType": "projectContributor"}, "projectRef": {"id": project_id}}],
        "extensions": []})


def test_user_entitlement_add(sim_rw: Sim, cw_rw: ContractWorld) -> None:
    body = _post(sim_rw, "newuser@fabrikam.example", cw_rw.project.id)
    kwargs: dict[str, Any] = {"allow_undeclared": ["$.userEntitlement.extensions"], "allow_extra": {}}
    for prefix in ("$.operationResult.result", "$.userEntitlement"):
        kwargs["allow_extra"].update({f"{prefix}.dateCreated": D13, f"{prefix}.user.metaType": D11})
    assert_contract(AREA, "User Entitlements_Add", body, **kwargs)
    assert body["isSuccess"] is True and body["operationResult"]["isSuccess"] is True
    assert body["userEntitlement"]["accessLevel"]["status"] == "pending"
    assert body["operationResult"]["userId"] == body["userEntitlement"]["id"]


def test_user_entitlement_add_failure_is_http_200(sim_rw: Sim, cw_rw: ContractWorld) -> None:
    """D9: a refused add still answers 200; the failure is in isSuccess / operationResult.errors."""
    body = _post(sim_rw, "not an e-mail", cw_rw.project.id)
    spec.assert_valid(AREA, "User Entitlements_Add", body, allow_undeclared=["$.userEntitlement.extensions"])
    assert body["isSuccess"] is False and body["operationResult"]["isSuccess"] is False
    (err,) = body["operationResult"]["errors"]
    assert err["key"] == 5000 and isinstance(err["value"], str)


def _sp_entitlement(sim: Sim, cw: ContractWorld) -> dict[str, Any]:
    return sim.json_ok("GET", f"{VSAEX}/_apis/serviceprincipalentitlements/{cw.sp.storage_key}"
                              "?api-version=7.1-preview.1")


def test_service_principal_entitlement_get(sim: Sim, cw: ContractWorld) -> None:
    body = _sp_entitlement(sim, cw)
    assert_contract(AREA, "Service Principal Entitlements_Get", body, allow_undeclared=["$.extensions"])  # E12
    assert body["id"] == cw.sp.storage_key and body["servicePrincipal"]["descriptor"] == cw.sp.descriptor
    assert body["servicePrincipal"]["metaType"] == "application"  # was F3
    # was F1: the MEM service writes service-principal links on its own (vsaex) host, as the example
    d = cw.sp.descriptor
    assert body["servicePrincipal"]["url"] == f"{VSAEX}/_apis/Graph/Serviceprincipals/{d}"


def test_user_entitlement_delete(sim_rw: Sim, cw_rw: ContractWorld) -> None:
    """`User Entitlements_Delete` documents 200 without a body and has no example; Graph deletes answer
    204 in their examples (Users/DeleteUserAAD.json), so either 2xx is accepted, always without a body."""
    key = cw_rw.guest.storage_key
    r = sim_rw.request("DELETE", f"{VSAEX}/_apis/userentitlements/{key}?{V}")
    assert r.status_code in (200, 204) and r.content == b"", (r.status_code, r.text)
    assert key not in cw_rw.org.entitlements
    assert sim_rw.get(f"{VSAEX}/_apis/userentitlements/{key}?{V}").status_code == 404
