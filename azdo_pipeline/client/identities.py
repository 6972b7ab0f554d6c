"""Identities (vssps, IMS): batched identity reads, including direct group membership.

Large reads go through `POST _apis/identitybatch` (what the .NET client does above 50 ids or 5
descriptors: no URL-length limit). When that route is missing, `GET _apis/identities` is used
with chunks packed under an IIS-safe query length (maxQueryString defaults to 2048).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from .arrow_pages import DecodedPage, PageDecoder
from .errors import AzureDevOpsError, NotFoundError
from .scopes import IDENTITY_READ
from .shapes import IDENTITIES, ShapeError
from .transport import Requester

log = logging.getLogger("azdo_pipeline.client")

IDENTITIES_VERSION = "7.1"
QUERY_MEMBERSHIP = ("None", "Direct", "Expanded", "ExpandedUp", "ExpandedDown")
MAX_QUERY_CHARS = 1900  # keep GET query strings under IIS's default maxQueryString (2048)


class IdentitiesService:
    def __init__(self, requester: Requester, base: str, *, batch_size: int = 500) -> None:
        self._r = requester
        self.base = base
        self.batch_size = batch_size
        self.batch_available: bool | None = None  # None: not tried yet

    async def read(self, *, identity_ids: list[str] | None = None,
                   subject_descriptors: list[str] | None = None,
                   descriptors: list[str] | None = None,
                   query_membership: str = "None", decoder: PageDecoder | None = None) -> list[dict[str, Any] | None]:
        """One GET identities call for the given keys (exactly one kind); unknown keys give None.

        With `decoder` (e.g. arrow_pages.IDENTITY_MEMBERS_PAGE) each identity is a dict of only
        the decoder's fields, decoded off the event loop.
        """
        if query_membership not in QUERY_MEMBERSHIP:
            raise ValueError(f"query_membership must be one of {QUERY_MEMBERSHIP}")
        given = [(k, v) for k, v in (("identityIds", identity_ids), ("subjectDescriptors", subject_descriptors),
                                     ("descriptors", descriptors)) if v]
        if len(given) != 1:
            raise ValueError("pass exactly one non-empty list of identity_ids, subject_descriptors or descriptors")
        key, values = given[0]
        params: dict[str, Any] = {key: ",".join(values), "queryMembership": query_membership,
                                  "api-version": IDENTITIES_VERSION}
        reply = await self._r.request("GET", f"{self.base}/_apis/identities",
                                      endpoint=f"GET identities?{key}", scope=IDENTITY_READ, params=params,
                                      decoder=decoder, shape=IDENTITIES, check=_one_per_key(len(values)))
        return _values(reply.data)

    async def read_batch(self, *, identity_ids: list[str] | None = None,
                         subject_descriptors: list[str] | None = None, descriptors: list[str] | None = None,
                         query_membership: str = "None",
                         decoder: PageDecoder | None = None) -> list[dict[str, Any] | None]:
        """POST identitybatch (IdentityBatchInfo body; a read, so safe to retry); `decoder` as in read().

        `descriptors` are legacy identity descriptors ("Type;Identifier"), sent as IdentityDescriptor
        objects.
        """
        body: dict[str, Any] = {"queryMembership": query_membership}
        if identity_ids:
            body["identityIds"] = identity_ids
        if subject_descriptors:
            body["subjectDescriptors"] = subject_descriptors
        if descriptors:
            body["descriptors"] = [dict(zip(("identityType", "identifier"), d.split(";", 1), strict=False))
                                   for d in descriptors]
        kind = "identityIds" if identity_ids else "subjectDescriptors" if subject_descriptors else "descriptors"
        reply = await self._r.request("POST", f"{self.base}/_apis/identitybatch",
                                      endpoint=f"POST identitybatch {kind}", scope=IDENTITY_READ,
                                      params={"api-version": IDENTITIES_VERSION}, json_body=body,
                                      idempotent=True, decoder=decoder, shape=IDENTITIES,
                                      check=_one_per_key(len(identity_ids or subject_descriptors or descriptors or [])))
        return _values(reply.data)

    async def read_many(self, *, identity_ids: list[str] | None = None,
                        subject_descriptors: list[str] | None = None, descriptors: list[str] | None = None,
                        query_membership: str = "None", decoder: PageDecoder | None = None) -> list[dict[str, Any]]:
        """Identities for any number of keys in as few requests as the service allows (nulls dropped)."""
        keys = list(identity_ids or subject_descriptors or descriptors or [])
        kind = "identity_ids" if identity_ids else "subject_descriptors" if subject_descriptors else "descriptors"
        out: list[dict[str, Any]] = []
        i = 0
        while i < len(keys):
            if self.batch_available is not False:
                chunk = keys[i:i + self.batch_size]
                try:
                    found = await self.read_batch(**{kind: chunk}, query_membership=query_membership,
                                                  decoder=decoder)
                    self.batch_available = True
                    out.extend(x for x in found if isinstance(x, dict))
                    i += len(chunk)
                    continue
                except NotFoundError as exc:
                    if exc.type_key:  # a JSON 404 is about the keys, not a missing route
                        raise
                    self.batch_available = False
                    log.info("identitybatch is not available here; using GET identities")
                except AzureDevOpsError as exc:
                    if exc.status == 400 and len(chunk) > 1:
                        # No documented server limit: a 400 on a big batch halves the batch size
                        # for the rest of this client's life.
                        self.batch_size = max(1, len(chunk) // 2)
                        log.info("identitybatch refused %d keys (HTTP 400); using %d per request",
                                 len(chunk), self.batch_size)
                        continue
                    if exc.status != 405:
                        raise
                    self.batch_available = False
            chunk = _pack(keys, i, 50)
            found = await self.read(**{kind: chunk}, query_membership=query_membership, decoder=decoder)
            out.extend(x for x in found if isinstance(x, dict))
            i += len(chunk)
        return out


def _one_per_key(n: int) -> Callable[[Any], None]:
    """The identities routes answer one entry per key asked, in order, null for an unknown key
    (the .NET client's IdentitiesCollection keeps those positions): fewer or more is a damaged answer."""
    def check(data: Any) -> None:
        got = data.table.num_rows if isinstance(data, DecodedPage) else len(data["value"])
        if got != n:
            raise ShapeError(f"{got} identities for {n} keys asked (one per key is the route's answer)")
    return check


def _values(data: Any) -> list[dict[str, Any] | None]:
    if isinstance(data, DecodedPage):  # only the decoder's fields; a null identity has all of them null
        return [row if any(v is not None for v in row.values()) else None for row in data.table.to_pylist()]
    return list(data["value"])  # checked against shapes.IDENTITIES


def _pack(keys: list[str], start: int, max_items: int) -> list[str]:
    """As many keys from `start` as fit in one GET query string (at least one)."""
    chunk: list[str] = []
    length = 120  # the other parameters
    for k in keys[start:start + max_items]:
        extra = len(quote(k, safe="")) + 3  # the encoded comma
        if chunk and length + extra > MAX_QUERY_CHARS:
            break
        chunk.append(k)
        length += extra
    return chunk
