"""Scripted and random changes to a simulated organization (pure: no HTTP).

`apply_ops(org, ops)` applies a list of operations by name, each through the `OrgState` / `World`
methods, so the audit log records them as the real service would. Every op returns a result dict:
`{"op", "ok", ...}` plus `created` / `removed` / `changed` flags and new ids; a broken rule of the
service (cycle, read-only Entra group, unknown subject, duplicate project…) gives
`{"ok": False, "error": <SimError.kind>, "message": …}` instead of raising. A malformed script
(unknown op name, missing argument, naive `at`) raises `ValueError` before any op is applied.

Ops (arguments):

| op | arguments | audit actionId |
|---|---|---|
| add_member | container, member | Group.UpdateGroupMembership.Add (none if already a member) |
| remove_member | container, member | Group.UpdateGroupMembership.Remove (none if not a member) |
| create_group | name, project_id?, description? | Group.CreateGroups |
| delete_group | descriptor | Group.UpdateGroups.Delete |
| add_user | principal_name, license, source?, msdn?, display_name? | Licensing.Assigned |
| change_license | user, license, source?, msdn? | Licensing.Modified (Assigned if none yet) |
| remove_user | user | Licensing.Removed |
| create_project | name, description?, visibility? | Project.CreateCompleted |
| delete_project | id | Project.HardDeleteCompleted |
| add_team_admin / remove_team_admin | team_id, member | none (see below) |
| entra_add / entra_remove | group_oid, member_oid | none (Entra changes are not audited) |
| set_last_access | user, last_accessed? (datetime, ISO string or "never"; default now) | none |

Common optional keys: `actor` (storage key of the acting user; default the organization owner) and
`at` (datetime: move the world clock forward to it first and apply the Entra changes that became
visible — the clock never moves backwards).

Subjects (`container`, `member`, `user`, `descriptor`) may be given as a descriptor, a storage key
or a principal name (users: UPN; groups: `[Scope]\\Name`).

`license` is a key of `LICENSES` (express/basic, stakeholder, advanced, none, vs_enterprise,
vs_professional) or a raw accountLicenseType; `source` / `msdn` override the licensing source and
msdnLicenseType. Licence and removal ops accept people (aad/msa) only.

`random_ops(org, rng, n)` draws a realistic mix (mostly membership adds/removes, then licence
changes, new users with a first group, sign-ins, Entra changes, team admins, a few groups and
projects created/deleted) against a shadow of the organization, so every op it returns is valid when
applied in order. `check_invariants(org)` lists internal-consistency problems (used by the tests).

Choices:
- `random_ops` never removes a user who is in an Entra group: the real service keeps such a user
  in the organization through the group, which the state model does not represent.
- Team administrators are a team ACE, not a group membership, and the audit docs list no event for
  them, so `add_team_admin` / `remove_team_admin` write no audit event (a sync must re-read teams).
- `add_user` gives the new user status `pending` (as POST userentitlements does) and registers an
  Entra user for `aad` principals; `msa` is inferred from consumer mail domains.
- `create_project` also creates the project's "{Project} Build Service ({org})" identity in
  Project Collection Build Service Accounts (a system change: no membership audit event), and makes
  the acting user an administrator of the default team, as the real service does for the creator.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from .state import NEVER, Identity, OrgState, SimError

MSA_DOMAINS = frozenset({"outlook.com", "hotmail.com", "live.com", "gmail.com", "msn.com"})

# license name -> (accountLicenseType, licensingSource, msdnLicenseType)
LICENSES: dict[str, tuple[str, str, str]] = {
    "express": ("express", "account", "none"),
    "basic": ("express", "account", "none"),
    "stakeholder": ("stakeholder", "account", "none"),
    "advanced": ("advanced", "account", "none"),
    "none": ("none", "none", "none"),
    "vs_enterprise": ("advanced", "msdn", "enterprise"),
    "vs_professional": ("professional", "msdn", "professional"),
}


def _license(op: dict) -> tuple[str, str, str]:
    lic = op.get("license")
    if lic is None:
        raise ValueError(f"{op['op']}: 'license' is required")
    base = LICENSES.get(lic, (lic, "account", "none"))
    source = op.get("source", base[1])
    msdn = op.get("msdn", base[2] if source == base[1] else ("enterprise" if source == "msdn" else "none"))
    return base[0], source, msdn


class _Resolver:
    """Descriptor / storage key / principal name → descriptor.

    The principal-name index is built once per `apply_ops` call, on first need, and kept up to date
    with the subjects that call creates (lookups check the subject still exists)."""

    def __init__(self, org: OrgState) -> None:
        self.org = org
        self._names: dict[str, str] | None = None

    def names(self) -> dict[str, str]:
        if self._names is None:
            self._names = {i.principal_name.lower(): d for d, i in self.org.identities.items()}
        return self._names

    def remember(self, ident: Identity) -> None:
        if self._names is not None:
            self._names[ident.principal_name.lower()] = ident.descriptor

    def by_name(self, name: str) -> str | None:
        d = self.names().get(name.lower())
        return d if d is not None and d in self.org.identities else None

    def __call__(self, ref: Any, what: str) -> str:
        if not isinstance(ref, str) or not ref:
            raise ValueError(f"{what}: expected a descriptor, storage key or principal name, got {ref!r}")
        org = self.org
        if ref in org.identities:
            return ref
        d = org.by_key.get(ref)
        if d is not None and d in org.identities:
            return d
        d = self.by_name(ref)
        if d is not None:
            return d
        raise SimError("not_found", f"VS403325: The graph subject with descriptor '{ref}' could not be found.")

    def user_key(self, ref: Any, what: str) -> str:
        """Storage key of a person (aad/msa user): licences belong to people, not to service identities
        or service principals (those have their own entitlement APIs)."""
        ident = self.org.get(self(ref, what))
        if ident.subject_type not in ("aad", "msa"):
            raise SimError("invalid", f"{ref} is not a user account.")
        return ident.storage_key


def _as_time(value: Any, now: datetime) -> datetime:
    if value is None:
        return now
    if isinstance(value, datetime):
        return value
    if value == "never":
        return NEVER
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


_REQUIRED: dict[str, tuple[str, ...]] = {
    "add_member": ("container", "member"), "remove_member": ("container", "member"),
    "create_group": ("name",), "delete_group": ("descriptor",),
    "add_user": ("principal_name", "license"), "change_license": ("user", "license"),
    "remove_user": ("user",), "create_project": ("name",), "delete_project": ("id",),
    "add_team_admin": ("team_id", "member"), "remove_team_admin": ("team_id", "member"),
    "entra_add": ("group_oid", "member_oid"), "entra_remove": ("group_oid", "member_oid"),
    "set_last_access": ("user",),
}
OPS = tuple(_REQUIRED)


def validate_ops(ops: list[dict]) -> None:
    """Raise ValueError for a malformed script (unknown op, missing argument, bad `at`) before
    anything is applied, so a bad script never leaves the organization half-changed."""
    if not isinstance(ops, list):
        raise ValueError("ops must be a list of dicts")
    for i, op in enumerate(ops):
        if not isinstance(op, dict):
            raise ValueError(f"op {i}: expected a dict, got {type(op).__name__}")
        name = op.get("op")
        if name not in _REQUIRED:
            raise ValueError(f"op {i}: unknown op {name!r}; expected one of {', '.join(OPS)}")
        missing = [k for k in _REQUIRED[name] if op.get(k) in (None, "")]
        if missing:
            raise ValueError(f"op {i} ({name}): missing {', '.join(missing)}")
        at = op.get("at")
        if at is not None and not (isinstance(at, datetime) and at.tzinfo is not None):
            raise ValueError(f"op {i} ({name}): 'at' must be a timezone-aware datetime")


def apply_ops(org: OrgState, ops: list[dict], rng: random.Random | None = None) -> list[dict]:
    """Apply `ops` in order; one result dict per op (see the module docstring).

    `rng` is accepted for symmetry with `random_ops`; every op is fully specified, so applying a
    script is deterministic and does not draw from it. New ids come from `world.new_guid()`."""
    del rng
    validate_ops(ops)
    world = org.world
    resolve = _Resolver(org)
    results: list[dict] = []
    for op in ops:
        name = op.get("op")
        res: dict[str, Any] = {"op": name, "ok": True}
        at = op.get("at")
        if at is not None:
            now = world.clock.now()
            if at > now:
                world.clock.advance(at - now)
            world.settle()
        actor = op.get("actor", org.owner_key) or None
        try:
            apply = _APPLY.get(name)
            if apply is None:
                raise ValueError(f"unknown op {name!r}")
            apply(org, op, res, resolve, actor)
        except SimError as exc:
            res = {"op": name, "ok": False, "error": exc.kind, "message": exc.message}
        results.append(res)
    return results


def _apply_add_member(org: OrgState, op: dict, res: dict[str, Any], resolve: _Resolver,
                 actor: str | None) -> None:
    c, m = resolve(op["container"], "container"), resolve(op["member"], "member")
    res["created"] = org.add_membership(c, m, actor_key=actor)


def _apply_remove_member(org: OrgState, op: dict, res: dict[str, Any], resolve: _Resolver,
                 actor: str | None) -> None:
    c, m = resolve(op["container"], "container"), resolve(op["member"], "member")
    res["removed"] = org.remove_membership(c, m, actor_key=actor)


def _apply_create_group(org: OrgState, op: dict, res: dict[str, Any], resolve: _Resolver,
                 actor: str | None) -> None:
    pid = op.get("project_id")
    if pid is not None and pid not in org.projects:
        raise SimError("not_found", f"TF200016: The following project does not exist: {pid}.")
    scope = org.projects[pid].name if pid else org.name
    if resolve.by_name(f"[{scope}]\\{op['name']}") is not None:
        raise SimError("conflict", f"A group named {op['name']} already exists.")
    g = org.create_group(display_name=op["name"], description=op.get("description", ""),
                         project_id=pid, actor_key=actor)
    resolve.remember(g)
    res.update(created=True, descriptor=g.descriptor, storage_key=g.storage_key)


def _apply_delete_group(org: OrgState, op: dict, res: dict[str, Any], resolve: _Resolver,
                 actor: str | None) -> None:
    d = resolve(op["descriptor"], "descriptor")
    g = org.get(d)
    if g.subject_type == "aadgp":
        # Removing an Entra group from the organization is not modelled here.
        raise SimError("read_only", "Microsoft Entra groups cannot be deleted in Azure DevOps.")
    if g.role is not None or g.is_team:
        raise SimError("invalid", f"{g.principal_name} is a built-in group or a team.")
    org.delete_group(d, actor_key=actor)
    res.update(removed=True, descriptor=d)


def _apply_add_user(org: OrgState, op: dict, res: dict[str, Any], resolve: _Resolver,
                 actor: str | None) -> None:
    if resolve.by_name(op["principal_name"]) is not None:
        raise SimError("conflict", f"User {op['principal_name']} already exists in the organization.")
    user = _add_user(org, op, actor)
    resolve.remember(user)
    res.update(created=True, descriptor=user.descriptor, storage_key=user.storage_key)


def _apply_change_license(org: OrgState, op: dict, res: dict[str, Any], resolve: _Resolver,
                 actor: str | None) -> None:
    key = resolve.user_key(op["user"], "user")
    lic, source, msdn = _license(op)
    prev = org.entitlements.get(key)
    ent = org.set_entitlement(key, lic, source, msdn, status=prev.status if prev else "active",
                              actor_key=actor)
    res["changed"] = prev is None or (prev.account_license_type, prev.licensing_source) != \
        (ent.account_license_type, ent.licensing_source)
    if prev is None:
        res["created"] = True


def _apply_remove_user(org: OrgState, op: dict, res: dict[str, Any], resolve: _Resolver,
                 actor: str | None) -> None:
    key = resolve.user_key(op["user"], "user")
    if key == org.owner_key:
        raise SimError("forbidden", "The organization owner cannot be removed.")
    org.remove_user(key, actor_key=actor)
    res.update(removed=True, storage_key=key)


def _apply_create_project(org: OrgState, op: dict, res: dict[str, Any], resolve: _Resolver,
                 actor: str | None) -> None:
    proj = org.create_project(op["name"], description=op.get("description", ""),
                              visibility=op.get("visibility", "private"), actor_key=actor)
    svc = org.add_user(kind="svc", display_name=f"{proj.name} Build Service ({org.name})",
                       principal_name=proj.id, svc_identifier=f"{org.id}:Build:{proj.id}")
    pcbsa = org.org_groups.get("project_collection_build_service_accounts")
    if pcbsa:
        org.add_membership(pcbsa, svc.descriptor, audit=False)
    creator = org.by_key.get(actor) if actor else None
    if creator in org.identities:
        org.teams[proj.default_team_id].admins.add(creator)  # the creator administers the team
    res.update(created=True, id=proj.id, default_team_id=proj.default_team_id,
               build_service=svc.descriptor)


def _apply_delete_project(org: OrgState, op: dict, res: dict[str, Any], resolve: _Resolver,
                 actor: str | None) -> None:
    org.delete_project(op["id"], actor_key=actor)
    res.update(removed=True, id=op["id"])


def _apply_team_admin(org: OrgState, op: dict, res: dict[str, Any], resolve: _Resolver,
                 actor: str | None) -> None:
    name = op["op"]
    team = org.teams.get(op["team_id"])
    if team is None:
        raise SimError("not_found", f"The team {op['team_id']} does not exist.")
    m = resolve(op["member"], "member")
    if name == "add_team_admin":
        res["created"] = m not in team.admins
        team.admins.add(m)
    else:
        res["removed"] = m in team.admins
        team.admins.discard(m)


def _apply_entra_member(org: OrgState, op: dict, res: dict[str, Any], resolve: _Resolver,
                 actor: str | None) -> None:
    world = org.world
    name = op["op"]
    if world.entra_objects.get(op["group_oid"]) != "group":
        raise SimError("not_found", f"Entra group {op['group_oid']} does not exist.")
    if op["member_oid"] not in world.entra_objects:
        raise SimError("not_found", f"Entra object {op['member_oid']} does not exist.")
    res["changed"] = world.entra_write(op["group_oid"], op["member_oid"], name == "entra_add")
    res["visible_at"] = world.clock.now() + world.propagation_delay


def _apply_set_last_access(org: OrgState, op: dict, res: dict[str, Any], resolve: _Resolver,
                 actor: str | None) -> None:
    world = org.world
    key = resolve.user_key(op["user"], "user")
    ent = org.entitlements.get(key)
    if ent is None:
        raise SimError("not_found", f"User {op['user']} has no entitlement.")
    ent.last_accessed = _as_time(op.get("last_accessed"), world.clock.now())
    if ent.status == "pending" and ent.last_accessed != NEVER:
        ent.status = "active"  # a pending user becomes active on first sign-in
    res["changed"] = True


# What each operation does to the organization (res: the op's result, filled in).
_APPLY: dict[str, Callable[[OrgState, dict, dict[str, Any], _Resolver, str | None], None]] = {
    "add_member": _apply_add_member,
    "remove_member": _apply_remove_member,
    "create_group": _apply_create_group,
    "delete_group": _apply_delete_group,
    "add_user": _apply_add_user,
    "change_license": _apply_change_license,
    "remove_user": _apply_remove_user,
    "create_project": _apply_create_project,
    "delete_project": _apply_delete_project,
    "add_team_admin": _apply_team_admin,
    "remove_team_admin": _apply_team_admin,
    "entra_add": _apply_entra_member,
    "entra_remove": _apply_entra_member,
    "set_last_access": _apply_set_last_access,
}


def _add_user(org: OrgState, op: dict, actor: str | None) -> Identity:
    upn: str = op["principal_name"]
    if "@" not in upn:
        raise SimError("invalid", f"Given email address '{upn}' is invalid.")
    low = upn.lower()
    domain = low.rsplit("@", 1)[1]
    kind = op.get("kind") or ("msa" if domain in MSA_DOMAINS else "aad")
    meta = "guest" if "#ext#" in low else "member"
    local = upn.split("@", 1)[0].split("_", 1)[0] if meta == "guest" else upn.split("@", 1)[0]
    display = op.get("display_name") or " ".join(p.capitalize() for p in local.split("."))
    mail = op.get("mail", "")
    user = org.add_user(kind=kind, display_name=display, principal_name=upn, mail=mail, meta_type=meta)
    lic, source, msdn = _license(op)
    org.set_entitlement(user.storage_key, lic, source, msdn, status=op.get("status", "pending"),
                        actor_key=actor)
    return user


# ---- random ops ----------------------------------------------------------------------------

_OP_WEIGHTS: tuple[tuple[str, float], ...] = (
    ("add_member", 34), ("remove_member", 15), ("change_license", 9), ("add_user", 8),
    ("remove_user", 3), ("create_group", 3), ("delete_group", 1), ("add_team_admin", 2.5),
    ("remove_team_admin", 1.5), ("entra_add", 6), ("entra_remove", 3), ("set_last_access", 7),
    ("create_project", 0.5), ("delete_project", 0.15),
)
_FIRST = ("Alex", "Sam", "Noor", "Lena", "Ravi", "Jonas", "Mina", "Tao", "Iris", "Pedro", "Zara", "Kofi")
_LAST = ("Berg", "Costa", "Diaz", "Eriksen", "Fong", "Haddad", "Ivanova", "Juarez", "Kaur", "Lind")
_GROUP_NAMES = ("Reviewers", "Hotfix Approvers", "Migration Squad", "Pilot Users", "Release Crew",
                "Readers Extended", "Vendor Access", "Incident Response")
_PROJECT_NAMES = ("Skylark", "Granite", "Juniper", "Lighthouse", "Monarch", "Sequoia", "Tundra", "Willow")


class _Shadow:
    """What random_ops assumes the organization looks like after the ops generated so far."""

    def __init__(self, org: OrgState) -> None:
        self.org = org
        world = org.world
        self.users: list[str] = []  # human users: descriptors or (for new users) principal names
        self.user_kind: dict[str, str] = {}  # ref -> aad | msa
        self.user_oid: dict[str, str] = {}  # ref -> Entra object id (existing aad users)
        for d in org.user_order:
            u = org.identities[d]
            if u.origin in ("aad", "msa") and u.storage_key in org.entitlements:
                self.users.append(d)
                self.user_kind[d] = u.origin
                if u.origin == "aad":
                    self.user_oid[d] = u.origin_id
        self.removed: set[str] = set()
        self.principals = {org.identities[d].principal_name.lower() for d in org.user_order}
        self.entra_members_oids: set[str] = set()
        self.entra_groups: list[tuple[str, str]] = []  # (descriptor, oid)
        for d in org.group_order:
            g = org.identities[d]
            if g.subject_type == "aadgp":
                self.entra_groups.append((d, g.origin_id))
        for _d, oid in self.entra_groups:
            self.entra_members_oids |= world.entra_members.get(oid, set())
        self.deleted: set[str] = set()  # group descriptors (and principal names of new groups)
        self.project_groups: dict[str, list[str]] = {}
        self.containers: list[str] = []  # vssgp groups that may receive members
        self.member_groups: list[str] = []  # groups that may be nested (custom, team, aadgp)
        self.deletable: list[str] = []
        self.group_scope: dict[str, str | None] = {}
        valid_users = {"project_valid_users", "project_collection_valid_users"}
        for d in org.group_order:
            g = org.identities[d]
            self.group_scope[d] = g.project_id
            if g.project_id:
                self.project_groups.setdefault(g.project_id, []).append(d)
            if g.subject_type == "vssgp" and g.role not in valid_users:
                self.containers.append(d)
            if g.role is None:
                self.member_groups.append(d)
                if g.subject_type == "vssgp" and not g.is_team:
                    self.deletable.append(d)
        self.teams = sorted(org.teams)
        self.deleted_projects: set[str] = set()
        self.projects = list(org.project_order)
        self.project_names = {p.name.lower() for p in org.projects.values()}
        self.group_names = {org.identities[d].principal_name.lower() for d in org.group_order}
        self.added_group_edges: dict[str, set[str]] = {}
        pca = org.org_groups.get("project_collection_administrators")
        self.actors = sorted(d for d in org.down.get(pca, ()) if org.identities[d].subject_kind == "user"
                             and org.identities[d].origin in ("aad", "msa")) if pca else []

    def alive_group(self, d: str) -> bool:
        return d not in self.deleted and self.group_scope.get(d) not in self.deleted_projects

    def alive_user(self, ref: str) -> bool:
        return ref not in self.removed

    def reaches(self, start: str, target: str) -> bool:
        """Would `target` be reachable down from `start` (existing edges plus those added so far)?"""
        down, extra = self.org.down, self.added_group_edges
        stack, seen = [start], {start}
        while stack:
            node = stack.pop()
            if node == target:
                return True
            for nxt in (*down.get(node, ()), *extra.get(node, ())):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return False


def _pick(rng: random.Random, items: list[str], ok: Any, tries: int = 20) -> str | None:
    if not items:
        return None
    for _ in range(tries):
        x = items[rng.randrange(len(items))]
        if ok(x):
            return x
    return None


def random_ops(org: OrgState, rng: random.Random, n: int) -> list[dict]:
    """A realistic random mix of `n` valid ops for `apply_ops` (generated against a shadow of the org,
    so later ops never reference subjects removed by earlier ones and never form a cycle)."""
    sh = _Shadow(org)
    names, weights = zip(*_OP_WEIGHTS, strict=True)
    owner = org.by_key.get(org.owner_key, "")
    domain = org.identities[owner].principal_name.rsplit("@", 1)[-1] if owner in org.identities \
        else f"{org.name.lower()}.com"
    ops: list[dict] = []
    while len(ops) < n:
        kind = rng.choices(names, weights)[0]
        op = _random_op(kind, sh, rng, domain)
        if op is None:
            continue
        batch = [op]
        if kind == "add_user":
            # A new user is given project access right away (as the "Add users" dialog does).
            container = _pick(rng, sh.containers, lambda g: sh.alive_group(g) and sh.group_scope.get(g))
            if container is not None:
                batch.append({"op": "add_member", "container": container, "member": op["principal_name"]})
        actor = None
        if sh.actors and rng.random() < 0.9:
            actor_d = rng.choice(sh.actors)
            if actor_d not in sh.removed:
                actor = org.identities[actor_d].storage_key
        for o in batch:
            if actor:
                o["actor"] = actor
            ops.append(o)
    return ops[:n]


def _op_add_member(kind: str, sh: _Shadow, rng: random.Random, domain: str) -> dict | None:
    org = sh.org
    container = _pick(rng, sh.containers, sh.alive_group)
    if container is None:
        return None
    if rng.random() < 0.85 or not sh.member_groups:
        member = _pick(rng, sh.users, sh.alive_user)
        if member is None:
            return None
    else:
        # Groups are nested into built-in groups only, which keeps nesting shallow (~5 levels).
        target = org.identities.get(container)
        if target is None or target.role is None:
            return None
        # Same project or organization-wide groups only (cross-project nesting is unusual).
        member = _pick(rng, sh.member_groups, lambda g: sh.alive_group(g) and g != container
                       and sh.group_scope.get(g) in (None, target.project_id))
        if member is None or sh.reaches(member, container):
            return None
        sh.added_group_edges.setdefault(container, set()).add(member)
    return {"op": "add_member", "container": container, "member": member}


def _op_remove_member(kind: str, sh: _Shadow, rng: random.Random, domain: str) -> dict | None:
    org = sh.org
    user = _pick(rng, sh.users, lambda u: sh.alive_user(u) and u in org.identities)
    if user is None:
        return None
    ups = sorted(c for c in org.up.get(user, ()) if sh.alive_group(c)
                 and org.identities[c].subject_type == "vssgp")
    if not ups:
        return None
    return {"op": "remove_member", "container": rng.choice(ups), "member": user}


def _op_change_license(kind: str, sh: _Shadow, rng: random.Random, domain: str) -> dict | None:
    user = _pick(rng, sh.users, sh.alive_user)
    if user is None:
        return None
    return {"op": "change_license", "user": user,
            "license": rng.choices(("express", "stakeholder", "vs_enterprise", "advanced", "none"),
                                   (5, 3, 2, 1, 1))[0]}


def _op_add_user(kind: str, sh: _Shadow, rng: random.Random, domain: str) -> dict | None:
    for _ in range(10):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        r = rng.random()
        if r < 0.8:
            upn = f"{first}.{last}{rng.randrange(1000)}@{domain}".lower()
            kind_ = "aad"
        elif r < 0.9:
            upn = f"{first}.{last}{rng.randrange(1000)}_partner.example#EXT#@{domain}".lower()
            kind_ = "aad"
        else:
            upn = f"{first}.{last}{rng.randrange(1000)}@outlook.com".lower()
            kind_ = "msa"
        if upn not in sh.principals:
            sh.principals.add(upn)
            sh.users.append(upn)
            sh.user_kind[upn] = kind_
            return {"op": "add_user", "principal_name": upn, "display_name": f"{first} {last}",
                    "license": rng.choices(("express", "stakeholder", "vs_enterprise"), (7, 2, 1))[0]}
    return None


def _op_remove_user(kind: str, sh: _Shadow, rng: random.Random, domain: str) -> dict | None:
    org = sh.org
    # Only users outside Entra groups: an Entra group would keep them in the organization.
    user = _pick(rng, sh.users, lambda u: sh.alive_user(u) and u in org.identities
                 and org.identities[u].storage_key != org.owner_key and u not in sh.actors
                 and sh.user_oid.get(u) not in sh.entra_members_oids)
    if user is None:
        return None
    sh.removed.add(user)
    return {"op": "remove_user", "user": user}


def _op_create_group(kind: str, sh: _Shadow, rng: random.Random, domain: str) -> dict | None:
    org = sh.org
    live = [p for p in sh.projects if p not in sh.deleted_projects]
    pid = rng.choice(live) if live and rng.random() < 0.8 else None
    scope = org.projects[pid].name if pid else org.name
    for _ in range(5):
        name = f"{rng.choice(_GROUP_NAMES)} {rng.randrange(100)}"
        principal = f"[{scope}]\\{name}"
        if principal.lower() not in sh.group_names:
            sh.group_names.add(principal.lower())
            # New groups can receive members later in the same script (by principal name).
            sh.containers.append(principal)
            sh.group_scope[principal] = pid
            return {"op": "create_group", "name": name, "project_id": pid,
                    "description": f"{name} (created by script)."}
    return None


def _op_delete_group(kind: str, sh: _Shadow, rng: random.Random, domain: str) -> dict | None:
    g = _pick(rng, sh.deletable, sh.alive_group)
    if g is None:
        return None
    sh.deleted.add(g)
    return {"op": "delete_group", "descriptor": g}


def _op_team_admin(kind: str, sh: _Shadow, rng: random.Random, domain: str) -> dict | None:
    org = sh.org
    team_id = _pick(rng, sh.teams, lambda t: org.teams[t].project_id not in sh.deleted_projects
                    and org.teams[t].group_descriptor not in sh.deleted)
    if team_id is None:
        return None
    if kind == "add_team_admin":
        member = _pick(rng, sh.users, sh.alive_user)
    else:
        admins = sorted(a for a in org.teams[team_id].admins if a not in sh.removed)
        member = rng.choice(admins) if len(admins) > 1 else None  # keep at least one admin
    if member is None:
        return None
    return {"op": kind, "team_id": team_id, "member": member}


def _op_entra_member(kind: str, sh: _Shadow, rng: random.Random, domain: str) -> dict | None:
    org = sh.org
    if not sh.entra_groups:
        return None
    _gd, oid = sh.entra_groups[rng.randrange(len(sh.entra_groups))]
    if kind == "entra_add":
        user = _pick(rng, sh.users, lambda u: sh.alive_user(u) and u in sh.user_oid)
        if user is None:
            return None
        sh.entra_members_oids.add(sh.user_oid[user])
        return {"op": "entra_add", "group_oid": oid, "member_oid": sh.user_oid[user]}
    members = sorted(org.world.entra_members.get(oid, ()))
    if not members:
        return None
    return {"op": "entra_remove", "group_oid": oid, "member_oid": rng.choice(members)}


def _op_set_last_access(kind: str, sh: _Shadow, rng: random.Random, domain: str) -> dict | None:
    user = _pick(rng, sh.users, sh.alive_user)
    return None if user is None else {"op": "set_last_access", "user": user}


def _op_create_project(kind: str, sh: _Shadow, rng: random.Random, domain: str) -> dict | None:
    for _ in range(5):
        name = f"{rng.choice(_PROJECT_NAMES)}-{rng.randrange(1000)}"
        if name.lower() not in sh.project_names:
            sh.project_names.add(name.lower())
            return {"op": "create_project", "name": name, "description": "Created by script."}
    return None


def _op_delete_project(kind: str, sh: _Shadow, rng: random.Random, domain: str) -> dict | None:
    live = [p for p in sh.projects if p not in sh.deleted_projects]
    if len(live) <= 2 or len(sh.deleted_projects) >= max(1, len(sh.projects) // 20):
        return None
    pid = rng.choice(live)
    sh.deleted_projects.add(pid)
    return {"op": "delete_project", "id": pid}


# One generator per kind of operation (each picks its objects from the shadow state, or gives None).
_RANDOM_OPS: dict[str, Callable[[str, _Shadow, random.Random, str], dict | None]] = {
    "add_member": _op_add_member,
    "remove_member": _op_remove_member,
    "change_license": _op_change_license,
    "add_user": _op_add_user,
    "remove_user": _op_remove_user,
    "create_group": _op_create_group,
    "delete_group": _op_delete_group,
    "add_team_admin": _op_team_admin,
    "remove_team_admin": _op_team_admin,
    "entra_add": _op_entra_member,
    "entra_remove": _op_entra_member,
    "set_last_access": _op_set_last_access,
    "create_project": _op_create_project,
    "delete_project": _op_delete_project,
}


def _random_op(kind: str, sh: _Shadow, rng: random.Random, domain: str) -> dict | None:
    try:
        make = _RANDOM_OPS[kind]
    except KeyError:
        raise ValueError(kind) from None
    return make(kind, sh, rng, domain)


def edges(org: OrgState) -> Iterable[tuple[str, str]]:
    """All direct (container, member) edges."""
    for c, ms in org.down.items():
        for m in ms:
            yield c, m


def check_invariants(org: OrgState) -> list[str]:
    """Problems with the organization's internal consistency (empty when all rules hold):
    up/down indexes mirror each other, every edge's ends exist and containers are groups, no cycles,
    entitlements only for existing users, orders/indexes match the identities, teams and their
    admins exist, and (with no Entra change pending) each Entra group's ADO members are its Entra
    members that exist in the organization."""
    problems: list[str] = []
    ids = org.identities
    for c, ms in org.down.items():
        for m in ms:
            if c not in ids or m not in ids:
                problems.append(f"edge {c} -> {m}: end missing")
            elif not ids[c].is_group:
                problems.append(f"edge {c} -> {m}: container is not a group")
            if c not in org.up.get(m, ()):
                problems.append(f"edge {c} -> {m}: missing from up index")
    for m, cs in org.up.items():
        for c in cs:
            if m not in org.down.get(c, ()):
                problems.append(f"up edge {m} -> {c}: missing from down index")
    # Cycle check: iterative DFS with colours over the down graph.
    colour: dict[str, int] = {}
    for root in sorted(org.down):
        if colour.get(root):
            continue
        stack: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(org.down.get(root, ()))))]
        colour[root] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                colour[node] = 2
                stack.pop()
            elif colour.get(nxt) == 1:
                problems.append(f"cycle through {nxt}")
            elif not colour.get(nxt):
                colour[nxt] = 1
                stack.append((nxt, iter(sorted(org.down.get(nxt, ())))))
    for key in org.entitlements:
        u = org.by_storage_key(key)
        if u is None or u.is_group:
            problems.append(f"entitlement for missing user {key}")
    orders = [*org.user_order, *org.group_order, *org.sp_order]
    if len(orders) != len(ids) or set(orders) != set(ids):
        problems.append("user/group/service principal orders do not match the identities")
    for d, i in ids.items():
        if org.by_key.get(i.storage_key) != d:
            problems.append(f"by_key does not point at {d}")
    for t in org.teams.values():
        if t.group_descriptor not in ids or t.project_id not in org.projects:
            problems.append(f"team {t.id} refers to a missing group or project")
        problems.extend(f"team {t.id} admin {a} missing" for a in t.admins if a not in ids)
    pending = {p.group_oid for p in org.world.pending_entra}
    for d in org.group_order:
        g = ids[d]
        if g.subject_type != "aadgp" or g.origin_id in pending:
            continue
        ado = {ids[m].origin_id for m in org.down.get(d, ()) if m in ids}
        entra = {oid for oid in org.world.entra_members.get(g.origin_id, ()) if oid in org.by_origin_id}
        if ado != entra:
            problems.append(f"Entra group {g.display_name}: ADO and Entra members differ")
    return problems


__all__ = ["LICENSES", "OPS", "apply_ops", "check_invariants", "edges", "random_ops", "validate_ops"]
