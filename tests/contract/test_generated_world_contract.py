"""Every list route over a GENERATED tiny organization (simulator.generator), not just the hand-built
contract world: the generator's variety (guests, per-project build services, Entra groups, custom
groups, history) must serialise within the spec too."""

from __future__ import annotations

import pytest
from azdo_sim.state import OrgState

from .conftest import AUDIT, CORE, ORG, VSAEX, VSSPS, Sim
from .helpers import assert_contract
from .test_audit_contract import D14, _real_example
from .test_entitlements_contract import _entitlement_kwargs, _get_examples

D12 = "D12 docs/spec-deviations.md"
D15 = "D15 docs/spec-deviations.md: Entra/ADO groups as team members (behaviour doc §3.5)"


@pytest.fixture(scope="module")
def gen() -> tuple[Sim, OrgState]:
    from azdo_sim.generator import generate
    from azdo_sim.state import World

    world = World(seed=3)
    org = generate(world, ORG, size="tiny", seed=3)
    pat = world.issue_pat(ORG, org.owner_key, {"app_token"})
    return Sim(world, pat.token), org


def test_generated_graph_lists(gen: tuple[Sim, OrgState]) -> None:
    sim, org = gen
    users = sim.json_ok("GET", f"{VSSPS}/_apis/graph/users?api-version=7.1-preview.1")
    assert_contract("graph", "Users_List", users)
    assert len(users["value"]) == len(org.user_order)
    groups = sim.json_ok("GET", f"{VSSPS}/_apis/graph/groups?api-version=7.1-preview.1")
    assert_contract("graph", "Groups_List", groups, allow_undeclared=["$.value[*].isCrossProject"])
    sps = sim.json_ok("GET", f"{VSSPS}/_apis/graph/serviceprincipals?api-version=7.1-preview.1")
    assert_contract("graph", "Service Principals_List", sps)


def test_generated_core_lists(gen: tuple[Sim, OrgState]) -> None:
    sim, _ = gen
    projects = sim.json_ok("GET", f"{CORE}/_apis/projects?api-version=7.1")
    assert_contract("core", "Projects_List", projects,
                    allow_extra={f"$.value[*].{k}": D12 for k in ("revision", "visibility", "lastUpdateTime")})
    for p in projects["value"]:
        teams = sim.json_ok("GET", f"{CORE}/_apis/projects/{p['id']}/teams?api-version=7.1")
        assert_contract("core", "Teams_Get Teams", teams,
                        allow_extra={f"$.value[*].{k}": D12 for k in ("projectId", "projectName")})
        for t in teams["value"]:
            members = sim.json_ok("GET", f"{CORE}/_apis/projects/{p['id']}/teams/{t['id']}/members?api-version=7.1")
            assert_contract("core", "Teams_Get Team Members With Extended Properties", members,
                            allow_extra={"$.value[*].identity.descriptor": D12, "$.value[*].identity._links": D12,
                                         "$.value[*].identity.isContainer": D15})


def test_generated_entitlements_and_audit(gen: tuple[Sim, OrgState]) -> None:
    sim, _ = gen
    ents = sim.json_ok("GET", f"{VSAEX}/_apis/userentitlements?api-version=7.1-preview.3")
    items, members = _entitlement_kwargs("$.items[*]"), _entitlement_kwargs("$.members[*]")
    examples = _get_examples()
    assert_contract("mem", "User Entitlements_Search User Entitlements", ents,
                    example_bodies=[{"items": examples, "members": examples, "totalCount": 1,
                                     "continuationToken": None}],
                    allow_undeclared=["$.members", *items["allow_undeclared"]],
                    allow_extra={**items["allow_extra"], **members["allow_extra"]})
    assert ents["items"]
    log = sim.json_ok("GET", f"{AUDIT}/_apis/audit/auditlog?batchSize=200&api-version=7.1-preview.1")
    assert_contract("audit", "Audit Log_Query", log, example_bodies=_real_example(),
                    opaque={"$.decoratedAuditLogEntries[*].data"}, allow_extra=D14)
    assert log["decoratedAuditLogEntries"]
