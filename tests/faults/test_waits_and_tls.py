"""Bounded waits, certificate errors and discovery over real HTTPS (issue 9).

A wait the service asks for beyond `max_wait_seconds` (Retry-After or X-RateLimit-Delay, on a 200
as on a 429) ends the run at once naming the wait and the setting, instead of holding every request
for an hour; waits within the cap, a 503 or a dropped connection end in a correct sync. A refused
certificate fails at once (not retried) naming ca_bundle; a throttled discovery says throttled, not
"check the organization url".
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import certifi
import pytest
from azdo_sim.server import SimulatorServer

from azdo_pipeline.auth import PatCredential
from azdo_pipeline.client import ClientSettings, NotFoundError, ThrottledError, TransientError
from azdo_pipeline.client.discovery import discover
from azdo_pipeline.client.errors import CertificateError
from azdo_pipeline.client.transport import Requester

from .harness import ORG, Case, rule, run_case

PROJECTS = r"/_apis/projects$"
USERS = r"/vssps/[^/]+/_apis/graph/users$"
GROUPS = r"/vssps/[^/]+/_apis/graph/groups$"
ENTS = r"/vsaex/[^/]+/_apis/userentitlements$"
AREAS = r"/_apis/resourceareas$"
CAP = "retry later or raise the cap (setting max_wait_seconds, now 300 s)"

CASES = [
    Case("Retry-After 3600 on a 200", [rule(USERS, headers={"Retry-After": "3600"})], "failure",
         ("GET graph/users: throttled for 3600 s by the service (Retry-After on HTTP 200)", CAP), ThrottledError),
    Case("X-RateLimit-Delay 3600 on a 200", [rule(PROJECTS, headers={"X-RateLimit-Delay": "3600"})], "failure",
         ("GET projects: throttled for 3600 s by the service (X-RateLimit-Delay on HTTP 200)", CAP), ThrottledError),
    Case("429 with Retry-After 3600", [rule(GROUPS, status=429, headers={"Retry-After": "3600"})], "failure",
         ("GET graph/groups: throttled for 3600 s by the service (Retry-After on HTTP 429)", CAP), ThrottledError),
    Case("Retry-After 400 on a 200, above the default cap of 300 s",
         [rule(ENTS, headers={"Retry-After": "400"})], "failure",
         ("GET userentitlements: throttled for 400 s", "now 300 s"), ThrottledError),
    Case("Retry-After 2 with the cap set to 1 s", [rule(PROJECTS, headers={"Retry-After": "2"})], "failure",
         ("GET projects: throttled for 2 s", "(setting max_wait_seconds, now 1 s)"), ThrottledError,
         settings={"max_wait_seconds": 1.0}),
    Case("Retry-After 1 on a 200, within the cap", [rule(PROJECTS, count=1, headers={"Retry-After": "1"})],
         "correct"),
    Case("X-RateLimit-Delay 0.2 on a 200, within the cap",
         [rule(USERS, count=1, headers={"X-RateLimit-Delay": "0.2"})], "correct"),
    Case("429 with Retry-After 1 once", [rule(ENTS, count=1, status=429, headers={"Retry-After": "1"})], "correct"),
    Case("429 on every read until the retries run out", [rule(GROUPS, status=429, headers={"Retry-After": "0"})],
         "failure", ("Throttled by Azure DevOps on GET graph/groups (HTTP 429", "retry later"), ThrottledError),
    Case("503 twice then right", [rule(PROJECTS, count=2, status=503)], "correct"),
    Case("a connection dropped mid-body once", [rule(USERS, count=1, drop=True)], "correct"),
    Case("503 on every read", [rule(r"/_apis/teams$", status=503)], "failure",
         ("GET teams failed with HTTP 503",), TransientError),
    # ---- certificates and discovery
    Case("the simulator's certificate without its CA", [], "failure",
         ("GET resourceAreas: the TLS certificate of 127.0.0.1 was not accepted", "no ca_bundle is set",
          "Not retried"), CertificateError, settings={"ca_bundle": None}),
    Case("a ca_bundle that does not vouch for the server", [], "failure",
         ("was not accepted", f"the CA file in ca_bundle ({certifi.where()}) does not vouch for it"),
         CertificateError, settings={"ca_bundle": certifi.where()}),
    Case("discovery throttled", [rule(AREAS, status=429, headers={"Retry-After": "0"})], "failure",
         ("Throttled by Azure DevOps on GET resourceAreas",), ThrottledError),
    Case("discovery throttled for an hour", [rule(AREAS, status=429, headers={"Retry-After": "3600"})], "failure",
         ("GET resourceAreas: throttled for 3600 s", CAP), ThrottledError),
    Case("discovery down", [rule(AREAS, status=503)], "failure", ("GET resourceAreas failed with HTTP 503",),
         TransientError),
    Case("not an Azure DevOps organization", [], "failure",
         ("did not answer as an Azure DevOps organization", "check the organization url"), NotFoundError,
         url_org="no-such-org"),
    Case("discovery answering HTML", [rule(AREAS, status=200, body="<html>Welcome</html>", content_type="text/html")],
         "failure", ("did not answer as an Azure DevOps organization", "check the organization url")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_wait_tls_or_discovery_fault(fault_server: SimulatorServer, tmp_path: Path, case: Case) -> None:
    exc = run_case(fault_server, tmp_path, case)
    if case.name.startswith("discovery throttled"):  # an organization that throttles is one
        assert "organization url" not in str(exc)


def test_a_refused_certificate_is_not_retried(fault_server: SimulatorServer) -> None:
    requester = Requester(PatCredential(fault_server.pat),  # type: ignore[attr-defined]
                          ClientSettings(max_retries=6, backoff_base=0.01))

    async def go() -> None:
        try:
            with pytest.raises(CertificateError):
                await discover(requester, fault_server.org_url(ORG))
        finally:
            await requester.aclose()

    asyncio.run(go())
    assert requester.stats.total == 1 and requester.stats.retries == 0
