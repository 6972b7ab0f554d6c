"""The simulator's admin API under `/_sim/` (not a real Azure DevOps route; no auth, loopback only).

    GET    /_sim/orgs                       organizations with sizes; POST {name, size, seed} adds one
    GET    /_sim/{org}/export[?tables=a,b]  ground truth tables (truth.py), JSON
    POST   /_sim/{org}/mutations            [op, …] → mutations.apply_ops (scripted changes)
    POST   /_sim/{org}/mutations/random     {count, seed} → mutations.random_ops + apply_ops
    PUT    /_sim/{org}/settings             {auditing_enabled}
    GET    /_sim/counters                   request counts per route template; DELETE resets
    GET    /_sim/faults                     fault configuration (faults.py); PUT replaces, DELETE clears,
    POST   /_sim/faults/rules               appends one scripted rule
    GET    /_sim/clock                      {now}; POST /_sim/clock/advance {seconds}
    POST   /_sim/pats                       {org|null, user, scopes[], expires_in_seconds} → {token, …}
    PUT    /_sim/entra                      {propagation_delay_seconds}
"""

from __future__ import annotations

import importlib
import json
import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .faults import Faults, faults_of
from .http import FULL_ACCESS, world
from .state import OrgState, SimError, World, iso


def _json_default(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.astimezone(UTC).isoformat()
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, set | frozenset):
        return sorted(v)
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


def ok(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, default=_json_default), status_code=status,
                    media_type="application/json")


def bad(message: str, status: int = 400) -> Response:
    return JSONResponse({"error": message}, status_code=status)


async def _body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise SimError("invalid", f"invalid JSON body: {e}") from None


def _org(w: World, name: str) -> OrgState:
    org = w.org(name)
    if org is None:
        raise SimError("unknown_org", f"unknown organization {name}")
    return org


def org_summary(org: OrgState) -> dict[str, Any]:
    return {"name": org.name, "id": org.id, "tenant_id": org.tenant_id, "owner_key": org.owner_key,
            "created": iso(org.created), "auditing_enabled": org.auditing_enabled,
            "users": len(org.user_order), "groups": len(org.group_order),
            "service_principals": len(org.sp_order), "memberships": org.membership_count(),
            "projects": len(org.projects), "teams": len(org.teams), "audit_events": len(org.audit)}


async def orgs(request: Request) -> Response:
    w = world(request)
    if request.method == "POST":
        return await _create_org(request, w)
    with w.lock:
        return ok({"count": len(w.orgs), "value": [org_summary(o) for o in w.orgs.values()]})


async def _create_org(request: Request, w: World) -> Response:
    """POST /_sim/orgs {name, size="tiny", seed=0}: one more generated organization (same tenant)."""
    from .generator import generate

    body = await _body(request)
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        return bad("'name' is required")
    with w.lock:
        if w.org(name) is not None:
            return bad(f"organization {name} already exists", 409)
        try:
            org = generate(w, name, size=str(body.get("size", "tiny")), seed=int(body.get("seed", 0)))
        except ValueError as e:
            return bad(str(e))
        return ok(org_summary(org), 201)


async def export(request: Request) -> Response:
    from .truth import ground_truth

    w = world(request)
    with w.lock:
        org = _org(w, request.path_params["org"])
        tables = ground_truth(org)
    wanted = request.query_params.get("tables")
    if wanted:
        names = [t.strip() for t in wanted.split(",") if t.strip()]
        unknown = [t for t in names if t not in tables]
        if unknown:
            return bad(f"unknown tables: {', '.join(unknown)}; known: {', '.join(tables)}")
        tables = {t: tables[t] for t in names}
    return ok(tables)


def _mutations_module() -> Any | None:
    try:
        return importlib.import_module("azdo_sim.mutations")
    except ModuleNotFoundError as e:
        if e.name and e.name.endswith("mutations"):
            return None
        raise


async def mutations(request: Request) -> Response:
    mod = _mutations_module()
    if mod is None or not hasattr(mod, "apply_ops"):
        return bad("mutations are not available (azdo_sim.mutations is missing)", 501)
    body = await _body(request)
    ops = body.get("ops") if isinstance(body, dict) else body
    seed = body.get("seed", 0) if isinstance(body, dict) else 0
    if not isinstance(ops, list):
        return bad("expected a JSON list of operations (or {\"ops\": [...]})")
    try:
        ops = [_parse_op(op) for op in ops]
    except (TypeError, ValueError) as e:
        return bad(f"bad operation: {e}")
    w = world(request)
    with w.lock:
        org = _org(w, request.path_params["org"])
        result = mod.apply_ops(org, ops, random.Random(seed))
    return ok({"applied": len(ops), "result": result})


def _parse_op(op: Any) -> dict[str, Any]:
    """JSON ops carry `at` as ISO 8601 text; mutations.apply_ops compares it with the clock."""
    if not isinstance(op, dict):
        raise TypeError(f"each operation must be an object, got {type(op).__name__}")
    at = op.get("at")
    if isinstance(at, str):
        ts = datetime.fromisoformat(at.replace("Z", "+00:00"))
        op = {**op, "at": ts if ts.tzinfo else ts.replace(tzinfo=UTC)}
    return op


async def mutations_random(request: Request) -> Response:
    mod = _mutations_module()
    if mod is None or not hasattr(mod, "random_ops") or not hasattr(mod, "apply_ops"):
        return bad("random mutations are not available (azdo_sim.mutations is missing)", 501)
    body = await _body(request)
    count = int(body.get("count", 10))
    rng = random.Random(int(body.get("seed", 0)))
    w = world(request)
    with w.lock:
        org = _org(w, request.path_params["org"])
        ops = mod.random_ops(org, rng, count)
        result = mod.apply_ops(org, ops, rng)
    return ok({"applied": len(ops), "ops": ops, "result": result})


async def settings(request: Request) -> Response:
    body = await _body(request)
    w = world(request)
    with w.lock:
        org = _org(w, request.path_params["org"])
        if "auditing_enabled" in body:
            org.auditing_enabled = bool(body["auditing_enabled"])
        return ok({"auditing_enabled": org.auditing_enabled})


async def counters(request: Request) -> Response:
    w = world(request)
    with w.lock:
        if request.method == "DELETE":
            w.request_counts.clear()
        counts = dict(sorted(w.request_counts.items()))
    return ok({"total": sum(counts.values()), "counts": counts})


async def faults(request: Request) -> Response:
    w = world(request)
    f = faults_of(w)
    if request.method == "PUT":
        body = await _body(request)
        try:
            Faults(body)  # validate before touching the live object
        except (ValueError, TypeError, KeyError) as e:
            return bad(f"invalid fault configuration: {e}")
        f.configure(body)
    elif request.method == "DELETE":
        f.configure({})
    with w.lock:
        now = w.clock.now().timestamp()
    return ok({**f.to_json(), "usage": f.usage_snapshot(now)})


async def fault_rule(request: Request) -> Response:
    body = await _body(request)
    try:
        faults_of(world(request)).add_rule(body)
    except (ValueError, TypeError, KeyError) as e:
        return bad(f"invalid fault rule: {e}")
    return ok(faults_of(world(request)).to_json(), 201)


async def clock(request: Request) -> Response:
    w = world(request)
    with w.lock:
        return ok({"now": iso(w.clock.now()), "epoch": w.clock.now().timestamp()})


async def clock_advance(request: Request) -> Response:
    body = await _body(request)
    try:
        seconds = float(body.get("seconds", 0))
    except (TypeError, ValueError):
        return bad("seconds must be a number")
    if seconds < 0:
        return bad("the clock only moves forward")
    w = world(request)
    with w.lock:
        w.clock.advance(timedelta(seconds=seconds))
        w.settle()
        return ok({"now": iso(w.clock.now()), "epoch": w.clock.now().timestamp()})


def _find_user_key(w: World, org: OrgState | None, user: str | None) -> str | None:
    orgs = [org] if org else list(w.orgs.values())
    if not user:
        return orgs[0].owner_key if orgs and orgs[0].owner_key else None
    for o in orgs:
        if o.by_storage_key(user):
            return user
        for ident in o.users():
            if ident.principal_name.lower() == user.lower():
                return ident.storage_key
        for ident in o.service_principals():
            if user.lower() in (ident.application_id.lower(), ident.display_name.lower()):
                return ident.storage_key
    return None


async def pats(request: Request) -> Response:
    body = await _body(request)
    w = world(request)
    with w.lock:
        org_name = body.get("org")
        org = _org(w, org_name) if org_name else None
        key = _find_user_key(w, org, body.get("user"))
        if key is None:
            return bad(f"unknown user {body.get('user')!r}", 404)
        scopes = body.get("scopes") or [FULL_ACCESS]
        if isinstance(scopes, str):
            scopes = scopes.split()
        lifetime = timedelta(seconds=float(body.get("expires_in_seconds", 30 * 86400)))
        pat = w.issue_pat(org.name if org else None, key, set(scopes), lifetime, token=body.get("token"))
    return ok({"token": pat.token, "user_key": pat.user_key, "org": pat.org, "scopes": sorted(pat.scopes),
               "valid_to": iso(pat.valid_to)}, 201)


async def entra(request: Request) -> Response:
    body = await _body(request)
    w = world(request)
    with w.lock:
        if "propagation_delay_seconds" in body:
            w.propagation_delay = timedelta(seconds=float(body["propagation_delay_seconds"]))
        return ok({"propagation_delay_seconds": w.propagation_delay.total_seconds(),
                   "pending": len(w.pending_entra)})


ROUTES: list[BaseRoute] = [
    Route("/_sim/orgs", orgs, methods=["GET", "POST"]),
    Route("/_sim/counters", counters, methods=["GET", "DELETE"]),
    Route("/_sim/faults", faults, methods=["GET", "PUT", "DELETE"]),
    Route("/_sim/faults/rules", fault_rule, methods=["POST"]),
    Route("/_sim/clock", clock, methods=["GET"]),
    Route("/_sim/clock/advance", clock_advance, methods=["POST"]),
    Route("/_sim/pats", pats, methods=["POST"]),
    Route("/_sim/entra", entra, methods=["GET", "PUT"]),
    Route("/_sim/{org}/export", export, methods=["GET"]),
    Route("/_sim/{org}/mutations", mutations, methods=["POST"]),
    Route("/_sim/{org}/mutations/random", mutations_random, methods=["POST"]),
    Route("/_sim/{org}/settings", settings, methods=["GET", "PUT"]),
]
