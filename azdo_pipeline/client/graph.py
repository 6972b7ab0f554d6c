"""Graph (vssps): users, groups, service principals, memberships, storage keys and descriptors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import pyarrow as pa

from .arrow_pages import GRAPH_USERS_PAGE
from .paging import token_pages
from .scopes import GRAPH_MANAGE, GRAPH_READ
from .shapes import (
    GRAPH_GROUPS,
    GRAPH_KEY,
    GRAPH_LOOKUP,
    GRAPH_MEMBERSHIPS,
    GRAPH_SERVICE_PRINCIPALS,
    GRAPH_SUBJECT,
    GRAPH_USERS,
    Shape,
)
from .transport import Requester

GRAPH_VERSION = "7.1-preview.1"
KEYS_VERSION = "7.1"  # descriptors / storagekeys are not preview in 7.1


def _seg(value: str) -> str:
    return quote(value, safe="")


class GraphService:
    def __init__(self, requester: Requester, base: str) -> None:
        self._r = requester
        self.base = base

    async def _list(self, path: str, endpoint: str, params: dict[str, Any],
                    shape: Shape) -> AsyncIterator[list[dict[str, Any]]]:
        """Graph lists: stop only when X-MS-ContinuationToken is gone (short/empty pages are normal)."""
        async def fetch(token: str | None) -> Any:
            q = {**params, "api-version": GRAPH_VERSION}
            if token:
                q["continuationToken"] = token
            return await self._r.request("GET", f"{self.base}/_apis/graph/{path}", endpoint=endpoint,
                                         scope=GRAPH_READ, params=q, shape=shape)

        def split(reply: Any) -> tuple[list[dict[str, Any]], str | None]:
            return list(reply.data["value"]), reply.headers.get("x-ms-continuationtoken") or None

        async for page in token_pages(fetch, split, endpoint):
            yield page

    def iter_users(self, subject_types: list[str] | None = None) -> AsyncIterator[list[dict[str, Any]]]:
        params = {"subjectTypes": ",".join(subject_types)} if subject_types else {}
        return self._list("users", "GET graph/users", params, GRAPH_USERS)

    async def iter_user_tables(self) -> AsyncIterator[pa.Table]:
        """Graph users as Arrow pages (arrow_pages.GRAPH_USER_PATHS columns), decoded off the loop."""
        async def fetch(token: str | None) -> Any:
            q: dict[str, Any] = {"api-version": GRAPH_VERSION}
            if token:
                q["continuationToken"] = token
            return await self._r.request("GET", f"{self.base}/_apis/graph/users", endpoint="GET graph/users",
                                         scope=GRAPH_READ, params=q, decoder=GRAPH_USERS_PAGE,
                                         shape=GRAPH_USERS)

        def split(reply: Any) -> tuple[Any, str | None]:
            return reply.data.table, reply.headers.get("x-ms-continuationtoken") or None

        async for table in token_pages(fetch, split, "GET graph/users"):
            yield table

    def iter_groups(self, scope_descriptor: str | None = None,
                    subject_types: list[str] | None = None) -> AsyncIterator[list[dict[str, Any]]]:
        params: dict[str, Any] = {}
        if scope_descriptor:
            params["scopeDescriptor"] = scope_descriptor
        if subject_types:
            params["subjectTypes"] = ",".join(subject_types)
        return self._list("groups", "GET graph/groups", params, GRAPH_GROUPS)

    def iter_service_principals(self) -> AsyncIterator[list[dict[str, Any]]]:
        return self._list("serviceprincipals", "GET graph/serviceprincipals", {}, GRAPH_SERVICE_PRINCIPALS)

    async def get_group(self, descriptor: str) -> dict[str, Any]:
        reply = await self._r.request("GET", f"{self.base}/_apis/graph/groups/{_seg(descriptor)}",
                                      endpoint="GET graph/groups/{d}", scope=GRAPH_READ,
                                      params={"api-version": GRAPH_VERSION}, shape=GRAPH_SUBJECT)
        return dict(reply.data)

    async def get_user(self, descriptor: str) -> dict[str, Any]:
        reply = await self._r.request("GET", f"{self.base}/_apis/graph/users/{_seg(descriptor)}",
                                      endpoint="GET graph/users/{d}", scope=GRAPH_READ,
                                      params={"api-version": GRAPH_VERSION}, shape=GRAPH_SUBJECT)
        return dict(reply.data)

    async def lookup_subjects(self, descriptors: list[str]) -> dict[str, dict[str, Any] | None]:
        """Resolve descriptors in batches of 500 (the server limit); unknown ones map to None."""
        out: dict[str, dict[str, Any] | None] = {}
        for i in range(0, len(descriptors), 500):
            chunk = descriptors[i:i + 500]
            reply = await self._r.request(
                "POST", f"{self.base}/_apis/graph/subjectlookup", endpoint="POST graph/subjectlookup",
                scope=GRAPH_READ, params={"api-version": GRAPH_VERSION}, idempotent=True,  # a read
                json_body={"lookupKeys": [{"descriptor": d} for d in chunk]}, shape=GRAPH_LOOKUP)
            value = reply.data["value"]
            for d in chunk:
                out[d] = value.get(d)
        return out

    async def query_subjects(self, query: str, kinds: list[str],
                             scope_descriptor: str | None = None) -> list[dict[str, Any]]:
        """Subjects whose names start with `query` (POST graph/subjectquery; kinds: User, Group)."""
        body: dict[str, Any] = {"query": query, "subjectKind": kinds}
        if scope_descriptor:
            body["scopeDescriptor"] = scope_descriptor
        reply = await self._r.request("POST", f"{self.base}/_apis/graph/subjectquery",
                                      endpoint="POST graph/subjectquery", scope=GRAPH_READ,
                                      params={"api-version": GRAPH_VERSION}, idempotent=True, json_body=body)
        return [s for s in (reply.data or {}).get("value") or [] if isinstance(s, dict)]

    async def list_memberships(self, descriptor: str, direction: str = "down") -> list[dict[str, Any]]:
        """Direct memberships of `descriptor` (not paged; depth 1 is the only supported depth)."""
        if direction not in ("up", "down"):
            raise ValueError("direction must be 'up' or 'down'")
        reply = await self._r.request(
            "GET", f"{self.base}/_apis/graph/Memberships/{_seg(descriptor)}",
            endpoint="GET graph/memberships/{d}", scope=GRAPH_READ,
            params={"direction": direction, "depth": 1, "api-version": GRAPH_VERSION}, shape=GRAPH_MEMBERSHIPS)
        return list(reply.data["value"])

    def _edge(self, container: str, member: str) -> str:
        # The route is memberships/{subject}/{container}: the member comes first.
        return f"{self.base}/_apis/graph/memberships/{_seg(member)}/{_seg(container)}"

    async def has_membership(self, container: str, member: str) -> bool:
        reply = await self._r.request("HEAD", self._edge(container, member),
                                      endpoint="HEAD graph/memberships/{m}/{c}", scope=GRAPH_READ,
                                      params={"api-version": GRAPH_VERSION}, allow={404})
        return reply.status != 404

    async def add_membership(self, container: str, member: str) -> bool:
        """Make `member` a direct member of `container`; False if it already was (PUT is idempotent)."""
        if await self.has_membership(container, member):
            return False
        await self._r.request("PUT", self._edge(container, member),
                              endpoint="PUT graph/memberships/{m}/{c}", scope=GRAPH_MANAGE,
                              params={"api-version": GRAPH_VERSION})
        return True

    async def remove_membership(self, container: str, member: str) -> bool:
        """Remove the direct edge; False if it was not there (a 404 on DELETE means already gone)."""
        if not await self.has_membership(container, member):
            return False
        reply = await self._r.request("DELETE", self._edge(container, member),
                                      endpoint="DELETE graph/memberships/{m}/{c}", scope=GRAPH_MANAGE,
                                      params={"api-version": GRAPH_VERSION}, allow={404})
        return reply.status != 404

    async def storage_key(self, descriptor: str) -> str:
        reply = await self._r.request("GET", f"{self.base}/_apis/graph/storagekeys/{_seg(descriptor)}",
                                      endpoint="GET graph/storagekeys/{d}", scope=GRAPH_READ,
                                      params={"api-version": KEYS_VERSION}, shape=GRAPH_KEY)
        return str(reply.data["value"])

    async def descriptor_of(self, storage_key: str) -> str:
        reply = await self._r.request("GET", f"{self.base}/_apis/graph/descriptors/{_seg(storage_key)}",
                                      endpoint="GET graph/descriptors/{id}", scope=GRAPH_READ,
                                      params={"api-version": KEYS_VERSION}, shape=GRAPH_KEY)
        return str(reply.data["value"])
