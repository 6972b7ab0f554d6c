"""The embedded simulator: the default target when no organization is configured.

Served in-process through httpx's ASGI transport, so `dagster dev` and the tests work with no
server and no network. One world per (organization, size, seed) and process; the generator is
deterministic, so every Dagster step process sees the same organization.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache

import httpx

from .state import World


@dataclass(frozen=True)
class Embedded:
    world: World
    pat: str

    def transport(self) -> httpx.AsyncBaseTransport:
        from .app import create_app

        return httpx.ASGITransport(app=create_app(self.world))


_lock = threading.Lock()


@cache
def _build(org: str, size: str, seed: int) -> Embedded:
    from .generator import generate

    world = World(seed=seed)
    state = generate(world, org, size=size, seed=seed)
    pat = world.issue_pat(org, state.owner_key, {"app_token"})
    return Embedded(world, pat.token)


def embedded(org: str, size: str = "small", seed: int = 42) -> Embedded:
    with _lock:
        return _build(org, size, seed)
