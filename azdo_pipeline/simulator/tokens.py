"""Placeholder: bearer tokens issued by the simulated Entra (filled in by its owner)."""

from __future__ import annotations

from .http import Caller
from .state import World


def verify_bearer(world: World, token: str, audience: str) -> Caller | None:
    """Caller for a valid, unexpired token issued for `audience` ("azure_devops" or "msgraph"), else None."""
    return None
