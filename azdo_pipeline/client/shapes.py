"""What each route's successful answer looks like, checked before a page is used.

A 200 answer that is not the route's shape (a proxy's HTML or XML page, an empty body, `null`, a
list without its `value`, a field of another type) must never read as an empty or partial list:
the transport retries it as a damaged answer and then fails naming the route and what was wrong
(transport.Requester, `shape=`). The shapes follow the Azure DevOps REST 7.1 reference
(https://learn.microsoft.com/rest/api/azure/devops/?view=azure-devops-rest-7.1): only the fields
the connector reads are checked, each with its documented JSON type.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class ShapeError(ValueError):
    """A successful answer that is not what the route returns; the message says what was wrong."""


# Field kinds: a JSON type a field must have when present and not null.
STR, INT, BOOL, OBJ, LIST, STR_LIST, TIME = "string", "integer", "boolean", "object", "array", \
    "array of strings", "timestamp"

_FRACTION = re.compile(r"(\.\d{6})\d+")


def _is_time(value: str) -> bool:
    if not value or value.startswith("0001-01-01"):
        return True
    try:
        datetime.fromisoformat(_FRACTION.sub(r"\1", value.replace("Z", "+00:00")))
    except ValueError:
        return False
    return True


def kind_ok(value: Any, kind: str) -> bool:
    if kind == STR:
        return isinstance(value, str)
    if kind == INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == BOOL:
        return isinstance(value, bool)
    if kind == OBJ:
        return isinstance(value, dict)
    if kind == LIST:
        return isinstance(value, list)
    if kind == STR_LIST:
        return isinstance(value, list) and all(isinstance(v, str) or v is None for v in value)
    if kind == TIME:
        return isinstance(value, str) and _is_time(value)
    raise AssertionError(kind)


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
            dict: "object"}.get(type(value), type(value).__name__)


@dataclass(frozen=True)
class Field:
    kind: str
    required: bool = False  # must be present and not null


def req(kind: str) -> Field:
    return Field(kind, True)


def opt(kind: str) -> Field:
    return Field(kind, False)


def _dig(item: Mapping[str, Any], path: str) -> tuple[bool, Any, str]:
    """(reachable, value, where) for a dotted path; an intermediate of the wrong type is reported."""
    node: Any = item
    parts = path.split(".")
    for i, key in enumerate(parts):
        if node is None:
            return True, None, path
        if not isinstance(node, dict):
            return False, node, ".".join(parts[:i])
        node = node.get(key)
    return True, node, path


def check_fields(obj: Mapping[str, Any], fields: Mapping[str, Field], where: str) -> None:
    for path, f in fields.items():
        ok, value, at = _dig(obj, path)
        if not ok:
            raise ShapeError(f"{where}.{at} is {type_name(value)}, expected an object")
        if value is None:
            if f.required:
                raise ShapeError(f"{where} has no `{path}`")
            continue
        if not kind_ok(value, f.kind):
            shown = f" ({value!r})" if f.kind == TIME and isinstance(value, str) else ""
            article = "an" if f.kind[0] in "aio" else "a"
            raise ShapeError(f"{where}.{path} is {type_name(value)}{shown}, expected {article} {f.kind}")


@dataclass(frozen=True)
class Shape:
    """A route's JSON answer: an object holding a list of items under `list_key` (or a bare list
    when `bare_list_ok`), plus top-level fields. `list_key` None: the object itself is the answer."""

    what: str  # e.g. "a list of projects": said in error messages
    list_key: str | None = "value"
    items: Mapping[str, Field] = field(default_factory=dict)
    top: Mapping[str, Field] = field(default_factory=dict)
    null_items: bool = False  # identities: an unknown key comes back as null
    bare_list_ok: bool = False
    alt_list_keys: tuple[str, ...] = ()  # other keys that may hold the list (the first present wins)

    def check(self, data: Any) -> None:
        """Raise ShapeError unless `data` (decoded JSON) is this route's answer."""
        if self.bare_list_ok and isinstance(data, list):
            items: Any = data
        else:
            if not isinstance(data, dict):
                raise ShapeError(f"the body is JSON {type_name(data)}, expected an object holding {self.what}")
            check_fields(data, self.top, "the body")
            if self.list_key is None:
                return
            key = next((k for k in (self.list_key, *self.alt_list_keys) if data.get(k) is not None),
                       self.list_key)
            if key not in data:
                raise ShapeError(f"the body has no `{key}` list (expected {self.what})")
            items = data[key]
            if not isinstance(items, list):
                raise ShapeError(f"`{key}` is {type_name(items)}, expected an array of {self.what}")
        for i, item in enumerate(items):
            if item is None and self.null_items:
                continue
            if not isinstance(item, dict):
                raise ShapeError(f"item {i} of {self.what} is {type_name(item)}, expected an object")
            check_fields(item, self.items, f"item {i}")


# ---- the routes the connector reads ------------------------------------------------------

RESOURCE_AREAS = Shape("resource areas", items={"id": opt(STR), "locationUrl": opt(STR)})
PROJECTS = Shape("projects", items={
    "id": req(STR), "name": opt(STR), "description": opt(STR), "state": opt(STR), "visibility": opt(STR),
    "revision": opt(INT), "lastUpdateTime": opt(TIME)}, top={"count": opt(INT)})
TEAMS = Shape("teams", items={"id": req(STR), "name": opt(STR), "description": opt(STR), "projectId": req(STR),
                              "projectName": opt(STR)}, top={"count": opt(INT)}, bare_list_ok=True)
PROJECT_TEAMS = Shape("teams", items={"id": req(STR), "name": opt(STR), "description": opt(STR),
                                      "projectId": opt(STR), "projectName": opt(STR)},
                      top={"count": opt(INT)}, bare_list_ok=True)
TEAM_MEMBERS = Shape("team members", items={
    "identity": req(OBJ), "identity.id": opt(STR), "identity.descriptor": req(STR),
    "identity.displayName": opt(STR), "isTeamAdmin": opt(BOOL)}, top={"count": opt(INT)}, bare_list_ok=True)
_SUBJECT = {"descriptor": req(STR), "displayName": opt(STR), "principalName": opt(STR), "origin": opt(STR),
            "originId": opt(STR), "domain": opt(STR), "mailAddress": opt(STR), "metaType": opt(STR)}
GRAPH_USERS = Shape("Graph users", items=_SUBJECT, top={"count": opt(INT)})
GRAPH_GROUPS = Shape("Graph groups", items={**_SUBJECT, "description": opt(STR)}, top={"count": opt(INT)})
GRAPH_SERVICE_PRINCIPALS = Shape("Graph service principals", items={**_SUBJECT, "applicationId": opt(STR)},
                                 top={"count": opt(INT)})
GRAPH_SUBJECT = Shape("a Graph subject", list_key=None, top={"descriptor": req(STR)})
GRAPH_MEMBERSHIPS = Shape("memberships", items={"memberDescriptor": req(STR), "containerDescriptor": opt(STR)},
                          top={"count": opt(INT)})
GRAPH_LOOKUP = Shape("subjects", list_key=None, top={"value": req(OBJ)})
GRAPH_KEY = Shape("a descriptor or storage key", list_key=None, top={"value": req(STR)})
IDENTITIES = Shape("identities", items={"id": opt(STR), "descriptor": opt(STR), "subjectDescriptor": opt(STR),
                                        "providerDisplayName": opt(STR), "memberIds": opt(STR_LIST)},
                   top={"count": opt(INT)}, null_items=True)
USER_ENTITLEMENTS = Shape("user entitlements", list_key="members", items={
    "id": req(STR), "user": req(OBJ), "user.descriptor": req(STR), "accessLevel": opt(OBJ),
    "lastAccessedDate": opt(TIME), "dateCreated": opt(TIME)},
    top={"continuationToken": opt(STR), "totalCount": opt(INT)}, alt_list_keys=("items",))
ACLS = Shape("access control lists", items={"token": opt(STR), "acesDictionary": opt(OBJ)},
             top={"count": opt(INT)})
PROFILE = Shape("a profile", list_key=None, top={"id": req(STR)})
ACCOUNTS = Shape("organizations", items={"accountId": req(STR), "accountName": opt(STR), "accountUri": opt(STR),
                                         "accountStatus": opt(STR)}, top={"count": opt(INT)}, bare_list_ok=True)
# Audit log: entries under decoratedAuditLogEntries, paging in the body (continuationToken, hasMore).
AUDIT_LOG = Shape("audit log entries", list_key="decoratedAuditLogEntries",
                  items={"id": req(STR), "timestamp": req(TIME), "actionId": opt(STR)},
                  top={"continuationToken": opt(STR), "hasMore": opt(BOOL)})
