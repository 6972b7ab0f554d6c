"""Single-call membership reads and writes and subject look-ups, for provisioning.

`GraphService.add_membership` / `remove_membership` check and write in one go; provisioning needs
the steps apart (check, decide, write, and in a dry run only the URLs), so they are here as single
calls. Routes: learn.microsoft.com/rest/api/azure/devops/graph/memberships (HEAD = check, PUT = add,
DELETE = remove; the path is memberships/{subjectDescriptor}/{containerDescriptor}) and
learn.microsoft.com/rest/api/azure/devops/graph/subject-query/query.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from .client import AzureDevOpsClient
from .graph import GRAPH_VERSION
from .scopes import GRAPH_MANAGE, GRAPH_READ
from .transport import Requester

SUBJECT_QUERY_VERSION = "7.1-preview.1"


def _seg(value: str) -> str:
    return quote(value, safe="")


class MembershipWrites:
    """Membership edge calls of one organization (Graph, vssps host)."""

    def __init__(self, client: AzureDevOpsClient) -> None:
        self._r: Requester = client._r  # same package: the client's shared requester
        self.graph_base = client.urls.graph

    def edge_url(self, container: str, member: str) -> str:
        return f"{self.graph_base}/_apis/graph/memberships/{_seg(member)}/{_seg(container)}"

    async def exists(self, container: str, member: str) -> bool:
        """HEAD: True for a direct member, False for 404 (other statuses raise)."""
        reply = await self._r.request("HEAD", self.edge_url(container, member),
                                      endpoint="HEAD graph/memberships/{m}/{c}", scope=GRAPH_READ,
                                      params={"api-version": GRAPH_VERSION}, allow={404})
        return reply.status != 404

    async def put(self, container: str, member: str) -> None:
        """PUT: add the direct edge (idempotent on the service)."""
        await self._r.request("PUT", self.edge_url(container, member), endpoint="PUT graph/memberships/{m}/{c}",
                              scope=GRAPH_MANAGE, params={"api-version": GRAPH_VERSION})

    async def delete(self, container: str, member: str) -> bool:
        """DELETE: remove the direct edge; False when the service says it was not there (404)."""
        reply = await self._r.request("DELETE", self.edge_url(container, member),
                                      endpoint="DELETE graph/memberships/{m}/{c}", scope=GRAPH_MANAGE,
                                      params={"api-version": GRAPH_VERSION}, allow={404})
        return reply.status != 404

    def subject_query_url(self) -> str:
        return f"{self.graph_base}/_apis/graph/subjectquery"

    async def subject_query(self, query: str, kinds: tuple[str, ...] = ("User",)) -> list[dict[str, Any]]:
        """Prefix search over display name, mail, sign-in name (at most 100 hits; a read despite POST)."""
        reply = await self._r.request("POST", self.subject_query_url(), endpoint="POST graph/subjectquery",
                                      scope=GRAPH_READ, params={"api-version": SUBJECT_QUERY_VERSION},
                                      json_body={"query": query, "subjectKind": list(kinds)}, idempotent=True)
        return [s for s in ((reply.data or {}).get("value") or []) if isinstance(s, dict)]
