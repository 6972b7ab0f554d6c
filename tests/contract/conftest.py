"""Fixtures of the contract tests: a small world holding every kind of subject the real service has,
and a client that calls the simulator through `httpx.ASGITransport` with the REAL public URLs.

The world is built with state.py methods only (not the generator) so every shape variant the
official examples show is present on purpose: aad member and guest, msa, svc build service,
service principal, Entra group (aadgp), org / project / team groups (vssgp), a team admin,
entitlements with and without a last access, and a few audit events.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from azdo_sim.state import Identity, OrgState, Project, Team, World

ORG = "fabrikam"
VSSPS = f"https://vssps.dev.azure.com/{ORG}"
VSAEX = f"https://vsaex.dev.azure.com/{ORG}"
CORE = f"https://dev.azure.com/{ORG}"
AUDIT = f"https://auditservice.dev.azure.com/{ORG}"
ACCOUNTS = "https://app.vssps.visualstudio.com"


@dataclass
class ContractWorld:
    world: World
    org: OrgState
    owner: Identity
    member: Identity
    guest: Identity
    msa: Identity
    svc: Identity
    sp: Identity
    entra_group: Identity
    custom_group: Identity
    project: Project
    team: Team
    pat: str


def build_contract_world(seed: int = 11) -> ContractWorld:
    world = World(seed=seed)
    org = world.new_org(ORG)
    owner = org.add_user(kind="aad", display_name="Norman Paulk", principal_name="norman@fabrikam.example")
    org.owner_key = owner.storage_key
    org.add_membership(org.org_groups["project_collection_administrators"], owner.descriptor)
    member = org.add_user(kind="aad", display_name="Francis Totten", principal_name="ftotten@fabrikam.example")
    guest = org.add_user(kind="aad", display_name="Jamal Hartnett", principal_name="jamal@partner.example",
                         meta_type="guest")
    msa = org.add_user(kind="msa", display_name="Chuck Reinhart", principal_name="chuck@outlook.com")
    # as the generator does: principalName = the scope id (a GUID, like GetAllUsers.json)
    svc = org.add_user(kind="svc", display_name=f"Project Collection Build Service ({ORG})",
                       principal_name=org.id, svc_identifier=f"{org.id}:Build:{org.id}")
    sp = org.add_service_principal(display_name="deploy-bot")
    now = world.clock.now()
    org.set_entitlement(owner.storage_key, "express", last_accessed=now - timedelta(days=1))
    org.set_entitlement(member.storage_key, "advanced")
    org.set_entitlement(guest.storage_key, "stakeholder")
    org.set_entitlement(msa.storage_key, "express", last_accessed=now - timedelta(hours=3))
    org.set_entitlement(sp.storage_key, "express")
    project = org.create_project("Fabrikam-Fiber-Git", description="Git projects", actor_key=owner.storage_key)
    org.create_project("Fabrikam-Fiber-TFVC", description="Team Foundation Version Control projects.",
                       actor_key=owner.storage_key)
    team = org.teams[project.default_team_id]
    org.add_membership(team.group_descriptor, member.descriptor, actor_key=owner.storage_key)
    org.add_membership(team.group_descriptor, guest.descriptor, actor_key=owner.storage_key)
    team.admins.add(member.descriptor)
    entra_group = org.create_group(display_name="Part Time Engineers", entra_oid=world.new_guid(), audit=False)
    world.entra_members.setdefault(entra_group.origin_id, set()).add(member.origin_id)
    org.add_membership(entra_group.descriptor, member.descriptor, via_entra=True)
    org.add_membership(project.role_groups["readers"], entra_group.descriptor, actor_key=owner.storage_key)
    custom_group = org.create_group(display_name="Release Approvers", description="Approve releases",
                                    project_id=project.id, actor_key=owner.storage_key)
    org.add_membership(custom_group.descriptor, msa.descriptor, actor_key=owner.storage_key)
    org.add_membership(project.role_groups["contributors"], sp.descriptor, actor_key=owner.storage_key)
    org.add_membership(org.org_groups["project_collection_build_service_accounts"], svc.descriptor)
    pat = world.issue_pat(ORG, owner.storage_key, {"app_token"})
    return ContractWorld(world, org, owner, member, guest, msa, svc, sp, entra_group, custom_group, project,
                         team, pat.token)


class Sim:
    """Synchronous facade over `httpx.AsyncClient(transport=httpx.ASGITransport(create_app(world)))`.

    Sends the full-access PAT as Basic auth with an empty user name and `X-TFS-FedAuthRedirect:
    Suppress`, like the real client.
    """

    def __init__(self, world: World, pat: str | None) -> None:
        from azdo_sim.app import create_app

        self.app = create_app(world)
        self.headers = {"X-TFS-FedAuthRedirect": "Suppress", "Accept": "application/json"}
        if pat:
            self.headers["Authorization"] = "Basic " + base64.b64encode(f":{pat}".encode()).decode()

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, headers=self.headers) as client:
                return await client.request(method, url, **kwargs)

        return asyncio.run(go())

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", url, **kwargs)

    def json_ok(self, method: str, url: str, status: int = 200, **kwargs: Any) -> Any:
        """The JSON body of a successful call; fails the test with the body otherwise."""
        r = self.request(method, url, **kwargs)
        assert r.status_code == status, f"{method} {url}: {r.status_code} {r.text[:500]}"
        assert r.headers.get("content-type", "").startswith("application/json"), r.headers
        return r.json()


@pytest.fixture(scope="session")
def cw() -> ContractWorld:
    """Shared read-only world (tests that write use `cw_rw`)."""
    return build_contract_world()


@pytest.fixture(scope="session")
def sim(cw: ContractWorld) -> Sim:
    return Sim(cw.world, cw.pat)


@pytest.fixture
def cw_rw() -> ContractWorld:
    return build_contract_world(seed=12)


@pytest.fixture
def sim_rw(cw_rw: ContractWorld) -> Sim:
    return Sim(cw_rw.world, cw_rw.pat)
