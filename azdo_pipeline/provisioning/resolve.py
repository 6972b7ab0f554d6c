"""Names in a request -> Graph descriptors: the latest synced tables first, then the service.

The synced tables answer without any API call (and are what a dry run uses); only what they do not
know is looked up: a principal name through Graph subject query, a descriptor through subject lookup
(learn.microsoft.com/rest/api/azure/devops/graph/subject-query/query, .../subject-lookup/lookup-subjects).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from ..store import Store
from .requests import PrincipalRef, TargetRef

DIRECTORY_TABLES = ("users", "groups", "service_principals", "service_accounts")


@dataclass(frozen=True)
class Subject:
    descriptor: str
    kind: str  # user | group | service_principal | service_account
    name: str = ""  # principal name (`[Project]\Group` for groups)
    origin: str | None = None
    origin_id: str | None = None  # Entra object id for `aad` users, `aadgp` groups, `aadsp` principals

    @property
    def subject_type(self) -> str:
        return self.descriptor.split(".", 1)[0]


class Unresolved(Exception):
    """A name or descriptor that neither the synced tables nor the service know; the message says so."""


def _rows(table: pa.Table | None, columns: tuple[str, ...]) -> list[dict[str, Any]]:
    if table is None:
        return []
    present = [c for c in columns if c in table.column_names]
    return list(table.select(present).to_pylist())


@dataclass
class Directory:
    """Look-ups over one snapshot of the synced tables (empty when nothing was synced yet)."""

    by_descriptor: dict[str, Subject] = field(default_factory=dict)
    by_name: dict[str, Subject] = field(default_factory=dict)  # lower-cased principal name / mail

    def add(self, subject: Subject, *names: str | None) -> None:
        self.by_descriptor[subject.descriptor] = subject
        for n in names:
            if n:
                self.by_name.setdefault(n.lower(), subject)

    @classmethod
    def from_tables(cls, tables: Mapping[str, pa.Table]) -> Directory:
        d = cls()
        for r in _rows(tables.get("users"), ("descriptor", "principal_name", "mail_address", "origin", "origin_id")):
            d.add(Subject(r["descriptor"], "user", r.get("principal_name") or "", r.get("origin"), r.get("origin_id")),
                  r.get("principal_name"), r.get("mail_address"))
        for r in _rows(tables.get("groups"), ("descriptor", "principal_name", "origin", "origin_id")):
            d.add(Subject(r["descriptor"], "group", r.get("principal_name") or "", r.get("origin"),
                          r.get("origin_id")), r.get("principal_name"))
        for r in _rows(tables.get("service_principals"), ("descriptor", "display_name", "origin_id")):
            d.add(Subject(r["descriptor"], "service_principal", r.get("display_name") or "", "aad",
                          r.get("origin_id")))
        for r in _rows(tables.get("service_accounts"), ("descriptor", "principal_name", "origin", "origin_id")):
            d.add(Subject(r["descriptor"], "service_account", r.get("principal_name") or "", r.get("origin"),
                          r.get("origin_id")))
        return d

    @classmethod
    def from_store(cls, store: Store, org: str) -> Directory:
        """The newest complete snapshot's tables; an organization never synced gives an empty directory."""
        tables: dict[str, pa.Table] = {}
        try:
            tables, _ = store.read_consistent(DIRECTORY_TABLES, org)  # one publish, never a mix
        except FileNotFoundError:
            for name in DIRECTORY_TABLES:  # some tables not synced (yet): whatever is there
                try:
                    got, _ = store.read_consistent([name], org)
                except FileNotFoundError:
                    continue
                tables.update(got)
        return cls.from_tables(tables)

    # ---- look-ups without any API call ------------------------------------------------------
    def principal(self, ref: PrincipalRef) -> Subject | None:
        if ref.descriptor:
            return self.by_descriptor.get(ref.descriptor)
        return self.by_name.get((ref.name or "").lower())

    def target(self, ref: TargetRef) -> Subject | None:
        if ref.descriptor:
            return self.by_descriptor.get(ref.descriptor)
        s = self.by_name.get(target_principal_name(ref).lower())
        return s if s is not None and s.kind == "group" else None


def target_principal_name(ref: TargetRef) -> str:
    """`[Project]\\Group` as given, and a team `Project\\Team` as its group's name `[Project]\\Team`."""
    if ref.group:
        return ref.group
    if ref.team:
        project, _, team = ref.team.partition("\\")
        return f"[{project}]\\{team}"
    return ref.descriptor or ""


def subject_from_graph(s: Mapping[str, Any]) -> Subject | None:
    """A Subject from a Graph subject (users, groups, service principals, subject query/lookup answers)."""
    d = s.get("descriptor")
    if not isinstance(d, str) or not d:
        return None
    kind = str(s.get("subjectKind") or "").lower()
    kind = {"servicePrincipal".lower(): "service_principal"}.get(kind, kind or "user")
    if d.startswith("svc."):
        kind = "service_account"
    return Subject(d, kind, str(s.get("principalName") or ""), s.get("origin"), s.get("originId"))
