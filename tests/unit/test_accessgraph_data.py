"""A small hand-built raw snapshot of organization `contoso` with known answers (shared by the access-graph
and worked-query tests).

Project Alpha (pa): built-in groups, team "Alpha Team" (backed by group tA, in Contributors).
Project Beta (pb): built-in groups, team "Beta Team" (backed by tB).
Entra groups: eng (aadgp.eng) contains alice and the nested Entra group ops (aadgp.ops), which contains
carol. eng is a member of Alpha Contributors; ops is a member of Beta Readers.

- alice (member, Basic, active recently): direct in Alpha Team; via eng → Alpha Contributors.
- bob (guest, Basic, stale): direct member of Alpha Project Administrators; admin of Alpha Team.
- carol (member, Stakeholder): only access through Entra groups ops (→ eng → Alpha Contributors,
  and ops → Beta Readers).
- dave (guest, Basic + Test Plans, never signed in): Project Collection Administrators.
- erin (member, no licence): no memberships.
- svc build service: Beta Contributors. spn service principal: Beta Build Administrators.
- The empty groups: Alpha Readers, Alpha Build Administrators, Beta Project Administrators,
  Beta Team group (tB) and the org group "Auditors".
"""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa

from azdo_pipeline.schemas import RAW_TABLES

ORG = "contoso"
NOW = datetime(2026, 11, 1, tzinfo=UTC)
PA, PB = "11111111-0000-0000-0000-00000000000a", "11111111-0000-0000-0000-00000000000b"
TA, TB = "22222222-0000-0000-0000-00000000000a", "22222222-0000-0000-0000-00000000000b"
ROLE_NAMES = {"pa": "Project Administrators", "co": "Contributors", "re": "Readers",
              "ba": "Build Administrators", "pv": "Project Valid Users"}


def g(project: str, role: str) -> str:
    return f"vssgp.{project}-{role}"


ALICE, BOB, CAROL, DAVE, ERIN = "aad.alice", "aad.bob", "aad.carol", "msa.dave", "aad.erin"
SVC, SPN = "svc.build", "aadsp.deploy"
ENG, OPS = "aadgp.eng", "aadgp.ops"
TEAM_A, TEAM_B = "vssgp.teamA", "vssgp.teamB"
PCA, PCVU, AUDITORS = "vssgp.pca", "vssgp.pcvu", "vssgp.auditors"


def table(name: str, rows: list[dict]) -> pa.Table:
    schema = RAW_TABLES[name]
    return pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in rows], schema=schema)


def user(d: str, name: str, meta: str, license: str, source: str, status: str, last: datetime | None) -> dict:
    return {"descriptor": d, "subject_type": d.split(".")[0], "origin": "aad" if d.startswith("aad") else "msa",
            "origin_id": f"oid-{name.lower()}", "principal_name": f"{name.lower()}@contoso.com",
            "display_name": name, "mail_address": f"{name.lower()}@contoso.com", "meta_type": meta,
            "license": license, "licensing_source": source, "status": status, "last_accessed": last,
            "storage_key": f"key-{name.lower()}", "date_created": datetime(2025, 1, 1, tzinfo=UTC)}


def raw() -> dict[str, pa.Table]:
    users = [
        user(ALICE, "Alice", "member", "express", "account", "active", datetime(2026, 10, 30, tzinfo=UTC)),
        user(BOB, "Bob", "guest", "express", "account", "active", datetime(2026, 5, 1, tzinfo=UTC)),
        user(CAROL, "Carol", "member", "stakeholder", "account", "active", datetime(2026, 10, 1, tzinfo=UTC)),
        user(DAVE, "Dave", "guest", "advanced", "account", "active", None),
        user(ERIN, "Erin", "member", "none", "none", "active", None),
    ]
    groups = []
    for p, pid in (("a", PA), ("b", PB)):
        for role, name in ROLE_NAMES.items():
            groups.append({"descriptor": g(p, role), "kind": "vssgp", "display_name": name, "scope": "project",
                           "project_id": pid, "is_team": False, "storage_key": f"key-{p}-{role}",
                           "principal_name": f"[{p.upper()}]\\{name}", "origin": "vsts"})
    groups += [
        {"descriptor": TEAM_A, "kind": "vssgp", "display_name": "Alpha Team", "scope": "project", "project_id": PA,
         "is_team": True, "storage_key": TA, "origin": "vsts"},
        {"descriptor": TEAM_B, "kind": "vssgp", "display_name": "Beta Team", "scope": "project", "project_id": PB,
         "is_team": True, "storage_key": TB, "origin": "vsts"},
        {"descriptor": PCA, "kind": "vssgp", "display_name": "Project Collection Administrators",
         "scope": "organization", "is_team": False, "storage_key": "key-pca", "origin": "vsts"},
        {"descriptor": PCVU, "kind": "vssgp", "display_name": "Project Collection Valid Users",
         "scope": "organization", "is_team": False, "storage_key": "key-pcvu", "origin": "vsts"},
        {"descriptor": AUDITORS, "kind": "vssgp", "display_name": "Auditors", "scope": "organization",
         "is_team": False, "storage_key": "key-aud", "origin": "vsts"},
        {"descriptor": ENG, "kind": "aadgp", "display_name": "Engineering", "scope": "organization",
         "is_team": False, "origin": "aad", "origin_id": "oid-eng"},
        {"descriptor": OPS, "kind": "aadgp", "display_name": "Operations", "scope": "organization",
         "is_team": False, "origin": "aad", "origin_id": "oid-ops"},
    ]
    edges = [
        # built-in structure: Project Valid Users contains the other built-ins; PCVU contains both PVUs
        *[(g(p, "pv"), g(p, r), "group") for p in "ab" for r in ("pa", "co", "re", "ba")],
        (PCVU, g("a", "pv"), "group"), (PCVU, g("b", "pv"), "group"),
        (g("a", "co"), TEAM_A, "group"), (g("b", "co"), TEAM_B, "group"),
        (TEAM_A, ALICE, "user"), (ENG, ALICE, "user"), (ENG, OPS, "group"), (OPS, CAROL, "user"),
        (g("a", "co"), ENG, "group"), (g("b", "re"), OPS, "group"),
        (g("a", "pa"), BOB, "user"), (PCA, DAVE, "user"),
        (g("b", "co"), SVC, "service_account"), (g("b", "ba"), SPN, "service_principal"),
    ]
    return {
        "users": table("users", users),
        "service_accounts": table("service_accounts", [{"descriptor": SVC, "display_name": "Build Service",
                                                        "origin": "vsts"}]),
        "service_principals": table("service_principals", [{"descriptor": SPN, "display_name": "Deployer",
                                                            "application_id": "app-1", "origin_id": "oid-spn"}]),
        "groups": table("groups", groups),
        "memberships": table("memberships", [{"container_descriptor": c, "member_descriptor": m, "member_kind": k}
                                             for c, m, k in edges]),
        "projects": table("projects", [{"id": PA, "name": "Alpha", "state": "wellFormed", "visibility": "private"},
                                       {"id": PB, "name": "Beta", "state": "wellFormed", "visibility": "private"}]),
        "teams": table("teams", [{"id": TA, "name": "Alpha Team", "project_id": PA, "project_name": "Alpha"},
                                 {"id": TB, "name": "Beta Team", "project_id": PB, "project_name": "Beta"}]),
        "team_members": table("team_members", [
            {"team_id": TA, "member_descriptor": ALICE, "display_name": "Alice", "is_team_admin": False},
            {"team_id": TA, "member_descriptor": BOB, "display_name": "Bob", "is_team_admin": True}]),
        "organizations": table("organizations", [{"id": "org-1", "name": ORG, "url": "https://dev.azure.com/contoso",
                                                  "status": "enabled"}]),
    }


def test_sample_raw_tables_have_the_raw_schemas() -> None:
    tables = raw()
    assert set(tables) == set(RAW_TABLES)
    for name, t in tables.items():
        assert t.schema.equals(RAW_TABLES[name]), name


def test_teams_without_any_group_build() -> None:
    """A snapshot with teams but no group at all (hypothesis found it: indexing an empty group list)."""
    import pyarrow as pa

    from azdo_pipeline import schemas
    from azdo_pipeline.accessgraph import build_access_graph

    raw = {name: schema.empty_table() for name, schema in schemas.RAW_TABLES.items()}
    raw["projects"] = pa.Table.from_pylist([{"id": "p1", "name": "P"}], schema=schemas.PROJECTS)
    raw["teams"] = pa.Table.from_pylist([{"id": "t1", "name": "T", "project_id": "p1"}], schema=schemas.TEAMS)
    out = build_access_graph(raw, organization="o")
    assert out["entitlements"].num_rows > 0 and out["effective_grants"].num_rows == 0
