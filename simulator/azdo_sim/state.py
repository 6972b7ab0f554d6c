"""In-memory state of the simulated world: Azure DevOps organizations and one Entra tenant.

Pure data and mutation rules (no HTTP). Every change goes through a method here so that the
audit log records exactly what the real service would, and the routes, the generator and the
admin API all share one source of truth.
"""

from __future__ import annotations

import base64
import contextlib
import random
import secrets
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

# .NET DateTime.MaxValue.Ticks: audit entry ids start with (MaxTicks - ticks) so they sort newest first.
_MAX_TICKS = 3155378975999999999
_EPOCH_TICKS = 621355968000000000  # ticks at 1970-01-01
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
AZURE_DEVOPS_SERVICE_ACTOR = "00000002-0000-8888-8000-000000000000"
NEVER = datetime(1, 1, 1, tzinfo=UTC)  # lastAccessedDate of never-accessed users
AUDIT_RETENTION = timedelta(days=90)

# Built-in project groups: (role key used by the access graph, display name, description).
PROJECT_ROLES: tuple[tuple[str, str, str], ...] = (
    ("project_administrators", "Project Administrators",
     "Members of this group can perform all operations in the team project."),
    ("contributors", "Contributors",
     "Members of this group can add, modify, and delete items within the team project."),
    ("readers", "Readers", "Members of this group have access to the team project."),
    ("build_administrators", "Build Administrators",
     "Members of this group can create, modify and delete build definitions and manage queued and "
     "completed builds."),
    ("project_valid_users", "Project Valid Users",
     "Members of this group have access to the team project."),
)
# Built-in organization groups: (key, display name).
ORG_ROLES: tuple[tuple[str, str], ...] = (
    ("project_collection_administrators", "Project Collection Administrators"),
    ("project_collection_valid_users", "Project Collection Valid Users"),
    ("project_collection_build_service_accounts", "Project Collection Build Service Accounts"),
)

LICENSE_DISPLAY = {
    ("express", "account"): "Basic",
    ("stakeholder", "account"): "Stakeholder",
    ("advanced", "account"): "Basic + Test Plans",
    ("professional", "account"): "VS Professional",
    ("none", "none"): "None",
    ("advanced", "msdn"): "Visual Studio Enterprise subscription",
    ("professional", "msdn"): "Visual Studio Professional subscription",
}


class SimError(Exception):
    """A rule of the real service was broken; routes map `kind` to the real status and shape."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # not_found | cycle | read_only | conflict | invalid | forbidden
        self.message = message


def b64url(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def b64url_decode(text: str) -> str:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()


def dotnet_ticks(ts: datetime) -> int:
    return _EPOCH_TICKS + (ts - _UNIX_EPOCH) // timedelta(microseconds=1) * 10  # exact, no float


def iso(ts: datetime) -> str:
    """ISO 8601 the way Azure DevOps writes it (UTC, 'Z')."""
    if ts == NEVER:
        return "0001-01-01T00:00:00Z"
    if ts.tzinfo is not UTC:
        ts = ts.astimezone(UTC)
    # isoformat (C) rather than strftime: this runs twice per entitlement of every list page.
    text = ts.replace(tzinfo=None).isoformat()
    return (text.rstrip("0").rstrip(".") if "." in text else text) + "Z"


class Clock:
    """Wall clock plus an offset that tests and the admin API can move forward."""

    def __init__(self, start: datetime | None = None) -> None:
        self._offset = timedelta(0) if start is None else start - datetime.now(UTC)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def advance(self, delta: timedelta) -> None:
        self._offset += delta


@dataclass(slots=True)
class Identity:
    """One Graph subject (user, service identity, service principal or group)."""

    storage_key: str  # identity id (GUID); what the identities API and audit events use
    descriptor: str  # subject descriptor, e.g. "aad.<b64url>"
    identity_descriptor: str  # legacy IdentityDescriptor, e.g. "Microsoft.TeamFoundation.Identity;S-1-9-…"
    subject_kind: str  # user | group | servicePrincipal
    origin: str  # aad | msa | vsts
    origin_id: str  # Entra object id for aad-origin subjects
    display_name: str
    principal_name: str
    mail_address: str
    domain: str
    created: datetime
    meta_type: str = ""  # users: member | guest | application (svc) ; "" otherwise
    description: str = ""
    scope: str = "organization"  # groups: organization | project
    project_id: str | None = None  # groups scoped to a project
    role: str | None = None  # built-in group role key (PROJECT_ROLES / ORG_ROLES) or None
    is_team: bool = False
    application_id: str = ""  # service principals: Entra app id
    directory_alias: str = ""
    active: bool = True

    @property
    def subject_type(self) -> str:
        return self.descriptor.split(".", 1)[0]

    @property
    def is_group(self) -> bool:
        return self.subject_kind == "group"


@dataclass(slots=True)
class UserEntitlement:
    user_key: str  # storage key of the user
    account_license_type: str  # none | express | stakeholder | advanced | professional | earlyAdopter
    licensing_source: str  # none | account | msdn | profile | auto | trial
    msdn_license_type: str  # none | eligible | professional | enterprise | …
    status: str  # active | pending | disabled | deleted | expired | pendingDisabled
    date_created: datetime
    last_accessed: datetime = NEVER

    @property
    def license_display_name(self) -> str:
        return LICENSE_DISPLAY.get((self.account_license_type, self.licensing_source),
                                   self.account_license_type.capitalize())


@dataclass(slots=True)
class Project:
    id: str
    name: str
    description: str
    visibility: str  # private | public
    state: str  # wellFormed | deleting | …
    revision: int
    last_update_time: datetime
    default_team_id: str = ""
    role_groups: dict[str, str] = field(default_factory=dict)  # role key -> group descriptor


@dataclass(slots=True)
class Team:
    id: str
    name: str
    description: str
    project_id: str
    group_descriptor: str  # the vssgp group that backs the team (its members are the team members)
    admins: set[str] = field(default_factory=set)  # descriptors of team administrators


@dataclass(slots=True)
class AuditEvent:
    seq: int  # monotonic, for internal ordering
    id: str  # "{MaxTicks - ticks};{actorUserId};{guid}" as the real service
    correlation_id: str
    activity_id: str
    timestamp: datetime
    action_id: str
    area: str
    category: str  # create | modify | remove | access | execute | unknown
    scope_type: str  # organization | project
    scope_id: str
    project_id: str | None
    project_name: str | None
    actor_user_id: str
    actor_cuid: str
    actor_upn: str
    actor_display_name: str
    authentication_mechanism: str
    data: dict
    details: str


@dataclass(slots=True)
class Pat:
    """A personal access token: belongs to a user, has scopes, may be expired or revoked."""

    token: str
    user_key: str
    org: str | None  # None = all accessible organizations
    scopes: frozenset[str]  # e.g. {"vso.graph", "vso.project"}; {"app_token"} = full access
    valid_to: datetime
    display_name: str = "sim"


@dataclass(slots=True)
class PendingEntraChange:
    """A Microsoft Graph write not yet visible in Azure DevOps (Entra → ADO propagation)."""

    apply_at: datetime
    group_oid: str
    member_oid: str
    add: bool


class OrgState:
    """One Azure DevOps organization."""

    def __init__(self, name: str, world: World, *, org_id: str, tenant_id: str,
                 created: datetime) -> None:
        self.name = name
        self.world = world
        self.id = org_id  # collection/host id
        self.tenant_id = tenant_id
        self.created = created
        self.auditing_enabled = True
        self.owner_key: str = ""
        self.identities: dict[str, Identity] = {}  # descriptor -> identity
        self.by_key: dict[str, str] = {}  # storage key -> descriptor
        self.by_origin_id: dict[str, str] = {}  # Entra object id -> descriptor (aad-origin subjects)
        # Scan orders, as the identity store pages them (users and groups are separate scans).
        self.user_order: list[str] = []
        self.group_order: list[str] = []
        self.sp_order: list[str] = []
        self.down: dict[str, set[str]] = {}  # container descriptor -> direct members
        self.up: dict[str, set[str]] = {}  # member descriptor -> direct containers
        self.entitlements: dict[str, UserEntitlement] = {}  # user storage key -> entitlement
        self.projects: dict[str, Project] = {}  # id -> project
        self.project_order: list[str] = []
        self._project_names: set[str] = set()  # lower-case names, for the duplicate check
        self.teams: dict[str, Team] = {}  # id -> team
        self.audit: list[AuditEvent] = []
        self.org_groups: dict[str, str] = {}  # ORG_ROLES key -> descriptor
        self._sid_parts = [random.Random(org_id).randrange(10**9, 4 * 10**9) for _ in range(4)]
        self._sid_seq = 0

    # ---- identifiers -------------------------------------------------------------------
    def new_guid(self) -> str:
        return self.world.new_guid()

    def new_sid(self) -> str:
        self._sid_seq += 1
        a, b, c, d = self._sid_parts
        return f"S-1-9-1551374245-{a}-{b}-{c}-{d}-1-{self._sid_seq}"

    # ---- subjects ----------------------------------------------------------------------
    def _register(self, ident: Identity, order: list[str]) -> Identity:
        if ident.descriptor in self.identities:
            raise SimError("conflict", f"Identity {ident.descriptor} already exists.")
        self.identities[ident.descriptor] = ident
        self.by_key[ident.storage_key] = ident.descriptor
        if ident.origin == "aad":
            self.by_origin_id[ident.origin_id] = ident.descriptor
        order.append(ident.descriptor)
        return ident

    def add_user(self, *, kind: str, display_name: str, principal_name: str, mail: str = "",
                 meta_type: str = "member", origin_id: str | None = None,
                 svc_identifier: str | None = None) -> Identity:
        """kind: aad | msa | svc. Creates the Graph subject only (no entitlement, no audit)."""
        key = self.new_guid()
        now = self.world.clock.now()
        if kind == "svc":
            ident_str = svc_identifier or f"{self.id}:Build:{self.new_guid()}"
            ident = Identity(key, f"svc.{b64url(ident_str)}",
                             f"Microsoft.TeamFoundation.ServiceIdentity;{ident_str}", "user", "vsts",
                             key, display_name, principal_name or ident_str, "",
                             "Build", now, meta_type="application")
        else:
            cuid = self.new_guid()
            origin = "aad" if kind == "aad" else "msa"
            domain = self.tenant_id if kind == "aad" else "Windows Live ID"
            ident = Identity(key, f"{kind}.{b64url(cuid)}",
                             f"Microsoft.IdentityModel.Claims.ClaimsIdentity;{domain}\\{principal_name}",
                             "user", origin, origin_id or self.new_guid(), display_name, principal_name,
                             mail or principal_name, domain, now, meta_type=meta_type,
                             directory_alias=principal_name.split("@")[0])
            if kind == "aad":
                self.world.entra_objects[ident.origin_id] = "user"
        return self._register(ident, self.user_order)

    def add_service_principal(self, *, display_name: str, application_id: str | None = None,
                              origin_id: str | None = None) -> Identity:
        key = self.new_guid()
        app_id = application_id or self.new_guid()
        oid = origin_id or self.new_guid()
        ident = Identity(key, f"aadsp.{b64url(self.new_guid())}",
                         f"Microsoft.VisualStudio.Services.Claims.AadServicePrincipal;{self.tenant_id}\\{app_id}",
                         "servicePrincipal", "aad", oid, display_name, app_id, "", self.tenant_id,
                         self.world.clock.now(), meta_type="application", application_id=app_id)
        self.world.entra_objects[oid] = "servicePrincipal"
        return self._register(ident, self.sp_order)

    def create_group(self, *, display_name: str, description: str = "", project_id: str | None = None,
                     role: str | None = None, is_team: bool = False, entra_oid: str | None = None,
                     actor_key: str | None = None, audit: bool = True) -> Identity:
        """A vssgp group (org or project scope), or an aadgp group when entra_oid is given."""
        sid = self.new_sid()
        key = self.new_guid()
        if entra_oid is not None:
            prefix, origin, origin_id = "aadgp", "aad", entra_oid
            principal = f"[TEAM FOUNDATION]\\{display_name}"
            domain = f"vstfs:///Framework/IdentityDomain/{self.tenant_id}"  # as the real examples
            self.world.entra_objects[entra_oid] = "group"
            self.world.entra_members.setdefault(entra_oid, set())
        else:
            prefix, origin, origin_id = "vssgp", "vsts", key
            scope_name = self.projects[project_id].name if project_id else self.name
            principal = f"[{scope_name}]\\{display_name}"
            domain = f"vstfs:///Classification/TeamProject/{project_id}" if project_id \
                else f"vstfs:///Framework/IdentityDomain/{self.id}"
        ident = Identity(key, f"{prefix}.{b64url(sid)}", f"Microsoft.TeamFoundation.Identity;{sid}",
                         "group", origin, origin_id, display_name, principal, "", domain,
                         self.world.clock.now(), description=description,
                         scope="project" if project_id else "organization", project_id=project_id,
                         role=role, is_team=is_team)
        self._register(ident, self.group_order)
        if audit:
            self.record("Group.CreateGroups", "create", {"GroupName": principal},
                        f'Group {principal} was created.', actor_key=actor_key, project_id=project_id)
        return ident

    def delete_group(self, descriptor: str, *, actor_key: str | None = None) -> None:
        group = self.get(descriptor)
        if not group.is_group:
            raise SimError("invalid", f"{descriptor} is not a group.")
        if group.is_team or group.role:
            # Team groups go with their team; built-in groups cannot be deleted (real: 403/400).
            raise SimError("forbidden", f"The group '{group.principal_name}' is a team or built-in group "
                                        "and cannot be deleted.")
        for m in list(self.down.get(descriptor, ())):
            self._unlink(descriptor, m)
        for c in list(self.up.get(descriptor, ())):
            self._unlink(c, descriptor)
        group.active = False
        del self.identities[descriptor]
        self.by_key.pop(group.storage_key, None)
        if group.origin == "aad":
            self.by_origin_id.pop(group.origin_id, None)
        self.group_order.remove(descriptor)
        self.record("Group.UpdateGroups.Delete", "remove",
                    {"GroupId": group.storage_key, "GroupName": group.principal_name},
                    f"Group {group.principal_name} was deleted.", actor_key=actor_key,
                    project_id=group.project_id)

    def get(self, descriptor: str) -> Identity:
        try:
            return self.identities[descriptor]
        except KeyError:
            raise SimError("not_found", f"VS403325: The graph subject with descriptor '{descriptor}' "
                                        "could not be found.") from None

    def by_storage_key(self, key: str) -> Identity | None:
        d = self.by_key.get(key)
        return self.identities.get(d) if d else None

    def users(self) -> Iterator[Identity]:
        return (self.identities[d] for d in self.user_order)

    def groups(self) -> Iterator[Identity]:
        return (self.identities[d] for d in self.group_order)

    def service_principals(self) -> Iterator[Identity]:
        return (self.identities[d] for d in self.sp_order)

    # ---- memberships -------------------------------------------------------------------
    def is_member(self, container: str, member: str) -> bool:
        return member in self.down.get(container, ())

    def _reaches(self, start: str, target: str) -> bool:
        """True when `target` is `start` or a transitive member of `start` (cycle check)."""
        stack, seen = [start], {start}
        while stack:
            node = stack.pop()
            if node == target:
                return True
            for m in self.down.get(node, ()):
                if m not in seen:
                    seen.add(m)
                    stack.append(m)
        return False

    def _link(self, container: str, member: str) -> None:
        self.down.setdefault(container, set()).add(member)
        self.up.setdefault(member, set()).add(container)

    def _unlink(self, container: str, member: str) -> None:
        self.down.get(container, set()).discard(member)
        self.up.get(member, set()).discard(container)

    def add_membership(self, container: str, member: str, *, actor_key: str | None = None,
                       via_entra: bool = False, audit: bool = True) -> bool:
        """Add a direct edge. False when it already existed (the real PUT is idempotent)."""
        c, m = self.get(container), self.get(member)
        if not c.is_group:
            raise SimError("invalid", f"The container '{container}' is not a group.")
        if c.subject_type == "aadgp" and not via_entra:
            raise SimError("read_only", "Membership of Microsoft Entra groups is managed in Microsoft "
                                        "Entra ID and cannot be changed in Azure DevOps.")
        if self.is_member(container, member):
            return False
        if m.is_group and self._reaches(member, container):
            raise SimError("cycle", f"Adding '{m.display_name}' to '{c.display_name}' would create a "
                                    "circular group membership.")
        self._link(container, member)
        if audit and not via_entra:
            self._membership_event("Add", c, m, actor_key)
        return True

    def remove_membership(self, container: str, member: str, *, actor_key: str | None = None,
                          via_entra: bool = False, audit: bool = True) -> bool:
        c, m = self.get(container), self.get(member)
        if c.subject_type == "aadgp" and not via_entra:
            raise SimError("read_only", "Membership of Microsoft Entra groups is managed in Microsoft "
                                        "Entra ID and cannot be changed in Azure DevOps.")
        if not self.is_member(container, member):
            return False
        self._unlink(container, member)
        if audit and not via_entra:
            self._membership_event("Remove", c, m, actor_key)
        return True

    def _membership_event(self, op: str, c: Identity, m: Identity, actor_key: str | None) -> None:
        verb = "added to" if op == "Add" else "removed from"
        self.record(f"Group.UpdateGroupMembership.{op}", "modify",
                    {"GroupId": c.storage_key, "GroupName": c.principal_name,
                     "MemberId": m.storage_key, "MemberDisplayName": m.display_name,
                     "ScopeId": c.project_id or self.id,
                     "Updates": [{"GroupId": c.storage_key, "MemberId": m.storage_key,
                                  "Active": op == "Add"}]},
                    f"{m.display_name} was {verb} group {c.principal_name}.", actor_key=actor_key,
                    project_id=c.project_id)

    def members(self, container: str) -> set[str]:
        return self.down.get(container, set())

    def member_of(self, member: str) -> set[str]:
        return self.up.get(member, set())

    def membership_count(self) -> int:
        return sum(len(v) for v in self.down.values())

    # ---- entitlements ------------------------------------------------------------------
    def set_entitlement(self, user_key: str, license_type: str, source: str = "account",
                        msdn: str = "none", *, status: str | None = None,
                        last_accessed: datetime = NEVER, actor_key: str | None = None,
                        audit: bool = True) -> UserEntitlement:
        """Assign or change a licence; writes Licensing.Assigned / Licensing.Modified."""
        user = self.by_storage_key(user_key)
        if user is None:
            raise SimError("not_found", f"User {user_key} not found.")
        prev = self.entitlements.get(user_key)
        if status is None:  # a licence change keeps a pending/disabled user's status
            status = prev.status if prev else "active"
        ent = UserEntitlement(user_key, license_type, source, msdn, status,
                              prev.date_created if prev else self.world.clock.now(),
                              prev.last_accessed if prev else last_accessed)
        self.entitlements[user_key] = ent
        if audit:
            if prev is None:
                self.record("Licensing.Assigned", "create",
                            {"UserIdentifier": user.principal_name,
                             "AccessLevel": ent.license_display_name},
                            f"Access level {ent.license_display_name} assigned to {user.display_name}.",
                            actor_key=actor_key)
            elif (prev.account_license_type, prev.licensing_source) != (license_type, source):
                self.record("Licensing.Modified", "modify",
                            {"UserIdentifier": user.principal_name,
                             "AccessLevel": ent.license_display_name,
                             "PreviousAccessLevel": prev.license_display_name},
                            f"Access level of {user.display_name} changed from "
                            f"{prev.license_display_name} to {ent.license_display_name}.",
                            actor_key=actor_key)
        return ent

    def remove_user(self, user_key: str, *, actor_key: str | None = None) -> None:
        """Delete a user's entitlement and memberships (Licensing.Removed), as DELETE userentitlements."""
        user = self.by_storage_key(user_key)
        if user is None:
            raise SimError("not_found", f"User {user_key} not found.")
        ent = self.entitlements.pop(user_key, None)
        for c in list(self.up.get(user.descriptor, ())):
            self._unlink(c, user.descriptor)
        for team in self.teams.values():
            team.admins.discard(user.descriptor)
        del self.identities[user.descriptor]
        del self.by_key[user_key]
        if user.origin == "aad":
            self.by_origin_id.pop(user.origin_id, None)
        (self.sp_order if user.subject_kind == "servicePrincipal" else self.user_order).remove(user.descriptor)
        self.record("Licensing.Removed", "remove",
                    {"UserIdentifier": user.principal_name,
                     "AccessLevel": ent.license_display_name if ent else "None"},
                    f"{user.display_name} was removed from the organization.", actor_key=actor_key)

    # ---- projects and teams ------------------------------------------------------------
    def create_project(self, name: str, *, description: str = "", visibility: str = "private",
                       actor_key: str | None = None, project_id: str | None = None) -> Project:
        if name.lower() in self._project_names:
            raise SimError("conflict", f"TF200019: The following project already exists: {name}.")
        self._project_names.add(name.lower())
        pid = project_id or self.new_guid()
        now = self.world.clock.now()
        proj = Project(pid, name, description, visibility, "wellFormed", 1, now)
        self.projects[pid] = proj
        self.project_order.append(pid)
        for role, display, desc in PROJECT_ROLES:
            g = self.create_group(display_name=display, description=desc, project_id=pid, role=role,
                                  audit=False)
            proj.role_groups[role] = g.descriptor
        # Project Valid Users contains the project's other built-in groups, as in the real service.
        pvu = proj.role_groups["project_valid_users"]
        for role, g in proj.role_groups.items():
            if role != "project_valid_users":
                self._link(pvu, g)
        pcvu = self.org_groups.get("project_collection_valid_users")
        if pcvu:
            self._link(pcvu, pvu)
        team = self.create_team(pid, f"{name} Team", description="The default project team.",
                                audit=False)
        proj.default_team_id = team.id
        self.record("Project.CreateCompleted", "create",
                    {"ProjectId": pid, "ProjectName": name, "ProcessTemplate": "Agile",
                     "ProjectVisibility": visibility.capitalize()},
                    f"Project {name} was created successfully.", actor_key=actor_key, project_id=pid)
        return proj

    def delete_project(self, project_id: str, *, actor_key: str | None = None) -> None:
        proj = self.projects.get(project_id)
        if proj is None:
            raise SimError("not_found", f"TF200016: The following project does not exist: {project_id}.")
        for g in [g for g in self.groups() if g.project_id == project_id]:
            for m in list(self.down.get(g.descriptor, ())):
                self._unlink(g.descriptor, m)
            for c in list(self.up.get(g.descriptor, ())):
                self._unlink(c, g.descriptor)
            del self.identities[g.descriptor]
            self.by_key.pop(g.storage_key, None)
            self.group_order.remove(g.descriptor)
        for tid in [t.id for t in self.teams.values() if t.project_id == project_id]:
            del self.teams[tid]
        del self.projects[project_id]
        self._project_names.discard(proj.name.lower())
        self.project_order.remove(project_id)
        self.record("Project.HardDeleteCompleted", "remove",
                    {"ProjectId": project_id, "ProjectName": proj.name, "ProjectDeleteType": "Hard"},
                    f"Project {proj.name} was deleted.", actor_key=actor_key, project_id=project_id)

    def create_team(self, project_id: str, name: str, *, description: str = "",
                    actor_key: str | None = None, audit: bool = True) -> Team:
        proj = self.projects[project_id]
        g = self.create_group(display_name=name, description=description, project_id=project_id,
                              is_team=True, actor_key=actor_key, audit=audit)
        team = Team(g.storage_key, name, description, project_id, g.descriptor)
        self.teams[team.id] = team
        self._link(proj.role_groups["contributors"], g.descriptor)  # teams are Contributors
        return team

    def teams_of(self, project_id: str) -> list[Team]:
        return sorted((t for t in self.teams.values() if t.project_id == project_id),
                      key=lambda t: t.name.lower())

    # ---- audit -------------------------------------------------------------------------
    def record(self, action_id: str, category: str, data: dict, details: str, *,
               actor_key: str | None = None, project_id: str | None = None) -> AuditEvent | None:
        if not self.auditing_enabled:
            return None
        now = self.world.clock.now()
        actor = self.by_storage_key(actor_key) if actor_key else None
        actor_id = actor.storage_key if actor else AZURE_DEVOPS_SERVICE_ACTOR
        guid = self.new_guid()
        proj = self.projects.get(project_id) if project_id else None
        ev = AuditEvent(
            seq=len(self.audit), id=f"{_MAX_TICKS - dotnet_ticks(now)};{actor_id};{guid}",
            correlation_id=guid, activity_id=self.new_guid(), timestamp=now, action_id=action_id,
            area=action_id.split(".", 1)[0], category=category,
            scope_type="project" if proj else "organization",
            scope_id=proj.id if proj else self.id, project_id=proj.id if proj else None,
            project_name=proj.name if proj else None, actor_user_id=actor_id,
            actor_cuid=actor.origin_id if actor else "00000000-0000-0000-0000-000000000000",
            actor_upn=actor.principal_name if actor else "",
            actor_display_name=actor.display_name if actor else "Azure DevOps Service",
            authentication_mechanism="PAT_Unscoped" if actor else "", data=data, details=details)
        self.audit.append(ev)
        return ev

    def audit_window(self) -> list[AuditEvent]:
        """Events still retained (90 days), oldest first."""
        cutoff = self.world.clock.now() - AUDIT_RETENTION
        return [e for e in self.audit if e.timestamp >= cutoff]

    # ---- permissions -------------------------------------------------------------------
    def transitive_groups(self, descriptor: str) -> set[str]:
        seen: set[str] = set()
        stack = [descriptor]
        while stack:
            for c in self.up.get(stack.pop(), ()):
                if c not in seen:
                    seen.add(c)
                    stack.append(c)
        return seen

    def is_collection_admin(self, user_key: str) -> bool:
        user = self.by_storage_key(user_key)
        pca = self.org_groups.get("project_collection_administrators")
        return bool(user and pca and pca in self.transitive_groups(user.descriptor))


class World:
    """Everything the simulator serves: organizations, the Entra tenant, tokens, clock."""

    def __init__(self, *, seed: int = 0, tenant_id: str | None = None) -> None:
        self.lock = threading.RLock()  # routes and the admin API mutate under this lock
        self.rng = random.Random(seed)
        self.clock = Clock()
        self.tenant_id = tenant_id or self.new_guid()
        self.orgs: dict[str, OrgState] = {}
        # Entra directory: object id -> kind (user | group | servicePrincipal); group members by oid.
        self.entra_objects: dict[str, str] = {}
        self.entra_members: dict[str, set[str]] = {}
        self.pending_entra: list[PendingEntraChange] = []
        self.propagation_delay = timedelta(minutes=5)
        self.pats: dict[str, Pat] = {}
        self.request_counts: Counter[str] = Counter()
        # Owned by simulator/entra.py and simulator/tokens.py (Entra app registrations, issued tokens).
        self.entra_apps: dict[str, Any] = {}
        self.token_store: Any = None
        # Owned by simulator/faults.py (latency, 5xx, drops, throttle budgets).
        self.faults: Any = None

    def new_guid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def new_org(self, name: str, *, created: datetime | None = None) -> OrgState:
        if name.lower() in (o.lower() for o in self.orgs):
            raise SimError("conflict", f"Organization {name} already exists.")
        org = OrgState(name, self, org_id=self.new_guid(), tenant_id=self.tenant_id,
                       created=created or self.clock.now())
        self.orgs[name] = org
        for key, display in ORG_ROLES:
            g = org.create_group(display_name=display, role=key, audit=False)
            org.org_groups[key] = g.descriptor
        return org

    def org(self, name: str) -> OrgState | None:
        """Organization names are case-insensitive in URLs."""
        found = self.orgs.get(name)
        if found is None:
            for k, v in self.orgs.items():
                if k.lower() == name.lower():
                    return v
        return found

    def issue_pat(self, org: str | None, user_key: str, scopes: set[str] | frozenset[str],
                  lifetime: timedelta = timedelta(days=30), token: str | None = None) -> Pat:
        tok = token or secrets.token_urlsafe(39)[:52].lower()
        pat = Pat(tok, user_key, org, frozenset(scopes), self.clock.now() + lifetime)
        self.pats[tok] = pat
        return pat

    # ---- Entra → Azure DevOps propagation ---------------------------------------------
    def entra_write(self, group_oid: str, member_oid: str, add: bool) -> bool:
        """A Microsoft Graph membership write; Azure DevOps sees it after `propagation_delay`."""
        members = self.entra_members.setdefault(group_oid, set())
        if add == (member_oid in members):
            return False
        (members.add if add else members.discard)(member_oid)
        self.pending_entra.append(PendingEntraChange(self.clock.now() + self.propagation_delay,
                                                     group_oid, member_oid, add))
        return True

    def settle(self) -> None:
        """Apply the Entra changes whose propagation delay has passed, in every organization."""
        if not self.pending_entra:
            return
        now = self.clock.now()
        due = [p for p in self.pending_entra if p.apply_at <= now]
        if not due:
            return
        self.pending_entra = [p for p in self.pending_entra if p.apply_at > now]
        for p in due:
            for org in self.orgs.values():
                g, m = org.by_origin_id.get(p.group_oid), org.by_origin_id.get(p.member_oid)
                if g is None or m is None:
                    continue
                if p.add:
                    # a cycle or a vanished subject: Azure DevOps skips it too
                    with contextlib.suppress(SimError):
                        org.add_membership(g, m, via_entra=True)
                else:
                    org.remove_membership(g, m, via_entra=True)
