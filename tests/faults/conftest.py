"""One tiny simulated organization over real HTTPS for the whole fault suite (faults reset per case)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from azdo_sim.server import SimulatorServer

from tests.conftest import make_tiny

from .harness import OUTCOMES


@pytest.fixture(scope="session")
def fault_server() -> Iterator[SimulatorServer]:
    sim = make_tiny(seed=5)
    server = SimulatorServer(sim.world)
    # A PAT for all accessible organizations: the organizations table reads the caller's accounts.
    server.pat = sim.world.issue_pat(None, sim.org.owner_key, {"app_token"}).token  # type: ignore[attr-defined]
    server.start()
    try:
        yield server
    finally:
        server.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The closing count of the fault suite: how each case ended (the harness counts the good ends;
    a case that ended otherwise is a failed or expected-to-fail test)."""
    if not OUTCOMES:
        return
    bad = sum(1 for kind in ("failed", "xfailed") for r in terminalreporter.stats.get(kind, [])
              if getattr(r, "nodeid", "").startswith("tests/faults/"))
    total = sum(OUTCOMES.values()) + bad
    terminalreporter.write_line(
        f"fault cases: {total} ran, {OUTCOMES['correct']} ended in a correct sync, {OUTCOMES['clear failure']} in "
        f"a clear failure with latest/ untouched, {bad} otherwise (wrong data or an unclear error)")
