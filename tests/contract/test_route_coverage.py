"""Every route the simulator serves is either held to a spec operation by a contract test or listed
as having no spec; discovery (resource areas, OPTIONS resource locations) agrees with the specs.

A new simulator route fails `test_every_served_route_has_a_contract_test` until a contract test for
its operation exists (or it is added to NO_SPEC with the test that covers it).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from starlette.routing import Route

from . import spec
from .conftest import ACCOUNTS, AUDIT, CORE, VSAEX, VSSPS, Sim

HERE = Path(__file__).parent
# Internal path prefix (http.py) -> public base of the OPTIONS call.
_PREFIX = {"vssps": VSSPS, "vsaex": VSAEX, "auditservice": AUDIT, "app.vssps": ACCOUNTS}
# Routes with no operation in the shared specs -> the test that covers them.
NO_SPEC = {
    "/{org}/_apis/connectiondata": "test_core_contract.py::test_connection_data",
    "/{org}/_apis/resourceareas": "test_core_contract.py::test_resource_areas",
    "/{org}/_apis/resourceareas/{area_id}": "test_core_contract.py::test_resource_areas",
    "/_apis/resourceareas/{area_id}": "test_core_contract.py::test_resource_areas",
    "/_apis/identitybatch": "test_identities_contract.py::test_identity_batch_answers_like_the_read",
    "/_apis/profile/profiles/{profile_id}": "test_accounts_contract.py::test_profile_me",
    "/_apis": "test_route_coverage.py::test_options_lists_the_served_resources",
}
# Operations without a response schema, covered by status/empty-body assertions.
NO_SCHEMA_TESTS = {
    "Memberships_Check Membership Existence": "test_membership_head",
    "Memberships_Remove Membership": "test_membership_put_and_delete",
    "Groups_Delete": "test_group_create_in_organization_and_delete",
    "User Entitlements_Delete": "test_user_entitlement_delete",
}


def _served() -> list[tuple[str, str, str]]:
    """(method, internal path, module) of every Azure DevOps route of the simulator."""
    from azdo_sim import (
        discovery,
        routes_accounts,
        routes_audit,
        routes_core,
        routes_entitlements,
        routes_graph,
        routes_identities,
        routes_security,
    )

    out = []
    for module in (routes_graph, routes_identities, routes_core, routes_entitlements, routes_audit,
                   routes_accounts, routes_security, discovery):
        for r in module.ROUTES:
            if isinstance(r, Route):
                methods = set(r.methods or ()) - {"HEAD"} if r.methods != {"GET", "HEAD"} else {"GET"}
                if module is routes_graph and "memberships/{subject}/{container}" in r.path:
                    methods = set(r.methods or ())  # HEAD is a real operation there
                out += [(m, r.path, module.__name__.rsplit(".", 1)[1]) for m in sorted(methods)]
    return out


def _public(path: str) -> tuple[str, str]:
    """(service prefix or "", path as the spec writes it: /{org}/_apis/...)."""
    segs = path.split("/")
    if len(segs) > 1 and segs[1] in _PREFIX:
        return segs[1], "/" + "/".join(segs[2:])
    return "", path


def _operation(method: str, path: str) -> spec.Operation | None:
    _, public = _public(path)
    concrete = re.sub(r"\{[^}]+\}", "x", public)
    for area in spec.AREAS:
        try:
            return spec.operation(area, (method, concrete))
        except LookupError:
            continue
    return None


def _mentioned_operation_ids() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in HERE.glob("test_*.py"))


def test_every_served_route_has_a_contract_test() -> None:
    text = _mentioned_operation_ids()
    missing = []
    for method, path, module in _served():
        op = _operation(method, path)
        if op is None:
            public = _public(path)[1].rstrip("/")
            key = next((k for k in NO_SPEC if public == k or (public.endswith(k) and k.startswith("/_apis"))), None)
            if key is None:
                missing.append(f"{module}: {method} {path} (no spec operation, not in NO_SPEC)")
            continue
        if op.response is None:
            test = NO_SCHEMA_TESTS.get(op.operation_id)
            if test is None or f"def {test}(" not in text:
                missing.append(f"{module}: {method} {path} -> {op.operation_id} (no schema, no test listed)")
        elif f'"{op.operation_id}"' not in text:
            missing.append(f"{module}: {method} {path} -> {op.operation_id} has no contract test")
    assert not missing, "\n".join(missing)


def test_no_spec_entries_point_at_real_tests() -> None:
    text = _mentioned_operation_ids()
    for where in NO_SPEC.values():
        assert f"def {where.split('::')[1]}(" in text, where


def test_resource_area_ids_are_the_specs(sim: Sim) -> None:
    """Every spec's x-ms-vss-resource-area-id is announced, on the spec's host."""
    body = sim.json_ok("GET", f"{CORE}/_apis/resourceAreas?api-version=5.0-preview.1")
    by_id = {a["id"]: a["locationUrl"] for a in body["value"]}
    for area in spec.AREAS:
        raw = spec.spec(area).raw
        area_id = raw.get("x-ms-vss-resource-area-id")
        if area_id is None or area == "account":
            continue  # security has none; accounts live on app.vssps (no organization in the URL)
        assert area_id in by_id, (area, area_id)
        assert by_id[area_id].lower().startswith(f"https://{raw['host']}/fabrikam"), (area, by_id[area_id])


def _served_resources() -> list[tuple[str, str, str]]:
    """(public base, spec resource name, operationId) for every served spec operation."""
    out = set()
    for method, path, _ in _served():
        op = _operation(method, path)
        if op is None:
            continue
        prefix, _public_path = _public(path)
        raw = spec.spec(op.area).raw["paths"][op.template][method.lower()]
        out.add((_PREFIX.get(prefix, CORE), raw["x-ms-vss-resource"], op.operation_id))
    return sorted(out)


@pytest.mark.parametrize("base,resource,operation_id", _served_resources())
def test_options_lists_the_served_resources(sim: Sim, base: str, resource: str, operation_id: str) -> None:
    """The SDKs map location ids to routes with OPTIONS {areaBase}/_apis (behaviour doc §1.2)."""
    r = sim.request("OPTIONS", f"{base}/_apis")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == len(body["value"])
    names = {loc["resourceName"].lower() for loc in body["value"]}
    # membershipsBatch is the spec's resource name of the memberships list
    assert resource.lower() in names, (operation_id, sorted(names))
    for loc in body["value"]:
        assert re.fullmatch(r"[0-9a-f-]{36}", loc["id"]) and loc["routeTemplate"].startswith("_apis/")
