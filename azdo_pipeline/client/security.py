"""Security (core host): access control lists; team administrators come from the Identity namespace.

A team administrator is not a group membership but an access control entry: in the Identity
security namespace, on the token `{projectId}\\{teamId}` (the team's backing group), with the
identity permissions allowed (the UI grants all of them, 31; ManageMembership, 8, is the one that
lets an administrator change the team). One read of the namespace's ACLs gives every team's
administrators, where the team-members route needs one request per team. The route needs the
Security (Manage) scope; callers fall back to per-team reads without it.
"""

from __future__ import annotations

from typing import Any

from .errors import UnexpectedResponseError
from .scopes import SECURITY_MANAGE
from .shapes import ACLS, INT, STR, ShapeError, check_fields, opt
from .transport import Requester

SECURITY_VERSION = "7.1"
IDENTITY_NAMESPACE = "5a27515b-ccd7-42c9-84f1-54c998f03866"
MANAGE_MEMBERSHIP = 8  # GroupIdentityPermissions.ManageMembership
_ACE = {"allow": opt(INT), "deny": opt(INT), "descriptor": opt(STR)}


class SecurityService:
    def __init__(self, requester: Requester, base: str) -> None:
        self._r = requester
        self.base = base

    async def access_control_lists(self, namespace_id: str, *, token: str | None = None, recurse: bool = False,
                                   descriptors: list[str] | None = None) -> list[dict[str, Any]]:
        """ACLs of a namespace (all of them without a token), as the service returns them."""
        params: dict[str, Any] = {"api-version": SECURITY_VERSION}
        if token is not None:
            params["token"] = token
            params["recurse"] = "true" if recurse else "false"
        if descriptors:
            params["descriptors"] = ",".join(descriptors)
        reply = await self._r.request("GET", f"{self.base}/_apis/accesscontrollists/{namespace_id}",
                                      endpoint="GET accesscontrollists", scope=SECURITY_MANAGE, params=params,
                                      shape=ACLS)
        return list(reply.data["value"])

    async def team_administrators(self) -> dict[str, list[str]]:
        """Group id (lower case) -> legacy descriptors of the identities administering it.

        Every `{projectId}\\{groupId}` ACL whose entries allow ManageMembership without denying it;
        the caller keeps the group ids that back teams.
        """
        admins: dict[str, list[str]] = {}
        for acl in await self.access_control_lists(IDENTITY_NAMESPACE):
            parts = str(acl.get("token") or "").split("\\")
            if len(parts) != 2 or not parts[1]:
                continue
            aces = acl.get("acesDictionary") or {}
            for key, ace in aces.items():
                try:
                    if not isinstance(ace, dict):
                        raise ShapeError(f"access control entry {key!r} is not an object")
                    check_fields(ace, _ACE, f"access control entry {key!r}")
                except ShapeError as exc:
                    raise UnexpectedResponseError(
                        f"GET accesscontrollists: the answer is not what this route returns: {exc}",
                        endpoint="GET accesscontrollists") from None
                allow, deny = int(ace.get("allow") or 0), int(ace.get("deny") or 0)
                if allow & MANAGE_MEMBERSHIP and not deny & MANAGE_MEMBERSHIP:
                    admins.setdefault(parts[1].lower(), []).append(str(ace.get("descriptor") or key))
        return admins
