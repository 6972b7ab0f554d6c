"""What a full sync reads from: the parts of azdo_pipeline.client.AzureDevOpsClient it uses.

Structural types (typing.Protocol), so the sync names exactly the reads it depends on; the real
client satisfies them (checked statically at the bottom of this module). Members are read-only
properties so a service may be any subtype of what is asked for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa

from ..client.arrow_pages import PageDecoder
from ..client.transport import ClientSettings, RequestStats

Json = dict[str, Any]


class GraphReads(Protocol):
    def iter_user_tables(self) -> AsyncIterator[pa.Table]: ...

    def iter_groups(self) -> AsyncIterator[list[Json]]: ...

    def iter_service_principals(self) -> AsyncIterator[list[Json]]: ...


class CoreReads(Protocol):
    def iter_projects(self) -> AsyncIterator[list[Json]]: ...

    def iter_teams(self) -> AsyncIterator[list[Json]]: ...

    def iter_team_members(self, project_id: str, team_id: str) -> AsyncIterator[list[Json]]: ...


class EntitlementReads(Protocol):
    def iter_user_entitlement_tables(self) -> AsyncIterator[pa.Table]: ...

    @property
    def total_count(self) -> int | None:
        """The last full read's `totalCount`; None when the list gave none."""


class AccountReads(Protocol):
    async def list_organizations(self) -> list[Json]: ...


class IdentityReads(Protocol):
    async def read_many(self, *, descriptors: list[str] | None = None,
                        decoder: PageDecoder | None = None) -> list[Json]: ...


class SecurityReads(Protocol):
    async def team_administrators(self) -> dict[str, list[str]]: ...


class SyncClient(Protocol):
    """The reads of a full sync; azdo_pipeline.client.AzureDevOpsClient is one."""

    @property
    def graph(self) -> GraphReads: ...

    @property
    def core(self) -> CoreReads: ...

    @property
    def entitlements(self) -> EntitlementReads: ...

    @property
    def accounts(self) -> AccountReads: ...

    @property
    def identities(self) -> IdentityReads: ...

    @property
    def security(self) -> SecurityReads: ...

    @property
    def stats(self) -> RequestStats: ...

    @property
    def settings(self) -> ClientSettings: ...

    @property
    def member_keys(self) -> dict[str, str]:
        """Storage key (lower case) -> subject descriptor of every member the last memberships() resolved."""

    @property
    def unresolved_member_ids(self) -> int:
        """Member ids the last memberships() read could not resolve to a subject."""

    def memberships(self, group_descriptors: list[str], *, storage_keys: dict[str, str] | None = None,
                    keys_ready: Awaitable[object] | None = None,
                    max_in_flight: int | None = None) -> AsyncIterator[tuple[str, list[str]]]:
        """(group descriptor, direct member descriptors) for every group, streamed."""


if TYPE_CHECKING:  # mypy proves the real client is a SyncClient
    from ..client import AzureDevOpsClient

    def _the_real_client_is_a_sync_client(client: AzureDevOpsClient) -> SyncClient:
        return client
