"""Shape comparison of a simulator body with the official example bodies of the same operation.

    shape_of(*bodies, maps=..., opaque=...) -> Shape      what the examples show
    compare(shape, actual, allow_extra=..., ...) -> list   readable differences ([] = same shape)

A shape records, for every JSON path (list indices as `[*]`, dictionary values as `{key}`):
- the JSON types seen (`null` counts as "may be null", it says nothing about the type);
- for objects, every key seen and the keys present in *every* example object at that path (those
  are required in the simulator body; the others are optional);
- for strings, their form: `guid`, `descriptor`, `datetime`, `url:<template>` or `text`. When the
  examples only show structured forms, the simulator value must have one of them (a URL must have
  the same template: `https://vssps.dev.azure.com/{org}/_apis/Graph/Users/{id}`).
List items of Graph subjects are grouped by descriptor prefix (`aad`, `svc`, `vssgp`, …): a simulator
item is compared with the example items of the same prefix when the examples have any, otherwise
with all items.

Keys the simulator sends and the examples lack are errors unless listed in `allow_extra` (path ->
reason, each reason citing docs/spec-deviations.md); keys the examples always have and the
simulator lacks are errors unless listed in `allow_missing`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
# Subject types of descriptors (reference doc §3.1).
SUBJECT_TYPES = ("aad", "msa", "aadgp", "vssgp", "aadsp", "svc", "bnd", "imp", "acs", "s2s", "win", "agg",
                 "csp", "unusr", "ungrp", "uauth", "tst", "ukn", "scp", "slic", "sscp", "scsp", "spa", "sace")
_DESCRIPTOR = re.compile(r"^(" + "|".join(SUBJECT_TYPES) + r")\.[A-Za-z0-9_-]+$")
_STRUCTURED = ("guid", "descriptor", "datetime", "url")


def json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    return "array" if isinstance(v, list) else "object"


def url_template(url: str) -> str:
    """`https://vssps.dev.azure.com/Fabrikam/_apis/Graph/Users/aad.X?x=1` ->
    `https://vssps.dev.azure.com/{org}/_apis/Graph/Users/{id}` (ids: GUIDs, descriptors, numbers)."""
    url = url.split("?", 1)[0].split("#", 1)[0]
    m = re.match(r"^(https?://)([^/]+)(/.*)?$", url)
    if not m:
        return url
    scheme, host, path = m.group(1), m.group(2).lower(), m.group(3) or ""
    segs = path.split("/")
    if (host == "dev.azure.com" or host.endswith(".dev.azure.com")) and len(segs) > 1 and segs[1] \
            and segs[1] != "_apis":
        segs[1] = "{org}"
    if host.endswith(".visualstudio.com") and host.count(".") == 2 and host != "app.vssps.visualstudio.com":
        host = "{org}.visualstudio.com"
    out = []
    for s in segs:
        is_id = (_UUID.match(s) or _DESCRIPTOR.match(s) or s.isdigit()
                 or re.fullmatch(r"A[0-9a-f-]{36}", s)  # scale-unit collection segment
                 or "=" in s or re.fullmatch(r"[A-Za-z0-9_-]{40,}", s))  # base64 identity ids
        out.append("{id}" if is_id else s)
    return scheme + host + "/".join(out)


def string_form(s: str) -> str:
    if _UUID.match(s):
        return "guid"
    if _DESCRIPTOR.match(s):
        return "descriptor"
    if _DATETIME.match(s):
        return "datetime"
    if re.match(r"^https?://", s):
        return "url:" + url_template(s)
    return "text"


def descriptor_prefix(item: Any) -> str | None:
    """Variant key of a list item: the subject type of its descriptor, when it has one."""
    if isinstance(item, dict):
        for key in ("descriptor", "subjectDescriptor"):  # IMS identities: legacy descriptor first
            d = item.get(key)
            if isinstance(d, str) and _DESCRIPTOR.match(d):
                return d.split(".", 1)[0]
    return None


@dataclass
class Shape:
    types: set[str] = field(default_factory=set)
    keys: dict[str, Shape] = field(default_factory=dict)
    required: set[str] | None = None  # None until the first object is merged
    item: Shape | None = None  # array items, or the values of a `maps` dictionary
    variants: dict[str, Shape] = field(default_factory=dict)  # array items by descriptor prefix
    forms: set[str] = field(default_factory=set)
    opaque: bool = False


def _merge(shape: Shape, value: Any, path: str, maps: set[str], opaque: set[str],
           variant: Callable[[Any], str | None]) -> None:
    t = json_type(value)
    shape.types.add(t)
    if path in opaque:
        shape.opaque = True
        return
    if t == "string":
        shape.forms.add(string_form(value))
    elif t == "object" and path in maps:
        shape.item = shape.item or Shape()
        for v in value.values():
            _merge(shape.item, v, path + ".{key}", maps, opaque, variant)
    elif t == "object":
        present = set(value)
        shape.required = present if shape.required is None else shape.required & present
        for k, v in value.items():
            _merge(shape.keys.setdefault(k, Shape()), v, f"{path}.{k}", maps, opaque, variant)
    elif t == "array":
        shape.item = shape.item or Shape()
        for v in value:
            _merge(shape.item, v, path + "[*]", maps, opaque, variant)
            key = variant(v)
            if key is not None:
                _merge(shape.variants.setdefault(key, Shape()), v, path + "[*]", maps, opaque, variant)


def shape_of(*bodies: Any, maps: Iterable[str] = (), opaque: Iterable[str] = (),
             variant: Callable[[Any], str | None] = descriptor_prefix) -> Shape:
    """The merged shape of example bodies. maps: paths of dictionaries keyed by data (e.g.
    subjectlookup `$.value`); opaque: paths compared by JSON type only (free-form bags)."""
    shape = Shape()
    for body in bodies:
        _merge(shape, body, "$", set(maps), set(opaque), variant)
    return shape


@dataclass
class _Ctx:
    allow_extra: Mapping[str, str]
    allow_missing: Mapping[str, str]
    allow_null: Mapping[str, str]
    maps: set[str]
    variant: Callable[[Any], str | None]
    skip: dict[str, str]
    errors: list[str] = field(default_factory=list)


def compare(shape: Shape, actual: Any, *, allow_extra: Mapping[str, str] | None = None,
            allow_missing: Mapping[str, str] | None = None, allow_null: Mapping[str, str] | None = None,
            maps: Iterable[str] = (), variant: Callable[[Any], str | None] = descriptor_prefix,
            skip: Mapping[str, str] | None = None) -> list[str]:
    """Differences between `actual` and the example shape; the allow_* mappings are path -> reason.

    skip: paths (path -> reason) whose whole subtree is not compared (checked by a separate test).
    """
    ctx = _Ctx(allow_extra or {}, allow_missing or {}, allow_null or {}, set(maps), variant, dict(skip or {}))
    _compare(shape, actual, "$", ctx)
    return list(dict.fromkeys(ctx.errors))  # one line per distinct problem, not per list item


def _compare(shape: Shape, value: Any, path: str, ctx: _Ctx) -> None:
    if path in ctx.skip:
        return
    t = json_type(value)
    known = shape.types - {"null"}
    if not known:
        return  # the examples only show null here: nothing to compare with
    if t == "null":
        if "null" not in shape.types and path not in ctx.allow_null:
            ctx.errors.append(f"{path}: null, the examples have {'|'.join(sorted(known))}")
        return
    if t not in known:
        ctx.errors.append(f"{path}: type {t}, the examples have {'|'.join(sorted(known))}")
        return
    if shape.opaque:
        return
    if t == "string":
        forms = shape.forms
        if forms and all(f.startswith(_STRUCTURED) for f in forms):
            form = string_form(value)
            if form not in forms:
                ctx.errors.append(f"{path}: {value!r} has form {form}, the examples have "
                                  f"{' or '.join(sorted(forms))}")
    elif t == "object" and path in ctx.maps:
        if shape.item is not None:
            for v in value.values():
                _compare(shape.item, v, path + ".{key}", ctx)
    elif t == "object":
        for k in sorted((shape.required or set()) - set(value)):
            if f"{path}.{k}" not in ctx.allow_missing:
                ctx.errors.append(f"{path}: missing key {k!r}")
        for k, v in value.items():
            sub = shape.keys.get(k)
            if sub is None:
                if f"{path}.{k}" not in ctx.allow_extra:
                    ctx.errors.append(f"{path}: extra key {k!r} (not in the examples)")
                continue
            _compare(sub, v, f"{path}.{k}", ctx)
    elif t == "array" and shape.item is not None and shape.item.types:
        for v in value:
            key = ctx.variant(v)
            _compare(shape.variants.get(key, shape.item) if key else shape.item, v, path + "[*]", ctx)
