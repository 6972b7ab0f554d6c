"""Big list pages decoded straight into Arrow columns.

A page of 100 user entitlements is ~285 KB of JSON (the body carries the list twice, as
`members` and `items`); a full sync of a 20k-user organization decodes ~120 MB. Decoding with
orjson builds a Python object per field and holds the GIL; pyarrow's JSON reader builds only the
columns asked for, in C++, without the GIL, so it runs in a worker thread beside the event loop.

Each page kind is described by flat output columns and the JSON path of each. Should the
Arrow reader reject a body that is valid JSON (a field of an unexpected type, say), the page is
decoded with orjson and flattened in Python instead: slower, same result. A body that is not JSON
at all raises ValueError (the transport retries it as a damaged read).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

Paths = Mapping[str, tuple[str, ...]]  # output column -> JSON path inside one list item

ENTITLEMENT_PATHS: Paths = {
    "storage_key": ("id",),
    "descriptor": ("user", "descriptor"),
    "license": ("accessLevel", "accountLicenseType"),
    "licensing_source": ("accessLevel", "licensingSource"),
    "msdn_license_type": ("accessLevel", "msdnLicenseType"),
    "license_display_name": ("accessLevel", "licenseDisplayName"),
    "status": ("accessLevel", "status"),
    "last_accessed": ("lastAccessedDate",),
    "date_created": ("dateCreated",),
}

GRAPH_USER_PATHS: Paths = {
    "descriptor": ("descriptor",),
    "origin": ("origin",),
    "origin_id": ("originId",),
    "principal_name": ("principalName",),
    "display_name": ("displayName",),
    "mail_address": ("mailAddress",),
    "domain": ("domain",),
    "meta_type": ("metaType",),
}


STRINGS = pa.list_(pa.string())  # a leaf that is a list of strings (e.g. memberIds)


def _item_type(paths: Paths, leaf_types: Mapping[str, pa.DataType]) -> pa.StructType:
    """Nested struct type holding exactly the leaves named by `paths` (strings unless typed)."""
    tree: dict[str, Any] = {}
    for name, path in paths.items():
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = leaf_types.get(name, pa.string())

    def build(node: dict[str, Any]) -> pa.StructType:
        return pa.struct([pa.field(k, build(v) if isinstance(v, dict) else v) for k, v in node.items()])

    return build(tree)


def _flat_schema(paths: Paths, leaf_types: Mapping[str, pa.DataType]) -> pa.Schema:
    return pa.schema([pa.field(name, leaf_types.get(name, pa.string())) for name in paths])


def _extract(items: pa.StructArray, paths: Paths, leaf_types: Mapping[str, pa.DataType]) -> pa.Table:
    cols = []
    for path in paths.values():
        arr: pa.Array = items
        for key in path:
            arr = pc.struct_field(arr, key)  # unlike StructArray.field, keeps the parent's nulls
        cols.append(arr)
    return pa.Table.from_arrays(cols, schema=_flat_schema(paths, leaf_types))


def _dig(item: Any, path: Sequence[str], as_list: bool) -> Any:
    for key in path:
        if not isinstance(item, dict):
            return None
        item = item.get(key)
    if item is None:
        return None
    if as_list:
        return [v if isinstance(v, str) or v is None else str(v) for v in item] if isinstance(item, list) else None
    return item if isinstance(item, str) else str(item)


def _from_python(items: list[Any], paths: Paths, leaf_types: Mapping[str, pa.DataType]) -> pa.Table:
    """The slow path: the same flat table from already decoded items."""
    cols = {name: [_dig(it, path, name in leaf_types) for it in items] for name, path in paths.items()}
    return pa.Table.from_pydict(cols, schema=_flat_schema(paths, leaf_types))


def _scalar(value: Any, type_: pa.DataType) -> Any:
    """A top-level value as the Arrow path types it (string or integer), else None."""
    if value is None:
        return None
    if pa.types.is_integer(type_):
        return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
    return value if isinstance(value, str) else str(value)


@dataclass(frozen=True)
class PageDecoder:
    """Decodes one kind of list page: the list under one of `list_keys`, plus scalar fields."""

    paths: Paths
    list_keys: tuple[str, ...]  # the first present one holds the items
    scalars: Mapping[str, pa.DataType] = field(default_factory=dict)  # top-level fields kept
    leaf_types: Mapping[str, pa.DataType] = field(default_factory=dict)  # non-string leaves (only STRINGS)

    def __call__(self, body: bytes) -> DecodedPage:
        # Only a JSON object goes to Arrow: pyarrow's reader crashes the process on a bare `null`
        # (apache/arrow#47409); anything else is no page and the fallback says so.
        if body.lstrip()[:1] != b"{":
            return self._python(body)
        try:
            return self._arrow(body)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return self._python(body)

    @cached_property
    def _item(self) -> pa.StructType:
        return _item_type(self.paths, self.leaf_types)

    @cached_property
    def _parse_options(self) -> pa_json.ParseOptions:  # built once per decoder, not per page
        fields = [pa.field(k, pa.list_(self._item)) for k in self.list_keys]
        fields += [pa.field(k, t) for k, t in self.scalars.items()]
        return pa_json.ParseOptions(explicit_schema=pa.schema(fields), newlines_in_values=True,
                                    unexpected_field_behavior="ignore")

    def _arrow(self, body: bytes) -> DecodedPage:
        item = self._item
        table = pa_json.read_json(
            io.BytesIO(body),
            read_options=pa_json.ReadOptions(use_threads=False, block_size=max(len(body) + 1, 1 << 16)),
            parse_options=self._parse_options)
        if table.num_rows != 1:
            raise pa.ArrowInvalid(f"expected one JSON object, got {table.num_rows}")
        items = None
        for key in self.list_keys:
            col = table.column(key).combine_chunks()
            if col.is_valid()[0].as_py():
                items = col.flatten()
                break
        flat = _extract(items if items is not None else pa.array([], type=item), self.paths, self.leaf_types)
        flat.validate(full=True)  # Arrow's reader does not check UTF-8; a damaged byte must not pass
        return DecodedPage(flat, {k: table.column(k)[0].as_py() for k in self.scalars})

    def _python(self, body: bytes) -> DecodedPage:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        items: list[Any] = []
        for key in self.list_keys:
            if isinstance(data.get(key), list):
                items = data[key]
                break
        scalars = {k: _scalar(data.get(k), t) for k, t in self.scalars.items()}
        return DecodedPage(_from_python(items, self.paths, self.leaf_types), scalars)


@dataclass(frozen=True)
class DecodedPage:
    table: pa.Table  # one row per list item, the decoder's flat string columns
    scalars: dict[str, Any]


# userentitlements: the real body has both `members` and `items` (reference §2); use members.
ENTITLEMENTS_PAGE = PageDecoder(ENTITLEMENT_PATHS, ("members", "items"),
                                {"continuationToken": pa.string(), "totalCount": pa.int64()})
GRAPH_USERS_PAGE = PageDecoder(GRAPH_USER_PATHS, ("value",))
# identities / identitybatch with queryMembership=Direct: only what the membership read needs
# (a group's answer also carries every member's legacy descriptor and the identity properties).
IDENTITY_MEMBERS_PAGE = PageDecoder({"id": ("id",), "subjectDescriptor": ("subjectDescriptor",),
                                     "memberIds": ("memberIds",)}, ("value",), leaf_types={"memberIds": STRINGS})
# identities read to name them: storage key, both descriptors, display name.
IDENTITY_REFS_PAGE = PageDecoder({"id": ("id",), "descriptor": ("descriptor",),
                                  "subjectDescriptor": ("subjectDescriptor",),
                                  "providerDisplayName": ("providerDisplayName",)}, ("value",))
