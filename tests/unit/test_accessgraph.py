"""Each access-graph table on the hand-built raw snapshot (tests/unit/test_accessgraph_data.py)."""

from __future__ import annotations

import itertools

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from azdo_pipeline.accessgraph import build as ag
from azdo_pipeline.accessgraph.checks import run_all
from azdo_pipeline.accessgraph.effective import effective_batch, iter_effective
from azdo_pipeline.accessgraph.index import GraphIndex
from azdo_pipeline.accessgraph.schemas import DERIVED_TABLES
from azdo_pipeline.schemas import RAW_TABLES
from tests.unit import test_accessgraph_data as d


@pytest.fixture(scope="module")
def graph() -> dict[str, pa.Table]:
    return ag.build_access_graph(d.raw())


def rows(t: pa.Table, **where: object) -> list[dict]:
    return [r for r in t.to_pylist() if all(r[k] == v for k, v in where.items())]


def one(t: pa.Table, **where: object) -> dict:
    found = rows(t, **where)
    assert len(found) == 1, (where, found)
    return found[0]


def test_every_table_has_its_documented_schema(graph: dict[str, pa.Table]) -> None:
    assert list(graph) == list(DERIVED_TABLES)
    for name, schema in DERIVED_TABLES.items():
        assert graph[name].schema.equals(schema), name
        for f in schema:
            assert (f.metadata or {}).get(b"description"), f"{name}.{f.name} has no description"


def test_resource_types(graph: dict[str, pa.Table]) -> None:
    t = {r["resource_type"]: r for r in graph["resource_types"].to_pylist()}
    assert set(t) == {"user", "service_account", "service_principal", "group", "team", "project", "organization"}
    assert t["user"]["traits"] == ["user"] and t["group"]["traits"] == ["group"]
    assert t["service_principal"]["traits"] == ["app"]
    assert t["service_account"]["account_type"] == "service"
    assert not t["project"]["is_principal"] and t["group"]["is_principal"]


def test_resources(graph: dict[str, pa.Table]) -> None:
    res = graph["resources"]
    counts = pc.value_counts(res["resource_type"]).to_pylist()
    assert {c["values"]: c["counts"] for c in counts} == {
        "organization": 1, "project": 2, "team": 2, "group": 17, "user": 5, "service_account": 1,
        "service_principal": 1}
    org = one(res, resource_type="organization")
    assert org["resource_id"] == d.ORG and org["url"] == "https://dev.azure.com/contoso"
    assert org["parent_resource_id"] is None
    proj = one(res, resource_type="project", resource_id=d.PA)
    assert (proj["parent_resource_type"], proj["parent_resource_id"], proj["display_name"]) == (
        "organization", d.ORG, "Alpha")
    team = one(res, resource_type="team", resource_id=d.TA)
    assert (team["parent_resource_type"], team["parent_resource_id"], team["team_group_id"]) == (
        "project", d.PA, d.TEAM_A)
    contrib = one(res, resource_id=d.g("a", "co"))
    assert (contrib["parent_resource_type"], contrib["parent_resource_id"]) == ("project", d.PA)
    assert contrib["project_role"] == "contributors" and contrib["group_kind"] == "vssgp"
    assert one(res, resource_id=d.TEAM_A)["project_role"] is None and one(res, resource_id=d.TEAM_A)["is_team"]
    pca = one(res, resource_id=d.PCA)
    assert (pca["parent_resource_type"], pca["parent_resource_id"], pca["scope"]) == (
        "organization", d.ORG, "organization")
    eng = one(res, resource_id=d.ENG)
    assert eng["entra_object_id"] == "oid-eng" and eng["group_kind"] == "aadgp"
    alice = one(res, resource_id=d.ALICE)
    assert alice["email"] == "alice@contoso.com" and alice["entra_object_id"] == "oid-alice"
    assert (alice["license"], alice["license_level"], alice["status"]) == ("express", "basic", "active")
    assert alice["last_accessed"] is not None and alice["parent_resource_id"] == d.ORG
    dave = one(res, resource_id=d.DAVE)
    assert dave["entra_object_id"] is None and dave["origin"] == "msa" and dave["user_type"] == "guest"
    assert dave["license_level"] == "basic_test_plans" and dave["last_accessed"] is None
    assert one(res, resource_id=d.ERIN)["license_level"] is None
    spn = one(res, resource_id=d.SPN)
    assert spn["entra_object_id"] == "oid-spn" and spn["application_id"] == "app-1"


def test_entitlements(graph: dict[str, pa.Table]) -> None:
    ent = graph["entitlements"]
    ids = set(ent["entitlement_id"].to_pylist())
    assert len(ids) == ent.num_rows == 17 + 2 * 2 + 2 * 6 + 6
    assert {f"group:{g}:member" for g in (d.ENG, d.TEAM_A, d.AUDITORS)} <= ids
    admin = one(ent, entitlement_id=f"team:{d.TA}:admin")
    assert admin["immutable"] and admin["purpose"] == "permission" and admin["group_id"] is None
    member = one(ent, entitlement_id=f"team:{d.TA}:member")
    assert member["group_id"] == d.TEAM_A and not member["immutable"]
    role = one(ent, entitlement_id=f"project:{d.PA}:project_administrators")
    assert role["group_id"] == d.g("a", "pa") and role["display_name"] == "Project Administrators of Alpha"
    assert one(ent, entitlement_id=f"project:{d.PB}:member")["group_id"] is None
    basic = one(ent, entitlement_id=f"organization:{d.ORG}:basic")
    assert basic["is_paid"] and basic["grantable_to"] == ["user"]
    assert not one(ent, entitlement_id=f"organization:{d.ORG}:stakeholder")["is_paid"]
    assert one(ent, entitlement_id=f"group:{d.ENG}:member")["is_paid"] is None


def test_grants_are_direct_with_sources(graph: dict[str, pa.Table]) -> None:
    g = graph["grants"]
    group_member = [r for r in g.to_pylist() if r["resource_type"] == "group"]
    assert len(group_member) == 22 and all(r["source_id"] is None for r in group_member)
    assert one(g, entitlement_id=f"group:{d.ENG}:member", principal_id=d.OPS)["principal_type"] == "group"
    # carol is only in Operations: her project access is not a direct grant
    assert {r["entitlement_id"] for r in rows(g, principal_id=d.CAROL)} == {
        f"group:{d.OPS}:member", f"organization:{d.ORG}:stakeholder"}
    bob = {(r["entitlement_id"], r["source_id"]) for r in rows(g, principal_id=d.BOB)}
    assert bob == {(f"group:{d.g('a', 'pa')}:member", None), (f"project:{d.PA}:project_administrators", d.g("a", "pa")),
                   (f"project:{d.PA}:member", d.g("a", "pa")), (f"team:{d.TA}:admin", None),
                   (f"organization:{d.ORG}:basic", None)}
    alice = {(r["entitlement_id"], r["source_id"]) for r in rows(g, principal_id=d.ALICE)}
    assert (f"team:{d.TA}:member", d.TEAM_A) in alice and (f"project:{d.PA}:member", d.TEAM_A) in alice
    licences = {r["principal_id"]: r["entitlement"] for r in rows(g, resource_type="organization")}
    assert licences == {d.ALICE: "basic", d.BOB: "basic", d.CAROL: "stakeholder", d.DAVE: "basic_test_plans"}
    assert one(g, principal_id=d.SVC, entitlement="contributors")["principal_type"] == "service_account"


def test_effective_grants_paths_and_via(graph: dict[str, pa.Table]) -> None:
    e = graph["effective_grants"]
    carol = one(e, principal_id=d.CAROL, entitlement_id=f"project:{d.PA}:contributors")
    assert (carol["via"], carol["depth"], carol["path"], carol["source_id"]) == (
        "entra_group", 2, [d.OPS, d.ENG], d.g("a", "co"))
    carol_b = one(e, principal_id=d.CAROL, entitlement_id=f"project:{d.PB}:member")
    assert (carol_b["via"], carol_b["path"], carol_b["source_id"]) == ("entra_group", [d.OPS], d.g("b", "re"))
    # alice reaches Alpha Contributors at depth 1 both through Engineering (Entra) and Alpha Team:
    # the Azure DevOps chain is preferred
    alice = one(e, principal_id=d.ALICE, entitlement_id=f"project:{d.PA}:contributors")
    assert (alice["via"], alice["path"]) == ("azure_devops_group", [d.TEAM_A])
    alice_pcvu = one(e, principal_id=d.ALICE, entitlement_id=f"group:{d.PCVU}:member")
    assert alice_pcvu["depth"] == 3 and alice_pcvu["path"] == [d.TEAM_A, d.g("a", "co"), d.g("a", "pv")]
    assert one(e, principal_id=d.ALICE, entitlement_id=f"project:{d.PA}:member")["via"] == "direct"
    bob = one(e, principal_id=d.BOB, entitlement_id=f"team:{d.TA}:admin")
    assert (bob["via"], bob["depth"], bob["source_id"]) == ("direct", 0, None)
    dave = {r["entitlement_id"] for r in rows(e, principal_id=d.DAVE)}
    assert dave == {f"group:{d.PCA}:member", f"organization:{d.ORG}:basic_test_plans"}
    assert rows(e, principal_id=d.ERIN) == []
    spn = one(e, principal_id=d.SPN, entitlement_id=f"project:{d.PB}:project_valid_users")
    assert (spn["via"], spn["path"], spn["principal_type"]) == ("azure_devops_group", [d.g("b", "ba")],
                                                                 "service_principal")
    # groups are principals too
    ops = one(e, principal_id=d.OPS, entitlement_id=f"group:{d.g('a', 'co')}:member")
    assert (ops["via"], ops["path"]) == ("entra_group", [d.ENG])


def test_team_admin_group_reaches_its_members() -> None:
    raw = d.raw()
    tm = raw["team_members"].to_pylist()
    tm.append({"team_id": d.TB, "member_descriptor": d.OPS, "is_team_admin": True})
    raw["team_members"] = pa.Table.from_pylist(tm, schema=RAW_TABLES["team_members"])
    e = ag.effective_grants_table(raw)
    carol = one(e, principal_id=d.CAROL, entitlement_id=f"team:{d.TB}:admin")
    assert (carol["via"], carol["depth"], carol["path"], carol["source_id"]) == ("entra_group", 1, [d.OPS], None)
    assert one(e, principal_id=d.OPS, entitlement_id=f"team:{d.TB}:admin")["via"] == "direct"


def test_team_without_backing_group_uses_team_members() -> None:
    raw = d.raw()
    teams = [*raw["teams"].to_pylist(), {"id": "orphan", "name": "Orphan", "project_id": d.PA}]
    raw["teams"] = pa.Table.from_pylist(teams, schema=RAW_TABLES["teams"])
    tm = [*raw["team_members"].to_pylist(), {"team_id": "orphan", "member_descriptor": d.ENG, "is_team_admin": False}]
    raw["team_members"] = pa.Table.from_pylist(tm, schema=RAW_TABLES["team_members"])
    graph = ag.build_access_graph(raw)
    assert one(graph["grants"], entitlement_id="team:orphan:member")["principal_id"] == d.ENG
    carol = one(graph["effective_grants"], principal_id=d.CAROL, entitlement_id="team:orphan:member")
    assert carol["path"] == [d.OPS, d.ENG]
    assert all(o.passed for o in run_all(raw, graph).values())


def test_access_by_principal(graph: dict[str, pa.Table]) -> None:
    a = graph["access_by_principal"]
    carol = {(r["resource_type"], r["resource_name"]): r for r in rows(a, principal_id=d.CAROL)}
    beta = carol[("project", "Beta")]
    assert beta["entitlements"] == ["member", "project_valid_users", "readers"]
    assert (beta["via"], beta["depth"], beta["path"], beta["project_id"]) == ("entra_group", 1, [d.OPS], d.PB)
    assert carol[("organization", d.ORG)]["entitlements"] == ["stakeholder"]
    assert carol[("group", "Operations")]["via"] == "direct"
    assert len(rows(a, principal_id=d.CAROL)) == 10  # org, 2 projects, 7 groups
    bob_team = one(a, principal_id=d.BOB, resource_type="team")
    assert bob_team["entitlements"] == ["admin"] and bob_team["principal_name"] == "Bob"


def test_principals_by_project(graph: dict[str, pa.Table]) -> None:
    p = graph["principals_by_project"]
    alpha_users = {r["principal_name"]: r for r in rows(p, project_id=d.PA, principal_type="user")}
    assert set(alpha_users) == {"Alice", "Bob", "Carol"}
    assert alpha_users["Bob"]["is_project_admin"] and not alpha_users["Alice"]["is_project_admin"]
    assert alpha_users["Bob"]["roles"] == ["project_administrators", "project_valid_users"]
    carol = alpha_users["Carol"]
    assert (carol["via"], carol["path_names"], carol["source_name"]) == (
        "entra_group", ["Operations", "Engineering"], "Contributors")
    assert alpha_users["Alice"]["source_id"] == d.TEAM_A and alpha_users["Alice"]["project_name"] == "Alpha"
    beta = {r["principal_id"] for r in rows(p, project_id=d.PB) if r["principal_type"] != "group"}
    assert beta == {d.CAROL, d.SVC, d.SPN}
    # the projects' own groups are not listed; outside groups are
    assert {r["principal_id"] for r in rows(p, principal_type="group")} == {d.ENG, d.OPS}
    ops_alpha = one(p, project_id=d.PA, principal_id=d.OPS)
    assert (ops_alpha["via"], ops_alpha["path"], ops_alpha["roles"]) == (
        "entra_group", [d.ENG], ["contributors", "project_valid_users"])


def test_checks_pass_on_a_consistent_graph(graph: dict[str, pa.Table]) -> None:
    out = run_all(d.raw(), graph)
    assert all(o.passed for o in out.values()), out


def test_checks_catch_broken_graphs(graph: dict[str, pa.Table]) -> None:
    raw = d.raw()
    broken = dict(graph)
    eff = graph["effective_grants"]
    broken["effective_grants"] = eff.filter(pc.not_equal(eff["principal_id"].cast(pa.string()), d.BOB))
    out = run_all(raw, broken)
    assert not out["effective_superset"].passed and out["effective_superset"].count == 5
    g = graph["grants"]
    broken = dict(graph, grants=pa.concat_tables([g, g.slice(0, 1)]))
    assert not run_all(raw, broken)["keys_unique"].passed
    ghost = g.slice(0, 1).to_pylist()
    ghost[0]["principal_id"] = "aad.ghost"
    broken = dict(graph, grants=pa.concat_tables([g, pa.Table.from_pylist(ghost, schema=g.schema)]))
    refs = run_all(raw, broken)["grant_references"]
    assert not refs.passed and refs.examples == ["grants: unknown principal aad.ghost"]
    fewer = dict(raw, users=raw["users"].slice(0, 4))
    counts = run_all(fewer, graph)["counts_reconcile"]
    assert not counts.passed and "resources.user: graph 5 != raw 4" in counts.examples


def test_cycles_are_reported_and_never_loop() -> None:
    raw = d.raw()
    extra = [{"container_descriptor": d.TEAM_A, "member_descriptor": d.g("a", "pv"), "member_kind": "group"},
             {"container_descriptor": d.AUDITORS, "member_descriptor": d.AUDITORS, "member_kind": "group"}]
    raw["memberships"] = pa.Table.from_pylist(raw["memberships"].to_pylist() + extra, schema=RAW_TABLES["memberships"])
    graph = ag.build_access_graph(raw)
    found = graph["membership_cycles"].to_pylist()
    cycles = sorted(found, key=lambda c: c["size"])
    assert [c["group_ids"] for c in cycles] == [[d.AUDITORS], sorted([d.TEAM_A, d.g("a", "co"), d.g("a", "pv")])]
    assert cycles[0]["example"] == [d.AUDITORS, d.AUDITORS]
    example = cycles[1]["example"]
    assert example[0] == example[-1] and len(example) == 4
    edges = {(r["container_descriptor"], r["member_descriptor"]) for r in raw["memberships"].to_pylist()}
    assert all((c, m) in edges for m, c in itertools.pairwise(example))
    assert ag.find_cycles(raw) == [c["example"] for c in found]
    out = run_all(raw, graph)
    assert not out["membership_cycles"].passed and out["membership_cycles"].count == 2
    assert all(o.passed for k, o in out.items() if k != "membership_cycles"), out
    # alice still gets a finite, shortest answer
    pv = one(graph["effective_grants"], principal_id=d.ALICE, entitlement_id=f"group:{d.g('a', 'pv')}:member")
    assert pv["depth"] == 2 and pv["path"] == [d.TEAM_A, d.g("a", "co")]


def test_chunking_does_not_change_the_result() -> None:
    ix = GraphIndex.from_raw(d.raw())
    whole = pa.Table.from_batches([effective_batch(ix, r) for r in iter_effective(ix)])
    tiny = pa.Table.from_batches([effective_batch(ix, r) for r in iter_effective(ix, chunk_edges=1)])
    key = [("principal_id", "ascending"), ("entitlement_id", "ascending")]
    assert whole.cast(_plain(whole.schema)).sort_by(key).equals(tiny.cast(_plain(tiny.schema)).sort_by(key))


def _plain(schema: pa.Schema) -> pa.Schema:
    def plain(t: pa.DataType) -> pa.DataType:
        if pa.types.is_dictionary(t):
            return t.value_type
        if pa.types.is_list(t):
            return pa.list_(plain(t.value_type))
        return t
    return pa.schema([pa.field(f.name, plain(f.type)) for f in schema])


def test_streaming_writer_matches_in_memory_build(graph: dict[str, pa.Table]) -> None:
    written: dict[str, list[pa.Table]] = {}

    class Sink:
        def __init__(self, name: str, schema: pa.Schema) -> None:
            self.name = name
            written[name] = []

        def __enter__(self) -> Sink:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def write_table(self, table: pa.Table) -> None:
            written[self.name].append(table)

    counts = ag.write_access_graph(d.raw(), Sink)
    assert counts == {name: t.num_rows for name, t in graph.items()}
    eff = pa.concat_tables(written["effective_grants"])
    assert eff.to_pylist() == graph["effective_grants"].to_pylist()


def test_organization_must_be_known() -> None:
    raw = d.raw()
    del raw["organizations"], raw["teams"], raw["team_members"]
    with pytest.raises(ValueError, match="organization="):
        ag.build_access_graph(raw)
    graph = ag.build_access_graph(raw, organization="contoso")
    assert one(graph["resources"], resource_type="organization")["url"] is None
    assert rows(graph["entitlements"], resource_type="team") == []
