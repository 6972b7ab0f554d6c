"""Simulator Graph paging: raw scan pages of PAGE_SIZE, filtered afterwards, token while the scan has more."""

from __future__ import annotations

import pytest
from azdo_sim import routes_graph
from azdo_sim.serialize import scope_descriptor
from azdo_sim.state import OrgState, World

V = "api-version=7.1-preview.1"
PAGE = 5


def paging_world() -> tuple[World, OrgState, str]:
    """Users laid out in scan blocks of PAGE: [5 msa] [2 aad + 3 svc] [5 aad] [1 msa]."""
    world = World(seed=11)
    org = world.new_org("pager")
    owner = org.add_user(kind="msa", display_name="Owner", principal_name="owner@outlook.com")
    org.owner_key = owner.storage_key
    org.add_membership(org.org_groups["project_collection_administrators"], owner.descriptor, audit=False)
    for i in range(4):
        org.add_user(kind="msa", display_name=f"Msa {i}", principal_name=f"msa{i}@outlook.com")
    for i in range(2):
        org.add_user(kind="aad", display_name=f"Aad {i}", principal_name=f"aad{i}@contoso.com")
    for i in range(3):
        org.add_user(kind="svc", display_name=f"Build {i}", principal_name="")
    for i in range(2, 7):
        org.add_user(kind="aad", display_name=f"Aad {i}", principal_name=f"aad{i}@contoso.com")
    org.add_user(kind="msa", display_name="Last", principal_name="last@outlook.com")
    assert len(org.user_order) == 16
    pat = world.issue_pat(org.name, owner.storage_key, {"app_token"}).token
    return world, org, pat


@pytest.fixture
def small_pages(monkeypatch):
    monkeypatch.setattr(routes_graph, "PAGE_SIZE", PAGE)


@pytest.fixture
def pager(small_pages, asgi_client_for):
    world, org, pat = paging_world()
    return org, asgi_client_for(world, pat, base_url="https://vssps.dev.azure.com")


def pages(client, path: str, params: str = "") -> list[tuple[list[dict], str | None]]:
    """Every page until the continuation header is gone (never stop on a short or empty page)."""
    out, token = [], None
    for _ in range(100):
        q = f"{path}?{V}{params}" + (f"&continuationToken={token}" if token else "")
        r = client.get(q)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["count"] == len(body["value"])
        token = r.headers.get("X-MS-ContinuationToken")
        out.append((body["value"], token))
        if not token:
            return out
    raise AssertionError("paging did not end")


def test_filtered_pages_are_short_or_empty_but_carry_tokens(pager):
    org, client = pager
    got = pages(client, "/pager/_apis/graph/users", "&subjectTypes=aad")
    assert [len(v) for v, _ in got] == [0, 2, 5, 0]
    assert [t is not None for _, t in got] == [True, True, True, False]
    truth = [d for d in org.user_order if d.startswith("aad.")]
    assert [u["descriptor"] for v, _ in got for u in v] == truth
    # A client stopping at the first short page would have seen nothing at all.
    assert got[0][0] == []


def test_unfiltered_pages_cover_the_scan_exactly(pager):
    org, client = pager
    got = pages(client, "/pager/_apis/graph/users")
    assert [len(v) for v, _ in got] == [5, 5, 5, 1]
    assert [u["descriptor"] for v, _ in got for u in v] == org.user_order


def test_page_size_exactly_divides_the_scan(small_pages, asgi_client_for):
    world, org, pat = paging_world()
    org.remove_user(org.identities[org.user_order[-1]].storage_key)  # 15 users = 3 full pages
    client = asgi_client_for(world, pat, base_url="https://vssps.dev.azure.com")
    got = pages(client, "/pager/_apis/graph/users")
    assert [len(v) for v, _ in got] == [5, 5, 5]
    assert got[-1][1] is None


def test_group_and_service_principal_scans_are_separate(small_pages, asgi_client_for):
    world, org, pat = paging_world()
    for i in range(7):
        org.create_group(display_name=f"Team {i}", audit=False)
    aadgp = org.create_group(display_name="Entra Engineers", entra_oid=world.new_guid(), audit=False)
    for i in range(6):
        org.add_service_principal(display_name=f"sp-{i}")
    client = asgi_client_for(world, pat, base_url="https://vssps.dev.azure.com")
    got = pages(client, "/pager/_apis/graph/groups", "&subjectTypes=aadgp")
    assert [len(v) for v, _ in got] == [0, 0, 1]
    assert got[-1][0][0]["descriptor"] == aadgp.descriptor
    sps = pages(client, "/pager/_apis/graph/serviceprincipals")
    assert [len(v) for v, _ in sps] == [5, 1]
    assert [s["descriptor"] for v, _ in sps for s in v] == org.sp_order
    # the user scan is not affected by groups or service principals
    assert sum(len(v) for v, _ in pages(client, "/pager/_apis/graph/users")) == 16


def test_token_keeps_the_scope_of_the_first_request(small_pages, asgi_client_for):
    world, org, pat = paging_world()
    proj = org.create_project("Apollo")
    for i in range(6):
        org.create_group(display_name=f"Org {i}", audit=False)
    extra = org.create_group(display_name="Late", project_id=proj.id, audit=False)
    client = asgi_client_for(world, pat, base_url="https://vssps.dev.azure.com")
    first = client.get(f"/pager/_apis/graph/groups?{V}&scopeDescriptor={scope_descriptor(proj.id)}")
    seen = [g["descriptor"] for g in first.json()["value"]]
    token = first.headers["X-MS-ContinuationToken"]
    while token:  # later pages without scopeDescriptor still filter by the project
        r = client.get(f"/pager/_apis/graph/groups?{V}&continuationToken={token}")
        seen += [g["descriptor"] for g in r.json()["value"]]
        token = r.headers.get("X-MS-ContinuationToken")
    assert set(seen) == {g.descriptor for g in org.groups() if g.project_id == proj.id}
    assert extra.descriptor in seen


def test_a_scoped_group_listing_pages_over_the_scope_only(small_pages, asgi_client_for):
    """ListGroups reads its pages by scope (ScopePagingContext(scope, ...)): a project's groups take as
    many pages as they fill, however many groups the organization has; users stay filtered."""
    world, org, pat = paging_world()
    proj = org.create_project("Hermes")
    for i in range(4 * PAGE):
        org.create_group(display_name=f"Org {i}", audit=False)
    mine = {g.descriptor for g in org.groups() if g.project_id == proj.id}
    client = asgi_client_for(world, pat, base_url="https://vssps.dev.azure.com")
    got = pages(client, "/pager/_apis/graph/groups", f"&scopeDescriptor={scope_descriptor(proj.id)}")
    assert {g["descriptor"] for v, _ in got for g in v} == mine
    assert len(got) == -(-len(mine) // PAGE)
    assert len(pages(client, "/pager/_apis/graph/groups")) > 4  # the organization's scan: every group


def test_removals_between_pages_neither_skip_nor_repeat(pager):
    org, client = pager
    r = client.get(f"/pager/_apis/graph/users?{V}")
    first = [u["descriptor"] for u in r.json()["value"]]
    token = r.headers["X-MS-ContinuationToken"]
    for d in first[2:]:  # remove the tail of the page already read, the last one included
        org.remove_user(org.identities[d].storage_key)
    rest = []
    while token:
        r = client.get(f"/pager/_apis/graph/users?{V}&continuationToken={token}")
        rest += [u["descriptor"] for u in r.json()["value"]]
        token = r.headers.get("X-MS-ContinuationToken")
    assert rest == org.user_order[2:]


def test_bad_tokens(pager):
    _, client = pager
    r = client.get(f"/pager/_apis/graph/users?{V}&continuationToken=not-a-token")
    assert r.status_code == 400 and r.json()["typeKey"] == "ArgumentException"
    token = client.get(f"/pager/_apis/graph/users?{V}").headers["X-MS-ContinuationToken"]
    assert client.get(f"/pager/_apis/graph/groups?{V}&continuationToken={token}").status_code == 400
