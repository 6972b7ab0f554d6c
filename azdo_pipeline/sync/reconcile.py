"""Reconciliation of a written snapshot before it is published (pure: tables and facts in, results out).

A sync that reads a short or inconsistent answer must not publish it as a success. Each rule
compares what the snapshot holds with what the API said or with itself:

- `total_count`: user entitlements read = the list's `totalCount` (the one list that gives one);
- `entitlements_matched`: every user entitlement belongs to a listed Graph user (else the Graph
  list left a user out);
- `groups_answered`: every group asked for in a batched membership read was answered, once;
- `member_ids_resolved`: every member id of a batched membership read resolved to a subject;
- `members_known`: every membership's container is a synced group and its member a synced subject;
- `unique_key`: no key repeats (Graph lists, known to repeat a subject across pages while the
  organization changes, are deduplicated while read; `graph_repeats_dropped` counts those rows);
- `listed_with_descriptor`: no Graph user was listed without a descriptor (such rows cannot be kept);
- `required_values`: no null in a column the API always fills (descriptors, ids, display names).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .. import schemas
from ..checks import duplicate_keys, unresolved_members

EXAMPLES = 5

# Columns the API always fills (beyond the key columns).
REQUIRED: dict[str, tuple[str, ...]] = {
    "users": ("descriptor", "display_name"),
    "service_accounts": ("descriptor", "display_name"),
    "service_principals": ("descriptor", "display_name"),
    "groups": ("descriptor", "kind", "display_name"),
    "memberships": ("container_descriptor", "member_descriptor", "member_kind"),
    "projects": ("id", "name"),
    "teams": ("id", "name", "project_id"),
    "team_members": ("team_id", "member_descriptor", "display_name"),
    "organizations": ("id", "name"),
}
# Columns best read back as dictionaries (few distinct values over many rows).
DICTIONARY_COLUMNS: dict[str, list[str]] = {"memberships": ["container_descriptor", "member_descriptor", "member_kind"],
                                            "team_members": ["team_id", "member_descriptor"]}
SUBJECT_TABLES = ("users", "service_accounts", "service_principals", "groups")


@dataclass(frozen=True)
class RuleResult:
    table: str
    rule: str
    passed: bool
    count: int  # offending items (0 when passed), or for graph_repeats_dropped the rows dropped
    unit: str = "rows"
    detail: str = ""
    examples: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {"table": self.table, "rule": self.rule, "passed": self.passed, "count": self.count,
                "detail": self.detail, "examples": list(self.examples)}


@dataclass(frozen=True)
class Facts:
    """What the sync saw while reading that the tables alone cannot show."""

    entitlements_read: int = 0  # distinct user entitlements
    entitlements_total: int | None = None  # the list's totalCount; None: not given (or not read)
    entitlements_without_user: int = 0  # entitlements whose user the Graph users list did not give
    groups_requested: Sequence[str] = ()
    groups_answered: Mapping[str, int] = field(default_factory=dict)  # group -> times answered
    unresolved_member_ids: int = 0
    listed_without_descriptor: int = 0  # Graph users pages' rows without a descriptor
    graph_repeats: Mapping[str, int] = field(default_factory=dict)  # table -> repeated rows dropped


def reconcile(tables: Mapping[str, pa.Table], facts: Facts,
              checked: Mapping[str, list[RuleResult]] | None = None) -> list[RuleResult]:
    """Every rule's result, failures and passes alike (the report and the asset checks show both).
    `checked`: `table_rules` results already computed for some tables (e.g. while others were written)."""
    out = [_total_count(facts), _entitlements_matched(facts), _groups_answered(facts), _member_ids(facts),
           _members_known(tables), _listed_with_descriptor(facts)]
    for name in schemas.RAW_TABLES:
        out.extend((checked or {}).get(name) or table_rules(name, tables[name]))
        if name in ("users", "service_accounts", "groups", "service_principals"):
            n = facts.graph_repeats.get(name, 0)
            out.append(RuleResult(name, "graph_repeats_dropped", True, n,
                                  detail="rows a Graph list repeated, kept once" if n else ""))
    return out


def table_rules(name: str, table: pa.Table) -> list[RuleResult]:
    """The rules that read one table alone: unique key, required values."""
    return [_unique(name, table), _required(name, table)]


def _total_count(facts: Facts) -> RuleResult:
    total, read = facts.entitlements_total, facts.entitlements_read
    if total is None:
        return RuleResult("users", "total_count", True, 0, "entitlements", "no totalCount given")
    return RuleResult("users", "total_count", read == total, abs(total - read), "entitlements",
                      f"{read} user entitlements read, the list's totalCount is {total}")


def _entitlements_matched(facts: Facts) -> RuleResult:
    n = facts.entitlements_without_user
    return RuleResult("users", "entitlements_matched", n == 0, n, "entitlements",
                      "user entitlements whose user the Graph users list did not give" if n else "")


def _groups_answered(facts: Facts) -> RuleResult:
    asked = dict.fromkeys(facts.groups_requested)  # ordered, and a set for the look-ups (xl: 25k groups)
    missing = [g for g in asked if facts.groups_answered.get(g, 0) == 0]
    repeated = [g for g, n in facts.groups_answered.items() if n > 1]
    unasked = [g for g in facts.groups_answered if g not in asked]
    bad = missing + repeated + unasked
    detail = ", ".join(f"{len(v)} {k}" for k, v in (("not answered", missing), ("answered twice", repeated),
                                                    ("answered unasked", unasked)) if v)
    return RuleResult("memberships", "groups_answered", not bad, len(bad), "groups", detail,
                      tuple(bad[:EXAMPLES]))


def _member_ids(facts: Facts) -> RuleResult:
    n = facts.unresolved_member_ids
    return RuleResult("memberships", "member_ids_resolved", n == 0, n, "member ids",
                      "member ids of a batched membership read that no identity read resolved" if n else "")


def _members_known(tables: Mapping[str, pa.Table]) -> RuleResult:
    known: list[pa.Array[Any] | pa.ChunkedArray[Any]] = [tables[n]["descriptor"] for n in SUBJECT_TABLES]
    outcome = unresolved_members(tables["memberships"], known, tables["groups"]["descriptor"], examples=EXAMPLES)
    return RuleResult("memberships", "members_known", outcome.passed, outcome.count, "edges",
                      "edges whose container is not a synced group or member not a synced subject"
                      if outcome.count else "", tuple(outcome.examples))


def _listed_with_descriptor(facts: Facts) -> RuleResult:
    n = facts.listed_without_descriptor
    return RuleResult("users", "listed_with_descriptor", n == 0, n,
                      detail="Graph users listed without a descriptor (they cannot be kept)" if n else "")


def _unique(name: str, table: pa.Table) -> RuleResult:
    keys = schemas.key_columns(schemas.RAW_TABLES[name])
    outcome = duplicate_keys(table, keys, examples=EXAMPLES)
    return RuleResult(name, "unique_key", outcome.passed, outcome.count, "keys",
                      f"keys ({', '.join(keys)}) that repeat" if outcome.count else "", tuple(outcome.examples))


def _required(name: str, table: pa.Table) -> RuleResult:
    cols = [c for c in REQUIRED.get(name, ()) if c in table.column_names]
    if not cols or table.num_rows == 0:
        return RuleResult(name, "required_values", True, 0)
    nulls = {c: table[c].null_count for c in cols}
    if not any(nulls.values()):
        return RuleResult(name, "required_values", True, 0)
    missing = pc.is_null(table[cols[0]])
    for c in cols[1:]:
        missing = pc.or_(missing, pc.is_null(table[c]))
    bad = table.filter(missing)
    keys = schemas.key_columns(schemas.RAW_TABLES[name])
    label: Callable[[int], str] = lambda i: " / ".join(str(bad[k][i].as_py()) for k in keys)  # noqa: E731
    return RuleResult(name, "required_values", False, bad.num_rows, "rows",
                      "null " + ", ".join(f"{c} in {n}" for c, n in nulls.items() if n),
                      tuple(label(i) for i in range(min(EXAMPLES, bad.num_rows))))


def failures(results: Sequence[RuleResult]) -> list[RuleResult]:
    return [r for r in results if not r.passed]


def columns_needed(name: str) -> list[str]:
    """The columns reconciliation reads of a table (so a sync reads back no more than that)."""
    cols = list(schemas.key_columns(schemas.RAW_TABLES[name])) + list(REQUIRED.get(name, ()))
    if name == "memberships":
        cols += ["container_descriptor", "member_descriptor"]
    if name in SUBJECT_TABLES:
        cols.append("descriptor")
    return list(dict.fromkeys(cols))
