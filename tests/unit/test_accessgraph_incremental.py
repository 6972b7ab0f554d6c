"""The access graph brought up to date (accessgraph/incremental.py) equals the graph built in full, row
for row after sorting, on random small graphs and random edits of every fact the large tables read:
project, team and group renames, a group turning Entra or leaving a project, a team's backing group
disappearing (its members then hold the team directly), team administrators, licences, display names,
memberships added and removed (cycles included). The simulator's mutations cannot rename projects or
teams, so the incremental sync's equivalence tests do not reach these; this test does."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from azdo_pipeline.accessgraph.build import STREAMED, build_access_graph, write_access_graph
from azdo_pipeline.accessgraph.incremental import affected_principals, write_updated_graph
from azdo_pipeline.accessgraph.schemas import DERIVED_TABLES
from azdo_pipeline.store import TableWriter

from .test_accessgraph_property import LICENSES, worlds

PROFILE = settings(max_examples=int(os.environ.get("AG_EXAMPLES", "120")), deadline=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _set(table: pa.Table, row: int, column: str, value: Any) -> pa.Table:
    values = table[column].to_pylist()
    values[row] = value
    return table.set_column(table.schema.get_field_index(column), table.schema.field(column),
                            pa.array(values, table.schema.field(column).type))


@st.composite
def edits(draw: st.DrawFn, raw: dict[str, pa.Table]) -> dict[str, pa.Table]:
    """A few random edits of the raw tables (each kept only when the table has a row to edit)."""
    new = dict(raw)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["project_name", "team_name", "group_name", "group_entra", "group_project",
                                     "drop_group", "team_admin", "licence", "user_name", "add_edge",
                                     "drop_edge"]))
        table = {"project_name": "projects", "team_name": "teams", "licence": "users", "user_name": "users",
                 "team_admin": "team_members", "add_edge": "memberships", "drop_edge": "memberships"
                 }.get(kind, "groups")
        t = new[table]
        if t.num_rows == 0 and kind != "add_edge":
            continue
        i = draw(st.integers(0, max(t.num_rows - 1, 0)))
        if kind == "project_name":
            t = _set(t, i, "name", f"Renamed {i}")
        elif kind == "team_name":
            t = _set(t, i, "name", f"Team renamed {i}")
        elif kind == "group_name":
            t = _set(t, i, "display_name", draw(st.sampled_from(["Readers", "Contributors", "Renamed"])))
        elif kind == "group_entra":
            t = _set(t, i, "kind", "aadgp" if t["kind"][i].as_py() == "vssgp" else "vssgp")
        elif kind == "group_project":
            t = _set(t, i, "project_id", draw(st.sampled_from(["p0", "p1", None])))
        elif kind == "drop_group":
            t = t.filter(pa.array([j != i for j in range(t.num_rows)]))
        elif kind == "team_admin":
            t = _set(t, i, "is_team_admin", not t["is_team_admin"][i].as_py())
        elif kind == "licence":
            lic, src = draw(st.sampled_from(LICENSES))
            t = _set(_set(t, i, "license", lic), i, "licensing_source", src)
        elif kind == "user_name":
            t = _set(t, i, "display_name", f"Renamed user {i}")
        elif kind == "drop_edge":
            t = t.filter(pa.array([j != i for j in range(t.num_rows)]))
        else:
            nodes = new["groups"]["descriptor"].to_pylist() + new["users"]["descriptor"].to_pylist()
            groups = new["groups"]["descriptor"].to_pylist()
            if not groups:
                continue
            c, m = draw(st.sampled_from(groups)), draw(st.sampled_from(nodes))
            t = pa.concat_tables([t, pa.Table.from_pylist([{
                "container_descriptor": c, "member_descriptor": m,
                "member_kind": "group" if m.split(".")[0] in ("vssgp", "aadgp") else "user"}], schema=t.schema)])
        new[table] = t
    return new


def _rows(table: pa.Table) -> list[str]:
    return sorted(repr(r) for r in table.to_pylist())


@PROFILE
@given(data=st.data(), w=worlds(cycles=True))
def test_updated_graph_equals_full_build(data: st.DataObject, w: dict[str, Any], tmp_path_factory: Any) -> None:
    old = w["raw"]
    new = data.draw(edits(old))
    folder: Path = tmp_path_factory.mktemp("graph")

    def writer(kind: str) -> Any:
        return lambda name, schema: TableWriter(folder / kind / f"{name}.parquet", schema)

    write_access_graph(old, writer("old"), organization="org")
    affected = affected_principals(old, new)
    assert affected is not None
    write_updated_graph(new, affected, {n: folder / "old" / f"{n}.parquet" for n in STREAMED}, writer("new"),
                        organization="org")
    full = build_access_graph(new, organization="org")
    for name in DERIVED_TABLES:
        got = pq.read_table(folder / "new" / f"{name}.parquet")
        assert _rows(got) == _rows(full[name]), name


def test_untouched_principals_are_not_recomputed() -> None:
    """A licence change recomputes that user only; a new member of a nested group recomputes the
    member and whatever reaches it, not the group's other members nor the containers."""
    w = {"users": [{"descriptor": f"aad.u{i}", "display_name": f"U{i}", "license": "express",
                    "licensing_source": "account"} for i in range(4)],
         "groups": [{"descriptor": f"vssgp.g{i}", "kind": "vssgp", "display_name": f"G{i}"} for i in range(3)]}
    from .test_accessgraph_property import _t

    edges = [("vssgp.g0", "vssgp.g1"), ("vssgp.g1", "aad.u0"), ("vssgp.g2", "aad.u1")]
    old = {"users": _t("users", w["users"]), "groups": _t("groups", w["groups"]),
           "memberships": _t("memberships", [{"container_descriptor": c, "member_descriptor": m,
                                              "member_kind": "group" if m.startswith("vssgp") else "user"}
                                             for c, m in edges]),
           "organizations": _t("organizations", [{"id": "o", "name": "org"}])}
    licence = dict(old, users=_set(old["users"], 3, "license", "stakeholder"))
    got = affected_principals(old, licence)
    assert got is not None and sorted(got.principals.to_pylist()) == ["aad.u3"]
    nested = dict(old, memberships=pa.concat_tables([old["memberships"], _t("memberships", [
        {"container_descriptor": "vssgp.g2", "member_descriptor": "vssgp.g1", "member_kind": "group"}])]))
    got = affected_principals(old, nested)
    assert got is not None and sorted(got.principals.to_pylist()) == ["aad.u0", "vssgp.g1"]
    renamed_org = dict(old, organizations=_t("organizations", [{"id": "o", "name": "other"}]))
    assert affected_principals(old, renamed_org) is None  # the organization is on every licence row


@pytest.mark.parametrize("table", ["users", "memberships"])
def test_unchanged_tables_are_not_compared(table: str) -> None:
    """Tables the manifest says are shared (hard links) are taken as equal without reading their rows."""
    from .test_accessgraph_property import _t

    old = {"users": _t("users", [{"descriptor": "aad.u0", "display_name": "U0"}]),
           "memberships": _t("memberships", [{"container_descriptor": "vssgp.g0", "member_descriptor": "aad.u0",
                                              "member_kind": "user"}]),
           "organizations": _t("organizations", [{"id": "o", "name": "org"}])}
    new = dict(old, users=_set(old["users"], 0, "display_name", "Renamed"),
               memberships=_set(old["memberships"], 0, "member_kind", "group"))
    got = affected_principals(old, new, unchanged={table})
    assert got is not None and got.principals.to_pylist() == ["aad.u0"]
    both = affected_principals(old, new, unchanged={"users", "memberships"})
    assert both is not None and both.principals.to_pylist() == []
