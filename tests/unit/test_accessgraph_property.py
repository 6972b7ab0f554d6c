"""Property tests: effective_grants equals an independent closure on random small graphs (DAGs and
graphs with cycles); paths are real membership chains and shortest; `via` is right."""

from __future__ import annotations

import itertools
import os
from collections import deque

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from azdo_pipeline.accessgraph.build import build_access_graph
from azdo_pipeline.accessgraph.checks import run_all
from azdo_pipeline.accessgraph.effective import effective_batch, iter_effective
from azdo_pipeline.accessgraph.index import GraphIndex
from azdo_pipeline.accessgraph.model import license_level
from azdo_pipeline.accessgraph.schemas import EFFECTIVE_GRANTS
from azdo_pipeline.schemas import RAW_TABLES

ROLES = {"Project Administrators": "project_administrators", "Contributors": "contributors",
         "Readers": "readers", "Build Administrators": "build_administrators",
         "Project Valid Users": "project_valid_users"}
LICENSES = [("express", "account"), ("stakeholder", "account"), ("advanced", "msdn"), ("none", "none"), (None, None)]


def _t(name: str, rows: list[dict]) -> pa.Table:
    schema = RAW_TABLES[name]
    return pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in rows], schema=schema)


@st.composite
def worlds(draw: st.DrawFn, cycles: bool) -> dict:
    n_groups = draw(st.integers(1, 7))
    n_users = draw(st.integers(0, 5))
    groups, teams, free_roles = [], [], {0: list(ROLES), 1: list(ROLES)}
    for i in range(n_groups):
        entra = draw(st.booleans())
        kind = "org" if entra else draw(st.sampled_from(["org", "role", "team", "custom"]))
        project = draw(st.sampled_from([0, 1])) if kind != "org" else None
        name = f"Group {i}"
        if kind == "role":
            if free_roles[project]:
                name = draw(st.sampled_from(free_roles[project]))
                free_roles[project].remove(name)
            else:
                kind = "custom"
        g = {"descriptor": f"{'aadgp' if entra else 'vssgp'}.g{i}", "kind": "aadgp" if entra else "vssgp",
             "display_name": name, "scope": "project" if project is not None else "organization",
             "project_id": f"p{project}" if project is not None else None, "is_team": kind == "team",
             "storage_key": f"t{i}" if kind == "team" else f"k{i}"}
        groups.append(g)
        if kind == "team":
            teams.append({"id": f"t{i}", "name": f"Team {i}", "project_id": f"p{project}"})
    users = []
    for j in range(n_users):
        lic, src = draw(st.sampled_from(LICENSES))
        users.append({"descriptor": f"aad.u{j}", "subject_type": "aad", "origin": "aad", "display_name": f"U{j}",
                      "license": lic, "licensing_source": src})
    nodes = [g["descriptor"] for g in groups] + [u["descriptor"] for u in users]
    pairs = draw(st.sets(st.tuples(st.integers(0, n_groups - 1), st.integers(0, len(nodes) - 1)), max_size=30))
    edges = set()
    for c, m in pairs:
        if m < n_groups and not cycles and m <= c:
            continue  # DAG: a group only joins groups with a smaller index
        edges.add((nodes[c], nodes[m]))
    if cycles and n_groups >= 2 and draw(st.booleans()):
        edges |= {(nodes[0], nodes[1]), (nodes[1], nodes[0])}  # make a cycle likely
    team_members = []
    for t in teams:
        backing = f"vssgp.g{t['id'][1:]}"
        for c, m in sorted(edges):
            if c == backing:
                team_members.append({"team_id": t["id"], "member_descriptor": m,
                                     "is_team_admin": draw(st.booleans())})
    raw = {
        "users": _t("users", users), "groups": _t("groups", groups),
        "memberships": _t("memberships", [{"container_descriptor": c, "member_descriptor": m,
                                           "member_kind": "group" if "g" in m.split(".")[1] else "user"}
                                          for c, m in sorted(edges)]),
        "projects": _t("projects", [{"id": "p0", "name": "P0"}, {"id": "p1", "name": "P1"}]),
        "teams": _t("teams", teams), "team_members": _t("team_members", team_members),
        "organizations": _t("organizations", [{"id": "o", "name": "org"}]),
    }
    return {"raw": raw, "groups": groups, "users": users, "edges": edges, "teams": teams,
            "team_members": team_members}


def _bfs(up: dict[str, set[str]], start: str, entra: set[str], avoid_entra: bool) -> dict[str, int]:
    """Distances from `start` to every group it is a transitive member of (never `start` itself).
    avoid_entra: chains may end at an Entra group but not pass through one."""
    dist: dict[str, int] = {}
    queue = deque([(start, 0)])
    seen = {start}
    while queue:
        node, d = queue.popleft()
        if node != start and avoid_entra and node in entra:
            continue
        for c in sorted(up.get(node, ())):
            if c not in seen:
                seen.add(c)
                dist[c] = d + 1
                queue.append((c, d + 1))
    return dist


def reference(w: dict) -> dict[tuple[str, str], tuple[int, bool]]:
    """(entitlement_id, principal) -> (depth, a shortest chain avoids Entra groups)."""
    up: dict[str, set[str]] = {}
    for c, m in w["edges"]:
        up.setdefault(m, set()).add(c)
    groups = {g["descriptor"]: g for g in w["groups"]}
    entra = {d for d, g in groups.items() if g["kind"] == "aadgp"}
    team_of = {f"vssgp.g{t['id'][1:]}": t["id"] for t in w["teams"]}
    held: list[tuple[str, str]] = [(f"team:{tm['team_id']}:admin", tm["member_descriptor"])
                                   for tm in w["team_members"] if tm["is_team_admin"]]
    held += [(f"organization:org:{license_level(u['license'], u['licensing_source'])}", u["descriptor"])
             for u in w["users"] if license_level(u["license"], u["licensing_source"])]
    out: dict[tuple[str, str], tuple[int, bool]] = {}

    def put(key: tuple[str, str], depth: int, avoid: bool) -> None:
        old = out.get(key)
        if old is None or depth < old[0] or (depth == old[0] and avoid and not old[1]):
            out[key] = (depth, avoid)

    principals = list(groups) + [u["descriptor"] for u in w["users"]]
    for p in principals:
        dist = _bfs(up, p, entra, False)
        clean = _bfs(up, p, entra, True)
        for h, d in dist.items():
            avoid = clean.get(h) == d
            g = groups[h]
            put((f"group:{h}:member", p), d - 1, avoid)
            if h in team_of:
                put((f"team:{team_of[h]}:member", p), d - 1, avoid)
            if g["project_id"] and g["display_name"] in ROLES and g["kind"] == "vssgp" and not g["is_team"]:
                put((f"project:{g['project_id']}:{ROLES[g['display_name']]}", p), d - 1, avoid)
            if g["project_id"]:
                put((f"project:{g['project_id']}:member", p), d - 1, avoid)
        for ent, q in held:
            if q == p:
                put((ent, p), 0, True)
            elif q in dist:
                put((ent, p), dist[q], clean.get(q) == dist[q] and q not in entra)
    return out


def _check(w: dict) -> None:
    graph = build_access_graph(w["raw"])
    eff = graph["effective_grants"].to_pylist()
    ref = reference(w)
    got = {(r["entitlement_id"], r["principal_id"]): r for r in eff}
    assert len(got) == len(eff), "one row per (entitlement, principal)"
    assert set(got) == set(ref)
    edges = w["edges"]
    entra = {g["descriptor"] for g in w["groups"] if g["kind"] == "aadgp"}
    held_by = {}
    for tm in w["team_members"]:
        if tm["is_team_admin"]:
            held_by.setdefault(f"team:{tm['team_id']}:admin", set()).add(tm["member_descriptor"])
    for key, row in got.items():
        depth, avoid = ref[key]
        assert row["depth"] == depth == len(row["path"]), (key, row)  # shortest
        path = row["path"]
        chain = [row["principal_id"], *path]
        for member, container in itertools.pairwise(chain):
            assert (container, member) in edges, (key, row)  # a real membership chain
        ent = row["entitlement_id"]
        if ent.startswith("group:"):
            anchor = ent[len("group:"):-len(":member")]
            assert row["source_id"] is None
            assert (anchor, chain[-1]) in edges
        elif row["source_id"] is not None:
            assert (row["source_id"], chain[-1]) in edges
        else:  # held by the principal itself or by the last group of the chain
            assert ent.startswith("organization:") or chain[-1] in held_by.get(ent, set()), (key, row)
        expected_via = "direct" if depth == 0 else ("azure_devops_group" if avoid else "entra_group")
        assert row["via"] == expected_via, (key, row)
        assert (row["via"] == "entra_group") == any(g in entra for g in path)
    # chunks of principals (one edge per chunk) give exactly the same rows
    ix = GraphIndex.from_raw(w["raw"])
    chunked = [effective_batch(ix, r) for r in iter_effective(ix, chunk_edges=1)]
    assert sorted(map(_key, pa.Table.from_batches(chunked, schema=EFFECTIVE_GRANTS).to_pylist())) == \
        sorted(map(_key, eff))
    outcomes = run_all(w["raw"], graph)
    for name, o in outcomes.items():
        if name != "membership_cycles":
            assert o.passed, (name, o)
    has_cycle = _has_cycle(edges, {g["descriptor"] for g in w["groups"]})
    assert outcomes["membership_cycles"].passed == (not has_cycle)


def _key(row: dict) -> tuple:
    return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in sorted(row.items()))


def _has_cycle(edges: set[tuple[str, str]], groups: set[str]) -> bool:
    up: dict[str, set[str]] = {}
    for c, m in edges:
        up.setdefault(m, set()).add(c)
    # g is on a cycle when g itself or a group it reaches has g as a direct member
    return any(g in up.get(x, ()) for g in groups for x in [g, *_bfs(up, g, set(), False)])


# AG_EXAMPLES=2000 for a deeper run than the suite's default
PROFILE = settings(max_examples=int(os.environ.get("AG_EXAMPLES", "150")), deadline=None,
                   suppress_health_check=[HealthCheck.too_slow])


@PROFILE
@given(worlds(cycles=False))
def test_effective_grants_match_reference_closure_on_dags(w: dict) -> None:
    _check(w)


@PROFILE
@given(worlds(cycles=True))
def test_effective_grants_match_reference_closure_with_cycles(w: dict) -> None:
    _check(w)
