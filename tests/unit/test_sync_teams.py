"""sync/teams.py: team_members rows assembled from membership edges and the ACL read."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from azdo_pipeline import schemas
from azdo_pipeline.sync.teams import admins_by_team, team_member_rows, team_members_table


def test_rows_are_members_plus_admins_who_are_not_members() -> None:
    team_of_group = {"vssgp.A": "team-a", "vssgp.B": "team-b"}
    edges = {"vssgp.A": ["aad.u1", "aad.u2", "vssgp.G", "aad.u1"]}  # a repeated edge counts once
    admins = {"team-a": ["aad.u2", "aad.u9"], "team-b": ["aad.u1"]}
    keys = {"aad.u1": "k1", "aad.u2": "k2", "vssgp.G": "kg"}
    names = {"aad.u1": "One", "aad.u2": "Two", "aad.u9": "Nine"}
    got = sorted((r["team_id"], r["member_descriptor"], r["member_storage_key"], r["display_name"],
                  r["is_team_admin"], r["is_member"]) for r in team_member_rows(team_of_group, edges, admins, keys,
                                                                                 names))
    assert got == [
        ("team-a", "aad.u1", "k1", "One", False, True),
        ("team-a", "aad.u2", "k2", "Two", True, True),
        ("team-a", "aad.u9", None, "Nine", True, False),
        ("team-a", "vssgp.G", "kg", None, False, True),
        ("team-b", "aad.u1", "k1", "One", True, False),  # team-b's group has no members
    ]


def test_a_team_without_members_or_admins_has_no_rows() -> None:
    assert team_member_rows({"vssgp.A": "t"}, {}, {}, {}, {}) == []


def test_admins_resolve_through_legacy_descriptors_case_insensitively() -> None:
    acl = {"team-a": ["Microsoft.IdentityModel.Claims.ClaimsIdentity;T\\ann@x.com",
                      "Microsoft.IdentityModel.Claims.ClaimsIdentity;T\\gone@x.com"],
           "other-group": ["Microsoft.IdentityModel.Claims.ClaimsIdentity;T\\bob@x.com"]}
    identities = [{"id": "AAA-1", "descriptor": "microsoft.identitymodel.claims.claimsidentity;t\\ann@x.com",
                   "subjectDescriptor": "aad.ann", "providerDisplayName": "Ann"},
                  {"id": "bbb", "descriptor": "Microsoft.IdentityModel.Claims.ClaimsIdentity;T\\bob@x.com",
                   "subjectDescriptor": "aad.bob", "providerDisplayName": "Bob"}]
    admins, info, unresolved = admins_by_team(acl, ["TEAM-A"], identities)
    # team ids compare case-insensitively with the ACL's group ids; only teams asked for count
    assert admins == {"TEAM-A": ["aad.ann"]}
    assert info == {"aad.ann": ("aaa-1", "Ann")}
    assert unresolved == 1


def _sorted_rows(rows: list[dict[str, object]]) -> list[tuple[object, ...]]:
    return sorted((r["team_id"], r["member_descriptor"], r["member_storage_key"], r["display_name"],
                   r["is_team_admin"], r["is_member"]) for r in rows)  # type: ignore[type-var]


@pytest.mark.parametrize("seed", range(40))
def test_the_column_wise_table_has_the_rows_of_team_member_rows(seed: int) -> None:
    """The incremental sync builds team_members column-wise; the full sync row by row. Same rows."""
    rnd = random.Random(seed)
    subjects = [f"aad.u{i}" for i in range(rnd.randint(0, 30))] + [f"vssgp.G{i}" for i in range(rnd.randint(0, 6))]
    groups = [f"vssgp.T{i}" for i in range(rnd.randint(0, 8))]
    team_of_group = {g: f"team-{i}" for i, g in enumerate(groups) if rnd.random() < 0.8}
    containers = [*groups, "vssgp.other", "vssgp.other2"]
    edge_list = [(rnd.choice(containers), rnd.choice(subjects)) for _ in range(rnd.randint(0, 120))] if subjects else []
    edges: dict[str, list[str]] = {}
    for c, m in edge_list:
        edges.setdefault(c, []).append(m)
    teams = [*team_of_group.values(), "team-unknown"]
    admins = {t: rnd.sample([*subjects, "aad.admin-only"], rnd.randint(0, 3)) for t in teams if rnd.random() < 0.6
              if subjects}
    keys = {d: f"k-{d}" for d in subjects if rnd.random() < 0.7}
    names: dict[str, str | None] = {d: (None if rnd.random() < 0.2 else f"N {d}") for d in subjects
                                    if rnd.random() < 0.8}
    expected = _sorted_rows(team_member_rows(team_of_group, edges, admins, keys, names))
    table = team_members_table(
        team_of_group, pa.table({"container_descriptor": pa.array([c for c, _m in edge_list], pa.string()),
                                 "member_descriptor": pa.array([m for _c, m in edge_list], pa.string())}),
        admins, lambda ds: (pa.array([keys.get(d) for d in ds.to_pylist()], pa.string()),
                           pa.array([names.get(d) for d in ds.to_pylist()], pa.string())), schemas.TEAM_MEMBERS)
    assert table.schema == schemas.TEAM_MEMBERS
    assert _sorted_rows(table.to_pylist()) == expected
