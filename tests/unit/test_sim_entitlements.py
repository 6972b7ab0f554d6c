"""Simulator Member Entitlement Management: paging with Cosmos-style tokens, filters, POST outcomes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

import httpx
import pytest
from azdo_sim.state import OrgState, World

from tests.unit.test_sim_core import BASE, pat

URL = "/vsaex/fabrikam/_apis/userentitlements"
V = {"api-version": "7.1"}


@dataclass
class Env:
    world: World
    org: OrgState
    client: httpx.Client
    admin: dict


@pytest.fixture
def env(tiny, asgi_client_for: Callable[..., httpx.Client]) -> Env:
    w, org = tiny.world, tiny.org
    admin = pat(w, org, org.owner_key, {"vso.memberentitlementmanagement_write"})
    return Env(w, org, asgi_client_for(w, base_url=BASE), admin)


def add_licensed(org: OrgState, n: int) -> None:
    for i in range(n):
        u = org.add_user(kind="aad", display_name=f"Bulk {i:03d}", principal_name=f"bulk{i:03d}@fabrikam.com")
        org.set_entitlement(u.storage_key, "stakeholder" if i % 5 == 0 else "express", audit=False)


def licensed_keys(org: OrgState) -> list[str]:
    return [u.storage_key for u in org.users() if u.storage_key in org.entitlements]


def test_paging_with_encoded_token_returns_everything_once(env: Env) -> None:
    add_licensed(env.org, 240)
    expected = licensed_keys(env.org)
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        params = dict(V)
        if token is not None:
            params["continuationToken"] = token  # httpx URL-encodes + # =
        r = env.client.get(URL, params=params, headers=env.admin)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["members"] == body["items"]
        assert body["totalCount"] == len(expected)
        assert len(body["members"]) <= 100
        seen += [m["id"] for m in body["members"]]
        pages += 1
        token = body["continuationToken"]
        if token is None:
            break
        assert token.startswith("+RID:~") and "#" in token and "=" in token
    assert pages == 3
    assert seen == expected


def test_unencoded_token_fails_like_the_real_service(env: Env) -> None:
    add_licensed(env.org, 150)
    first = env.client.get(URL, params=V, headers=env.admin).json()
    token = first["continuationToken"]
    # naive client: pastes the token into the URL as is; '#' starts a fragment, '+' reads as a space
    raw = httpx.URL(f"http://127.0.0.1:8080{URL}?api-version=7.1&continuationToken={token}")
    assert raw.fragment  # the rest of the token never reaches the server
    r = env.client.get(raw, headers=env.admin)
    assert r.status_code == 500
    assert r.json()["typeKey"] == "InvalidContinuationTokenException"
    # only '#' and '=' encoded, '+' left raw: still damaged (the leading '+' becomes a space)
    half = quote(token, safe="+")
    r = env.client.get(f"{URL}?api-version=7.1&continuationToken={half}", headers=env.admin)
    assert r.status_code == 500
    # encoded properly, the same token works
    r = env.client.get(f"{URL}?api-version=7.1&continuationToken={quote(token, safe='')}", headers=env.admin)
    assert r.status_code == 200 and r.json()["members"]


def test_filters_and_order(env: Env) -> None:
    org = env.org
    add_licensed(org, 30)
    stake = [k for k in licensed_keys(org) if org.entitlements[k].account_license_type == "stakeholder"
             and org.entitlements[k].licensing_source == "account"]
    r = env.client.get(URL, params={**V, "$filter": "licenseId eq 'Account-Stakeholder'"}, headers=env.admin)
    assert r.status_code == 200, r.text
    assert [m["id"] for m in r.json()["members"]] == stake
    assert all(m["accessLevel"]["licenseDisplayName"] == "Stakeholder" for m in r.json()["members"])
    guests = [k for k in licensed_keys(org) if org.by_storage_key(k).meta_type == "guest"]
    r = env.client.get(URL, params={**V, "$filter": "userType eq 'guest'"}, headers=env.admin)
    assert [m["id"] for m in r.json()["members"]] == guests
    r = env.client.get(URL, params={**V, "$filter": "name eq 'bulk00' and licenseId eq 'Account-Express'"},
                       headers=env.admin)
    names = sorted(m["user"]["displayName"] for m in r.json()["members"])
    assert names == [f"Bulk 00{i}" for i in range(10) if i % 5]
    r = env.client.get(URL, params={**V, "$filter": "(licenseId eq 'Account-Stakeholder' or "
                                                     "licenseStatus eq 'Disabled') and name eq 'Bulk'"},
                       headers=env.admin)
    assert r.json()["totalCount"] == 6
    r = env.client.get(URL, params={**V, "$orderBy": "name desc"}, headers=env.admin)
    got = [m["user"]["displayName"].lower() for m in r.json()["members"]]
    assert got == sorted(got, reverse=True)
    r = env.client.get(URL, params={**V, "$filter": "color eq 'blue'"}, headers=env.admin)
    assert r.status_code == 400


def test_get_by_id_shape_and_not_found(env: Env) -> None:
    org = env.org
    key = org.owner_key
    r = env.client.get(f"{URL}/{key}", params=V, headers=env.admin)
    assert r.status_code == 200, r.text
    body = r.json()
    ent = org.entitlements[key]
    assert body["id"] == key
    assert body["user"]["descriptor"] == org.by_storage_key(key).descriptor
    assert body["user"]["url"].startswith("http://127.0.0.1:8080/vssps/fabrikam/_apis/")
    assert body["accessLevel"] == {"licensingSource": ent.licensing_source,
                                   "accountLicenseType": ent.account_license_type,
                                   "msdnLicenseType": ent.msdn_license_type,
                                   "licenseDisplayName": ent.license_display_name, "status": ent.status,
                                   "statusMessage": "", "assignmentSource": "unknown"}
    assert set(body) >= {"lastAccessedDate", "dateCreated", "projectEntitlements", "extensions",
                         "groupAssignments"}
    never = org.add_user(kind="aad", display_name="Never", principal_name="never@fabrikam.com")
    org.set_entitlement(never.storage_key, "express", audit=False)
    assert env.client.get(f"{URL}/{never.storage_key}", params=V,
                          headers=env.admin).json()["lastAccessedDate"] == "0001-01-01T00:00:00Z"
    r = env.client.get(f"{URL}/00000000-0000-0000-0000-000000000001", params=V, headers=env.admin)
    assert r.status_code == 404 and r.json()["typeKey"] == "MemberNotFoundException"


def post(env: Env, principal: str, headers: dict | None = None, **access: str) -> dict:
    body = {"accessLevel": access or {"accountLicenseType": "express", "licensingSource": "account"},
            "user": {"principalName": principal, "subjectKind": "user"}}
    r = env.client.post(URL, params=V, json=body, headers=headers or env.admin)
    assert r.status_code == 200, r.text  # always 200, even on failure
    return r.json()


def test_post_new_user_pending_and_audited(env: Env) -> None:
    org = env.org
    domain = org.by_storage_key(org.owner_key).principal_name.split("@")[1]
    before = len(org.audit)
    out = post(env, f"new.person@{domain}")
    assert out["isSuccess"] and out["operationResult"]["isSuccess"] and out["operationResult"]["errors"] == []
    ent = out["userEntitlement"]
    assert ent["accessLevel"]["status"] == "pending" and ent["accessLevel"]["licenseDisplayName"] == "Basic"
    assert ent["user"]["origin"] == "aad" and ent["user"]["metaType"] == "member"
    assert out["operationResult"]["userId"] == ent["id"] == out["operationResult"]["result"]["id"]
    ident = org.by_storage_key(ent["id"])
    assert ident is not None and org.entitlements[ident.storage_key].status == "pending"
    new_events = org.audit[before:]
    assert [e.action_id for e in new_events] == ["Licensing.Assigned"]
    assert new_events[0].actor_user_id == org.owner_key
    # visible through GET
    assert env.client.get(f"{URL}/{ent['id']}", params=V, headers=env.admin).status_code == 200
    # outside domain → Entra guest; consumer domain → Microsoft account
    guest = post(env, "partner@othercorp.example", accountLicenseType="stakeholder", licensingSource="account")
    assert guest["isSuccess"] and guest["userEntitlement"]["user"]["metaType"] == "guest"
    assert guest["userEntitlement"]["user"]["mailAddress"] == "partner@othercorp.example"
    msa = post(env, "someone@outlook.com")
    assert msa["userEntitlement"]["user"]["origin"] == "msa"
    vs = post(env, f"vs.sub@{domain}", accountLicenseType="advanced", licensingSource="msdn")
    assert vs["userEntitlement"]["accessLevel"]["licensingSource"] == "msdn"
    assert vs["userEntitlement"]["accessLevel"]["msdnLicenseType"] == "eligible"


def test_post_existing_user_is_success_and_unchanged(env: Env) -> None:
    org = env.org
    user = next(u for u in org.users() if u.storage_key in org.entitlements and u.storage_key != org.owner_key)
    before_ent = org.entitlements[user.storage_key]
    before_audit = len(org.audit)
    out = post(env, user.principal_name.upper(), accountLicenseType="stakeholder", licensingSource="account")
    assert out["isSuccess"] and out["operationResult"]["userId"] == user.storage_key
    assert org.entitlements[user.storage_key] is before_ent
    assert out["userEntitlement"]["accessLevel"]["accountLicenseType"] == before_ent.account_license_type
    assert len(org.audit) == before_audit


def test_post_project_entitlement_adds_group_membership(env: Env) -> None:
    org = env.org
    proj = org.projects[org.project_order[0]]
    body = {"accessLevel": {"accountLicenseType": "express", "licensingSource": "account"},
            "user": {"principalName": "dev@fabrikam.com", "subjectKind": "user"},
            "projectEntitlements": [{"group": {"groupType": "projectContributor"}, "projectRef": {"id": proj.id}}]}
    out = env.client.post(URL, params=V, json=body, headers=env.admin).json()
    assert out["isSuccess"], out
    ident = org.by_storage_key(out["userEntitlement"]["id"])
    assert org.is_member(proj.role_groups["contributors"], ident.descriptor)
    assert out["userEntitlement"]["projectEntitlements"][0]["group"]["groupType"] == "projectContributor"
    assert org.audit[-1].action_id == "Group.UpdateGroupMembership.Add"


def test_post_failures(env: Env) -> None:
    org = env.org
    bad = post(env, "not-an-email")
    assert not bad["isSuccess"] and bad["operationResult"]["errors"][0]["key"] == 5000
    assert "invalid" in bad["operationResult"]["errors"][0]["value"]
    assert bad["userEntitlement"] is None
    empty = post(env, "")
    assert empty["operationResult"]["errors"][0]["key"] == 5000
    # a licensed user who is not a Project Collection Administrator
    plain = next(u for u in org.users() if u.storage_key in org.entitlements
                 and not org.is_collection_admin(u.storage_key))
    h = pat(env.world, org, plain.storage_key, {"vso.memberentitlementmanagement_write"})
    n_users = len(org.user_order)
    denied = post(env, "someone.new@fabrikam.com", headers=h)
    assert not denied["isSuccess"] and not denied["operationResult"]["isSuccess"]
    err = denied["operationResult"]["errors"][0]
    assert err["key"] == 5032 and err["value"].startswith("Access Denied:") and "Add Users" in err["value"]
    assert len(org.user_order) == n_users
    # read-only scope cannot POST at all
    ro = pat(env.world, org, org.owner_key, {"vso.memberentitlementmanagement"})
    r = env.client.post(URL, params=V, json={"user": {"principalName": "x@fabrikam.com"}}, headers=ro)
    assert r.status_code == 401
    assert env.client.get(URL, params=V, headers=ro).status_code == 200
    r = env.client.post(URL, params=V, content=b"{not json", headers=env.admin)
    assert r.status_code == 400


def test_delete_user_entitlement(env: Env) -> None:
    org = env.org
    user = next(u for u in org.users() if u.storage_key in org.entitlements and u.storage_key != org.owner_key)
    r = env.client.delete(f"{URL}/{user.storage_key}", params=V, headers=env.admin)
    assert r.status_code == 204 and r.content == b""
    assert org.by_storage_key(user.storage_key) is None
    assert org.audit[-1].action_id == "Licensing.Removed"
    assert env.client.get(f"{URL}/{user.storage_key}", params=V, headers=env.admin).status_code == 404
    assert env.client.delete(f"{URL}/{user.storage_key}", params=V, headers=env.admin).status_code == 404


def test_service_principal_entitlement(env: Env) -> None:
    org = env.org
    sp = next(iter(org.service_principals()))
    if sp.storage_key not in org.entitlements:
        org.set_entitlement(sp.storage_key, "express", audit=False)
    url = f"/vsaex/fabrikam/_apis/serviceprincipalentitlements/{sp.storage_key}"
    assert env.client.get(url, params=V, headers=env.admin).status_code == 400  # preview-only
    r = env.client.get(url, params={"api-version": "7.1-preview.1"}, headers=env.admin)
    assert r.status_code == 200, r.text
    assert r.json()["servicePrincipal"]["descriptor"] == sp.descriptor
    # service principals are not in the user list
    ids = {m["id"] for m in env.client.get(URL, params=V, headers=env.admin).json()["members"]}
    assert sp.storage_key not in ids


def test_bodies_echo_the_host_style(env: Env, asgi_client_for) -> None:
    cloud = asgi_client_for(env.world)  # base https://dev.azure.com
    key = env.org.owner_key
    r = cloud.get(f"https://vsaex.dev.azure.com/fabrikam/_apis/userentitlements/{key}", params=V, headers=env.admin)
    assert r.status_code == 200, r.text
    assert r.json()["user"]["url"].startswith("https://vssps.dev.azure.com/fabrikam/_apis/")
    r = cloud.get(f"https://fabrikam.vsaex.visualstudio.com/_apis/userentitlements/{key}", params=V,
                  headers=env.admin)
    assert r.status_code == 200, r.text
    assert r.json()["user"]["url"].startswith("https://fabrikam.vssps.visualstudio.com/_apis/")
    audit = cloud.get("https://auditservice.dev.azure.com/fabrikam/_apis/audit/auditlog",
                      params={"api-version": "7.1-preview.1"}, headers=pat(env.world, env.org, key, {"vso.auditlog"}))
    entry = next(e for e in audit.json()["decoratedAuditLogEntries"] if e["actorImageUrl"])
    assert entry["actorImageUrl"].startswith("https://dev.azure.com/fabrikam/_apis/GraphProfile/MemberAvatars/")
    teams = cloud.get("https://fabrikam.visualstudio.com/_apis/teams", params={"api-version": "7.1-preview.3"},
                      headers=pat(env.world, env.org, key, {"vso.project"}))
    assert teams.json()["value"][0]["url"].startswith("https://fabrikam.visualstudio.com/_apis/projects/")
    assert teams.json()["value"][0]["identityUrl"].startswith("https://fabrikam.vssps.visualstudio.com/_apis/")
