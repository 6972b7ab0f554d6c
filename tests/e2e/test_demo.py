"""`make demo` end to end (the main job, in-process): simulator over TLS, full sync and access graph
through Dagster; the graph tables exist and match the simulator's state recomputed independently."""

from __future__ import annotations

import json
import os
import socket
from collections import deque
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from azdo_sim.generator import generate
from azdo_sim.state import World

from azdo_pipeline import cli
from azdo_pipeline.accessgraph.schemas import DERIVED_TABLES

pytestmark = pytest.mark.timeout(300)
ORG = "sim-fabrikam"


def _closure(world: World) -> dict[tuple[str, str], int]:
    """(principal, group) -> number of groups strictly between them, by BFS up the membership edges."""
    org = world.org(ORG)
    out: dict[tuple[str, str], int] = {}
    for start in org.identities:
        seen = {start: -1}
        queue = deque([start])
        while queue:
            node = queue.popleft()
            for container in org.up.get(node, ()):
                if container not in seen:
                    seen[container] = seen[node] + 1
                    out[(start, container)] = seen[container]
                    queue.append(container)
    return out


def test_demo_builds_graph_equal_to_independent_closure(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # Behind a corporate proxy (here one that refuses every connection) the demo still reaches its
    # loopback simulator directly: it adds 127.0.0.1 to NO_PROXY for its run.
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{dead.getsockname()[1]}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        assert cli.main(["demo", "--size", "tiny", "--seed", "42", "--data-dir", str(tmp_path)]) == 0
    assert "NO_PROXY" not in os.environ  # restored
    out = capsys.readouterr().out
    from assets.graph import GRAPH_CHECK_SPECS
    from assets.raw import RAW_CHECKS

    n = len(RAW_CHECKS) + len(GRAPH_CHECK_SPECS)  # every reconciliation rule and graph check
    assert f"asset checks: {n}/{n} passed" in out and str(tmp_path) in out
    # Then the provisioning requests, through the inbox, the sensor and the job.
    statuses = [line.split()[:2] for line in out.split("provisioning: 5 requests", 1)[1].splitlines()[1:6]]
    assert statuses == [["grant", "succeeded"], ["revoke", "succeeded"], ["grant", "skipped_entra_managed"],
                        ["create_account", "succeeded"], ["deprovision_account", "refused"]], out
    latest = tmp_path / "latest"
    manifests = list((tmp_path / "_snapshots" / f"org={ORG}").glob("*.json"))
    assert manifests and all(json.loads(m.read_text())["simulated"] is True for m in manifests)
    for name in DERIVED_TABLES:
        assert (latest / name / f"org={ORG}" / f"{name}.parquet").exists(), name

    # The same organization the demo served (the generator is deterministic).
    world = World(seed=42)
    generate(world, ORG, size="tiny", seed=42)
    expected = _closure(world)

    eff = pq.read_table(latest / "effective_grants" / f"org={ORG}" / "effective_grants.parquet")
    ents = pq.read_table(latest / "entitlements" / f"org={ORG}" / "entitlements.parquet")
    member_of_group = ents.filter(pc.and_(pc.equal(ents["entitlement"], "member"),
                                          pc.is_valid(ents["group_id"])))
    group_of = dict(zip(member_of_group["entitlement_id"].to_pylist(), member_of_group["group_id"].to_pylist(),
                        strict=True))
    got: dict[tuple[str, str], int] = {}
    for row in eff.select(["entitlement_id", "principal_id", "depth", "path"]).to_pylist():
        group = group_of.get(row["entitlement_id"])
        if group is not None:
            got[(row["principal_id"], group)] = row["depth"]
            assert len(row["path"]) == row["depth"]
    assert expected and got == expected
