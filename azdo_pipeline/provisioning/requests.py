"""Provisioning requests: the JSON document, its validation, its JSON Schema.

A request is one small JSON object (docs/requests.md is generated from this module)::

    {"id": "req-1", "organization": "fabrikam", "action": "grant",
     "principal": "alice@fabrikam.com", "target": "[Web]\\\\Contributors"}

`parse_request(raw)` accepts bytes or text, straight from a file, and returns a `Request` or raises
`RequestError` -- and nothing else, whatever the input (broken JSON, wrong types, unknown actions,
huge or non-UTF-8 files). The error lists every problem, each naming the field and the fix, so a
rejected file can be corrected in one go. `request_json_schema()` is the published schema; it is
built from the same constants the parser checks, and a test keeps the two in agreement.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

MAX_REQUEST_BYTES = 64 * 1024
"""A request is a few hundred bytes; anything above this is refused before it is parsed."""

MAX_PROJECTS = 100


class Action(StrEnum):
    CREATE_ACCOUNT = "create_account"
    GRANT = "grant"
    REVOKE = "revoke"
    DEPROVISION_ACCOUNT = "deprovision_account"


class License(StrEnum):
    """Access level of a new account (Member Entitlement Management `accountLicenseType`)."""

    EXPRESS = "express"  # "Basic" in the Azure DevOps UI
    STAKEHOLDER = "stakeholder"
    VISUAL_STUDIO_SUBSCRIBER = "visual_studio_subscriber"


# Spellings people use for the same licence (the UI name "Basic", ConductorOne's "Visual Studio Subscriber").
LICENSE_ALIASES: dict[str, License] = {
    "express": License.EXPRESS,
    "basic": License.EXPRESS,
    "stakeholder": License.STAKEHOLDER,
    "visual_studio_subscriber": License.VISUAL_STUDIO_SUBSCRIBER,
    "visual studio subscriber": License.VISUAL_STUDIO_SUBSCRIBER,
    "vs_subscriber": License.VISUAL_STUDIO_SUBSCRIBER,
}


# Exact spellings accepted (the schema lists them, so JSON Schema validators agree with the parser).
LICENSE_SPELLINGS: dict[str, License] = {
    variant: lic for alias, lic in LICENSE_ALIASES.items()
    for variant in (alias, alias.title(), alias.capitalize(), alias.upper())}


class ProjectRole(StrEnum):
    """Built-in project group an account joins (Member Entitlement Management `groupType`)."""

    READER = "reader"
    CONTRIBUTOR = "contributor"
    ADMINISTRATOR = "administrator"
    STAKEHOLDER = "stakeholder"

    @property
    def group_type(self) -> str:
        return "project" + self.value.capitalize()


# Ids end up in file names (inbox), run tags and Parquet keys: keep them to a safe alphabet.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"
ORG_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,48}[A-Za-z0-9])?$"
# Graph subject descriptor: subject type (3-5 letters) + base64url identifier (learn.microsoft.com/
# rest/api/azure/devops/graph/descriptors).
DESCRIPTOR_PATTERN = r"^[a-z0-9]{2,5}\.[A-Za-z0-9_\-]{1,256}={0,2}$"
PRINCIPAL_DESCRIPTOR_TYPES = ("aad", "msa", "aadsp", "svc", "bnd", "aadgp", "vssgp")
GROUP_DESCRIPTOR_TYPES = ("vssgp", "aadgp")
PRINCIPAL_DESCRIPTOR_PATTERN = r"^(?:" + "|".join(PRINCIPAL_DESCRIPTOR_TYPES) + r")\.[A-Za-z0-9_\-]{1,256}={0,2}$"
GROUP_DESCRIPTOR_PATTERN = r"^(?:" + "|".join(GROUP_DESCRIPTOR_TYPES) + r")\.[A-Za-z0-9_\-]{1,256}={0,2}$"
TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:\d{2})$"
# `[Project]\Group Name` (project or organization group) and `Project\Team`.
GROUP_NAME_PATTERN = r"^\[[^\[\]\\]{1,256}\]\\[^\\]{1,256}$"
TEAM_NAME_PATTERN = r"^[^\[\]\\]{1,256}\\[^\\]{1,256}$"
# A principal name is a UPN or e-mail; a group may be named the `[Project]\Group` way.
PRINCIPAL_NAME_PATTERN = r"^[^\s@]+@[^\s@]+$"
PROJECT_NAME_PATTERN = r"^[^\\\s](?:[^\\]{0,254}[^\\\s])?$"

_ID = re.compile(ID_PATTERN)
_ORG = re.compile(ORG_PATTERN)
_DESCRIPTOR = re.compile(DESCRIPTOR_PATTERN)
_GROUP_NAME = re.compile(GROUP_NAME_PATTERN)
_TEAM_NAME = re.compile(TEAM_NAME_PATTERN)
_PRINCIPAL_NAME = re.compile(PRINCIPAL_NAME_PATTERN)
_TIMESTAMP = re.compile(TIMESTAMP_PATTERN)
_PROJECT_NAME = re.compile(PROJECT_NAME_PATTERN)

FIELDS = ("$schema", "id", "organization", "action", "principal", "target", "license", "projects", "dry_run",
          "requested_at", "requested_by", "comment")
PROJECT_FIELDS = ("project", "role")


@dataclass(frozen=True)
class Problem:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class RequestError(ValueError):
    """A request that cannot be carried out as written; `problems` name each field and its fix."""

    def __init__(self, problems: list[Problem], *, request_id: str | None = None) -> None:
        self.problems = tuple(problems)
        self.request_id = request_id
        lines = "; ".join(str(p) for p in problems) or "invalid request"
        prefix = f"request {request_id!r}: " if request_id else "invalid request: "
        super().__init__(prefix + lines)

    @property
    def reason(self) -> str:
        return str(self)


@dataclass(frozen=True)
class PrincipalRef:
    """Who: a Graph descriptor, or a principal name / e-mail (or `[Project]\\Group`) to resolve."""

    descriptor: str | None = None
    name: str | None = None

    def __str__(self) -> str:
        return self.descriptor or self.name or ""

    @property
    def is_group(self) -> bool:
        if self.descriptor:
            return self.descriptor.split(".", 1)[0] in GROUP_DESCRIPTOR_TYPES
        return bool(self.name and _GROUP_NAME.fullmatch(self.name))


@dataclass(frozen=True)
class TargetRef:
    """What: an Azure DevOps or Entra group by descriptor, `[Project]\\Group Name`, or `Project\\Team`."""

    descriptor: str | None = None
    group: str | None = None  # `[Project]\Group Name`
    team: str | None = None  # `Project\Team`

    def __str__(self) -> str:
        return self.descriptor or self.group or self.team or ""

    @property
    def is_entra_group(self) -> bool:
        return bool(self.descriptor and self.descriptor.startswith("aadgp."))


@dataclass(frozen=True)
class ProjectAccess:
    project: str  # name or id
    role: ProjectRole = ProjectRole.CONTRIBUTOR


@dataclass(frozen=True)
class Request:
    id: str
    organization: str
    action: Action
    principal: PrincipalRef
    target: TargetRef | None = None
    license: License | None = None
    projects: tuple[ProjectAccess, ...] = ()
    dry_run: bool = False
    requested_at: datetime | None = None
    requested_by: str | None = None
    comment: str | None = None

    @property
    def membership_key(self) -> tuple[str, str, str] | None:
        """(organization, target, principal) of a grant/revoke: requests sharing it must run in order."""
        if self.target is None:
            return None
        return (self.organization.lower(), str(self.target).lower(), str(self.principal).lower())

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of this request (parse_request(json.dumps(r.to_dict())) == r)."""
        out: dict[str, Any] = {"id": self.id, "organization": self.organization, "action": self.action.value,
                               "principal": _principal_json(self.principal)}
        if self.target is not None:
            out["target"] = _target_json(self.target)
        if self.license is not None:
            out["license"] = self.license.value
        if self.projects:
            out["projects"] = [{"project": p.project, "role": p.role.value} for p in self.projects]
        if self.dry_run:
            out["dry_run"] = True
        if self.requested_at is not None:
            out["requested_at"] = self.requested_at.isoformat()
        if self.requested_by is not None:
            out["requested_by"] = self.requested_by
        if self.comment is not None:
            out["comment"] = self.comment
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2) + "\n"


def _principal_json(p: PrincipalRef) -> Any:
    if p.descriptor:
        return {"descriptor": p.descriptor}
    return {"name": p.name}


def _target_json(t: TargetRef) -> Any:
    if t.descriptor:
        return {"descriptor": t.descriptor}
    if t.group:
        return {"group": t.group}
    return {"team": t.team}


# ---- parsing ------------------------------------------------------------------------------


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _whole(message: str) -> RequestError:
    """A problem with the document as a whole (not one field)."""
    return RequestError([Problem("", message)])


def parse_request(raw: bytes | str) -> Request:
    """Parse and validate one request document; raises RequestError only."""
    try:
        return _parse(raw)
    except RequestError:
        raise
    except Exception as exc:  # a defect of ours must still reject the request, not crash a sensor
        raise _whole(f"the document could not be read ({type(exc).__name__}); check that the file is "
                                        "one JSON object as docs/requests.md shows") from None


def _parse(raw: bytes | str) -> Request:
    if isinstance(raw, str):
        size = len(raw.encode("utf-8", errors="surrogatepass"))
    elif isinstance(raw, bytes | bytearray | memoryview):
        size = len(raw)
    else:
        raise _whole(f"expected JSON text or bytes, got {type(raw).__name__}")
    if size > MAX_REQUEST_BYTES:
        raise _whole(f"the document is {size:,} bytes; a request must be at most {MAX_REQUEST_BYTES:,} "
                                        "bytes (one JSON object per file)")
    if not isinstance(raw, str):
        try:
            text = bytes(raw).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise _whole(f"the document is not UTF-8 (byte {exc.start}); save the file as UTF-8") from None
    else:
        text = raw
    if not text.strip():
        raise _whole("the document is empty; write one JSON object (docs/requests.md)")
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except _DuplicateKey as dup:
        raise RequestError([Problem(_field_name(dup.key), "appears twice; keep one")]) from None
    except json.JSONDecodeError as exc:
        raise _whole(f"the document is not valid JSON ({exc.msg} at line {exc.lineno} column "
                                        f"{exc.colno}); fix the syntax") from None
    except RecursionError:
        raise _whole("the document is nested too deeply; a request is one flat JSON object") from None
    except ValueError as exc:  # NaN/Infinity, integers too long to convert
        raise _whole(f"the document is not valid JSON ({exc}); fix the value") from None
    return validate_request(data)


def _field_name(key: Any) -> str:
    s = str(key)
    return s if len(s) <= 40 else s[:37] + "..."


def validate_request(data: Any) -> Request:
    """Validate an already decoded JSON value; raises RequestError listing every problem."""
    if not isinstance(data, Mapping):
        raise _whole(f"the document must be a JSON object, got {_json_type(data)}; see docs/requests.md")
    problems: list[Problem] = []

    for k in data:
        if k not in FIELDS:
            close = difflib.get_close_matches(str(k), FIELDS, n=1)
            hint = f"did you mean '{close[0]}'?" if close else "remove it; allowed: " + ", ".join(FIELDS[1:])
            problems.append(Problem(_field_name(k), f"unknown field ({hint})"))

    req_id = data.get("id")
    if req_id is None:
        problems.append(Problem("id", "is required: a unique request id (letters, digits, . _ : @ -; up to 128)"))
    elif not isinstance(req_id, str) or not _ID.fullmatch(req_id):
        problems.append(Problem("id", f"must be 1-128 characters of letters, digits and . _ : @ -, starting "
                                      f"with a letter or digit; got {_show(req_id)}"))
        req_id = None

    org = data.get("organization")
    if org is None:
        problems.append(Problem("organization", "is required: the organization name as in the configuration"))
    elif not isinstance(org, str) or not _ORG.fullmatch(org):
        problems.append(Problem("organization", f"must be an organization name (letters, digits, hyphens), got "
                                                f"{_show(org)}"))
        org = None

    action: Action | None = None
    raw_action = data.get("action")
    if raw_action is None:
        problems.append(Problem("action", "is required: one of " + ", ".join(a.value for a in Action)))
    elif not isinstance(raw_action, str) or raw_action not in Action._value2member_map_:
        close = difflib.get_close_matches(str(raw_action), [a.value for a in Action], n=1)
        hint = f"did you mean '{close[0]}'?" if close else "use one of " + ", ".join(a.value for a in Action)
        problems.append(Problem("action", f"unknown action {_show(raw_action)} ({hint})"))
    else:
        action = Action(raw_action)

    principal = _principal(problems, data.get("principal"), action)
    target = _target(problems, data.get("target"), action)
    lic = _license(problems, data.get("license"), action)
    projects = _projects(problems, data.get("projects"), action)

    dry_run = data.get("dry_run", False)
    if not isinstance(dry_run, bool):
        problems.append(Problem("dry_run", f"must be true or false, got {_show(dry_run)}"))
        dry_run = False

    requested_at = _timestamp(problems, data.get("requested_at"))
    requested_by = _short_text(problems, "requested_by", data.get("requested_by"), 256)
    comment = _short_text(problems, "comment", data.get("comment"), 2000)
    schema = data.get("$schema")
    if schema is not None and not isinstance(schema, str):
        problems.append(Problem("$schema", f"must be a URL string, got {_show(schema)}"))

    if problems:
        raise RequestError(problems, request_id=req_id if isinstance(req_id, str) else None)
    assert req_id is not None and org is not None and action is not None and principal is not None
    return Request(id=req_id, organization=org, action=action, principal=principal, target=target, license=lic,
                   projects=projects, dry_run=dry_run, requested_at=requested_at, requested_by=requested_by,
                   comment=comment)


def _principal(problems: list[Problem], raw: Any, action: Action | None) -> PrincipalRef | None:
    if raw is None:
        problems.append(Problem("principal", "is required: a principal name / e-mail (alice@contoso.com) or "
                                             "{\"descriptor\": \"aad.…\"}"))
        return None
    ref: PrincipalRef | None = None
    if isinstance(raw, str):
        ref = _principal_from_text(problems, "principal", raw)
    elif isinstance(raw, Mapping):
        keys = set(raw)
        if len(keys) != 1 or not keys <= {"descriptor", "name"}:
            problems.append(Problem("principal", "as an object must have exactly one of 'descriptor' or 'name', "
                                                 f"got keys {sorted(map(str, keys))}"))
            return None
        (key, value), = raw.items()
        if key == "descriptor":
            ref = _descriptor(problems, "principal.descriptor", value, PRINCIPAL_DESCRIPTOR_TYPES, PrincipalRef)
        else:
            ref = _principal_name(problems, "principal.name", value)
    else:
        problems.append(Problem("principal", f"must be a string or an object, got {_json_type(raw)}"))
        return None
    if ref is not None and action is Action.CREATE_ACCOUNT and ref.name is None:
        problems.append(Problem("principal", "create_account needs the principal name (UPN or e-mail) of the "
                                             "person to add, not a descriptor"))
    if ref is not None and action is Action.CREATE_ACCOUNT and ref.is_group:
        problems.append(Problem("principal", "create_account adds a person: give a UPN or e-mail, not a group"))
    return ref


def _principal_from_text(problems: list[Problem], where: str, raw: str) -> PrincipalRef | None:
    if _DESCRIPTOR.fullmatch(raw) and raw.split(".", 1)[0] in PRINCIPAL_DESCRIPTOR_TYPES and "@" not in raw:
        return PrincipalRef(descriptor=raw)
    return _principal_name(problems, where, raw)


def _principal_name(problems: list[Problem], where: str, raw: Any) -> PrincipalRef | None:
    if not isinstance(raw, str):
        problems.append(Problem(where, f"must be a string, got {_json_type(raw)}"))
        return None
    name = raw
    if len(name) > 512 or not (_PRINCIPAL_NAME.fullmatch(name) or _GROUP_NAME.fullmatch(name)):
        problems.append(Problem(where, f"must be a principal name or e-mail like alice@contoso.com, a group as "
                                       f"[Project]\\Group Name, or a descriptor like aad.…; got {_show(raw)}"))
        return None
    return PrincipalRef(name=name)


def _descriptor(problems: list[Problem], where: str, raw: Any, types: tuple[str, ...], cls: Any) -> Any:
    if not isinstance(raw, str) or not _DESCRIPTOR.fullmatch(raw):
        problems.append(Problem(where, f"must be a Graph descriptor like {types[0]}.<base64>, got {_show(raw)}"))
        return None
    kind = raw.split(".", 1)[0]
    if kind not in types:
        problems.append(Problem(where, f"descriptor type {kind!r} is not allowed here; expected one of "
                                       + ", ".join(types)))
        return None
    return cls(descriptor=raw)


def _target(problems: list[Problem], raw: Any, action: Action | None) -> TargetRef | None:
    needs = action in (Action.GRANT, Action.REVOKE)
    if raw is None:
        if needs:
            problems.append(Problem("target", "is required for grant and revoke: a group descriptor "
                                              "(vssgp.… / aadgp.…), [Project]\\Group Name, or Project\\Team"))
        return None
    if action is not None and not needs:
        problems.append(Problem("target", f"is not used by {action.value}; remove it"))
        return None
    if isinstance(raw, str):
        if _DESCRIPTOR.fullmatch(raw):
            return _descriptor(problems, "target", raw, GROUP_DESCRIPTOR_TYPES, TargetRef)  # type: ignore[no-any-return]
        if _GROUP_NAME.fullmatch(raw):
            return TargetRef(group=raw)
        if _TEAM_NAME.fullmatch(raw):
            return TargetRef(team=raw)
        problems.append(Problem("target", "must be a group descriptor (vssgp.… / aadgp.…), a group as "
                                          "[Project]\\Group Name, or a team as Project\\Team; got " + _show(raw)))
        return None
    if isinstance(raw, Mapping):
        keys = set(raw)
        if len(keys) != 1 or not keys <= {"descriptor", "group", "team"}:
            problems.append(Problem("target", "as an object must have exactly one of 'descriptor', 'group', "
                                              f"'team', got keys {sorted(map(str, keys))}"))
            return None
        (key, value), = raw.items()
        if key == "descriptor":
            return _descriptor(problems, "target.descriptor", value, GROUP_DESCRIPTOR_TYPES, TargetRef)  # type: ignore[no-any-return]
        pattern, example = (_GROUP_NAME, "[Project]\\Group Name") if key == "group" else (_TEAM_NAME, "Project\\Team")
        if not isinstance(value, str) or not pattern.fullmatch(value):
            problems.append(Problem(f"target.{key}", f"must look like {example}, got {_show(value)}"))
            return None
        return TargetRef(group=value) if key == "group" else TargetRef(team=value)
    problems.append(Problem("target", f"must be a string or an object, got {_json_type(raw)}"))
    return None


def _license(problems: list[Problem], raw: Any, action: Action | None) -> License | None:
    if raw is None:
        if action is Action.CREATE_ACCOUNT:
            problems.append(Problem("license", "is required for create_account: express (Basic), stakeholder or "
                                               "visual_studio_subscriber"))
        return None
    if action is not None and action is not Action.CREATE_ACCOUNT:
        problems.append(Problem("license", f"is only used by create_account; remove it from a {action.value}"))
        return None
    if not isinstance(raw, str) or raw not in LICENSE_SPELLINGS:
        problems.append(Problem("license", f"must be express (or basic), stakeholder or visual_studio_subscriber; "
                                           f"got {_show(raw)}"))
        return None
    return LICENSE_SPELLINGS[raw]


def _projects(problems: list[Problem], raw: Any, action: Action | None) -> tuple[ProjectAccess, ...]:
    if raw is None:
        return ()
    if action is not None and action is not Action.CREATE_ACCOUNT:
        problems.append(Problem("projects", f"is only used by create_account; remove it from a {action.value}"))
        return ()
    if not isinstance(raw, list):
        problems.append(Problem("projects", f"must be a list of {{\"project\": name, \"role\": role}}, got "
                                            f"{_json_type(raw)}"))
        return ()
    if len(raw) > MAX_PROJECTS:
        problems.append(Problem("projects", f"lists {len(raw)} projects; at most {MAX_PROJECTS} per request"))
        return ()
    out: list[ProjectAccess] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        where = f"projects[{i}]"
        if isinstance(item, str):
            item = {"project": item}
        if not isinstance(item, Mapping):
            problems.append(Problem(where, f"must be an object {{\"project\": name, \"role\": role}}, got "
                                           f"{_json_type(item)}"))
            continue
        for k in item:
            if k not in PROJECT_FIELDS:
                problems.append(Problem(f"{where}.{_field_name(k)}", "unknown field; allowed: project, role"))
        name = item.get("project")
        if not isinstance(name, str) or not _PROJECT_NAME.fullmatch(name):
            problems.append(Problem(f"{where}.project", f"must be the project name or id, got {_show(name)}"))
            continue
        role_raw = item.get("role", ProjectRole.CONTRIBUTOR.value)
        if not isinstance(role_raw, str) or role_raw not in ProjectRole._value2member_map_:
            problems.append(Problem(f"{where}.role", "must be one of " + ", ".join(r.value for r in ProjectRole)
                                    + f", got {_show(role_raw)}"))
            continue
        if name.lower() in seen:
            problems.append(Problem(f"{where}.project", f"{name!r} is listed twice; keep one"))
            continue
        seen.add(name.lower())
        out.append(ProjectAccess(project=name, role=ProjectRole(role_raw)))
    return tuple(out)


def _timestamp(problems: list[Problem], raw: Any) -> datetime | None:
    if raw is None:
        return None
    if isinstance(raw, str) and len(raw) <= 64 and _TIMESTAMP.fullmatch(raw.strip()):
        try:
            ts = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            if ts.tzinfo is not None:
                return ts.astimezone(UTC)
    if isinstance(raw, str) and len(raw) <= 64 and _TIMESTAMP.fullmatch(raw.strip() + "Z"):
        problems.append(Problem("requested_at", f"needs a time zone, e.g. {raw.strip()}Z; got {_show(raw)}"))
        return None
    problems.append(Problem("requested_at", f"must be an ISO 8601 time with zone like 2026-01-31T09:00:00Z, got "
                                            f"{_show(raw)}"))
    return None


def _short_text(problems: list[Problem], where: str, raw: Any, limit: int) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or len(raw) > limit:
        problems.append(Problem(where, f"must be text of at most {limit} characters, got {_show(raw)}"))
        return None
    return raw


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int | float):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, Mapping):
        return "an object"
    return type(v).__name__


def _show(v: Any) -> str:
    """A short, safe rendering of a bad value for an error message."""
    if isinstance(v, str):
        s = v if len(v) <= 60 else v[:57] + "..."
        return repr(s)
    if isinstance(v, bool | int | float) or v is None:
        text = json.dumps(v) if not isinstance(v, int) or v.bit_length() < 64 else "a very large number"
        return text
    return _json_type(v)


# ---- JSON Schema --------------------------------------------------------------------------

SCHEMA_ID = "urn:azdo-pipeline:provisioning-request:1"


def request_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a request, built from the constants the parser checks."""
    descriptor = {"type": "string", "pattern": PRINCIPAL_DESCRIPTOR_PATTERN}
    group_descriptor = {"type": "string", "pattern": GROUP_DESCRIPTOR_PATTERN}
    principal_name = {"type": "string", "anyOf": [{"pattern": PRINCIPAL_NAME_PATTERN},
                                                  {"pattern": GROUP_NAME_PATTERN}], "maxLength": 512}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "azdo-pipeline provisioning request",
        "type": "object",
        "additionalProperties": False,
        "required": ["id", "organization", "action", "principal"],
        "properties": {
            "$schema": {"type": "string", "description": "Optional: the URL of this schema, for editors."},
            "id": {"type": "string", "pattern": ID_PATTERN,
                   "description": "Unique request id; a request with an id already carried out is not repeated."},
            "organization": {"type": "string", "pattern": ORG_PATTERN,
                             "description": "Organization name as in the configuration."},
            "action": {"enum": [a.value for a in Action], "description": "What to do."},
            "principal": {
                "description": "Who: a principal name / e-mail (resolved through the latest synced tables, then "
                               "a Graph lookup), a group as `[Project]\\Group Name`, or a Graph descriptor.",
                "oneOf": [
                    {"type": "string", "anyOf": [principal_name, descriptor]},
                    {"type": "object", "additionalProperties": False, "required": ["descriptor"],
                     "properties": {"descriptor": descriptor}},
                    {"type": "object", "additionalProperties": False, "required": ["name"],
                     "properties": {"name": principal_name}},
                ]},
            "target": {
                "description": "grant/revoke only: the group or team, by descriptor (`vssgp.`/`aadgp.`), as "
                               "`[Project]\\Group Name`, or as `Project\\Team` (the team's own group).",
                "oneOf": [
                    {"type": "string", "anyOf": [group_descriptor, {"pattern": GROUP_NAME_PATTERN},
                                                 {"pattern": TEAM_NAME_PATTERN}]},
                    {"type": "object", "additionalProperties": False, "required": ["descriptor"],
                     "properties": {"descriptor": group_descriptor}},
                    {"type": "object", "additionalProperties": False, "required": ["group"],
                     "properties": {"group": {"type": "string", "pattern": GROUP_NAME_PATTERN}}},
                    {"type": "object", "additionalProperties": False, "required": ["team"],
                     "properties": {"team": {"type": "string", "pattern": TEAM_NAME_PATTERN}}},
                ]},
            "license": {"enum": sorted(LICENSE_SPELLINGS), "description": "create_account only: the access level. "
                        "`express` and `basic` are the same (Basic); `visual_studio_subscriber` assigns a "
                        "Visual Studio subscription licence."},
            "projects": {
                "type": "array", "maxItems": MAX_PROJECTS,
                "description": "create_account only: projects to join, with the role (default contributor).",
                "items": {"oneOf": [
                    {"type": "string", "pattern": PROJECT_NAME_PATTERN},
                    {"type": "object", "additionalProperties": False, "required": ["project"],
                     "properties": {"project": {"type": "string", "pattern": PROJECT_NAME_PATTERN},
                                    "role": {"enum": [r.value for r in ProjectRole]}}}]}},
            "dry_run": {"type": "boolean", "default": False,
                        "description": "Report the API calls it would make, make none."},
            "requested_at": {"type": "string", "format": "date-time", "maxLength": 64, "pattern": TIMESTAMP_PATTERN,
                             "description": "When the request was made (ISO 8601 with zone); defaults to when it "
                                            "was picked up."},
            "requested_by": {"type": "string", "maxLength": 256, "description": "Who asked (for the record)."},
            "comment": {"type": "string", "maxLength": 2000, "description": "Free text (for the record)."},
        },
        "allOf": [
            {"if": {"properties": {"action": {"enum": ["grant", "revoke"]}}, "required": ["action"]},
             "then": {"required": ["target"], "not": {"anyOf": [{"required": ["license"]},
                                                                 {"required": ["projects"]}]}}},
            {"if": {"properties": {"action": {"const": "create_account"}}, "required": ["action"]},
             "then": {"required": ["license"], "not": {"required": ["target"]},
                      "properties": {"principal": {"anyOf": [
                          {"type": "string", "pattern": PRINCIPAL_NAME_PATTERN},
                          {"type": "object", "properties": {"name": {"pattern": PRINCIPAL_NAME_PATTERN}},
                           "required": ["name"]}]}}}},
            {"if": {"properties": {"action": {"const": "deprovision_account"}}, "required": ["action"]},
             "then": {"not": {"anyOf": [{"required": ["target"]}, {"required": ["license"]},
                                        {"required": ["projects"]}]}}},
        ],
    }


EXAMPLES: dict[str, dict[str, Any]] = {
    "Grant a person membership of a project group": {
        "id": "req-2026-0001", "organization": "fabrikam", "action": "grant",
        "principal": "alice@fabrikam.com", "target": "[Fabrikam Web]\\Contributors",
        "requested_by": "access-review-42"},
    "Revoke a membership of a team, by descriptor": {
        "id": "req-2026-0002", "organization": "fabrikam", "action": "revoke",
        "principal": {"descriptor": "aad.ZmFiLXVzZXItMDAwMQ"}, "target": {"team": "Fabrikam Web\\Web Team"}},
    "Add a person to an Entra group (a no-op success unless Entra group provisioning is on)": {
        "id": "req-2026-0003", "organization": "fabrikam", "action": "grant",
        "principal": "bob@fabrikam.com", "target": "aadgp.Uy0xLTktMTU1MTM3NDI0NS0xMjA0NDAwOTY5",
        "dry_run": True},
    "Create an account with a Basic licence and two projects": {
        "id": "req-2026-0004", "organization": "fabrikam", "action": "create_account",
        "principal": "carol@fabrikam.com", "license": "express",
        "projects": [{"project": "Fabrikam Web", "role": "contributor"}, {"project": "Ops", "role": "reader"}]},
    "Deprovision (always refused: remove accounts in Azure DevOps itself)": {
        "id": "req-2026-0005", "organization": "fabrikam", "action": "deprovision_account",
        "principal": "dave@fabrikam.com"},
}


def now_utc() -> datetime:
    return datetime.now(UTC)


__all__ = [
    "EXAMPLES",
    "MAX_REQUEST_BYTES",
    "Action",
    "License",
    "PrincipalRef",
    "Problem",
    "ProjectAccess",
    "ProjectRole",
    "Request",
    "RequestError",
    "TargetRef",
    "parse_request",
    "request_json_schema",
    "validate_request",
]
