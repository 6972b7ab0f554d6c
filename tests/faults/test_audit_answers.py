"""The audit log read (incremental sync's source of truth) over HTTPS: a page that is not the audit
log must fail naming the route, never read as "no events" (which would hide changes)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from azdo_sim.server import SimulatorServer

from azdo_pipeline.auth import PatCredential
from azdo_pipeline.client import AzureDevOpsClient, ClientSettings
from azdo_pipeline.client.errors import UnexpectedResponseError

from .harness import ORG, rule

AUDIT = r"/_apis/audit/auditlog$"


def _read(server: SimulatorServer) -> list[dict[str, Any]]:
    start = server.world.clock.now() - timedelta(days=80)

    async def go() -> list[dict[str, Any]]:
        settings = ClientSettings(ca_bundle=server.ca_file, max_retries=1, damaged_retries=0)
        async with await AzureDevOpsClient.connect(server.org_url(ORG), PatCredential(server.pat),  # type: ignore[attr-defined]
                                                   settings=settings) as c:
            return [e async for page in c.audit.iter_entries(start, batch_size=50) for e in page]

    return asyncio.run(go())


@pytest.mark.parametrize(("name", "mutate"), [
    ("no entries list", {"remove_keys": ["decoratedAuditLogEntries"]}),
    ("entries not a list", {"set": {"decoratedAuditLogEntries": {"a": 1}}}),
    ("an entry without id", {"set_item": {"list": "decoratedAuditLogEntries", "index": 0, "key": "id",
                                          "value": None}}),
    ("hasMore a string", {"set": {"hasMore": "yes"}}),
])
def test_malformed_audit_page_fails_naming_the_route(fault_server: SimulatorServer, name: str,
                                                     mutate: dict[str, Any]) -> None:
    assert _read(fault_server)  # the log has entries: an empty read would be wrong
    fault_server.world.faults.configure({"rules": [rule(AUDIT, mutate=mutate)]})  # type: ignore[union-attr]
    try:
        with pytest.raises(UnexpectedResponseError, match="audit/auditlog"):
            _read(fault_server)
    finally:
        fault_server.world.faults.configure({})  # type: ignore[union-attr]
