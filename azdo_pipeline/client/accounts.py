"""Accounts (app.vssps): the organizations the signed-in identity belongs to."""

from __future__ import annotations

from typing import Any

from .discovery import AREA_IDS, global_area_url
from .errors import NotFoundError
from .scopes import PROFILE_READ
from .shapes import ACCOUNTS, PROFILE
from .transport import Requester

ACCOUNTS_VERSION = "7.1"
PROFILE_VERSION = "7.1"


class AccountsService:
    def __init__(self, requester: Requester, base: str, org_url: str = "") -> None:
        self._r = requester
        self.base = base  # https://app.vssps.visualstudio.com (profile and accounts share it); "" = look up
        self._org_url = org_url

    async def _base(self) -> str:
        if not self.base:
            found = await global_area_url(self._r, self._org_url, "accounts")
            if not found:
                raise NotFoundError("the organization does not advertise the Accounts service (resource area "
                                    f"{AREA_IDS['accounts']}); organizations cannot be listed here",
                                    endpoint="GET resourceAreas/{id}")
            self.base = found
        return self.base

    async def my_profile(self) -> dict[str, Any]:
        base = await self._base()
        reply = await self._r.request("GET", f"{base}/_apis/profile/profiles/me",
                                      endpoint="GET profile/profiles/me", scope=PROFILE_READ,
                                      params={"api-version": PROFILE_VERSION}, shape=PROFILE)
        return dict(reply.data)

    async def list_organizations(self, member_id: str | None = None) -> list[dict[str, Any]]:
        """[{accountId, accountName, accountUri, …}] for `member_id` (default: the caller's profile id)."""
        if member_id is None:
            member_id = str((await self.my_profile()).get("id") or "")
        base = await self._base()
        reply = await self._r.request("GET", f"{base}/_apis/accounts", endpoint="GET accounts",
                                      scope=PROFILE_READ,
                                      params={"memberId": member_id, "api-version": ACCOUNTS_VERSION},
                                      shape=ACCOUNTS)
        data = reply.data
        return list(data["value"] if isinstance(data, dict) else data)
