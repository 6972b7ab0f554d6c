"""Asset-check helpers for the access graph (pure; Dagster asset checks call these).

Each returns `azdo_pipeline.checks.CheckOutcome(passed, count, examples)`; `SEVERITY` says which
ones should only warn (a membership cycle is a fact about the organization, not a build failure).
They work on the in-memory tables or on the same tables read back from Parquet (dictionary
columns are compared through their dictionaries, never decoded row by row).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from azdo_pipeline.checks import CheckOutcome
from azdo_pipeline.schemas import key_columns

from . import model
from .schemas import DERIVED_TABLES

SEVERITY = {"grant_references": "ERROR", "keys_unique": "ERROR", "effective_superset": "ERROR",
            "counts_reconcile": "ERROR", "membership_cycles": "WARN"}


def _chunks(col: pa.ChunkedArray | pa.Array) -> list[pa.Array]:
    return col.chunks if isinstance(col, pa.ChunkedArray) else [col]


def codes_in(col: pa.ChunkedArray | pa.Array, dictionary: pa.Array) -> np.ndarray:
    """Per row, the position of the value in `dictionary` (-1 absent or null); dictionary columns are
    mapped through their (small) dictionaries."""
    out = []
    for chunk in _chunks(col):
        if pa.types.is_dictionary(chunk.type):
            m = pc.index_in(chunk.dictionary, value_set=dictionary).fill_null(-1).to_numpy(zero_copy_only=False)
            idx = chunk.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
            out.append(np.where(idx >= 0, m[np.maximum(idx, 0)] if len(m) else -1, -1))
        else:
            out.append(pc.index_in(chunk, value_set=dictionary).fill_null(-1).to_numpy(zero_copy_only=False))
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)


def _distinct(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    parts = []
    for chunk in _chunks(col):
        if pa.types.is_dictionary(chunk.type):
            chunk = chunk.dictionary.take(pc.unique(chunk.indices.drop_null()))
        parts.append(chunk.cast(pa.string()))
    if not parts:
        return pa.array([], pa.string())
    return pc.unique(pa.concat_arrays(parts).drop_null())


def grant_references(graph: Mapping[str, pa.Table], *, examples: int = 5) -> CheckOutcome:
    """Every grant's (and effective grant's) principal is a resource and its entitlement exists."""
    principals = graph["resources"].filter(
        pc.is_in(graph["resources"]["resource_type"], value_set=pa.array(list(model.PRINCIPAL_TYPES))))
    bad: list[str] = []
    for name in ("grants", "effective_grants"):
        t = graph[name]
        for column, known, what in (("principal_id", principals["resource_id"], "principal"),
                                    ("entitlement_id", graph["entitlements"]["entitlement_id"], "entitlement")):
            used = _distinct(t[column])
            missing = used.filter(pc.invert(pc.is_in(used, value_set=known.combine_chunks()
                                                     if isinstance(known, pa.ChunkedArray) else known)))
            bad += [f"{name}: unknown {what} {v}" for v in missing.to_pylist()]
    return CheckOutcome(not bad, len(bad), bad[:examples])


def duplicate_rows(table: pa.Table, keys: list[str], *, examples: int = 5) -> CheckOutcome:
    """Rows whose key columns repeat; nulls compare equal (grants.source_id is part of its key)."""
    if table.num_rows == 0:
        return CheckOutcome(True, 0, [])
    cols = []
    for k in keys:
        col = table[k]
        dictionary = _distinct(col)
        cols.append(codes_in(col, dictionary))
    order = np.lexsort(tuple(reversed(cols)))
    same = np.ones(len(order) - 1, bool)
    for c in cols:
        sc = c[order]
        same &= sc[1:] == sc[:-1]
    dup_rows = order[1:][same]
    sample = [" / ".join(str(table[k][int(i)].as_py()) for k in keys) for i in dup_rows[:examples]]
    return CheckOutcome(len(dup_rows) == 0, len(dup_rows), sample)


def keys_unique(graph: Mapping[str, pa.Table]) -> dict[str, CheckOutcome]:
    return {name: duplicate_rows(graph[name], key_columns(schema))
            for name, schema in DERIVED_TABLES.items() if name in graph}


def effective_superset(graph: Mapping[str, pa.Table], *, examples: int = 5) -> CheckOutcome:
    """Every direct grant is an effective grant, held directly (depth 0)."""
    ents = graph["entitlements"]["entitlement_id"].combine_chunks()
    principals = pa.concat_arrays([_distinct(graph["grants"]["principal_id"]),
                                   _distinct(graph["effective_grants"]["principal_id"])])
    principals = pc.unique(principals)
    n = max(len(principals), 1)

    def keys(t: pa.Table) -> np.ndarray:
        return codes_in(t["entitlement_id"], ents) * n + codes_in(t["principal_id"], principals)

    eff = graph["effective_grants"]
    direct = eff.filter(pc.equal(eff["depth"], 0))
    have = np.sort(keys(direct))
    want = keys(graph["grants"])
    pos = np.searchsorted(have, want)
    found = (pos < len(have)) & (have[np.minimum(pos, max(len(have) - 1, 0))] == want) if len(have) else \
        np.zeros(len(want), bool)
    missing = np.flatnonzero(~found)
    g = graph["grants"]
    sample = [f"{g['entitlement_id'][int(i)].as_py()} ← {g['principal_id'][int(i)].as_py()}"
              for i in missing[:examples]]
    return CheckOutcome(len(missing) == 0, len(missing), sample)


def _count(t: pa.Table, mask: pa.ChunkedArray | pa.Array | None = None) -> int:
    return t.num_rows if mask is None else int(pc.sum(pc.cast(mask, pa.int64())).as_py() or 0)


def counts_reconcile(raw: Mapping[str, pa.Table], graph: Mapping[str, pa.Table]) -> CheckOutcome:
    """Resources, entitlements and direct grants agree with the raw tables they come from."""
    res, ent, grants = graph["resources"], graph["entitlements"], graph["grants"]

    def n_raw(name: str) -> int:
        return raw[name].num_rows if name in raw else 0

    def by(t: pa.Table, column: str, value: str) -> int:
        return _count(t, pc.equal(t[column], value).fill_null(False))

    m = raw.get("memberships")
    groups = raw["groups"]["descriptor"] if "groups" in raw else pa.array([], pa.string())
    if m is not None and m.num_rows:
        in_groups = m.filter(pc.and_(pc.is_in(m["container_descriptor"], value_set=pc.unique(groups)),
                                     pc.not_equal(m["container_descriptor"], m["member_descriptor"])))
        edges = in_groups.group_by(["container_descriptor", "member_descriptor"]).aggregate([]).num_rows
    else:
        edges = 0
    group_member_grants = _count(grants, pc.and_(pc.equal(grants["resource_type"].cast(pa.string()), "group"),
                                                 pc.is_null(grants["source_id"])))
    users = raw.get("users")
    licensed = 0
    if users is not None and users.num_rows:
        licensed = sum(1 for a, b in zip(users["license"].to_pylist(), users["licensing_source"].to_pylist(),
                                         strict=True) if model.license_level(a, b))
    licence_grants = _count(grants, pc.equal(grants["resource_type"].cast(pa.string()), "organization"))
    expected = {
        "resources.user": (by(res, "resource_type", "user"), n_raw("users")),
        "resources.service_account": (by(res, "resource_type", "service_account"), n_raw("service_accounts")),
        "resources.service_principal": (by(res, "resource_type", "service_principal"), n_raw("service_principals")),
        "resources.group": (by(res, "resource_type", "group"), n_raw("groups")),
        "resources.team": (by(res, "resource_type", "team"), n_raw("teams")),
        "resources.project": (by(res, "resource_type", "project"), n_raw("projects")),
        "resources.organization": (by(res, "resource_type", "organization"), 1),
        "entitlements.group_member": (by(ent, "resource_type", "group"), len(pc.unique(groups))),
        "entitlements.team": (by(ent, "resource_type", "team"), 2 * n_raw("teams")),
        "entitlements.organization": (by(ent, "resource_type", "organization"), len(model.LICENSE_LEVELS)),
        "grants.group_member": (group_member_grants, edges),
        "grants.licence": (licence_grants, licensed),
    }
    bad = [f"{k}: graph {got} != raw {want}" for k, (got, want) in expected.items() if got != want]
    return CheckOutcome(not bad, len(bad), bad)


def membership_cycles(graph: Mapping[str, pa.Table], *, examples: int = 5) -> CheckOutcome:
    """Warn on circular group memberships (the closure is cycle-safe; the data is suspicious)."""
    cycles = graph["membership_cycles"]
    sample = [" → ".join(c) for c in cycles["example"].to_pylist()[:examples]]
    return CheckOutcome(cycles.num_rows == 0, cycles.num_rows, sample)


def run_all(raw: Mapping[str, pa.Table], graph: Mapping[str, pa.Table]) -> dict[str, CheckOutcome]:
    """Every check by name (keys of SEVERITY); keys_unique folds all tables into one outcome."""
    per_table = keys_unique(graph)
    dup = [f"{name}: {ex}" for name, o in per_table.items() for ex in o.examples]
    return {
        "grant_references": grant_references(graph),
        "keys_unique": CheckOutcome(all(o.passed for o in per_table.values()),
                                    sum(o.count for o in per_table.values()), dup[:5]),
        "effective_superset": effective_superset(graph),
        "counts_reconcile": counts_reconcile(raw, graph),
        "membership_cycles": membership_cycles(graph),
    }
