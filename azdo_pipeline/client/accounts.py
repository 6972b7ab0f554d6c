"""Accounts (app.vssps): the organizations the signed-in identity belongs to."""

from __future__ import annotations

from .scopes import PROFILE_READ
from .transport import Requester

ACCOUNTS_VERSION = "7.1"
PROFILE_VERSION = "7.1"


class AccountsService:
    def __init__(self, requester: Requester, base: str) -> None:
        self._r = requester
        self.base = base  # https://app.vssps.visualstudio.com (profile and accounts share it)

    async def my_profile(self) -> dict:
        reply = await self._r.request("GET", f"{self.base}/_apis/profile/profiles/me",
                                      endpoint="GET profile/profiles/me", scope=PROFILE_READ,
                                      params={"api-version": PROFILE_VERSION})
        return reply.data or {}

    async def list_organizations(self, member_id: str | None = None) -> list[dict]:
        """[{accountId, accountName, accountUri, …}] for `member_id` (default: the caller's profile id)."""
        if member_id is None:
            member_id = str((await self.my_profile()).get("id") or "")
        reply = await self._r.request("GET", f"{self.base}/_apis/accounts", endpoint="GET accounts",
                                      scope=PROFILE_READ,
                                      params={"memberId": member_id, "api-version": ACCOUNTS_VERSION})
        data = reply.data
        if isinstance(data, dict):
            data = data.get("value")
        return list(data or [])
