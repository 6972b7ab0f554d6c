"""Big list pages decoded straight into Arrow columns.

A page of 100 user entitlements is ~285 KB of JSON (the body carries the list twice, as
`members` and `items`); a full sync of a 20k-user organization decodes ~120 MB. Decoding with
orjson builds a Python object per field and holds the GIL; pyarrow's JSON reader builds only the
columns asked for, in C++, without the GIL, so it runs in a worker thread beside the event loop.

Each page kind is described by flat output columns and the JSON path of each. Should the
Arrow reader reject a body that is valid JSON (a field of an unexpected type, say), the page is
decoded with orjson in Python instead, which names what is wrong. A page that is not the route's
shape (not JSON, no list, an item or field of another type, a required field missing) raises
ShapeError, a ValueError: the transport reads it again, then fails naming the route.
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

from .shapes import INT, STR_LIST, TIME, ShapeError, kind_ok, type_name

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


def _leaf(item: Any, path: Sequence[str], as_list: bool, where: str) -> Any:
    """The value at `path` in one list item, checked: a string (or a list of strings), or None."""
    for i, key in enumerate(path):
        if item is None:
            return None
        if not isinstance(item, dict):
            raise ShapeError(f"{where}.{'.'.join(path[:i])} is {type_name(item)}, expected an object")
        item = item.get(key)
    if item is None:
        return None
    if as_list:
        if not kind_ok(item, STR_LIST):
            raise ShapeError(f"{where}.{'.'.join(path)} is {type_name(item)}, expected an array of strings")
        return item
    if not isinstance(item, str):
        raise ShapeError(f"{where}.{'.'.join(path)} is {type_name(item)}, expected a string")
    return item


def _from_python(items: list[Any], paths: Paths, leaf_types: Mapping[str, pa.DataType],
                 null_items: bool) -> pa.Table:
    """The slow path: the same flat table from already decoded items, each checked."""
    for i, it in enumerate(items):
        if not isinstance(it, dict) and not (it is None and null_items):
            raise ShapeError(f"item {i} is {type_name(it)}, expected an object")
    cols = {name: [_leaf(it, path, name in leaf_types, f"item {i}") for i, it in enumerate(items)]
            for name, path in paths.items()}
    return pa.Table.from_pydict(cols, schema=_flat_schema(paths, leaf_types))


def _scalar(name: str, value: Any, type_: pa.DataType) -> Any:
    """A top-level field as the Arrow path types it (string or integer), checked; None when absent."""
    if value is None:
        return None
    if pa.types.is_integer(type_):
        if not kind_ok(value, INT):
            raise ShapeError(f"the body's `{name}` is {type_name(value)}, expected an integer")
        return value
    if not isinstance(value, str):
        raise ShapeError(f"the body's `{name}` is {type_name(value)}, expected a string")
    return value


@dataclass(frozen=True)
class PageDecoder:
    """Decodes one kind of list page: the list under one of `list_keys`, plus scalar fields.

    The page is checked as it is decoded (shapes.py): the list must be there (never read as empty
    when it is missing), every item an object (or null where `null_items`), every leaf a string
    (or a list of strings) or null, the `required` columns set on every item, the `times` columns
    Azure DevOps timestamps. A page that is not so raises ShapeError (a ValueError): the
    transport reads it again and then fails naming the route.
    """

    paths: Paths
    list_keys: tuple[str, ...]  # the first present one holds the items
    scalars: Mapping[str, pa.DataType] = field(default_factory=dict)  # top-level fields kept
    leaf_types: Mapping[str, pa.DataType] = field(default_factory=dict)  # non-string leaves (only STRINGS)
    required: tuple[str, ...] = ()  # output columns no (non-null) item may lack
    times: tuple[str, ...] = ()  # output columns holding timestamps
    null_items: bool = False  # identities: an unknown key comes back as a null item

    def __call__(self, body: bytes) -> DecodedPage:
        # Only a JSON object goes to Arrow: pyarrow's reader crashes the process on a bare `null`
        # (apache/arrow#47409); anything else is no page and the fallback says so.
        if body.lstrip()[:1] != b"{":
            page = self._python(body)
        else:
            try:
                page = self._arrow(body)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                # A field of another type, say: the fallback names it (or decodes what Arrow could not).
                page = self._python(body)
        self._check(page)
        return page

    def _check(self, page: DecodedPage) -> None:
        table = page.table
        if not (self.required or self.times):
            return
        present = None
        if self.null_items:  # a null item has every column null: only the others must be complete
            all_null = pc.is_null(table.column(0))
            for col in table.columns[1:]:
                all_null = pc.and_(all_null, pc.is_null(col))
            present = pc.invert(all_null)
        for name in self.required:
            missing = pc.is_null(table.column(name))
            if present is not None:
                missing = pc.and_(missing, present)
            if pc.any(missing).as_py():
                i = missing.combine_chunks().to_pylist().index(True)
                raise ShapeError(f"item {i} has no `{'.'.join(self.paths[name])}`")
        for name in self.times:
            for i, v in enumerate(table.column(name).to_pylist()):
                if v is not None and not kind_ok(v, TIME):
                    raise ShapeError(f"item {i}.{'.'.join(self.paths[name])} is {v!r}, expected a timestamp")

    @cached_property
    def _item(self) -> pa.StructType:
        return _item_type(self.paths, self.leaf_types)

    @cached_property
    def _parse_options(self) -> pa_json.ParseOptions:  # built once per decoder, not per page
        fields = [pa.field(k, pa.list_(self._item)) for k in self.list_keys]
        fields += [pa.field(k, t) for k, t in self.scalars.items()]
        return pa_json.ParseOptions(explicit_schema=pa.schema(fields), newlines_in_values=True,
                                    unexpected_field_behavior="ignore")

    def _no_list(self) -> ShapeError:
        return ShapeError(f"the body has no `{self.list_keys[0]}` list")

    def _arrow(self, body: bytes) -> DecodedPage:
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
        if items is None:
            raise self._no_list()
        if items.null_count and not self.null_items:
            i = items.is_null().to_pylist().index(True)
            raise ShapeError(f"item {i} is null, expected an object")
        flat = _extract(items, self.paths, self.leaf_types)
        flat.validate(full=True)  # Arrow's reader does not check UTF-8; a damaged byte must not pass
        return DecodedPage(flat, {k: table.column(k)[0].as_py() for k in self.scalars})

    def _python(self, body: bytes) -> DecodedPage:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ShapeError(f"not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ShapeError(f"the body is JSON {type_name(data)}, expected an object")
        items: Any = None
        for key in self.list_keys:
            if data.get(key) is not None:
                items = data[key]
                break
        if items is None:
            raise self._no_list()
        if not isinstance(items, list):
            raise ShapeError(f"`{key}` is {type_name(items)}, expected an array")
        scalars = {k: _scalar(k, data.get(k), t) for k, t in self.scalars.items()}
        return DecodedPage(_from_python(items, self.paths, self.leaf_types, self.null_items), scalars)


@dataclass(frozen=True)
class DecodedPage:
    table: pa.Table  # one row per list item, the decoder's flat string columns
    scalars: dict[str, Any]


# userentitlements: the real body has both `members` and `items` (reference §2); use members.
ENTITLEMENTS_PAGE = PageDecoder(ENTITLEMENT_PATHS, ("members", "items"),
                                {"continuationToken": pa.string(), "totalCount": pa.int64()},
                                required=("storage_key", "descriptor"), times=("last_accessed", "date_created"))
GRAPH_USERS_PAGE = PageDecoder(GRAPH_USER_PATHS, ("value",), required=("descriptor",))
# identities / identitybatch with queryMembership=Direct: only what the membership read needs
# (a group's answer also carries every member's legacy descriptor and the identity properties).
IDENTITY_MEMBERS_PAGE = PageDecoder({"id": ("id",), "subjectDescriptor": ("subjectDescriptor",),
                                     "memberIds": ("memberIds",)}, ("value",), leaf_types={"memberIds": STRINGS},
                                     required=("id",), null_items=True)
# identities read to name them: storage key, both descriptors, display name.
IDENTITY_REFS_PAGE = PageDecoder({"id": ("id",), "descriptor": ("descriptor",),
                                  "subjectDescriptor": ("subjectDescriptor",),
                                  "providerDisplayName": ("providerDisplayName",)}, ("value",),
                                 required=("id",), null_items=True)
