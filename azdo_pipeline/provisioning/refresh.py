"""After provisioning changed memberships: re-read the changed groups' direct members and publish a
new raw snapshot, so the `memberships` table (and the access graph built from it) shows the change
without waiting for the next full sync.

The new snapshot is the published raw one with the changed groups' edges replaced by what the
service answers now; every other table is a hard link to the base snapshot's file (no copy, no
edit). It is committed through the store like a sync's, so readers switch to it in one step.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import schemas
from ..store import Store
from ..sync import columns
from ..sync.incremental import carried_cursor


class MembershipReader(Protocol):
    def memberships(self, group_descriptors: list[str]) -> AsyncIterator[tuple[str, list[str]]]: ...


@dataclass(frozen=True)
class Refresh:
    snapshot: str
    base: str
    groups: tuple[str, ...]
    edges_before: int
    edges_after: int


class BaseMoved(RuntimeError):
    """A sync published a newer raw snapshot while the groups were read: read again on top of it."""


async def refresh_memberships(reader: MembershipReader, store: Store, org: str, groups: Collection[str], *,
                              simulated: bool = False, attempts: int = 3,
                              now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Refresh | None:
    """Publish a raw snapshot with `groups`' direct memberships read again; None when the
    organization has no published raw snapshot yet (its first sync will have the change)."""
    wanted = sorted(set(groups))
    if not wanted:
        return None
    for _ in range(max(1, attempts)):
        manifest = store.latest_manifest(org, "raw")
        if manifest is None or "memberships" not in manifest.get("tables", {}):
            return None
        try:
            return await _refresh_once(reader, store, org, wanted, manifest, simulated, now())
        except BaseMoved:
            continue
    return None


async def _refresh_once(reader: MembershipReader, store: Store, org: str, groups: list[str],
                        manifest: dict[str, Any], simulated: bool, at: datetime) -> Refresh:
    base = str(manifest["snapshot"])
    containers: list[str] = []
    members: list[str] = []
    async for container, found in reader.memberships(groups):
        containers.extend([container] * len(found))
        members.extend(found)
    old = pq.read_table(store.snapshot_path("memberships", org, base))
    keep = old.filter(pc.invert(pc.is_in(old["container_descriptor"], value_set=pa.array(groups, pa.string()))))
    member_col = pa.array(members, pa.string())
    fresh = pa.table({"container_descriptor": pa.array(containers, pa.string()), "member_descriptor": member_col,
                      "member_kind": columns.member_kinds(member_col)}, schema=schemas.MEMBERSHIPS)
    table = pa.concat_tables([keep.cast(schemas.MEMBERSHIPS), fresh])
    snapshot = f"{at.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}"
    tables: dict[str, Any] = manifest.get("tables", {})
    with store.begin(org, snapshot, kind="raw") as draft:
        for name in tables:
            if name != "memberships" and not name.startswith("_"):
                draft.link(name, base)
        draft.write_table("memberships", table)
        if (store.latest_manifest(org, "raw") or {}).get("snapshot") != base:
            raise BaseMoved(base)  # the draft is discarded on the way out
        meta = {n: {k: v for k, v in m.items() if k != "rows"} for n, m in tables.items()
                if isinstance(m, dict) and not n.startswith("_")}
        draft.commit(meta, simulated=simulated, extra={
            "derived_from": base, "refreshed_groups": groups,
            "note": "provisioning changed these groups' memberships; their direct members were read again",
            **carried_cursor(manifest)})
    return Refresh(snapshot, base, tuple(groups), old.num_rows, table.num_rows)
