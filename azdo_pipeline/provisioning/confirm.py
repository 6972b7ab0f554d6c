"""Settle `pending` outcomes: Entra changes made through Microsoft Graph reach Azure DevOps later.

`settle(outcome, present, now=..., wait=...)` is the pure rule: `confirmed` once Azure DevOps shows the
membership as requested (present for a grant, absent for a revoke), `unconfirmed` once `wait` has
passed since the change without that, else still `pending`. `present` comes from a later sync's
`memberships` table (`present_in_memberships`) or from a cheap targeted check
(`check_pending`: one HEAD of the membership). The caller (the sensor) decides when to check.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import pyarrow as pa

from ..client.calls import record_calls
from ..client.writes import MembershipWrites
from .executor import ProvisioningContext
from .outcomes import ApiCall, Outcome, Status
from .requests import Action

DEFAULT_WAIT = timedelta(minutes=90)
"""Entra changes can take up to an hour to show in Azure DevOps; past this a pending change is unconfirmed."""


def settle(outcome: Outcome, present: bool | None, *, now: datetime, wait: timedelta = DEFAULT_WAIT) -> Outcome:
    """The outcome after one look at Azure DevOps (`present`: the direct membership exists; None: unknown)."""
    if outcome.status is not Status.PENDING:
        return outcome
    wanted = outcome.action is Action.GRANT
    if present is not None and present == wanted:
        return outcome.settled(Status.CONFIRMED, f"confirmed: Azure DevOps shows the membership "
                                                 f"{'added' if wanted else 'removed'}. {outcome.message}", now)
    since = outcome.finished_at or outcome.started_at or now
    if now - since >= wait:
        return outcome.settled(Status.UNCONFIRMED,
                               f"unconfirmed: Azure DevOps still does not show the membership "
                               f"{'added' if wanted else 'removed'} {now - since} after the Entra change (waited "
                               f"up to {wait}); check the group in Entra and in Azure DevOps. {outcome.message}", now)
    return outcome


def present_in_memberships(outcome: Outcome, memberships: pa.Table) -> bool | None:
    """Whether a synced `memberships` table shows the outcome's edge (None when the outcome lacks descriptors)."""
    if not outcome.target_descriptor or not outcome.principal_descriptor:
        return None
    edges: Iterable[tuple[str, str]] = zip(memberships.column("container_descriptor").to_pylist(),
                                           memberships.column("member_descriptor").to_pylist(), strict=True)
    return (outcome.target_descriptor, outcome.principal_descriptor) in set(edges)


async def check_pending(outcome: Outcome, ctx: ProvisioningContext, *, now: datetime | None = None,
                        wait: timedelta = DEFAULT_WAIT) -> Outcome:
    """One HEAD of the membership in Azure DevOps, then `settle`. Non-pending outcomes make no call."""
    if outcome.status is not Status.PENDING or not outcome.target_descriptor or not outcome.principal_descriptor:
        return outcome
    writes = MembershipWrites(await ctx.client())
    with record_calls() as calls:
        present = await writes.exists(outcome.target_descriptor, outcome.principal_descriptor)
    at = now or ctx.now()
    result = settle(outcome, present, now=at, wait=wait)
    if result is outcome:
        return outcome
    return result.settled(result.status, result.message, at, [ApiCall(c.method, c.url, c.status) for c in calls])


__all__ = ["DEFAULT_WAIT", "check_pending", "present_in_memberships", "settle"]
