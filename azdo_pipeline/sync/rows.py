"""Raw API JSON → rows of the raw tables (azdo_pipeline.schemas). Pure functions."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

_FRACTION = re.compile(r"(\.\d{6})\d+")
_PROJECT_DOMAIN = "vstfs:///Classification/TeamProject/"

USER_TYPES = frozenset({"aad", "msa"})
SERVICE_ACCOUNT_TYPES = frozenset({"svc"})


def subject_type(descriptor: str) -> str:
    return descriptor.split(".", 1)[0] if "." in descriptor else ""


KIND_BY_TYPE = {"aad": "user", "msa": "user", "svc": "service_account", "aadsp": "service_principal",
                 "vssgp": "group", "aadgp": "group"}


def member_kind(descriptor: str) -> str:
    """Kind of a membership's member, from its descriptor prefix."""
    return KIND_BY_TYPE.get(descriptor.partition(".")[0], "other")


def parse_time(value: str | None) -> datetime | None:
    """Azure DevOps timestamps (7 fractional digits, 'Z' or offsets); the year-1 'never' → None."""
    if not value or value.startswith("0001-01-01"):
        return None
    text = _FRACTION.sub(r"\1", value.replace("Z", "+00:00"))
    ts = datetime.fromisoformat(text)
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def entitlement_fields(ent: Mapping[str, Any]) -> dict[str, Any]:
    level = ent.get("accessLevel") or {}
    return {
        "storage_key": ent.get("id"),
        "license": level.get("accountLicenseType"),
        "licensing_source": level.get("licensingSource"),
        "msdn_license_type": level.get("msdnLicenseType"),
        "license_display_name": level.get("licenseDisplayName"),
        "status": level.get("status"),
        "last_accessed": parse_time(ent.get("lastAccessedDate")),
        "date_created": parse_time(ent.get("dateCreated")),
    }


_NO_ENTITLEMENT = dict.fromkeys(
    ("storage_key", "license", "licensing_source", "msdn_license_type", "license_display_name",
     "status", "last_accessed", "date_created"))


def user_row(user: Mapping[str, Any], entitlement: Mapping[str, Any] | None) -> dict[str, Any]:
    d = user["descriptor"]
    row = {
        "descriptor": d, "subject_type": subject_type(d), "origin": user.get("origin"),
        "origin_id": user.get("originId"), "principal_name": user.get("principalName"),
        "display_name": user.get("displayName"), "mail_address": user.get("mailAddress"),
        "domain": user.get("domain"), "meta_type": user.get("metaType"),
    }
    row.update(entitlement or _NO_ENTITLEMENT)
    return row


def service_account_row(user: Mapping[str, Any]) -> dict[str, Any]:
    return {"descriptor": user["descriptor"], "principal_name": user.get("principalName"),
            "display_name": user.get("displayName"), "domain": user.get("domain"),
            "origin": user.get("origin"), "origin_id": user.get("originId")}


def service_principal_row(sp: Mapping[str, Any]) -> dict[str, Any]:
    return {"descriptor": sp["descriptor"], "display_name": sp.get("displayName"),
            "application_id": sp.get("applicationId"), "origin_id": sp.get("originId"),
            "domain": sp.get("domain")}


def group_row(group: Mapping[str, Any], team_ids: set[str] | frozenset[str]) -> dict[str, Any]:
    d = group["descriptor"]
    domain = group.get("domain") or ""
    project_id = domain[len(_PROJECT_DOMAIN):] if domain.startswith(_PROJECT_DOMAIN) else None
    origin_id = group.get("originId")
    kind = subject_type(d)
    # For Azure DevOps groups the originId is the identity id (storage key); a team's id is the
    # storage key of the group that backs it.
    storage_key = origin_id if kind == "vssgp" else None
    return {
        "descriptor": d, "storage_key": storage_key, "kind": kind,
        "display_name": group.get("displayName"), "principal_name": group.get("principalName"),
        "description": group.get("description"), "scope": "project" if project_id else "organization",
        "project_id": project_id, "is_team": bool(storage_key and storage_key in team_ids),
        "origin": group.get("origin"), "origin_id": origin_id, "domain": domain or None,
    }


def project_row(p: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": p["id"], "name": p.get("name"), "description": p.get("description"),
            "state": p.get("state"), "visibility": p.get("visibility"),
            "revision": p.get("revision"), "last_update_time": parse_time(p.get("lastUpdateTime"))}


def team_row(t: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": t["id"], "name": t.get("name"), "description": t.get("description"),
            "project_id": t.get("projectId"), "project_name": t.get("projectName")}


def team_member_row(team_id: str, m: Mapping[str, Any]) -> dict[str, Any]:
    ident = m.get("identity") or {}
    return {"team_id": team_id, "member_descriptor": ident.get("descriptor"),
            "member_storage_key": ident.get("id"), "display_name": ident.get("displayName"),
            "is_team_admin": bool(m.get("isTeamAdmin")), "is_member": True}


def organization_row(a: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": a.get("accountId"), "name": a.get("accountName"), "url": a.get("accountUri"),
            "status": a.get("accountStatus")}
