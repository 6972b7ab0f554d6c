"""Shared fixtures for the whole suite.

Simulator fixtures (azdo_sim):

- `tiny` → `TinySim(world, org, pat)`: a fresh `World` (seed 7) holding one tiny organization
  "fabrikam" (from `simulator.generator.generate(..., size="tiny")`, or a small hand-built org when
  the generator is not importable) and a full-access PAT (`{"app_token"}`) for the org owner.
  Function-scoped: mutate it freely.
- `tiny_world` → the `World` of `tiny`; `tiny_org` → its `OrgState`; `tiny_pat` → the PAT string.
- `basic_auth(pat)` (plain function, also the `basic_auth` fixture) → `"Basic base64(':' + pat)"`.
- `asgi_client` → a sync `httpx.Client` over `server.InProcessTransport` into
  `create_app(tiny_world)` (client address 127.0.0.1), base_url `https://dev.azure.com`, sending
  the owner's Basic auth header and `X-TFS-FedAuthRedirect: Suppress`. Use full URLs for other hosts, e.g.
  `asgi_client.get("https://vssps.dev.azure.com/fabrikam/_apis/graph/users")`.
- `asgi_client_for(world, pat=None, base_url=..., suppress=True)` (fixture returning a factory) →
  the same for another world / token; clients are closed at teardown.
- `async_asgi_client` → an `httpx.AsyncClient` over `httpx.ASGITransport` with the same settings
  (for `async def` tests driven by anyio: mark them `@pytest.mark.anyio`).
- `sim_server_for(world=None, *, size="tiny", seed=7, tls=True)` (factory fixture) → a started
  `SimulatorServer` over `world` or a freshly generated org of `size`; stopped at teardown.
- `sim_server` → module-scoped `SimulatorServer` over real TLS on 127.0.0.1 serving its own tiny
  world; attributes `.world`, `.base_url`, `.ca_file`, `.org_url("fabrikam")`; the PAT is
  `sim_server.pat` (attached by the fixture). Reset faults you set (`world.faults.configure({})`).
"""

from __future__ import annotations

import base64
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from azdo_sim.faults import faults_of
from azdo_sim.state import OrgState, World

ORG = "fabrikam"

# The repository stands alone: a test that reads anything beside it (e.g. ../shared) fails, so a
# clone with nothing next to it runs the same suite as a developer machine.
REPO = Path(__file__).resolve().parents[1]


# What lay beside the repository before the tests started (../shared on a developer machine or in
# CI); folders the tests themselves create later (temp dirs of a clone in /tmp) are not in it.
_SIBLINGS = frozenset(p.name for p in REPO.parent.iterdir() if p != REPO and not p.name.startswith("pytest-of-"))


# The interpreter and its packages may live anywhere (a venv shared between worktrees, say).
_PYTHON = tuple(os.path.abspath(p) + os.sep for p in {sys.prefix, sys.base_prefix, sys.exec_prefix})


def _outside_repo(path: object) -> str | None:
    """`path` when it lies in a folder beside the repository (such as ../shared), else None."""
    if not isinstance(path, str | bytes | os.PathLike):
        return None
    full = os.path.abspath(os.fsdecode(path))
    beside = str(REPO.parent) + os.sep
    if not full.startswith(beside) or full.startswith(_PYTHON):
        return None
    first = full[len(beside):].split(os.sep, 1)[0]
    return full if first in _SIBLINGS else None


def _no_reads_beside_the_repo(event: str, args: tuple[object, ...]) -> None:
    if event in ("open", "os.listdir", "os.scandir") and args:
        outside = _outside_repo(args[0])
        if outside is not None:
            raise PermissionError(f"tests must not read outside the repository ({outside}); copy what the test "
                                  "needs into tests/data with its licence")


sys.addaudithook(_no_reads_beside_the_repo)


@dataclass
class TinySim:
    world: World
    org: OrgState
    pat: str


def basic_auth(pat: str) -> str:
    return "Basic " + base64.b64encode(f":{pat}".encode()).decode()


def build_tiny_org_by_hand(world: World, name: str = ORG) -> OrgState:
    """A small but complete org built only with state.py methods (used when the generator is absent)."""
    from datetime import timedelta

    org = world.new_org(name)
    owner = org.add_user(kind="aad", display_name="Olivia Owner", principal_name="olivia@contoso.com")
    org.owner_key = owner.storage_key
    org.add_membership(org.org_groups["project_collection_administrators"], owner.descriptor, audit=False)
    people = [owner]
    for i, (kind, meta) in enumerate([("aad", "member"), ("aad", "member"), ("aad", "guest"),
                                      ("msa", "member")]):
        domain = "outlook.com" if kind == "msa" else ("fabrikam.com" if meta == "guest" else "contoso.com")
        people.append(org.add_user(kind=kind, display_name=f"User {i}", principal_name=f"user{i}@{domain}",
                                   meta_type=meta))
    for i, p in enumerate(people):
        last = world.clock.now() - timedelta(days=i) if i % 2 == 0 else None
        org.set_entitlement(p.storage_key, ["express", "stakeholder", "advanced"][i % 3], audit=False,
                            **({"last_accessed": last} if last else {}))
    org.add_user(kind="svc", display_name=f"{name} Build Service ({name})", principal_name="")
    sp = org.add_service_principal(display_name="deploy-bot")
    entra_group = org.create_group(display_name="Engineering", entra_oid=world.new_guid(), audit=False)
    proj = org.create_project("Apollo", description="First project")
    org.create_project("Zephyr", visibility="public")
    org.add_membership(proj.role_groups["contributors"], people[1].descriptor, audit=False)
    org.add_membership(proj.role_groups["readers"], people[4].descriptor, audit=False)
    org.add_membership(proj.role_groups["contributors"], sp.descriptor, audit=False)
    org.add_membership(proj.role_groups["readers"], entra_group.descriptor, audit=False)
    org.add_membership(entra_group.descriptor, people[2].descriptor, via_entra=True)
    world.entra_members.setdefault(entra_group.origin_id, set()).add(people[2].origin_id)
    team = org.teams[proj.default_team_id]
    org.add_membership(team.group_descriptor, people[1].descriptor, audit=False)
    org.add_membership(team.group_descriptor, people[3].descriptor, audit=False)
    team.admins.add(people[1].descriptor)
    return org


def make_tiny(seed: int = 7, name: str = ORG) -> TinySim:
    world = World(seed=seed)
    try:
        from azdo_sim.generator import generate

        org = generate(world, name, size="tiny", seed=seed)
    except ImportError:  # generator (or a module it needs) not there yet: build one by hand
        world = World(seed=seed)
        org = build_tiny_org_by_hand(world, name)
    pat = world.issue_pat(org.name, org.owner_key, {"app_token"})
    faults_of(world)  # so `world.faults.configure(...)` works before any app is built
    return TinySim(world, org, pat.token)


@pytest.fixture
def tiny() -> TinySim:
    return make_tiny()


@pytest.fixture
def tiny_world(tiny: TinySim) -> World:
    return tiny.world


@pytest.fixture
def tiny_org(tiny: TinySim) -> OrgState:
    return tiny.org


@pytest.fixture
def tiny_pat(tiny: TinySim) -> str:
    return tiny.pat


@pytest.fixture(name="basic_auth")
def basic_auth_fixture() -> Callable[[str], str]:
    return basic_auth


def _headers(pat: str | None, suppress: bool) -> dict[str, str]:
    h: dict[str, str] = {}
    if pat:
        h["Authorization"] = basic_auth(pat)
    if suppress:
        h["X-TFS-FedAuthRedirect"] = "Suppress"
    return h


@pytest.fixture
def asgi_client_for() -> Iterator[Callable[..., httpx.Client]]:
    from azdo_sim.server import in_process_client

    made: list[httpx.Client] = []

    def factory(world: World, pat: str | None = None, base_url: str = "https://dev.azure.com",
                suppress: bool = True) -> httpx.Client:
        c = in_process_client(world, base_url=base_url, headers=_headers(pat, suppress))
        made.append(c)
        return c

    yield factory
    for c in made:
        c.close()


@pytest.fixture
def asgi_client(tiny: TinySim, asgi_client_for: Callable[..., httpx.Client]) -> httpx.Client:
    return asgi_client_for(tiny.world, tiny.pat)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def async_asgi_client(tiny: TinySim) -> httpx.AsyncClient:
    from azdo_sim.app import create_app

    transport = httpx.ASGITransport(app=create_app(tiny.world))
    async with httpx.AsyncClient(transport=transport, base_url="https://dev.azure.com",
                                 headers=_headers(tiny.pat, True)) as c:
        yield c


@pytest.fixture
def sim_server_for() -> Iterator[Callable[..., object]]:
    """Factory: `sim_server_for(world=None, *, size="tiny", seed=7, tls=True)` → a started
    SimulatorServer (with `.pat`, a full-access PAT of the owner of "fabrikam" when the fixture
    generated the world); every server is stopped at teardown."""
    from azdo_sim.server import SimulatorServer

    started: list[SimulatorServer] = []

    def factory(world: World | None = None, *, size: str = "tiny", seed: int = 7,
                tls: bool = True) -> SimulatorServer:
        pat = None
        if world is None:
            from azdo_sim.generator import generate

            world = World(seed=seed)
            org = generate(world, ORG, size=size, seed=seed)
            pat = world.issue_pat(ORG, org.owner_key, {"app_token"}).token
        faults_of(world)
        server = SimulatorServer(world, tls=tls)
        server.pat = pat  # type: ignore[attr-defined]
        started.append(server.start())
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def sim_server() -> Iterator[object]:
    from azdo_sim.server import SimulatorServer

    sim = make_tiny()
    server = SimulatorServer(sim.world)
    server.pat = sim.pat  # type: ignore[attr-defined]
    server.start()
    try:
        yield server
    finally:
        server.stop()
