"""Simulator app.vssps: accounts of a member/owner and the caller's profile."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest
from azdo_sim import generator
from azdo_sim.state import Identity, OrgState, World

from tests.unit.test_sim_core import BASE, pat

V = {"api-version": "7.1"}


@dataclass
class Env:
    world: World
    home: OrgState
    second: OrgState
    person: Identity
    client: httpx.Client


@pytest.fixture
def env(tiny, asgi_client_for: Callable[..., httpx.Client]) -> Env:
    world, home = tiny.world, tiny.org
    second = generator.generate(world, "contoso", size="tiny", seed=3)
    person = home.by_storage_key(home.owner_key)
    # the same Entra person is also a user of the second organization (not its owner)
    second.add_user(kind="aad", display_name=person.display_name, principal_name=person.principal_name,
                    origin_id=person.origin_id)
    world.new_org("unrelated")
    return Env(world, home, second, person, asgi_client_for(world, base_url=BASE))


def test_profile_then_accounts_of_member(env: Env) -> None:
    h = pat(env.world, None, env.person.storage_key, {"vso.profile"})
    r = env.client.get("/app.vssps/_apis/profile/profiles/me", params=V, headers=h)
    assert r.status_code == 200, r.text
    me = r.json()
    assert me["id"] == env.person.storage_key and me["displayName"] == env.person.display_name
    assert me["emailAddress"] == env.person.mail_address
    assert {"publicAlias", "coreRevision", "timeStamp", "revision"} <= set(me)
    r = env.client.get("/app.vssps/_apis/accounts", params={**V, "memberId": me["id"]}, headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == 2
    assert [a["accountName"] for a in body["value"]] == ["contoso", "fabrikam"]
    fab = body["value"][1]
    assert fab == {"accountId": env.home.id, "accountUri": "http://127.0.0.1:8080/vssps/fabrikam/",
                   "accountName": "fabrikam", "properties": {}}
    # the person's key in the second org identifies the same person
    other_key = next(u.storage_key for u in env.second.users()
                     if u.principal_name == env.person.principal_name)
    r = env.client.get("/app.vssps/_apis/accounts", params={**V, "memberId": other_key}, headers=h)
    assert r.json()["count"] == 2


def test_accounts_of_owner(env: Env) -> None:
    h = pat(env.world, None, env.person.storage_key, {"vso.profile"})
    r = env.client.get("/app.vssps/_apis/accounts", params={**V, "ownerId": env.person.storage_key}, headers=h)
    assert [a["accountName"] for a in r.json()["value"]] == ["fabrikam"]


def test_refusals(env: Env) -> None:
    bound = pat(env.world, env.home, env.person.storage_key, {"vso.profile"})
    r = env.client.get("/app.vssps/_apis/accounts", params={**V, "memberId": env.person.storage_key}, headers=bound)
    assert r.status_code == 401
    assert env.client.get("/app.vssps/_apis/profile/profiles/me", params=V, headers=bound).status_code == 401
    h = pat(env.world, None, env.person.storage_key, {"vso.profile"})
    assert env.client.get("/app.vssps/_apis/accounts", params=V, headers=h).status_code == 400
    assert env.client.get("/app.vssps/_apis/accounts", params={**V, "memberId": "nope"}, headers=h).status_code == 400
    assert env.client.get("/app.vssps/_apis/accounts", params={"memberId": env.person.storage_key},
                          headers=h).status_code == 400  # no api-version
    stranger = next(u for u in env.second.users() if u.principal_name != env.person.principal_name)
    r = env.client.get("/app.vssps/_apis/accounts", params={**V, "memberId": stranger.storage_key}, headers=h)
    assert r.status_code == 403
    no_scope = pat(env.world, None, env.person.storage_key, {"vso.graph"})
    r = env.client.get("/app.vssps/_apis/accounts", params={**V, "memberId": env.person.storage_key},
                       headers=no_scope)
    assert r.status_code == 401
    r = env.client.get(f"/app.vssps/_apis/profile/profiles/{stranger.storage_key}", params=V, headers=h)
    assert r.status_code == 404
