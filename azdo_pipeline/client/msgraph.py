"""Microsoft Graph: Entra group membership writes (Entra group provisioning, OAuth only).

Uses an application token (client credentials) of the same Entra app; it needs the application
permission GroupMember.ReadWrite.All with admin consent.
"""

from __future__ import annotations

import random
from urllib.parse import quote

import httpx

from .errors import AzureDevOpsError, PermissionDeniedError
from .transport import ClientSettings, Clock, Credential, Requester, RequestStats, Scope

GRAPH_PERMISSION = Scope("GroupMember.ReadWrite.All", "application permission, admin consent")
DEFAULT_GRAPH_HOST = "https://graph.microsoft.com"


class MicrosoftGraphClient:
    def __init__(self, credential: Credential, *, graph_host: str = DEFAULT_GRAPH_HOST,
                 base_url: str | None = None, settings: ClientSettings = ClientSettings(),
                 transport: httpx.AsyncBaseTransport | None = None, clock: Clock | None = None,
                 rng: random.Random | None = None) -> None:
        """graph_host: the cloud's Graph host (token scope, @odata.id); base_url: where requests go
        (default: graph_host; a different one only for a proxy or the simulator)."""
        self.graph_host = graph_host.rstrip("/")
        self.base_url = (base_url or graph_host).rstrip("/")
        self._r = Requester(credential, settings, transport=transport, clock=clock, rng=rng)

    @property
    def stats(self) -> RequestStats:
        return self._r.stats

    async def aclose(self) -> None:
        await self._r.aclose()

    async def __aenter__(self) -> MicrosoftGraphClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _denied(self, exc: PermissionDeniedError, action: str) -> PermissionDeniedError:
        return PermissionDeniedError(
            f"Microsoft Graph refused to {action}: the Entra app needs the application permission "
            f"GroupMember.ReadWrite.All with admin consent (and a permission for the member's type, "
            f"e.g. User.ReadWrite.All for users). Server said: {exc.message}",
            status=exc.status, type_key=exc.type_key, url=exc.url, endpoint=exc.endpoint)

    async def add_group_member(self, group_id: str, member_id: str) -> bool:
        """POST /groups/{id}/members/$ref; False when the object was already a member (400)."""
        url = f"{self.base_url}/v1.0/groups/{quote(group_id, safe='')}/members/$ref"
        body = {"@odata.id": f"{self.graph_host}/v1.0/directoryObjects/{member_id}"}
        try:
            # Adding twice is harmless (400 "already exist"), so a retry after a dropped answer is safe.
            await self._r.request("POST", url, endpoint="POST msgraph groups/{g}/members/$ref",
                                  scope=GRAPH_PERMISSION, json_body=body, idempotent=True)
        except PermissionDeniedError as exc:
            raise self._denied(exc, "add a group member") from None
        except AzureDevOpsError as exc:
            if exc.status == 400 and "already exist" in exc.message:
                return False
            raise
        return True

    async def remove_group_member(self, group_id: str, member_id: str) -> bool:
        """DELETE /groups/{id}/members/{member}/$ref; False when it was not a member (404)."""
        url = (f"{self.base_url}/v1.0/groups/{quote(group_id, safe='')}/members/"
               f"{quote(member_id, safe='')}/$ref")
        try:
            reply = await self._r.request("DELETE", url, endpoint="DELETE msgraph groups/{g}/members/{m}/$ref",
                                          scope=GRAPH_PERMISSION, allow={404})
        except PermissionDeniedError as exc:
            raise self._denied(exc, "remove a group member") from None
        return reply.status != 404
