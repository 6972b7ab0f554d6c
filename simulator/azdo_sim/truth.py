"""Ground truth of one simulated organization, in the raw tables' shape (azdo_pipeline/schemas.py).

Pure: reads `OrgState` directly, never the HTTP routes or the client, so integration tests can
compare synced Parquet against it without sharing a bug with the code under test. Column names and
meanings are exactly those of `schemas.RAW_TABLES` (minus `organizations`, which is per caller).

Choices where the state has more than one candidate value:
- `users.date_created` is the entitlement's `dateCreated` (when the user was added to the
  organization, as userentitlements reports it); null for a Graph user without an entitlement,
  like the licence columns.
- `users.last_accessed` is null when the user never signed in (state keeps .NET's MinValue).
- `memberships` holds every direct edge whose two ends are visible subjects; `team_members` the
  direct members of each team's backing group, flagged with `is_team_admin`, plus administrators
  who are not members (`is_member` false).
- `groups.storage_key` is null for Entra (`aadgp`) groups, as schemas.GROUPS says (the Graph group
  body carries the identity id only as a `vssgp` group's originId); `projects.description` is null
  when empty, as the API omits it. tests/unit/test_sim_app_truth.py checks every table against the
  simulator's own routes, so state and wire cannot drift apart unnoticed.
Rows are sorted by the table's key so comparisons are order-independent and diffs readable.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .state import NEVER, Identity, OrgState

TABLES = ("users", "service_accounts", "service_principals", "groups", "memberships", "projects", "teams",
          "team_members")

_MEMBER_KIND = {"aad": "user", "msa": "user", "svc": "service_account", "aadsp": "service_principal",
                "vssgp": "group", "aadgp": "group"}


def member_kind(ident: Identity) -> str:
    return _MEMBER_KIND.get(ident.subject_type, "group" if ident.is_group else "user")


def _ts(value: datetime | None) -> datetime | None:
    if value is None or value == NEVER:
        return None
    return value


def users(org: OrgState) -> list[dict[str, Any]]:
    rows = []
    for u in org.users():
        if u.subject_type not in ("aad", "msa"):
            continue
        ent = org.entitlements.get(u.storage_key)
        rows.append({
            # the storage key comes from the user entitlement (its id); Graph users do not carry it
            "descriptor": u.descriptor, "storage_key": u.storage_key if ent else None,
            "subject_type": u.subject_type,
            "origin": u.origin, "origin_id": u.origin_id, "principal_name": u.principal_name,
            "display_name": u.display_name, "mail_address": u.mail_address, "domain": u.domain,
            "meta_type": u.meta_type,
            "license": ent.account_license_type if ent else None,
            "licensing_source": ent.licensing_source if ent else None,
            "msdn_license_type": ent.msdn_license_type if ent else None,
            "license_display_name": ent.license_display_name if ent else None,
            "status": ent.status if ent else None,
            "last_accessed": _ts(ent.last_accessed) if ent else None,
            "date_created": _ts(ent.date_created) if ent else None,
        })
    return sorted(rows, key=lambda r: r["descriptor"])


def service_accounts(org: OrgState) -> list[dict[str, Any]]:
    rows = [{"descriptor": u.descriptor, "principal_name": u.principal_name, "display_name": u.display_name,
             "domain": u.domain, "origin": u.origin, "origin_id": u.origin_id}
            for u in org.users() if u.subject_type == "svc"]
    return sorted(rows, key=lambda r: r["descriptor"])


def service_principals(org: OrgState) -> list[dict[str, Any]]:
    rows = [{"descriptor": sp.descriptor, "display_name": sp.display_name,
             "application_id": sp.application_id, "origin_id": sp.origin_id, "domain": sp.domain}
            for sp in org.service_principals()]
    return sorted(rows, key=lambda r: r["descriptor"])


def groups(org: OrgState) -> list[dict[str, Any]]:
    # The Graph group list carries the identity id only as the originId of Azure DevOps groups;
    # Entra groups' storage keys are not part of the raw table (schemas.GROUPS).
    rows = [{"descriptor": g.descriptor, "storage_key": g.storage_key if g.subject_type == "vssgp" else None,
             "kind": g.subject_type,
             "display_name": g.display_name, "principal_name": g.principal_name,
             "description": g.description, "scope": g.scope, "project_id": g.project_id,
             "is_team": g.is_team, "origin": g.origin, "origin_id": g.origin_id, "domain": g.domain}
            for g in org.groups()]
    return sorted(rows, key=lambda r: r["descriptor"])


def memberships(org: OrgState) -> list[dict[str, Any]]:
    rows = []
    for container, members in org.down.items():
        if container not in org.identities:
            continue
        for m in members:
            ident = org.identities.get(m)
            if ident is None:
                continue
            rows.append({"container_descriptor": container, "member_descriptor": m,
                         "member_kind": member_kind(ident)})
    return sorted(rows, key=lambda r: (r["container_descriptor"], r["member_descriptor"]))


def projects(org: OrgState) -> list[dict[str, Any]]:
    rows = [{"id": p.id, "name": p.name, "description": p.description or None,  # the API omits an empty one
             "state": p.state,
             "visibility": p.visibility, "revision": p.revision, "last_update_time": p.last_update_time}
            for p in (org.projects[pid] for pid in org.project_order)]
    return sorted(rows, key=lambda r: r["id"])


def teams(org: OrgState) -> list[dict[str, Any]]:
    rows = [{"id": t.id, "name": t.name, "description": t.description, "project_id": t.project_id,
             "project_name": org.projects[t.project_id].name if t.project_id in org.projects else None}
            for t in org.teams.values()]
    return sorted(rows, key=lambda r: r["id"])


def team_members(org: OrgState) -> list[dict[str, Any]]:
    """Direct members of each team's group, plus its administrators who are not members."""
    rows = []
    for t in org.teams.values():
        members = set()
        for m in org.members(t.group_descriptor):
            ident = org.identities.get(m)
            if ident is None:
                continue
            members.add(m)
            rows.append({"team_id": t.id, "member_descriptor": m, "member_storage_key": ident.storage_key,
                         "display_name": ident.display_name, "is_team_admin": m in t.admins, "is_member": True})
        for a in sorted(t.admins - members):
            ident = org.identities.get(a)
            if ident is not None:
                rows.append({"team_id": t.id, "member_descriptor": a, "member_storage_key": ident.storage_key,
                             "display_name": ident.display_name, "is_team_admin": True, "is_member": False})
    return sorted(rows, key=lambda r: (r["team_id"], r["member_descriptor"]))


def ground_truth(org: OrgState) -> dict[str, list[dict[str, Any]]]:
    """Every raw table (except `organizations`) as a list of rows; call under `world.lock`."""
    return {"users": users(org), "service_accounts": service_accounts(org),
            "service_principals": service_principals(org), "groups": groups(org),
            "memberships": memberships(org), "projects": projects(org), "teams": teams(org),
            "team_members": team_members(org)}
