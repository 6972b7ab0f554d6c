"""Audit log (`{base}/auditservice/{org}/_apis/audit/...`, scope vso.auditlog, api-version 7.1-preview.1).

Behaviour (reference §5) and the choices made where it is UNVERIFIED:
- `GET audit/auditlog` answers with the **real top-level body**
  `{"decoratedAuditLogEntries": [...], "continuationToken": ..., "hasMore": bool}`. The spec example
  wraps it in `"value"`; third-party clients parse the top level, as the real service sends it.
- Newest first; only the 90-day retention window (`OrgState.audit_window`). `startTime`/`endTime`
  (inclusive; ISO 8601) narrow it further. The continuation token is the `id` of the last entry
  returned; the next page holds the entries after it in id order (ids are
  "{MaxTicks - ticks};{actor};{guid}", so id order is newest first). A token that is not an entry id
  → 400. `continuationToken` in the body is that last id (null for an empty page).
- `batchSize`: default 200 (what the web UI loads), values above 1000 are clamped to 1000 (UNVERIFIED;
  clients must loop on `hasMore`), below 1 → 400.
- Auditing off (`org.auditing_enabled` False) → **403** `AuditLogDisabledException` with a message
  pointing at the "Log Audit Events" policy (status UNVERIFIED). Reading the log needs Project
  Collection Administrator membership (the "View audit log" permission); others get 403.
- Reading the log writes one `AuditLog.AccessLog` event per query — on the first page only (no
  continuation token), so paging through a log never writes into the range being paged. Unless
  `skipAggregation=true`, AccessLog entries are folded into one entry per actor and UTC day whose
  `data.EventSummary` lists the timestamps and `details` says "Accessed the audit log N times".
  The aggregate takes the id and timestamp of its **oldest** event (the real one shows the newest),
  so new reads never move it and a paging client sees it exactly once.
- `GET audit/actions[?areaName=]`: `{count, value:[{area, category, actionId}]}` from a static table
  (the Security area as in the 2019 spec example, plus the areas the simulator writes).
- Entry `area` follows the recorded spec examples: "Auditing" for AuditLog.* (auditLog example) and
  "Security" for Group.* (actions example, so entries and audit/actions agree); other areas are the
  actionId prefix (Licensing, Project). The current "Auditing events list" docs name the areas
  "AuditLog" and "Group" — UNVERIFIED which one today's service writes into `area`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from . import http
from .http import ado_error, ado_json, public_base
from .routes_core import (
    bad_request,
    bool_param,
    caller_identity,
    int_param,
    require_api_version,
    route,
)
from .state import AuditEvent, OrgState

DEFAULT_BATCH = 200
MAX_BATCH = 1000
ACCESS_LOG = "AuditLog.AccessLog"
_ZERO_GUID = "00000000-0000-0000-0000-000000000000"
_AUDIT_TYPE = "Microsoft.VisualStudio.Services.Audit.WebApi"
# state.py derives `area` from the actionId prefix; the recorded examples differ for two prefixes:
# AuditLog.* entries say "Auditing" (auditLog example), Group.* sit in "Security" (actions example).
_AREA_FIX = {"AuditLog": "Auditing", "Group": "Security"}


def _ts(ts: datetime) -> str:
    """Audit timestamps: 7 fractional digits and an explicit offset, as in the spec example."""
    ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond:06d}0+00:00"


def _sort_key(entry_id: str) -> tuple[int, str]:
    head, _, rest = entry_id.partition(";")
    return int(head), rest


def _parse_time(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if raw is None or not raw.strip():
        return None
    text = raw.strip().replace(" ", "+")  # an unencoded "+00:00" arrives as " 00:00"
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise bad_request(f"The value '{raw}' is not valid for {name}.") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def entry_json(request: Request, org: OrgState, ev: AuditEvent, *,
               summary: list[AuditEvent] | None = None) -> dict[str, Any]:
    actor = org.by_storage_key(ev.actor_user_id)
    core = public_base(request, "core", org.name)
    data = dict(ev.data)
    details = ev.details
    if summary is not None:
        data["EventSummary"] = [_ts(e.timestamp) for e in summary]
        details = f"Accessed the audit log {len(summary)} times"
    return {
        "id": ev.id,
        "correlationId": ev.correlation_id,
        "activityId": ev.activity_id,
        "actorCUID": ev.actor_cuid,
        "actorUserId": ev.actor_user_id,
        "actorClientId": _ZERO_GUID,
        "actorUPN": ev.actor_upn,
        "authenticationMechanism": ev.authentication_mechanism,
        "timestamp": _ts(ev.timestamp),
        "scopeType": ev.scope_type,
        "scopeDisplayName": f"{ev.project_name} (Project)" if ev.project_id else f"{org.name} (Organization)",
        "scopeId": ev.scope_id,
        "projectId": ev.project_id,
        "projectName": ev.project_name,
        "ipAddress": None,
        "userAgent": "",
        "actionId": ev.action_id,
        "data": data,
        "details": details,
        "area": _AREA_FIX.get(ev.area, ev.area),
        "category": ev.category,
        "categoryDisplayName": ev.category.capitalize(),
        "actorDisplayName": ev.actor_display_name,
        "actorImageUrl": f"{core}/_apis/GraphProfile/MemberAvatars/{actor.descriptor}" if actor else None,
    }


def _entries(events: list[AuditEvent], aggregate: bool) -> list[tuple[tuple[int, str], AuditEvent,
                                                                       list[AuditEvent] | None]]:
    """(sort key, representative event, aggregated events or None), newest first."""
    out: list[tuple[tuple[int, str], AuditEvent, list[AuditEvent] | None]] = []
    groups: dict[tuple[str, str], list[AuditEvent]] = {}
    for ev in events:
        if aggregate and ev.action_id == ACCESS_LOG:
            groups.setdefault((ev.actor_user_id, ev.timestamp.date().isoformat()), []).append(ev)
        else:
            out.append((_sort_key(ev.id), ev, None))
    for members in groups.values():
        members.sort(key=lambda e: _sort_key(e.id))
        oldest = members[-1]
        out.append((_sort_key(oldest.id), oldest, members))
    out.sort(key=lambda t: t[0])
    return out


async def query_log(request: Request) -> Response:
    c = http.need(request, "vso.auditlog")
    org = http.org_of(request)
    require_api_version(request, preview_only=True)
    start, end = _parse_time(request, "startTime"), _parse_time(request, "endTime")
    batch = min(int_param(request, "batchSize", DEFAULT_BATCH, minimum=1), MAX_BATCH)
    skip_agg = bool_param(request, "skipAggregation")
    token = request.query_params.get("continuationToken") or None
    after: tuple[int, str] | None = None
    if token is not None:
        try:
            after = _sort_key(token)
        except ValueError:
            raise bad_request(f"The continuation token '{token}' is not valid.") from None
    w = http.world(request)
    with w.lock:
        if not org.auditing_enabled:
            return ado_error(403, "Auditing is not enabled for this organization. Turn on the 'Log Audit "
                                  "Events' policy in Organization settings to view the audit log.",
                             "AuditLogDisabledException",
                             type_name=f"{_AUDIT_TYPE}.AuditLogDisabledException, {_AUDIT_TYPE}")
        me = caller_identity(w, org, c)
        if me is None or not org.is_collection_admin(me.storage_key):
            who = me.display_name if me else (c.user_key or "")
            return ado_error(403, f"Access denied. {who} needs View audit log permissions to perform this "
                                  "action.", "InvalidAccessException")
        if token is None:
            org.record(ACCESS_LOG, "access",
                       {"Filter": {"StartTime": request.query_params.get("startTime"),
                                   "EndTime": request.query_params.get("endTime"),
                                   "ContinuationToken": None, "BatchSize": batch, "HasMore": None}},
                       "Accessed the audit log", actor_key=me.storage_key)
        events = [e for e in org.audit_window()
                  if (start is None or e.timestamp >= start) and (end is None or e.timestamp <= end)]
        rows = _entries(events, aggregate=not skip_agg)
        if after is not None:
            rows = [r for r in rows if r[0] > after]
        page = rows[:batch]
        body = {"decoratedAuditLogEntries": [entry_json(request, org, ev, summary=agg) for _, ev, agg in page],
                "continuationToken": page[-1][1].id if page else None,
                "hasMore": len(rows) > batch}
    return ado_json(body)


# Known actions (area, category, actionId). Group.* sit in the Security area as in the spec example.
ACTIONS: tuple[tuple[str, str, str], ...] = (
    ("Security", "modify", "Security.ModifyPermission"),
    ("Security", "modify", "Security.ResetPermission"),
    ("Security", "remove", "Security.RemovePermission"),
    ("Security", "modify", "Security.ResetAccessControlLists"),
    ("Security", "modify", "Security.ModifyAccessControlLists"),
    ("Security", "remove", "Security.RemoveAccessControlLists"),
    ("Security", "remove", "Security.RemoveIdentityACEs"),
    ("Security", "remove", "Security.RemoveAllAccessControlLists"),
    ("Security", "create", "Group.CreateGroups"),
    ("Security", "modify", "Group.UpdateGroups.Modify"),
    ("Security", "remove", "Group.UpdateGroups.Delete"),
    ("Security", "modify", "Group.UpdateGroupMembership.Add"),
    ("Security", "modify", "Group.UpdateGroupMembership.Remove"),
    ("Licensing", "create", "Licensing.Assigned"),
    ("Licensing", "modify", "Licensing.Modified"),
    ("Licensing", "remove", "Licensing.Removed"),
    ("Licensing", "create", "Licensing.GroupRuleCreated"),
    ("Licensing", "modify", "Licensing.GroupRuleModified"),
    ("Licensing", "remove", "Licensing.GroupRuleDeleted"),
    ("Project", "create", "Project.CreateQueued"),
    ("Project", "create", "Project.CreateCompleted"),
    ("Project", "create", "Project.CreateFailed"),
    ("Project", "remove", "Project.DeleteCompleted"),
    ("Project", "remove", "Project.SoftDeleteCompleted"),
    ("Project", "remove", "Project.HardDeleteCompleted"),
    ("Project", "modify", "Project.RestoreCompleted"),
    ("Project", "modify", "Project.UpdateRenameCompleted"),
    ("Project", "modify", "Project.UpdateVisibilityCompleted"),
    ("Token", "create", "Token.PatCreateEvent"),
    ("Token", "modify", "Token.PatUpdateEvent"),
    ("Token", "remove", "Token.PatRevokeEvent"),
    ("Token", "remove", "Token.PatExpiredEvent"),
    ("Auditing", "access", "AuditLog.AccessLog"),
    ("Auditing", "access", "AuditLog.DownloadLog"),
)


async def list_actions(request: Request) -> Response:
    http.need(request, "vso.auditlog")
    http.org_of(request)
    require_api_version(request, preview_only=True)
    area = (request.query_params.get("areaName") or "").strip().lower()
    value = [{"area": a, "category": cat, "actionId": aid} for a, cat, aid in ACTIONS
             if not area or a.lower() == area]
    return ado_json({"count": len(value), "value": value})


ROUTES: list[BaseRoute] = [
    route("/auditservice/{org}/_apis/audit/auditlog", query_log, ["GET"]),
    route("/auditservice/{org}/_apis/audit/actions", list_actions, ["GET"]),
]
