"""Accounts and profile on app.vssps (`{base}/app.vssps/_apis/...`, scope vso.profile, api-version 7.1).

- `GET accounts?memberId=…|ownerId=…`: `{count, value:[{accountId, accountUri, accountName, properties}]}`
  (account/7.1 examples), sorted by name. memberId: the organizations where the caller's person is
  a user; ownerId: those the person owns. A person is matched across organizations by storage key,
  then by principal name (each simulated organization keys its identities separately). Asking about
  another person → 403 (UNVERIFIED; the real service only answers for the caller). Neither id → 400.
- `GET profile/profiles/me` (or the caller's own id): `{displayName, publicAlias, emailAddress,
  coreRevision, timeStamp, id, revision}`; `id` is the memberId to pass to `accounts`.
- Both refuse a PAT bound to one organization with 401 (reference §1.1: app.vssps needs an
  all-organizations PAT or OAuth).
"""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from . import http
from .http import AuthFailure, ado_error, ado_json, public_base
from .routes_core import bad_request, find_person, require_api_version, route, same_person
from .state import Identity, World, dotnet_ticks

_GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _need_global(request: Request) -> Identity:
    c = http.need(request, "vso.profile")
    if c.org is not None:
        # a PAT scoped to one organization cannot call app.vssps
        raise AuthFailure(f"TF400813: The user '{c.user_key}' is not authorized to access this resource.")
    w = http.world(request)
    with w.lock:
        person = find_person(w, c.user_key or "")
    if person is None:
        raise AuthFailure(f"TF400813: The user '{c.user_key}' is not authorized to access this resource.")
    return person


def _is_same(world: World, a: Identity, b_key: str) -> Identity | None:
    """The person with storage key `b_key` when it is `a`'s person, else None."""
    b = find_person(world, b_key)
    if b is None:
        return None
    if b.storage_key == a.storage_key:
        return b
    if a.subject_kind == "user" and a.principal_name.lower() == b.principal_name.lower():
        return b
    return None


async def list_accounts(request: Request) -> Response:
    person = _need_global(request)
    require_api_version(request)
    member_id = (request.query_params.get("memberId") or "").strip()
    owner_id = (request.query_params.get("ownerId") or "").strip()
    if not member_id and not owner_id:
        raise bad_request("One of the following parameters is required: ownerId, memberId.")
    for raw in (member_id, owner_id):
        if raw and not _GUID_RE.match(raw):
            raise bad_request(f"The value '{raw}' is not valid for a GUID parameter.")
    w = http.world(request)
    value: list[dict[str, Any]] = []
    with w.lock:
        for raw in (member_id, owner_id):
            if raw and _is_same(w, person, raw.lower()) is None:
                return ado_error(403, f"Access denied: {person.display_name} can only list their own "
                                      "accounts.", "InvalidAccessException")
        for org in sorted(w.orgs.values(), key=lambda o: o.name.lower()):
            me = same_person(org, person)
            if me is None:
                continue
            if owner_id and org.owner_key != me.storage_key:
                continue
            value.append({"accountId": org.id,
                          "accountUri": public_base(request, "vssps", org.name) + "/",
                          "accountName": org.name, "properties": {}})
    return ado_json({"count": len(value), "value": value})


async def get_profile(request: Request) -> Response:
    person = _need_global(request)
    require_api_version(request)
    which = request.path_params["profile_id"]
    w = http.world(request)
    with w.lock:
        if which.lower() != "me" and _is_same(w, person, which.lower()) is None:
            return ado_error(404, f"Profile with id {which} was not found.", "ProfileNotFoundException",
                             type_name="Microsoft.VisualStudio.Services.Profile.ProfileNotFoundException, "
                                       "Microsoft.VisualStudio.Services.WebApi")
        body = {
            "displayName": person.display_name,
            "publicAlias": person.storage_key,
            "emailAddress": person.mail_address or person.principal_name,
            "coreRevision": 1,
            "timeStamp": person.created.isoformat(timespec="microseconds"),
            "id": person.storage_key,
            "revision": dotnet_ticks(person.created) % 1_000_000_000,
        }
    return ado_json(body)


ROUTES: list[BaseRoute] = [
    route("/app.vssps/_apis/accounts", list_accounts, ["GET"]),
    route("/app.vssps/_apis/profile/profiles/{profile_id}", get_profile, ["GET"]),
]
