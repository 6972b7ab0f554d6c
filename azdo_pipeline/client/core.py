"""Core (dev.azure.com): projects, teams and team members."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from .errors import AzureDevOpsError
from .scopes import PROJECT_READ
from .shapes import PROJECT_TEAMS, PROJECTS, TEAM_MEMBERS, TEAMS, Shape
from .transport import Requester

CORE_VERSION = "7.1"
ALL_TEAMS_VERSION = "7.1-preview.3"  # GET _apis/teams is preview in 7.1
PAGE = 100  # the documented default $top; a page shorter than this is the last one


class CoreService:
    page_size = PAGE

    def __init__(self, requester: Requester, base: str) -> None:
        self._r = requester
        self.base = base

    async def iter_projects(self, state_filter: str | None = None) -> AsyncIterator[list[dict[str, Any]]]:
        """Projects, paged by the integer X-MS-ContinuationToken header (server default: wellFormed)."""
        token: str | None = None
        seen: set[str] = set()
        while True:
            params: dict[str, Any] = {"$top": self.page_size, "api-version": CORE_VERSION}
            if state_filter:
                params["stateFilter"] = state_filter
            if token:
                params["continuationToken"] = token
            reply = await self._r.request("GET", f"{self.base}/_apis/projects", endpoint="GET projects",
                                          scope=PROJECT_READ, params=params, shape=PROJECTS)
            yield list(reply.data["value"])  # the shape is checked: a list of objects with an id
            token = reply.headers.get("x-ms-continuationtoken") or None
            if not token:
                return
            if token in seen:
                raise AzureDevOpsError("GET projects: the server repeated a continuation token",
                                       endpoint="GET projects")
            seen.add(token)

    async def get_project(self, project_id: str) -> dict[str, Any] | None:
        """One project by id; None when it does not exist (deleted)."""
        reply = await self._r.request("GET", f"{self.base}/_apis/projects/{quote(project_id, safe='')}",
                                      endpoint="GET projects/{p}", scope=PROJECT_READ,
                                      params={"api-version": CORE_VERSION}, allow={404})
        return reply.data if reply.status != 404 and isinstance(reply.data, dict) else None

    async def _skip_pages(self, url: str, endpoint: str, version: str, shape: Shape,
                          extra: dict[str, Any] | None = None) -> AsyncIterator[list[dict[str, Any]]]:
        """$top/$skip paging until a short page (no token exists; never stop at 100 items)."""
        skip = 0
        while True:
            params = {**(extra or {}), "$top": self.page_size, "$skip": skip, "api-version": version}
            reply = await self._r.request("GET", url, endpoint=endpoint, scope=PROJECT_READ, params=params,
                                          shape=shape)
            data = reply.data
            page = list(data["value"] if isinstance(data, dict) else data)  # checked by `shape`
            if page:
                yield page
            if len(page) < self.page_size:
                return
            skip += len(page)

    def iter_teams(self) -> AsyncIterator[list[dict[str, Any]]]:
        """Every team of the organization (all projects)."""
        return self._skip_pages(f"{self.base}/_apis/teams", "GET teams", ALL_TEAMS_VERSION, TEAMS)

    def iter_project_teams(self, project_id: str) -> AsyncIterator[list[dict[str, Any]]]:
        return self._skip_pages(f"{self.base}/_apis/projects/{quote(project_id, safe='')}/teams",
                                "GET projects/{p}/teams", CORE_VERSION,
                                PROJECT_TEAMS)

    def iter_team_members(self, project_id: str, team_id: str) -> AsyncIterator[list[dict[str, Any]]]:
        """Direct members of a team: [{isTeamAdmin, identity{id, descriptor, …}}]."""
        url = (f"{self.base}/_apis/projects/{quote(project_id, safe='')}/teams/"
               f"{quote(team_id, safe='')}/members")
        return self._skip_pages(url, "GET projects/{p}/teams/{t}/members", CORE_VERSION, TEAM_MEMBERS)
