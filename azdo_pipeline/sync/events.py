"""Audit events → what they touched: the objects an incremental sync must re-read. Pure functions.

Entries are the audit log's decorated entries (`GET _apis/audit/auditlog`); their `actionId` and
`data` keys follow the auditing events list
(https://learn.microsoft.com/azure/devops/organizations/audit/auditing-events). Identity ids in
`data` (GroupId, MemberId) are storage keys, not subject descriptors: `Touched` keeps them as
they are and the incremental step resolves them against the previous snapshot (then, for the ones
it does not know, with one batched identities read).

Every entry falls in one of three classes:
- mapped: it names objects to re-read (membership, group, licence, project, organization events);
- irrelevant: it cannot change a synced table (tokens, audit log access, pipelines, permissions —
  team administrators are re-read from their ACL on every run anyway);
- unknown in an area that can change synced tables (e.g. a new `Group.*` action): the step cannot
  prove what it touched, so `Touched.full_resync` names it and the caller falls back to a full sync.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .rows import parse_time

# Areas (actionId prefixes) whose events can change a synced table; an action of these areas that
# is not mapped below makes the run fall back to a full sync.
RELEVANT_AREAS = frozenset({"Group", "Licensing", "Project", "Organization"})

# Actions of relevant areas known to leave every synced table unchanged (queued or failed steps:
# the completed step that follows is the one that changes something).
NO_CHANGE = frozenset({
    "Project.CreateQueued", "Project.CreateFailed", "Project.DeleteQueued", "Project.DeleteFailed",
    "Project.SoftDeleteQueued", "Project.HardDeleteQueued", "Project.SoftDeleteFailed",
    "Project.HardDeleteFailed", "Project.RestoreQueued", "Project.RestoreFailed",
    "Organization.Create",  # the organization itself exists before any snapshot of it
})

PROJECT_REMOVED = frozenset({"Project.DeleteCompleted", "Project.SoftDeleteCompleted",
                             "Project.HardDeleteCompleted"})
PROJECT_CREATED = frozenset({"Project.CreateCompleted", "Project.Create", "Project.RestoreCompleted"})
PROJECT_CHANGED = frozenset({"Project.UpdateRenameCompleted", "Project.UpdateVisibilityCompleted",
                             "Project.UpdateCompleted", "Project.Update", "Project.UpdateRename",
                             "Project.UpdateVisibility"})
# Organization events that change what the organizations table holds (name, owner, status).
ORGANIZATION_CHANGED = frozenset({"Organization.Update.Owner", "Organization.Update.Rename",
                                  "Organization.Update.Delete", "Organization.Update.Restore",
                                  "Organization.Update.ForceUpdateOwner"})
# Licence rules for groups re-licence any number of users: the whole entitlement list is re-read.
LICENCE_RULES = frozenset({"Licensing.GroupRuleCreated", "Licensing.GroupRuleModified",
                           "Licensing.GroupRuleDeleted"})


@dataclass(frozen=True)
class AuditEntry:
    """One audit log entry, the fields the pipeline keeps (schemas.AUDIT_LOG)."""

    id: str
    correlation_id: str | None
    activity_id: str | None
    timestamp: datetime
    action_id: str
    area: str | None
    category: str | None
    scope_type: str | None
    scope_id: str | None
    project_id: str | None
    project_name: str | None
    actor_user_id: str | None
    actor_cuid: str | None
    actor_client_id: str | None
    actor_upn: str | None
    actor_display_name: str | None
    authentication_mechanism: str | None
    ip_address: str | None
    user_agent: str | None
    details: str | None
    data: Mapping[str, Any]

    def row(self) -> dict[str, Any]:
        """The audit_log table row (data as canonical JSON, plus the partition day)."""
        out = {k: getattr(self, k) for k in (
            "correlation_id", "activity_id", "timestamp", "action_id", "area", "category", "scope_type",
            "scope_id", "project_id", "project_name", "actor_user_id", "actor_cuid", "actor_client_id",
            "actor_upn", "actor_display_name", "authentication_mechanism", "ip_address", "user_agent",
            "details")}
        out["event_id"] = self.id
        out["day"] = self.timestamp.astimezone(UTC).date()
        out["data"] = json.dumps(dict(self.data), sort_keys=True, default=str)
        return out


class MalformedEntry(ValueError):
    """An audit entry without the fields every entry has (id, timestamp, actionId)."""


def _str(v: Any) -> str | None:
    return None if v is None or v == "" else str(v)


def parse_entry(entry: Mapping[str, Any]) -> AuditEntry:
    """A decorated audit log entry → AuditEntry; MalformedEntry when id, timestamp or actionId is missing."""
    eid, action = _str(entry.get("id")), _str(entry.get("actionId"))
    try:
        ts = parse_time(_str(entry.get("timestamp")))
    except ValueError:
        ts = None
    if not eid or not action or ts is None:
        raise MalformedEntry(f"audit entry without id, timestamp or actionId: id={eid!r} actionId={action!r} "
                             f"timestamp={entry.get('timestamp')!r}")
    data = entry.get("data")
    return AuditEntry(
        id=eid, correlation_id=_str(entry.get("correlationId")), activity_id=_str(entry.get("activityId")),
        timestamp=ts, action_id=action, area=_str(entry.get("area")), category=_str(entry.get("category")),
        scope_type=_str(entry.get("scopeType")), scope_id=_str(entry.get("scopeId")),
        project_id=_str(entry.get("projectId")), project_name=_str(entry.get("projectName")),
        actor_user_id=_str(entry.get("actorUserId")), actor_cuid=_str(entry.get("actorCUID")),
        actor_client_id=_str(entry.get("actorClientId")), actor_upn=_str(entry.get("actorUPN")),
        actor_display_name=_str(entry.get("actorDisplayName")),
        authentication_mechanism=_str(entry.get("authenticationMechanism")),
        ip_address=_str(entry.get("ipAddress")), user_agent=_str(entry.get("userAgent")),
        details=_str(entry.get("details")), data=data if isinstance(data, Mapping) else {})


@dataclass
class Touched:
    """What a run's audit events touched. Identity ids are lower-case storage keys."""

    containers: set[str] = field(default_factory=set)  # groups whose direct members changed
    members: set[str] = field(default_factory=set)  # subjects added to / removed from a group
    groups_created: set[tuple[str | None, str]] = field(default_factory=set)  # (project id, principal name)
    groups_changed: set[str] = field(default_factory=set)  # renamed / re-described groups
    groups_deleted: set[str] = field(default_factory=set)
    users_licensed: set[str] = field(default_factory=set)  # principal names (lower case) to re-read
    users_removed: set[str] = field(default_factory=set)  # principal names (lower case) gone
    projects_created: set[str] = field(default_factory=set)
    projects_changed: set[str] = field(default_factory=set)
    projects_deleted: set[str] = field(default_factory=set)
    all_entitlements: bool = False  # a group licence rule: re-read the whole entitlement list
    organizations: bool = False
    full_resync: list[str] = field(default_factory=list)  # why the events cannot be applied incrementally
    mapped: int = 0
    ignored: int = 0

    @property
    def projects(self) -> set[str]:
        return self.projects_created | self.projects_changed | self.projects_deleted

    def summary(self) -> dict[str, int]:
        return {"events mapped": self.mapped, "events ignored": self.ignored,
                "groups re-read": len(self.containers), "users re-read": len(self.users_licensed),
                "users removed": len(self.users_removed), "groups created": len(self.groups_created),
                "groups deleted": len(self.groups_deleted), "projects touched": len(self.projects)}


def _key(v: Any) -> str | None:
    s = _str(v)
    return s.lower() if s else None


def _membership(t: Touched, data: Mapping[str, Any]) -> None:
    updates = data.get("Updates")
    pairs: list[tuple[Any, Any]] = [(data.get("GroupId"), data.get("MemberId"))]
    if isinstance(updates, list):
        pairs += [(u.get("GroupId"), u.get("MemberId")) for u in updates if isinstance(u, Mapping)]
    for g, m in pairs:
        if (gk := _key(g)) is not None:
            t.containers.add(gk)
        if (mk := _key(m)) is not None:
            t.members.add(mk)


def _project_id(entry: AuditEntry) -> str | None:
    return _key(entry.data.get("ProjectId")) or _key(entry.project_id)


def apply_entry(t: Touched, entry: AuditEntry) -> None:
    """Record in `t` what `entry` touched."""
    action, data = entry.action_id, entry.data
    area = action.split(".", 1)[0]
    if area not in RELEVANT_AREAS or action in NO_CHANGE:
        t.ignored += 1
        return
    t.mapped += 1
    if action.startswith("Group.UpdateGroupMembership"):
        _membership(t, data)
    elif action == "Group.CreateGroups":
        name = _str(data.get("GroupName"))
        if name is None:
            t.full_resync.append(f"{action} event {entry.id} names no group")
        else:
            t.groups_created.add((_key(entry.project_id), name))
    elif action == "Group.UpdateGroups.Delete":
        if (gk := _key(data.get("GroupId"))) is None:
            t.full_resync.append(f"{action} event {entry.id} names no group id")
        else:
            t.groups_deleted.add(gk)
    elif action == "Group.UpdateGroups.Modify":
        if (gk := _key(data.get("GroupId"))) is None:
            t.full_resync.append(f"{action} event {entry.id} names no group id")
        else:
            t.groups_changed.add(gk)
    elif action in ("Licensing.Assigned", "Licensing.Modified", "Licensing.Removed"):
        who = _key(data.get("UserIdentifier"))
        if who is None:
            t.all_entitlements = True  # cannot tell whose licence changed: read them all
        elif action == "Licensing.Removed" and who not in t.users_licensed:
            t.users_removed.add(who)
        else:
            # Licensed at some point of the window (perhaps removed again): the read decides.
            t.users_licensed.add(who)
            t.users_removed.discard(who)
    elif action in LICENCE_RULES:
        t.all_entitlements = True
    elif action in PROJECT_CREATED | PROJECT_CHANGED | PROJECT_REMOVED:
        pid = _project_id(entry)
        if pid is None:
            t.full_resync.append(f"{action} event {entry.id} names no project")
        elif action in PROJECT_REMOVED:
            t.projects_deleted.add(pid)
        elif action in PROJECT_CREATED:
            t.projects_created.add(pid)
        else:
            t.projects_changed.add(pid)
    elif action in ORGANIZATION_CHANGED:
        t.organizations = True
    elif action.startswith("Organization."):
        # Linking to / unlinking from an Entra tenant and similar re-home every identity.
        t.full_resync.append(f"{action} (event {entry.id}) may change every identity")
    else:
        t.mapped -= 1
        t.full_resync.append(f"unknown audit action {action} (event {entry.id}) in an area that changes synced "
                             "tables")


def touched_by(entries: Iterable[AuditEntry]) -> Touched:
    """Everything `entries` (any order) touched. A principal only removed in the window is dropped
    without a read; one also licensed in it is re-read (the read says whether it is still there)."""
    t = Touched()
    for e in entries:
        apply_entry(t, e)
    return t


__all__ = ["AuditEntry", "MalformedEntry", "Touched", "apply_entry", "parse_entry", "touched_by"]
