"""Accounts and profile (app.vssps.visualstudio.com) against account/7.1/accounts.json + examples.

app.vssps needs a PAT for all accessible organizations (behaviour doc §1.1, §7).
"""

from __future__ import annotations

import re

import pytest

from .conftest import ACCOUNTS, ContractWorld, Sim
from .helpers import assert_contract

V = "api-version=7.1"


@pytest.fixture(scope="module")
def sim_all(cw: ContractWorld) -> Sim:
    pat = cw.world.issue_pat(None, cw.owner.storage_key, {"app_token"})
    return Sim(cw.world, pat.token)


@pytest.mark.parametrize("param", ["memberId", "ownerId"])
def test_accounts_list(sim_all: Sim, cw: ContractWorld, param: str) -> None:
    body = sim_all.json_ok("GET", f"{ACCOUNTS}/_apis/accounts?{param}={cw.owner.storage_key}&{V}")
    assert_contract("account", "Accounts_List", body)
    (acct,) = body["value"]
    assert acct["accountId"] == cw.org.id and acct["accountName"] == cw.org.name
    assert acct["accountUri"] == f"https://vssps.dev.azure.com/{cw.org.name}/"  # example form, trailing slash


def test_accounts_refuse_an_org_scoped_pat(sim: Sim, cw: ContractWorld) -> None:
    r = sim.get(f"{ACCOUNTS}/_apis/accounts?memberId={cw.owner.storage_key}&{V}")
    assert r.status_code == 401


def test_profile_me(sim_all: Sim, cw: ContractWorld) -> None:
    """No profile spec in the shared folder: the id must be the memberId the accounts call takes."""
    body = sim_all.json_ok("GET", f"{ACCOUNTS}/_apis/profile/profiles/me?{V}")
    assert re.fullmatch(r"[0-9a-f-]{36}", body["id"])
    assert body["displayName"] == cw.owner.display_name and body["emailAddress"] == cw.owner.mail_address
    again = sim_all.json_ok("GET", f"{ACCOUNTS}/_apis/accounts?memberId={body['id']}&{V}")
    assert [a["accountName"] for a in again["value"]] == [cw.org.name]
