"""Graph paging over real HTTP (TLS on 127.0.0.1): short and empty pages, stop only when the header is gone."""

from __future__ import annotations

import ssl

import httpx
import pytest
from azdo_sim import routes_graph
from azdo_sim import truth as truth_mod
from azdo_sim.server import SimulatorServer

from tests.conftest import basic_auth
from tests.unit.test_sim_graph_paging import PAGE, paging_world

V = "7.1-preview.1"


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setattr(routes_graph, "PAGE_SIZE", PAGE)
    world, org, pat = paging_world()
    for i in range(7):
        org.create_group(display_name=f"Group {i}", audit=False)
    entra = org.create_group(display_name="Entra", entra_oid=world.new_guid(), audit=False)
    users = [d for d in org.user_order if d.startswith("aad.")]
    org.add_membership(entra.descriptor, users[0], via_entra=True)
    org.add_membership(org.group_order[5], entra.descriptor, audit=False)
    with SimulatorServer(world) as srv:
        yield srv, org, pat


def collect(client: httpx.Client, path: str, **params: str) -> tuple[list[dict], list[int]]:
    items, sizes, token = [], [], None
    while True:
        q = {"api-version": V, **params, **({"continuationToken": token} if token else {})}
        r = client.get(path, params=q)
        r.raise_for_status()
        value = r.json()["value"]
        items += value
        sizes.append(len(value))
        token = r.headers.get("x-ms-continuationtoken")
        if not token:
            return items, sizes


def test_paging_over_http_collects_ground_truth(server):
    srv, org, pat = server
    headers = {"Authorization": basic_auth(pat), "X-TFS-FedAuthRedirect": "Suppress"}
    tls = ssl.create_default_context(cafile=srv.ca_file)
    with httpx.Client(base_url=f"{srv.base_url}/vssps/pager", verify=tls, headers=headers) as c:
        aad, sizes = collect(c, "/_apis/graph/users", subjectTypes="aad")
        assert sizes == [0, 2, 5, 0]  # an empty first page that still carries a token
        assert sorted(u["descriptor"] for u in aad) == \
            sorted(u["descriptor"] for u in truth_mod.users(org) if u["descriptor"].startswith("aad."))
        assert all(u["url"].startswith(f"{srv.base_url}/vssps/pager/_apis/Graph/Users/") for u in aad)

        groups, sizes = collect(c, "/_apis/graph/groups")
        assert sizes == [5, 5, 1]
        assert sorted(g["descriptor"] for g in groups) == [g["descriptor"] for g in truth_mod.groups(org)]
        entra, sizes = collect(c, "/_apis/graph/groups", subjectTypes="aadgp")
        assert sizes == [0, 0, 1]

        edges = set()
        for g in groups:
            r = c.get(f"/_apis/graph/memberships/{g['descriptor']}", params={"api-version": V, "direction": "down"})
            edges |= {(m["containerDescriptor"], m["memberDescriptor"]) for m in r.json()["value"]}
        assert edges == {(m["container_descriptor"], m["member_descriptor"]) for m in truth_mod.memberships(org)}
        first_aad = aad[0]["descriptor"]  # the fixture put it into the Entra group
        r = c.head(f"/_apis/graph/memberships/{first_aad}/{entra[0]['descriptor']}", params={"api-version": V})
        assert r.status_code == 200 and r.content == b""
