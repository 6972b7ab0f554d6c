"""Provisioning helpers for tests, the demo and the benchmark: membership changes that the
simulated organization can carry out, and what its audit log says was done.

Grants pick a user who is not yet a direct member of an Azure DevOps group (`vssgp.`); revokes
pick an existing direct user member. No two changes touch the same membership, so the audit log
must show exactly one event per change: zero would be a lost request, two a repeated one.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from .state import OrgState

ADD, REMOVE = "Group.UpdateGroupMembership.Add", "Group.UpdateGroupMembership.Remove"


@dataclass(frozen=True)
class Change:
    action: str  # grant | revoke
    group: str  # container descriptor
    member: str  # user descriptor
    group_name: str  # principal name, "[Project]\\Group"
    member_name: str  # principal name (UPN)


def membership_changes(org: OrgState, grants: int, revokes: int, seed: int = 0) -> list[Change]:
    """`grants` grants and `revokes` revokes on distinct memberships, shuffled."""
    rng = random.Random(seed)
    groups = [g for g in org.groups() if g.subject_type == "vssgp" and not g.is_team]
    users = [u for u in org.users() if u.subject_type in ("aad", "msa") and u.active]
    changes: list[Change] = []
    used: set[tuple[str, str]] = set()
    existing = [(g, org.get(m)) for g in groups for m in sorted(org.down.get(g.descriptor, ()))
                if org.get(m).subject_type in ("aad", "msa")]
    rng.shuffle(existing)
    for g, u in existing[:revokes]:
        used.add((g.descriptor, u.descriptor))
        changes.append(Change("revoke", g.descriptor, u.descriptor, g.principal_name, u.principal_name))
    if len(changes) < revokes:
        raise ValueError(f"the organization has only {len(changes)} user memberships to revoke")
    tries = 0
    while len(changes) < grants + revokes:
        tries += 1
        if tries > 100 * (grants + 1):
            raise ValueError("could not find enough memberships to grant")
        g, u = rng.choice(groups), rng.choice(users)
        if (g.descriptor, u.descriptor) in used or org.is_member(g.descriptor, u.descriptor):
            continue
        used.add((g.descriptor, u.descriptor))
        changes.append(Change("grant", g.descriptor, u.descriptor, g.principal_name, u.principal_name))
    rng.shuffle(changes)
    return changes


def membership_events(org: OrgState, since: int = 0) -> Counter[tuple[str, str, str]]:
    """(Add|Remove, group storage key, member storage key) -> events in the audit log after `since`."""
    out: Counter[tuple[str, str, str]] = Counter()
    for ev in org.audit[since:]:
        if ev.action_id in (ADD, REMOVE):
            out[("grant" if ev.action_id == ADD else "revoke", ev.data["GroupId"], ev.data["MemberId"])] += 1
    return out


def change_key(org: OrgState, c: Change) -> tuple[str, str, str]:
    return (c.action, org.get(c.group).storage_key, org.get(c.member).storage_key)
