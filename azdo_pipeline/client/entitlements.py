"""Member Entitlement Management (vsaex): user entitlements (licences) and account creation."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from .arrow_pages import ENTITLEMENTS_PAGE, DecodedPage
from .errors import AzureDevOpsError, TransientError
from .paging import token_pages
from .scopes import ENTITLEMENTS_READ, ENTITLEMENTS_WRITE
from .shapes import USER_ENTITLEMENTS
from .transport import Requester

log = logging.getLogger("azdo_pipeline.client")

ENTITLEMENTS_VERSION = "7.1"  # the 7.1 spec's version for userentitlements (the Go SDK sends 7.1-preview.3)

# Requested licence -> (accountLicenseType, licensingSource, msdnLicenseType) (reference §8).
# A Visual Studio subscriber gets its level from the subscription: "eligible" lets the service
# pick it when the user signs in (baton maps the subscriber licence to advanced + msdn).
LICENSES: dict[str, tuple[str, str, str]] = {
    "express": ("express", "account", "none"),
    "basic": ("express", "account", "none"),
    "stakeholder": ("stakeholder", "account", "none"),
    "advanced": ("advanced", "account", "none"),
    "basic+test plans": ("advanced", "account", "none"),
    "basic_test_plans": ("advanced", "account", "none"),
    "professional": ("professional", "account", "none"),
    "vs_subscriber": ("advanced", "msdn", "eligible"),
    "visual studio subscriber": ("advanced", "msdn", "eligible"),
    "msdn": ("advanced", "msdn", "eligible"),
}


def license_fields(license: str) -> tuple[str, str, str]:
    key = license.strip().lower()
    if key not in LICENSES:
        raise ValueError(f"unknown licence {license!r}; use one of express (Basic), stakeholder, "
                         "vs_subscriber, advanced (Basic + Test Plans), professional")
    return LICENSES[key]


def _ops_errors(body: dict[str, Any]) -> list[dict[str, Any]]:
    op = body.get("operationResult") or {}
    out = []
    for e in (op.get("errors") or []) + (body.get("errors") or []):
        if isinstance(e, dict):
            out.append({"code": e.get("key"), "message": str(e.get("value") or e.get("message") or "")})
    return out


@dataclass
class _End:
    """One end of a two-ended list read."""

    order: str | None  # the $orderBy value; None: the list's own order
    token: str | None = None
    started: bool = False
    done: bool = False
    rows: int = 0  # rows of its last page: what its next page is expected to bring
    keys: set[str] = field(default_factory=set)
    tokens: set[str] = field(default_factory=set)

    def advance(self, page: DecodedPage) -> None:
        self.started = True
        self.rows = page.table.num_rows
        token = page.scalars.get("continuationToken") or None
        if token is not None:
            if token in self.tokens:
                raise AzureDevOpsError("GET userentitlements: the server repeated a continuation token; stopping",
                                       endpoint="GET userentitlements")
            self.tokens.add(token)
        self.token = token


def _mostly_in(keys: list[str | None], reference: list[str | None]) -> bool:
    """At least half of `keys` (a page) are in `reference` (another page)."""
    ref = {k for k in reference if k is not None}
    hits = sum(1 for k in keys if k is not None and k in ref)
    return bool(keys) and 2 * hits >= len(keys)


PageReader = Callable[[str | None, str | None], Awaitable[DecodedPage]]  # (order, token) -> page


class _BothEnds:
    """The state of a read of the entitlement list from both ends (see iter_user_entitlement_tables)."""

    def __init__(self, read_page: PageReader) -> None:
        self.read_page = read_page
        self.seen: set[str] = set()  # keys of the entitlements handed over
        self.asc, self.desc = _End("name asc"), _End("name desc")
        self.total: int | None = None  # the list's totalCount
        self.first_keys: list[str | None] = []
        self.met = False  # a page held an entitlement the other end had returned
        self.complete = False  # an end reached its last page: it listed everything
        self.flight: dict[asyncio.Future[DecodedPage], _End] = {}

    @staticmethod
    def keys_of(page: DecodedPage) -> list[str | None]:
        return [k or d for k, d in zip(page.table.column("storage_key").to_pylist(),
                                       page.table.column("descriptor").to_pylist(), strict=True)]

    def fresh(self, page: DecodedPage, keys: list[str | None]) -> pa.Table:
        """The page's rows not handed over before."""
        mask = [k is not None and k not in self.seen for k in keys]
        self.seen.update(k for k in keys if k is not None)
        return page.table if all(mask) else page.table.filter(pa.array(mask, pa.bool_()))

    async def first_page(self) -> pa.Table:
        """The asc end's first page; decides whether the desc end is read at all."""
        try:
            first = await self.read_page(self.asc.order, None)
        except AzureDevOpsError as exc:
            if exc.status != 400:
                raise
            # $orderBy refused: one unordered chain, as the list is read without it.
            log.info("userentitlements refused $orderBy (HTTP 400); reading the list from one end")
            self.asc, self.desc.done = _End(None), True
            first = await self.read_page(None, None)
        self.first_keys = self.keys_of(first)
        self.asc.keys.update(k for k in self.first_keys if k is not None)
        table = self.fresh(first, self.first_keys)
        total = first.scalars.get("totalCount")
        self.total = total if isinstance(total, int) else None
        self.asc.advance(first)
        if self.total is None:
            self.desc.done = True
        elif self.total - len(self.seen) <= first.table.num_rows:
            self.desc.done = True  # one more page of the asc end finishes the list
        self.desc.rows = first.table.num_rows
        return table

    @property
    def finished(self) -> bool:
        return self.complete or (self.met and self.total is not None and len(self.seen) >= self.total)

    def launch(self) -> None:
        """Ask each end for its next page, unless the pages in flight may close the gap."""
        expected = sum(e.rows for e in self.flight.values())
        for end in (self.asc, self.desc):
            if end.done or end in self.flight.values() or (end.started and end.token is None):
                continue
            if self.flight and (self.total is None or self.total - len(self.seen) <= expected):
                continue  # the pages in flight may close the gap: wait for them first
            self.flight[asyncio.ensure_future(self.read_page(end.order, end.token))] = end
            end.started = True
            expected += end.rows

    def take(self, task: asyncio.Future[DecodedPage]) -> pa.Table | None:
        """An answered page: its new rows (None when the end turned out to be of no use)."""
        end = self.flight.pop(task)
        asc, desc = self.asc, self.desc
        try:
            page = task.result()
        except AzureDevOpsError as exc:
            if end is desc and exc.status == 400 and not desc.keys:
                log.info("userentitlements refused $orderBy=name desc (HTTP 400); one end only")
                desc.done = True
                return None
            raise
        count = page.scalars.get("totalCount")
        if self.total is not None and isinstance(count, int):
            self.total = max(self.total, count)
        keys = self.keys_of(page)
        table = self.fresh(page, keys)
        if end is desc and not desc.keys and _mostly_in(keys, self.first_keys):
            # desc page 1 repeats asc page 1: the service ignores $orderBy (or every name ties); a
            # second end would only read the list twice.
            log.info("userentitlements: name desc starts like name asc; reading from one end")
            desc.done = True
            return table
        other = desc if end is asc else asc
        self.met = self.met or any(k in other.keys for k in keys if k is not None)
        end.keys.update(k for k in keys if k is not None)
        end.advance(page)
        self.complete = self.complete or end.token is None
        return table

    async def cancel(self) -> None:
        for task in self.flight:
            task.cancel()
        await asyncio.gather(*self.flight, return_exceptions=True)


class EntitlementsService:
    def __init__(self, requester: Requester, base: str) -> None:
        self._r = requester
        self.base = base
        # The last full read's `totalCount` (None: not given): the sync reconciles what it read with it.
        self.total_count: int | None = None

    async def iter_user_entitlements(self, filter: str | None = None,
                                     order_by: str | None = None) -> AsyncIterator[list[dict[str, Any]]]:
        """Pages of user entitlements (the `members` list); the token is in the body. `order_by`:
        `$orderBy`, e.g. `lastAccessed desc` (name, dateCreated or lastAccessed, asc or desc).

        The token (e.g. `+RID:~…==#RT:1#TRC:100#…`) goes back URL-encoded (httpx encodes query
        params, so + # = survive); paging stops only when the body has no token.
        """
        async def fetch(token: str | None) -> Any:
            params: dict[str, Any] = {"api-version": ENTITLEMENTS_VERSION}
            if filter:
                params["$filter"] = filter
            if order_by:
                params["$orderBy"] = order_by
            if token:
                params["continuationToken"] = token
            return await self._r.request("GET", f"{self.base}/_apis/userentitlements",
                                         endpoint="GET userentitlements", scope=ENTITLEMENTS_READ, params=params,
                                         shape=USER_ENTITLEMENTS)

        def split(reply: Any) -> tuple[list[dict[str, Any]], str | None]:
            data = reply.data
            members = data.get("members")
            if members is None:  # the spec's shape only has `items`
                members = data["items"]
            return list(members), data.get("continuationToken") or None

        async for page in token_pages(fetch, split, "GET userentitlements"):
            yield page

    async def iter_user_entitlement_tables(self) -> AsyncIterator[pa.Table]:
        """Every user entitlement once, as Arrow pages (arrow_pages.ENTITLEMENT_PATHS columns).

        The bulk read of a full sync, and a long sequential chain (100 per page). It is read from
        both ends at once, `$orderBy=name asc` and `name desc`, which halves the chain. The read
        stops when the ends have met (a page holds an entitlement the other end already returned)
        and the distinct entitlements seen reach the list's `totalCount`: meeting alone could miss
        a tie in names, the count alone an entitlement when the list changes meanwhile. An end
        asks for its next page only while the pages in flight cannot close the gap, so requests
        stay within one of a single chain's. Without a totalCount only the `asc` end is read;
        either end reaching its last page has listed everything. Pages are decoded to Arrow in a
        worker thread.
        """
        read = _BothEnds(self._entitlement_page)
        self.total_count = None
        first = await read.first_page()
        self.total_count = read.total
        if read.asc.token is None:
            yield first
            return
        ready: list[pa.Table] = [first]
        try:
            while True:
                if not read.finished:
                    read.launch()  # before the pages in hand are handed over: the caller's work overlaps
                for table in ready:
                    yield table
                ready.clear()
                if read.finished or not read.flight:
                    return
                done, _ = await asyncio.wait(read.flight, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    table = read.take(task)
                    self.total_count = read.total
                    if table is not None:
                        ready.append(table)
        finally:
            await read.cancel()

    async def _entitlement_page(self, order: str | None, token: str | None) -> DecodedPage:
        params: dict[str, Any] = {"api-version": ENTITLEMENTS_VERSION}
        if order:
            params["$orderBy"] = order
        if token:
            params["continuationToken"] = token
        reply = await self._r.request("GET", f"{self.base}/_apis/userentitlements", endpoint="GET userentitlements",
                                      scope=ENTITLEMENTS_READ, params=params, decoder=ENTITLEMENTS_PAGE,
                                      shape=USER_ENTITLEMENTS)
        page: DecodedPage = reply.data
        return page

    async def get_user_entitlement(self, user_id: str) -> dict[str, Any] | None:
        """One user's entitlement by identity id (storage key); None when the user is not in the organization."""
        reply = await self._r.request("GET", f"{self.base}/_apis/userentitlements/{user_id}",
                                      endpoint="GET userentitlements/{id}", scope=ENTITLEMENTS_READ,
                                      params={"api-version": ENTITLEMENTS_VERSION}, allow={404})
        return reply.data if reply.status != 404 and isinstance(reply.data, dict) else None

    async def find_user_entitlement(self, principal_name: str) -> dict[str, Any] | None:
        """The entitlement whose user has this principal name (or mail address), else None."""
        want = principal_name.strip().lower()
        quoted = principal_name.replace("'", "''")
        async for page in self.iter_user_entitlements(filter=f"name eq '{quoted}'"):
            for ent in page:
                user = ent.get("user") or {}
                names = {str(user.get("principalName") or "").lower(), str(user.get("mailAddress") or "").lower()}
                if want in names:
                    return ent
        return None

    async def add_user_entitlement(self, principal_name: str, license: str, *,
                                   project_entitlements: list[dict[str, Any]] | None = None,
                                   check_existing: bool = True, attempts: int = 3) -> dict[str, Any]:
        """Create an account (user entitlement). Returns an outcome dict, never raises for a refusal.

        outcome: created | already_exists | failed; plus user_id, descriptor, license, status,
        errors [{code, message}] and message. The POST is not idempotent: after a transient
        failure the entitlement is looked up before posting again.
        """
        acct, source, msdn = license_fields(license)
        if check_existing:
            existing = await self.find_user_entitlement(principal_name)
            if existing is not None:
                return self._outcome("already_exists", existing, [],
                                     f"{principal_name} already has an account in this organization")
        body: dict[str, Any] = {
            "accessLevel": {"accountLicenseType": acct, "licensingSource": source},
            "user": {"principalName": principal_name, "subjectKind": "user"},
            "projectEntitlements": project_entitlements or [],
            "extensions": [],
        }
        if source == "msdn":
            body["accessLevel"]["msdnLicenseType"] = msdn
        last: AzureDevOpsError | None = None
        for attempt in range(max(1, attempts)):
            if attempt and last is not None:
                # The failed POST may have been processed: look before posting again.
                found = await self.find_user_entitlement(principal_name)
                if found is not None:
                    return self._outcome("created", found, [], f"created {principal_name}")
            try:
                reply = await self._r.request(
                    "POST", f"{self.base}/_apis/userentitlements", endpoint="POST userentitlements",
                    scope=ENTITLEMENTS_WRITE, params={"api-version": ENTITLEMENTS_VERSION},
                    json_body=body, idempotent=False)
            except TransientError as exc:
                log.warning("POST userentitlements for a new account failed transiently: %s", exc)
                last = exc
                continue
            data = reply.data or {}
            op = data.get("operationResult") or {}
            ok = bool(data.get("isSuccess", True)) and bool(op.get("isSuccess", True))
            ent = data.get("userEntitlement") or op.get("result") or {}
            errors = _ops_errors(data)
            if ok and not errors:
                return self._outcome("created", ent, [], f"created {principal_name}")
            message = "; ".join(f"({e['code']}) {e['message']}" for e in errors) or "the service refused"
            return self._outcome("failed", ent, errors, message)
        assert last is not None
        raise last

    @staticmethod
    def _outcome(outcome: str, ent: dict[str, Any], errors: list[dict[str, Any]], message: str) -> dict[str, Any]:
        user = ent.get("user") or {}
        level = ent.get("accessLevel") or {}
        return {"outcome": outcome, "user_id": ent.get("id"), "descriptor": user.get("descriptor"),
                "principal_name": user.get("principalName"),
                "license": level.get("licenseDisplayName") or level.get("accountLicenseType"),
                "status": level.get("status"), "errors": errors, "message": message}
