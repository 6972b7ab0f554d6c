"""Team members and administrators from data a full sync already holds. Pure functions.

With the Security (Manage) scope a sync reads every team's administrators in one ACL request
(client/security.py) instead of one team-members request per team. A team's members are the
direct members of its backing group, which the membership read has already returned, so the
`team_members` table is assembled here from: those edges, the administrators' identities, and the
storage keys and display names met elsewhere in the sync.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


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


Lookup = Callable[[pa.Array], tuple[pa.Array, pa.Array]]


def team_members_table(team_of_group: Mapping[str, str], edges: pa.Table, admins: Mapping[str, Sequence[str]],
                       lookup: Lookup, schema: pa.Schema) -> pa.Table:
    """The rows `team_member_rows` gives (in another order), column-wise: an incremental run rebuilds
    the table from a million memberships, where rows as Python dicts cost seconds.

    edges: (container_descriptor, member_descriptor) rows, any containers (those of team groups are
    kept); lookup(distinct descriptors) -> (storage keys, display names), parallel arrays.
    """
    groups = pa.array(list(team_of_group), pa.string())
    team_ids = pa.array(list(dict.fromkeys(team_of_group.values())), pa.string())
    team_of = pc.index_in(pa.array(list(team_of_group.values()), pa.string()), value_set=team_ids)
    at = pc.take(team_of, pc.index_in(edges["container_descriptor"], value_set=groups))  # the team of each edge
    kept = pc.is_valid(at)
    # Members as codes into one dictionary of descriptors; a (team, member) pair counts once.
    coded = pc.dictionary_encode(edges["member_descriptor"].filter(kept).combine_chunks())
    width = max(len(coded.dictionary), 1)
    pair = pc.unique(pc.add(pc.multiply(at.filter(kept).combine_chunks().cast(pa.int64()), width),
                            coded.indices.cast(pa.int64())))
    team_at = pc.divide(pair, width)
    member_at = pc.subtract(pair, pc.multiply(team_at, width))
    descriptors = coded.dictionary.cast(pa.string())
    admin_pairs = [(t, d) for t in team_ids.to_pylist() for d in dict.fromkeys(admins.get(t, ()))]
    is_admin = pa.array(np.zeros(len(pair), dtype=bool))
    only: list[tuple[str, str]] = []
    if admin_pairs:
        # Administrators as the same (team, member) codes: integers compared, not joined strings.
        team_pos = {t: i for i, t in enumerate(team_ids.to_pylist())}
        at_member = pc.index_in(pa.array([d for _t, d in admin_pairs], pa.string()), value_set=descriptors)
        codes = [None if m is None else team_pos[t] * width + m
                 for (t, _d), m in zip(admin_pairs, at_member.to_pylist(), strict=True)]
        is_admin = pc.is_in(pair, value_set=pa.array([c for c in codes if c is not None], pa.int64()))
        members_now = set(pair.filter(is_admin).to_pylist())
        only = [p for p, c in zip(admin_pairs, codes, strict=True) if c is None or c not in members_now]
    if only:
        extra = list(dict.fromkeys(d for _t, d in only))
        missing = pc.is_null(pc.index_in(pa.array(extra, pa.string()), value_set=descriptors)).to_pylist()
        descriptors = pa.concat_arrays([descriptors, pa.array([d for d, m in zip(extra, missing, strict=True) if m],
                                                              pa.string())])
        position = pc.index_in(pa.array([d for _t, d in only], pa.string()), value_set=descriptors)
        team_at = pa.concat_arrays([team_at, pc.index_in(pa.array([t for t, _d in only], pa.string()),
                                                         value_set=team_ids).cast(pa.int64())])
        member_at = pa.concat_arrays([member_at, position.cast(pa.int64())])
    keys, names = lookup(descriptors)
    n_members = len(pair)
    return pa.table({
        "team_id": pc.take(team_ids, team_at),
        "member_descriptor": pc.take(descriptors, member_at),
        "member_storage_key": pc.take(keys, member_at),
        "display_name": pc.take(names, member_at),
        "is_team_admin": pa.concat_arrays([is_admin, pa.array(np.ones(len(only), dtype=bool))]),
        "is_member": pa.concat_arrays([pa.array(np.ones(n_members, dtype=bool)),
                                       pa.array(np.zeros(len(only), dtype=bool))]),
    }, schema=schema)
