"""Contract-test harness: the official Azure DevOps 7.1 Swagger specs as JSON Schema validators.

Public API (used by the route contract tests):

    spec(area) -> Spec                      one loaded spec file (cached); areas: see AREAS
    operation(area, key) -> Operation       key: operationId, or (method, url_path[, api_version]);
                                            .template, .api_version, .status, .response_headers, .wrapped
    validate(area, key, body, strict=True, allow_undeclared=()) -> list[str]
                                            readable errors ("$.value[0].id: format: 'x' is not a uuid");
                                            [] = valid. strict also reports keys no definition declares
    assert_valid(area, key, body, ...)      the same, raising AssertionError listing every error
    findings(area, key, body) -> [Finding]  the structured form (path, kind, detail)
    examples(area=None) / examples_for(area, operation_id) -> [Example]
                                            every official example with its operation, 2xx status, body
    example_findings(example) -> [Finding]  an example checked against its own operation (normalized)

How the specs are read (rules R1-R13 in docs/spec-deviations.md §1), in short: refs, allOf, items,
enum, type kept; extra keys allowed by the schema (Swagger default) but reported by the strict check;
any property or dictionary value may be null, the body may not; date-time and uuid formats checked; list operations
answer `{"count", "value": [...]}`; ReferenceLinks, IdentityDescriptor and PropertiesCollection are
validated in their wire form; a bare `type: object` or `format: T` member accepts any JSON value.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator

# The official specs the contract tests use are kept in the repository (with their MIT licence).
SPECS_ROOT = Path(__file__).resolve().parents[1] / "data" / "azure-devops-rest-specs"

# area -> spec file (relative to SPECS_ROOT)
AREAS: dict[str, str] = {
    "account": "account/7.1/accounts.json",
    "audit": "audit/7.1/audit.json",
    "core": "core/7.1/core.json",
    "graph": "graph/7.1/graph.json",
    "ims": "ims/7.1/identities.json",
    "mem": "memberEntitlementManagement/7.1/memberEntitlementManagement.json",
    "security": "security/7.1/security.json",
}

# Operations whose `type: object` (dictionary) response travels inside the collection wrapper,
# as their official example shows.
WRAPPED_OBJECTS = {("graph", "Subject Lookup_Lookup Subjects")}

_DROPPED_FORMATS = {"int32", "int64", "byte", "T", "JTokenType", "JToken", "JContainer", "CultureInfo",
                    "TimeZoneInfo", "Char"}
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

FORMAT_CHECKER = jsonschema.FormatChecker(formats=())


@FORMAT_CHECKER.checks("date-time")
def _is_datetime(value: object) -> bool:
    return not isinstance(value, str) or bool(_RFC3339.match(value))


@FORMAT_CHECKER.checks("uuid")
def _is_uuid(value: object) -> bool:
    return not isinstance(value, str) or bool(_UUID.match(value))


def _read_json(path: Path) -> Any:
    with path.open(encoding="utf-8-sig") as fh:  # the spec files start with a BOM
        return json.load(fh)


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """Allow null besides `schema` (the documented rule: any property may be null)."""
    t = schema.get("type")
    if isinstance(t, str) and "$ref" not in schema and "allOf" not in schema:
        out = dict(schema, type=[t, "null"])
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
        return out
    return {"anyOf": [{"type": "null"}, schema]}


# Wire conventions: .NET types that Azure DevOps serialises with custom JSON converters, so their
# generated Swagger definition does not describe the wire (docs/spec-deviations.md, "Wire conventions").
WIRE_TYPES: dict[str, dict[str, Any]] = {
    # ReferenceLinks is written as its `links` dictionary: {"self": {"href": "…"}, …}
    "ReferenceLinks": {"type": "object", "additionalProperties": {
        "type": "object", "properties": {"href": {"type": "string"}}, "required": ["href"]}},
    # IdentityDescriptor is written as the string "{identityType};{identifier}"
    "IdentityDescriptor": {"type": "string", "pattern": "^[^;]+;.+$"},
    # PropertiesCollection is written as {"Name": {"$type": "System.String", "$value": …}, …}
    "PropertiesCollection": {"type": "object", "additionalProperties": {
        "type": "object", "properties": {"$type": {"type": "string"}, "$value": {}},
        "required": ["$type", "$value"], "unevaluatedProperties": False}},
}


def to_json_schema(node: Any) -> Any:
    """Convert one Swagger 2.0 schema node (recursively) to JSON Schema 2020-12."""
    if not isinstance(node, dict):
        return node
    if node.get("type") == "string" and node.get("format") == "T":
        return {}  # a generic type parameter (e.g. OperationResult<T>.result): any JSON value
    if node.get("type") == "object" and not set(node) - {"type", "description"}:
        return {}  # a bare .NET System.Object (e.g. audit `data` values): any JSON value
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$ref":
            out["$ref"] = value.replace("#/definitions/", "#/$defs/")
        elif key == "type":
            if isinstance(value, str):
                out["type"] = value
            # a few generated nodes carry a whole schema under "type": treat as unconstrained
        elif key == "format":
            if value not in _DROPPED_FORMATS:
                out["format"] = value
        elif key == "properties":
            out["properties"] = {k: _nullable(to_json_schema(v)) for k, v in value.items()}
        elif key == "items":
            out["items"] = to_json_schema(value)
        elif key == "additionalProperties":
            # dictionary values may be null like properties (subject lookup: unknown keys -> null)
            out["additionalProperties"] = _nullable(to_json_schema(value)) if isinstance(value, dict) else value
        elif key == "allOf":
            out["allOf"] = [to_json_schema(v) for v in value]
        elif key in ("enum", "required"):
            out[key] = list(value)
        # description, x-ms-enum, x-ms-* … are documentation only
    if "$ref" in out and len(out) > 1:
        # siblings of $ref (e.g. a description) are ignored by Swagger; keep only the ref
        out = {"$ref": out["$ref"]}
    return out


def convert_definitions(definitions: dict[str, Any]) -> dict[str, Any]:
    """`$defs` for JSON Schema, with the wire conventions substituted."""
    return {name: WIRE_TYPES.get(name) or to_json_schema(d) for name, d in definitions.items()}


def undeclared_keys(schema: dict[str, Any], instance: Any, defs: dict[str, Any],
                    path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], str]]:
    """(path, key) of every object key the schema does not declare.

    Done by hand rather than with `unevaluatedProperties`, because JSON Schema drops the annotations
    of a failing `allOf` branch and then reports every inherited key of that object as unexpected.
    """
    parts = _flatten(schema, defs, instance)
    out: list[tuple[tuple[Any, ...], str]] = []
    if isinstance(instance, dict):
        props: dict[str, Any] = {}
        addl: Any = None
        for p in parts:
            props.update(p.get("properties", {}))
            if addl is None and "additionalProperties" in p:
                addl = p["additionalProperties"]
        if not props and addl is None:
            return out  # a free-form object
        for k, v in instance.items():
            if k in props:
                out.extend(undeclared_keys(props[k], v, defs, (*path, k)))
            elif isinstance(addl, dict):
                out.extend(undeclared_keys(addl, v, defs, (*path, k)))
            elif addl is not True:
                out.append((path, k))
    elif isinstance(instance, list):
        for p in parts:
            if isinstance(p.get("items"), dict):
                for i, v in enumerate(instance):
                    out.extend(undeclared_keys(p["items"], v, defs, (*path, i)))
                break
    return out


def _flatten(schema: dict[str, Any], defs: dict[str, Any], instance: Any) -> list[dict[str, Any]]:
    """The schema and everything it pulls in through $ref / allOf / the anyOf(null, X) wrapper."""
    out: list[dict[str, Any]] = []
    stack = [schema]
    while stack:
        s = stack.pop()
        if "$ref" in s:
            stack.append(defs[s["$ref"].rsplit("/", 1)[1]])
            continue
        out.append(s)
        stack.extend(s.get("allOf", []))
        if instance is not None:
            stack.extend(b for b in s.get("anyOf", []) if b.get("type") != "null")
    return out


@dataclass(frozen=True)
class Example:
    area: str
    name: str  # x-ms-examples title ("" allowed)
    path: Path
    operation: Operation
    status: str  # the 2xx status the example answered with
    body: Any
    headers: dict[str, Any]

    @property
    def rel(self) -> str:
        """The example file relative to SPECS_ROOT, with the on-disk case."""
        return self.path.relative_to(SPECS_ROOT).as_posix()


@dataclass
class Operation:
    area: str
    operation_id: str
    method: str  # upper case
    template: str  # e.g. /{organization}/_apis/graph/users
    api_version: str  # e.g. 7.1-preview.1
    status: str | None  # the documented 2xx status that carries a body, e.g. "200"
    response: dict[str, Any] | None  # Swagger response schema (raw)
    response_headers: tuple[str, ...]
    example_refs: dict[str, str]
    _regex: re.Pattern[str] = field(repr=False, default=re.compile(""))

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if method.upper() != self.method:
            return None
        m = self._regex.match(path.rstrip("/") or "/")
        return m.groupdict() if m else None

    @property
    def wrapped(self) -> bool:
        """True when the wire body is the {count, value} collection wrapper."""
        if self.response is None:
            return False
        return self.response.get("type") == "array" or (self.area, self.operation_id) in WRAPPED_OBJECTS


def _template_regex(template: str) -> re.Pattern[str]:
    parts = []
    for seg in template.strip("/").split("/"):
        m = re.fullmatch(r"\{([^}]+)\}", seg)
        if m:
            parts.append(f"(?P<{re.sub(r'[^A-Za-z0-9_]', '_', m.group(1))}>[^/]+)")
        else:
            parts.append(re.escape(seg))
    # Azure DevOps routes are case-insensitive (`_apis/Graph/Users` == `_apis/graph/users`)
    return re.compile("^/" + "/".join(parts) + "$", re.IGNORECASE)


class Spec:
    """One spec file: its operations, definitions as JSON Schema, and a validator per operation."""

    def __init__(self, area: str) -> None:
        self.area = area
        self.file = SPECS_ROOT / AREAS[area]
        self.raw: dict[str, Any] = _read_json(self.file)
        self.host: str = self.raw.get("host", "")
        self.definitions: dict[str, Any] = self.raw.get("definitions", {})
        self.operations: list[Operation] = []
        versions = {name: self._version_of(p) for name, p in self.raw.get("parameters", {}).items()}
        for template, item in self.raw["paths"].items():
            for method, op in item.items():
                if method == "parameters":
                    continue
                api_version = ""
                for p in op.get("parameters", []):
                    ref = p.get("$ref", "")
                    if ref.startswith("#/parameters/"):
                        api_version = versions.get(ref.rsplit("/", 1)[1], "")
                status, schema, headers = None, None, ()
                for code, resp in sorted(op.get("responses", {}).items()):
                    if code.startswith("2") and "schema" in resp:
                        status, schema = code, resp["schema"]
                        headers = tuple(resp.get("headers", {}))
                        break
                self.operations.append(Operation(
                    area, op["operationId"], method.upper(), template, api_version, status, schema,
                    headers, {k: v["$ref"] for k, v in op.get("x-ms-examples", {}).items()},
                    _template_regex(template)))

    @staticmethod
    def _version_of(param: dict[str, Any]) -> str:
        m = re.search(r"set to '([^']+)'", param.get("description", ""))
        return m.group(1) if m else ""

    def operation(self, key: str | tuple[str, ...]) -> Operation:
        if isinstance(key, str):
            for op in self.operations:
                if op.operation_id == key:
                    return op
            raise LookupError(f"{self.area}: no operation {key!r}")
        method, path, *rest = key
        path = path.split("?", 1)[0]
        for op in self.operations:
            if op.match(method, path) is not None:
                if rest and rest[0] and not _version_ok(rest[0], op.api_version):
                    raise LookupError(f"{self.area}: {method} {path} is {op.operation_id} at "
                                      f"api-version {op.api_version}, not {rest[0]}")
                return op
        raise LookupError(f"{self.area}: no operation for {method} {path}")

    @functools.cached_property
    def defs(self) -> dict[str, Any]:
        return convert_definitions(self.definitions)

    def wire_schema(self, op: Operation) -> dict[str, Any]:
        """JSON Schema of the body on the wire (collection wrapper applied), with $defs attached."""
        if op.response is None:
            raise LookupError(f"{self.area}: {op.operation_id} documents no response body")
        inner = to_json_schema(op.response)
        if op.wrapped:
            body = {"type": "object", "required": ["count", "value"],
                    "properties": {"count": {"type": "integer"}, "value": inner}}
        else:
            body = inner
        return {"$schema": "https://json-schema.org/draft/2020-12/schema", **body, "$defs": self.defs}

    @functools.cache  # noqa: B019 - specs live for the whole session
    def validator(self, operation_id: str) -> Draft202012Validator:
        return Draft202012Validator(self.wire_schema(self.operation(operation_id)),
                                    format_checker=FORMAT_CHECKER)

    def examples(self) -> list[Example]:
        out: list[Example] = []
        for op in self.operations:
            for name, ref in op.example_refs.items():
                path = _resolve_case_insensitive(self.file.parent, ref)
                data = _read_json(path)
                for code, resp in sorted((data.get("responses") or {}).items()):
                    if code.startswith("2"):
                        out.append(Example(self.area, name, path, op, code, resp.get("body"),
                                           dict(resp.get("headers") or {})))
                        break
        return out


def _version_ok(asked: str, documented: str) -> bool:
    """The API version of the request belongs to the documented operation (7.1[-preview.N])."""
    return asked.split("-", 1)[0] == documented.split("-", 1)[0]


def _resolve_case_insensitive(base: Path, ref: str) -> Path:
    """Example refs in the specs do not always match the on-disk case (Accounts vs accounts)."""
    here = base
    for part in Path(ref).parts:
        if part == ".":
            continue
        direct = here / part
        if direct.exists():
            here = direct
            continue
        matches = [p for p in here.iterdir() if p.name.lower() == part.lower()]
        if not matches:
            raise FileNotFoundError(f"{base}/{ref}")
        here = matches[0]
    return here


@functools.cache
def spec(area: str) -> Spec:
    return Spec(area)


def operation(area: str, key: str | tuple[str, ...]) -> Operation:
    return spec(area).operation(key)


def _fmt_path(path: Iterable[Any], *, normalize: bool = False) -> str:
    """`$.value[3].x`; normalized: list indices -> `[*]`, data-valued dictionary keys -> `{key}`."""
    out = "$"
    for p in path:
        if isinstance(p, int):
            out += "[*]" if normalize else f"[{p}]"
        elif normalize and not re.fullmatch(r"[A-Za-z_$][A-Za-z0-9_]*", p):
            out += ".{key}"
        else:
            out += f".{p}"
    return out


@dataclass(frozen=True, order=True)
class Finding:
    """One disagreement between a body and its schema."""

    path: str  # JSON path of the offending value, e.g. $.value[0].status
    kind: str  # undeclared | type | enum | format | required | status | body | <keyword>
    detail: str
    norm: str = field(default="", compare=False, repr=False)  # the normalized path

    def __str__(self) -> str:
        return f"{self.path}: {self.kind}: {self.detail}"

    def normalized(self) -> Finding:
        return Finding(self.norm or self.path, self.kind, self.detail, self.norm or self.path)


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    return "array" if isinstance(v, list) else "object"


def _leaf_errors(err: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """For anyOf(null, X) failures, report X's own errors instead of 'not valid under any'."""
    if err.validator == "anyOf" and err.context:
        non_null = [e for e in err.context if not (e.validator == "type" and e.validator_value == "null")]
        if non_null:
            out: list[jsonschema.ValidationError] = []
            for e in non_null:
                out.extend(_leaf_errors(e))
            return out
    return [err]


def _finding(err: jsonschema.ValidationError) -> Finding:
    path, norm = _fmt_path(err.absolute_path), _fmt_path(err.absolute_path, normalize=True)
    v = err.validator
    if v == "type":
        want = err.validator_value
        want = "|".join(w for w in want if w != "null") if isinstance(want, list) else want
        return Finding(path, "type", f"expected {want}, got {_json_type(err.instance)}", norm)
    if v == "enum":
        return Finding(path, "enum", f"{err.instance!r} not in the spec enum", norm)
    if v == "format":
        return Finding(path, "format", f"{err.instance!r} is not a {err.validator_value}", norm)
    return Finding(path, str(v), err.message, norm)


def findings(area: str, key: str | tuple[str, ...], body: Any, *, strict: bool = True) -> list[Finding]:
    """Every disagreement of `body` with the operation's 2xx response schema, sorted.

    strict: also report keys the spec does not declare (kind "undeclared").
    """
    s = spec(area)
    op = s.operation(key)
    validator = s.validator(op.operation_id)
    out: set[Finding] = set()
    for err in validator.iter_errors(body):
        out.update(_finding(leaf) for leaf in _leaf_errors(err))
    if strict:
        for path, k in undeclared_keys(validator.schema, body, s.defs):
            out.add(Finding(_fmt_path((*path, k)), "undeclared", "key not declared in the spec",
                            _fmt_path((*path, k), normalize=True)))
    return sorted(out)


def validate(area: str, key: str | tuple[str, ...], body: Any, *, strict: bool = True,
             allow_undeclared: Iterable[str] = ()) -> list[str]:
    """Readable schema errors of `body` (empty = valid).

    strict: keys the spec does not declare are errors. allow_undeclared: normalized paths (e.g.
    `$.members`) of undeclared keys the real service is documented to send (docs/spec-deviations.md).
    """
    allowed = set(allow_undeclared)
    return [str(f) for f in findings(area, key, body, strict=strict)
            if not (f.kind == "undeclared" and f.normalized().path in allowed)]


def assert_valid(area: str, key: str | tuple[str, ...], body: Any, *, strict: bool = True,
                 allow_undeclared: Iterable[str] = ()) -> None:
    errors = validate(area, key, body, strict=strict, allow_undeclared=allow_undeclared)
    if errors:
        op = operation(area, key)
        raise AssertionError(f"{area} {op.operation_id}: {len(errors)} schema error(s):\n  "
                             + "\n  ".join(errors[:40]))


def examples(area: str | None = None) -> list[Example]:
    areas = [area] if area else list(AREAS)
    return [ex for a in areas for ex in spec(a).examples()]


def examples_for(area: str, operation_id: str) -> list[Example]:
    return [ex for ex in spec(area).examples() if ex.operation.operation_id == operation_id]


def example_findings(ex: Example) -> list[Finding]:
    """Normalized disagreements of one official example with its own operation's schema."""
    op = ex.operation
    out: set[Finding] = set()
    if op.status is not None and ex.status != op.status:
        out.add(Finding("(status)", "status", f"example answers {ex.status}, spec documents {op.status}"))
    if op.response is None:
        if ex.body not in (None, "", {}):
            out.add(Finding("$", "body", "example has a body, spec documents none"))
        return sorted(out)
    out.update(f.normalized() for f in findings(ex.area, op.operation_id, ex.body))
    return sorted(out)
