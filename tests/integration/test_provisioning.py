"""Provisioning against the simulator over real HTTPS: every path of executor.execute, with the calls it
made checked on the simulator's own request counters and state (never on the code's word alone)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from azdo_sim import entra
from azdo_sim.generator import generate
from azdo_sim.server import SimulatorServer
from azdo_sim.state import OrgState, World
from azdo_sim.truth import ground_truth

from azdo_pipeline import schemas
from azdo_pipeline.auth import GraphAppCredential, OAuthSettings, PatCredential
from azdo_pipeline.client import AzureDevOpsClient, ClientSettings, MicrosoftGraphClient
from azdo_pipeline.client.secrets import Secret
from azdo_pipeline.config import OAuthAuth, OrganizationConfig, PatAuth
from azdo_pipeline.provisioning.confirm import check_pending
from azdo_pipeline.provisioning.executor import ProvisioningContext, execute
from azdo_pipeline.provisioning.outcomes import Outcome, Status
from azdo_pipeline.provisioning.requests import parse_request
from azdo_pipeline.provisioning.resolve import Directory
from azdo_pipeline.store import Store

pytestmark = pytest.mark.timeout(120)
ORG = "fabrikam"


@dataclass
class Env:
    server: SimulatorServer
    world: World
    org: OrgState
    pat: str
    directory: Directory
    apps: list[entra.EntraApp] = field(default_factory=list)

    def calls(self) -> int:
        with self.world.lock:
            return sum(self.world.request_counts.values())

    def counts(self) -> dict[str, int]:
        with self.world.lock:
            return dict(self.world.request_counts)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    world = World(seed=5)
    org = generate(world, ORG, size="tiny", seed=5)
    pat = world.issue_pat(ORG, org.owner_key, {"app_token"}).token
    # The latest synced tables, as a sync would have left them (ground truth written through the Store).
    store = Store(tmp_path / "data")
    with world.lock:
        truth = ground_truth(org)
    with store.begin(ORG, "s1") as draft:
        for name, rows in truth.items():
            draft.write_table(name, pa.Table.from_pylist(rows, schema=schemas.RAW_TABLES[name]))
        draft.commit(simulated=True)
    server = SimulatorServer(world)
    server.start()
    try:
        yield Env(server, world, org, pat, Directory.from_store(store, ORG))
    finally:
        server.stop()


def make_ctx(env: Env, *, oauth: bool = False, entra_on: bool = False, pat: str | None = None,
             app: entra.EntraApp | None = None, directory: Directory | None = None,
             dry_run: bool = False) -> ProvisioningContext:
    s = env.server
    auth: PatAuth | OAuthAuth = PatAuth(pat_env="AZDO_PAT")
    if oauth:
        app = app or entra.register_app(env.world)
        auth = OAuthAuth(tenant_id=env.world.tenant_id, client_id=app.client_id, client_secret_env="APP_SECRET",
                         authority_host=s.base_url)
    org = OrganizationConfig(name=ORG, url=s.org_url(ORG), auth=auth, ca_bundle=s.ca_file,
                             entra_group_provisioning=entra_on)
    settings = ClientSettings(ca_bundle=s.ca_file, max_retries=0)

    async def connect() -> AzureDevOpsClient:
        # The Azure DevOps side signs in with a PAT in every case: what is under test is which rules
        # the organization's configured auth method selects, and the Microsoft Graph side below.
        return await AzureDevOpsClient.connect(s.org_url(ORG), PatCredential(pat or env.pat), settings=settings)

    async def connect_graph() -> MicrosoftGraphClient:
        assert app is not None
        cred = GraphAppCredential(OAuthSettings(tenant_id=env.world.tenant_id, client_id=app.client_id,
                                                client_secret=Secret(app.client_secret), authority_host=s.base_url,
                                                ca_bundle=s.ca_file))
        return MicrosoftGraphClient(cred, base_url=s.base_url, settings=settings)

    return ProvisioningContext(org=org, connect=connect,
                               directory=directory if directory is not None else env.directory,
                               connect_msgraph=connect_graph if oauth else None, dry_run=dry_run)


def run(ctx: ProvisioningContext, *docs: dict[str, Any]) -> list[Outcome]:
    async def go() -> list[Outcome]:
        try:
            return [await execute(parse_request(json.dumps({"organization": ORG, **d})), ctx) for d in docs]
        finally:
            await ctx.aclose()
    return asyncio.run(go())


def _project(env: Env):
    with env.world.lock:
        return next(iter(env.org.projects.values()))


def _outsider(env: Env, group: str, origin: str = "aad"):
    """A user of origin `origin` who is not a direct member of `group`."""
    with env.world.lock:
        return next(u for u in env.org.users() if u.origin == origin and u.subject_type in ("aad", "msa")
                    and not env.org.is_member(group, u.descriptor))


def _entra_group_and_outsider(env: Env):
    with env.world.lock:
        group = next(g for g in env.org.groups() if g.subject_type == "aadgp")
        members = env.world.entra_members.get(group.origin_id, set())
        user = next(u for u in env.org.users() if u.origin == "aad" and u.subject_type == "aad"
                    and u.origin_id not in members)
    return group, user


# ---- Azure DevOps groups and teams -----------------------------------------------------------------------
def test_grant_then_grant_again_then_revoke_then_revoke_again(env: Env) -> None:
    proj = _project(env)
    group = proj.role_groups["contributors"]
    user = _outsider(env, group)
    target = f"[{proj.name}]\\Contributors"
    before = env.counts()
    outs = run(make_ctx(env),
               {"id": "g1", "action": "grant", "principal": user.principal_name, "target": target},
               {"id": "g2", "action": "grant", "principal": user.principal_name, "target": target},
               {"id": "r1", "action": "revoke", "principal": {"descriptor": user.descriptor}, "target": target},
               {"id": "r2", "action": "revoke", "principal": user.principal_name, "target": target})
    assert [o.status for o in outs] == [Status.SUCCEEDED, Status.ALREADY_DONE, Status.SUCCEEDED, Status.ALREADY_DONE]
    assert [[c.method for c in o.api_calls] for o in outs] == [["HEAD", "PUT"], ["HEAD"], ["HEAD", "DELETE"],
                                                               ["HEAD"]]
    assert all(o.target_descriptor == group and o.principal_descriptor == user.descriptor for o in outs)
    after = env.counts()
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
    edge = "graph/memberships/{subject}/{container}"
    assert {k: v for k, v in delta.items() if edge in k} == {f"HEAD /vssps/{{org}}/_apis/{edge}": 4,
                                                             f"PUT /vssps/{{org}}/_apis/{edge}": 1,
                                                             f"DELETE /vssps/{{org}}/_apis/{edge}": 1}, delta
    with env.world.lock:
        assert not env.org.is_member(group, user.descriptor)


def test_team_grant_goes_to_its_backing_group(env: Env) -> None:
    proj = _project(env)
    with env.world.lock:
        team = env.org.teams[proj.default_team_id]
    user = _outsider(env, team.group_descriptor)
    [out] = run(make_ctx(env), {"id": "t1", "action": "grant", "principal": user.principal_name,
                                "target": f"{proj.name}\\{team.name}"})
    assert out.status is Status.SUCCEEDED, out.message
    assert out.target_descriptor == team.group_descriptor
    with env.world.lock:
        assert env.org.is_member(team.group_descriptor, user.descriptor)


def test_names_unknown_to_the_synced_tables_are_looked_up_in_graph(env: Env) -> None:
    proj = _project(env)
    group = proj.role_groups["readers"]
    user = _outsider(env, group)
    [out] = run(make_ctx(env, directory=Directory()),
                {"id": "l1", "action": "grant", "principal": user.principal_name, "target": f"[{proj.name}]\\Readers"})
    assert out.status is Status.SUCCEEDED, out.message
    assert [c.method for c in out.api_calls] == ["POST", "POST", "HEAD", "PUT"]  # two subject queries first
    with env.world.lock:
        assert env.org.is_member(group, user.descriptor)


def test_cycle_unknown_group_unknown_principal_fail_with_cause_and_fix(env: Env) -> None:
    proj = _project(env)
    readers, contributors = f"[{proj.name}]\\Readers", f"[{proj.name}]\\Contributors"
    outs = run(make_ctx(env),
               {"id": "c1", "action": "grant", "principal": readers, "target": contributors},
               {"id": "c2", "action": "grant", "principal": contributors, "target": readers},
               {"id": "u1", "action": "grant", "principal": "alice@contoso.com", "target": f"[{proj.name}]\\Nope"},
               {"id": "u2", "action": "grant", "principal": "nobody@nowhere.example", "target": readers},
               {"id": "u3", "action": "revoke", "principal": "nobody@nowhere.example", "target": "vssgp.Tm9wZQ"})
    assert outs[0].status is Status.SUCCEEDED, outs[0].message
    assert outs[1].status is Status.FAILED and "cycle" in outs[1].message and "other way" in outs[1].message
    assert outs[2].status is Status.FAILED and "unknown group" in outs[2].message and "spelling" in outs[2].message
    assert outs[3].status is Status.FAILED and "unknown principal" in outs[3].message
    assert "create_account" in outs[3].message
    assert outs[4].status is Status.FAILED and "unknown group vssgp.Tm9wZQ" in outs[4].message
    with env.world.lock:
        assert not env.org.is_member(proj.role_groups["readers"], proj.role_groups["contributors"])


def test_missing_graph_manage_scope_fails_naming_the_scope(env: Env) -> None:
    proj = _project(env)
    user = _outsider(env, proj.role_groups["contributors"])
    with env.world.lock:
        weak = env.world.issue_pat(ORG, env.org.owner_key, {"vso.graph", "vso.project"}).token
    [out] = run(make_ctx(env, pat=weak), {"id": "s1", "action": "grant", "principal": user.principal_name,
                                          "target": f"[{proj.name}]\\Contributors"})
    assert out.status is Status.FAILED
    assert "Graph (Read & manage)" in out.message and "vso.graph_manage" in out.message
    assert weak not in out.message
    with env.world.lock:
        assert not env.org.is_member(proj.role_groups["contributors"], user.descriptor)


def test_dry_run_makes_no_call_and_lists_the_calls(env: Env) -> None:
    proj = _project(env)
    user = _outsider(env, proj.role_groups["contributors"])
    before = env.calls()
    outs = run(make_ctx(env), {"id": "d1", "action": "grant", "principal": user.principal_name,
                               "target": f"[{proj.name}]\\Contributors", "dry_run": True},
               {"id": "d2", "action": "create_account", "principal": "new.person@contoso.com", "license": "basic",
                "dry_run": True})
    outs += run(make_ctx(env, dry_run=True), {"id": "d3", "action": "revoke", "principal": user.principal_name,
                                              "target": f"[{proj.name}]\\Contributors"})
    assert env.calls() == before
    assert all(o.dry_run and o.status is Status.SUCCEEDED and "dry run" in o.message for o in outs)
    assert [c.method for c in outs[0].api_calls] == ["HEAD", "PUT"]
    assert [c.method for c in outs[2].api_calls] == ["HEAD", "DELETE"]
    assert all(c.status is None for o in outs for c in o.api_calls)
    assert user.descriptor in outs[0].api_calls[1].url
    assert all(o.to_row()["api_call_count"] == 0 for o in outs)


def test_deprovision_is_refused_without_any_call(env: Env) -> None:
    before = env.calls()
    [out] = run(make_ctx(env), {"id": "x1", "action": "deprovision_account", "principal": "olivia@contoso.com"})
    assert env.calls() == before
    assert out.status is Status.REFUSED and "in Azure DevOps itself" in out.message and out.api_calls == ()


# ---- accounts --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("license", "expected"), [("express", ("express", "account")),
                                                   ("stakeholder", ("stakeholder", "account")),
                                                   ("visual_studio_subscriber", ("advanced", "msdn"))])
def test_create_account_with_each_licence_then_already_done(env: Env, license: str, expected: tuple[str, str]) -> None:
    proj = _project(env)
    email = f"new.{license}@contoso.com"
    outs = run(make_ctx(env),
               {"id": "a1", "action": "create_account", "principal": email, "license": license,
                "projects": [{"project": proj.name, "role": "reader"}]},
               {"id": "a2", "action": "create_account", "principal": email, "license": license})
    assert [o.status for o in outs] == [Status.SUCCEEDED, Status.ALREADY_DONE], [o.message for o in outs]
    assert [c.method for c in outs[1].api_calls] == ["GET"]  # looked up, nothing posted
    with env.world.lock:
        ident = next(u for u in env.org.users() if email in (u.principal_name.lower(), u.mail_address.lower()))
        ent = env.org.entitlements[ident.storage_key]
        assert (ent.account_license_type, ent.licensing_source) == expected
        assert env.org.is_member(proj.role_groups["readers"], ident.descriptor)


def test_create_account_refused_by_the_service_is_reported_in_plain_words(env: Env) -> None:
    with env.world.lock:
        nobody = next(u for u in env.org.users() if u.origin == "aad" and u.storage_key != env.org.owner_key
                      and not env.org.is_collection_admin(u.storage_key))
        pat = env.world.issue_pat(ORG, nobody.storage_key, {"app_token"}).token
    [out] = run(make_ctx(env, pat=pat), {"id": "a3", "action": "create_account", "principal": "z@contoso.com",
                                         "license": "stakeholder"})
    assert out.status is Status.FAILED
    assert "Project Collection Administrator" in out.message and "5032" in out.message


# ---- Entra-managed groups --------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["pat", "oauth_setting_off"])
def test_entra_group_with_pat_or_setting_off_is_a_no_op_without_any_call(env: Env, mode: str) -> None:
    group, user = _entra_group_and_outsider(env)
    ctx = make_ctx(env, oauth=mode != "pat", entra_on=False)
    before = env.counts()
    outs = run(ctx, {"id": "e1", "action": "grant", "principal": user.principal_name, "target": group.descriptor},
               {"id": "e2", "action": "revoke", "principal": user.principal_name, "target": group.principal_name})
    assert env.counts() == before  # not one request of any kind reached the simulator
    assert [o.status for o in outs] == [Status.SKIPPED_ENTRA_MANAGED] * 2
    assert all(o.api_calls == () and "Entra" in o.message for o in outs)
    assert ("PAT" in outs[0].message) == (mode == "pat")
    with env.world.lock:
        assert user.origin_id not in env.world.entra_members.get(group.origin_id, set())


def test_entra_group_with_oauth_goes_through_microsoft_graph_then_is_confirmed(env: Env) -> None:
    group, user = _entra_group_and_outsider(env)
    with env.world.lock:
        env.world.propagation_delay = timedelta(minutes=5)
    ctx = make_ctx(env, oauth=True, entra_on=True)
    req = {"id": "o1", "action": "grant", "principal": user.principal_name, "target": group.descriptor}

    async def go() -> tuple[Outcome, Outcome, Outcome, Outcome]:
        try:
            first = await execute(parse_request(json.dumps({"organization": ORG, **req})), ctx)
            again = await execute(parse_request(json.dumps({"organization": ORG, **req, "id": "o2"})), ctx)
            early = await check_pending(first, ctx)
            with env.world.lock:
                env.world.clock.advance(timedelta(minutes=6))
            later = await check_pending(first, ctx)
            return first, again, early, later
        finally:
            await ctx.aclose()

    first, again, early, later = asyncio.run(go())
    assert first.status is Status.PENDING, first.message
    assert [(c.method, c.status) for c in first.api_calls] == [("POST", 204)]
    assert first.api_calls[0].url.endswith(f"/v1.0/groups/{group.origin_id}/members/$ref")
    assert first.details == {"entra_group_id": group.origin_id, "entra_member_id": user.origin_id}
    with env.world.lock:
        assert user.origin_id in env.world.entra_members[group.origin_id]
    assert again.status is Status.ALREADY_DONE
    assert early.status is Status.PENDING and early is first
    assert later.status is Status.CONFIRMED and later.api_calls[-1].method == "HEAD"
    with env.world.lock:
        assert env.org.is_member(group.descriptor, user.descriptor)


def test_entra_revoke_of_a_non_member_is_already_done(env: Env) -> None:
    group, user = _entra_group_and_outsider(env)
    [out] = run(make_ctx(env, oauth=True, entra_on=True),
                {"id": "o3", "action": "revoke", "principal": user.principal_name, "target": group.descriptor})
    assert out.status is Status.ALREADY_DONE, out.message
    assert [(c.method, c.status) for c in out.api_calls] == [("DELETE", 404)]


def test_entra_without_the_graph_permission_names_it(env: Env) -> None:
    group, user = _entra_group_and_outsider(env)
    weak = entra.register_app(env.world, app_roles=())
    [out] = run(make_ctx(env, oauth=True, entra_on=True, app=weak),
                {"id": "o4", "action": "grant", "principal": user.principal_name, "target": group.descriptor})
    assert out.status is Status.FAILED
    assert "GroupMember.ReadWrite.All" in out.message and "admin consent" in out.message
    assert weak.client_secret not in out.message
    with env.world.lock:
        assert user.origin_id not in env.world.entra_members.get(group.origin_id, set())


def test_concurrent_requests_on_one_client_record_only_their_own_calls(env: Env) -> None:
    proj = _project(env)
    groups = [proj.role_groups["readers"], proj.role_groups["contributors"]]
    users = [_outsider(env, g) for g in groups]
    ctx = make_ctx(env)
    docs = [{"id": f"k{i}", "organization": ORG, "action": "grant", "principal": {"descriptor": u.descriptor},
             "target": {"descriptor": g}} for i, (u, g) in enumerate(zip(users, groups, strict=True))]

    async def go() -> list[Outcome]:
        try:
            return list(await asyncio.gather(*(execute(parse_request(json.dumps(d)), ctx) for d in docs)))
        finally:
            await ctx.aclose()

    outs = asyncio.run(go())
    for out, user, group in zip(outs, users, groups, strict=True):
        assert out.status is Status.SUCCEEDED, out.message
        assert [c.method for c in out.api_calls] == ["HEAD", "PUT"]
        assert all(group in c.url and user.descriptor in c.url for c in out.api_calls)


def test_unknown_project_or_team_fails_before_any_write(env: Env) -> None:
    proj = _project(env)
    before = env.counts()
    outs = run(make_ctx(env),
               {"id": "p1", "action": "create_account", "principal": "p1@contoso.com", "license": "basic",
                "projects": [{"project": "No Such Project", "role": "reader"}]},
               {"id": "p2", "action": "grant", "principal": "olivia@contoso.com", "target": f"{proj.name}\\No Team"})
    assert outs[0].status is Status.FAILED and "No Such Project" in outs[0].message
    assert outs[1].status is Status.FAILED and "unknown team" in outs[1].message
    assert "Project\\Team" in outs[1].message
    after = env.counts()
    writes = {k: after[k] - before.get(k, 0) for k in after
              if k.split(" ", 1)[0] in ("PUT", "DELETE") or ("userentitlements" in k and k.startswith("POST"))}
    assert not any(writes.values()), writes
    with env.world.lock:
        assert not any("p1@contoso.com" in (u.principal_name.lower(), u.mail_address.lower())
                       for u in env.org.users())
