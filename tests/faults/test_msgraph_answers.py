"""Microsoft Graph writes (Entra group provisioning) under faults, over HTTPS: throttling with
Retry-After, 5xx and dropped connections are retried to the one intended change; a failure that
outlasts the retries ends with an error naming the route, and the group is as it was."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from azdo_sim import entra
from azdo_sim.server import SimulatorServer

from azdo_pipeline.auth import GraphAppCredential, OAuthSettings, Secret
from azdo_pipeline.client import ClientSettings, MicrosoftGraphClient
from azdo_pipeline.client.errors import AzureDevOpsError

from .harness import FAST, ORG, rule

ADD = r"^/v1\.0/groups/[^/]+/members/\$ref$"
REMOVE = r"^/v1\.0/groups/[^/]+/members/[^/]+/\$ref$"


@pytest.fixture
def graph_server(fault_server: SimulatorServer) -> Iterator[SimulatorServer]:
    fault_server.world.faults.configure({})  # type: ignore[union-attr]
    yield fault_server
    fault_server.world.faults.configure({})  # type: ignore[union-attr]


def _pair(server: SimulatorServer) -> tuple[str, str]:
    """(Entra group object id, Entra user object id) of an aadgp group and an outsider."""
    world = server.world
    org = world.org(ORG)
    gid = next(g.origin_id for g in org.groups() if g.subject_type == "aadgp")
    members = world.entra_members.get(gid, set())
    uid = next(u.origin_id for u in org.users() if u.origin == "aad" and u.origin_id not in members)
    return gid, uid


def _call(server: SimulatorServer, method: str, gid: str, uid: str, **settings: Any) -> tuple[bool, int]:
    """Add or remove through the product's client; (its answer, requests it sent)."""
    app = entra.register_app(server.world)

    async def go() -> tuple[bool, int]:
        cred = GraphAppCredential(OAuthSettings(tenant_id=server.world.tenant_id, client_id=app.client_id,
                                                client_secret=Secret(app.client_secret),
                                                authority_host=server.base_url, ca_bundle=server.ca_file))
        cfg = ClientSettings(ca_bundle=server.ca_file, **{**FAST, **settings})
        async with MicrosoftGraphClient(cred, base_url=server.base_url, settings=cfg) as graph:
            done = await (graph.add_group_member(gid, uid) if method == "add"
                          else graph.remove_group_member(gid, uid))
            return done, graph.stats.total

    return asyncio.run(go())


@pytest.mark.parametrize(("fault", "attempts"), [
    ({"status": 429, "headers": {"Retry-After": "1"}}, 2),
    ({"status": 503}, 2),
    ({"status": 504, "count": 2}, 3),
    ({"drop": True}, 2),
])
def test_a_transient_failure_of_a_write_is_retried_to_one_change(graph_server: SimulatorServer,
                                                                  fault: dict[str, Any], attempts: int) -> None:
    gid, uid = _pair(graph_server)
    world = graph_server.world
    for method, path in (("add", ADD), ("remove", REMOVE)):
        fault = {"count": 1, **fault}
        world.faults.configure({"rules": [rule(path, method="POST" if method == "add" else "DELETE",  # type: ignore[union-attr]
                                               **fault)]})
        done, sent = _call(graph_server, method, gid, uid)
        assert done is True  # this call made the change (not "already done")
        assert sent == attempts
        assert (uid in world.entra_members[gid]) is (method == "add")


def test_a_failure_that_outlasts_the_retries_names_the_route_and_changes_nothing(
        graph_server: SimulatorServer) -> None:
    gid, uid = _pair(graph_server)
    world = graph_server.world
    world.faults.configure({"rules": [rule(ADD, method="POST", status=503)]})  # type: ignore[union-attr]
    with pytest.raises(AzureDevOpsError, match=r"msgraph groups/\{g\}/members/\$ref") as caught:
        _call(graph_server, "add", gid, uid, max_retries=2)
    assert "503" in str(caught.value)
    assert uid not in world.entra_members.get(gid, set())
