"""Team members and administrators from data a full sync already holds. Pure functions.

With the Security (Manage) scope a sync reads every team's administrators in one ACL request
(client/security.py) instead of one team-members request per team. A team's members are the
direct members of its backing group, which the membership read has already returned, so the
`team_members` table is assembled here from: those edges, the administrators' identities, and the
storage keys and display names met elsewhere in the sync.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def team_member_rows(team_of_group: Mapping[str, str], edges: Mapping[str, Sequence[str]],
                     admins: Mapping[str, Sequence[str]], storage_key_of: Mapping[str, str],
                     name_of: Mapping[str, str | None]) -> list[dict[str, Any]]:
    """Rows of the team_members table.

    team_of_group: team group descriptor -> team id; edges: team group descriptor -> direct member
    descriptors; admins: team id -> administrators' subject descriptors; storage_key_of and
    name_of: subject descriptor -> storage key / display name (missing ones stay null).
    """
    out: list[dict[str, Any]] = []
    for group, team_id in team_of_group.items():
        team_admins = set(admins.get(team_id, ()))
        members = list(dict.fromkeys(edges.get(group, ())))
        for d in members:
            out.append({"team_id": team_id, "member_descriptor": d, "member_storage_key": storage_key_of.get(d),
                        "display_name": name_of.get(d), "is_team_admin": d in team_admins, "is_member": True})
        for d in sorted(team_admins.difference(members)):
            out.append({"team_id": team_id, "member_descriptor": d, "member_storage_key": storage_key_of.get(d),
                        "display_name": name_of.get(d), "is_team_admin": True, "is_member": False})
    return out


AdminInfo = tuple[str | None, str | None]  # (storage key, display name)


def admins_by_team(acl_admins: Mapping[str, Sequence[str]], team_ids: Sequence[str],
                   identities: Sequence[Mapping[str, Any]]) -> tuple[dict[str, list[str]], dict[str, AdminInfo], int]:
    """Team id -> administrators' subject descriptors, from the ACL read (group id, lower case ->
    legacy descriptors) and the identities read for those legacy descriptors.

    Also returns subject descriptor -> (storage key, display name) for the administrators, and how
    many legacy descriptors did not resolve (identities deleted meanwhile).
    """
    by_legacy = {str(i.get("descriptor") or "").lower(): i for i in identities if i.get("subjectDescriptor")}
    out: dict[str, list[str]] = {}
    seen: dict[str, AdminInfo] = {}
    unresolved = 0
    for team_id in team_ids:
        for legacy in acl_admins.get(team_id.lower(), ()):
            ident = by_legacy.get(legacy.lower())
            if ident is None:
                unresolved += 1
                continue
            d = str(ident["subjectDescriptor"])
            out.setdefault(team_id, []).append(d)
            key = str(ident.get("id") or "").lower() or None
            seen[d] = (key, ident.get("providerDisplayName"))
    return out, seen, unresolved
