"""Arrow page decoding (azdo_pipeline.client.arrow_pages): the Arrow reader and the orjson
fallback give the same flat tables and scalars; a body of unexpected types still decodes through
the fallback; a body that is not JSON raises ValueError."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from azdo_pipeline.client.arrow_pages import (
    ENTITLEMENT_PATHS,
    ENTITLEMENTS_PAGE,
    GRAPH_USER_PATHS,
    GRAPH_USERS_PAGE,
    IDENTITY_MEMBERS_PAGE,
    DecodedPage,
    PageDecoder,
)
from azdo_pipeline.client.shapes import ShapeError

PROFILE = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


# ---------------------------------------------------------------- realistic API shapes


def _graph_user(n: int, name: str = "Ana Silva", **over: Any) -> dict[str, Any]:
    d = f"aad.{n:04d}ZjQ5YmQ4ZjAtYjM1Ni03NjJkLWE1NzgtNjc4NzI1MjU5ZWQ0"
    user = {
        "subjectKind": "user", "metaType": "member", "directoryAlias": f"user{n}", "domain": TENANT,
        "principalName": f"user{n}@contoso.com", "mailAddress": f"user{n}@contoso.com", "origin": "aad",
        "originId": f"0000{n:04d}-1111-2222-3333-444455556666", "displayName": name,
        "_links": {"self": {"href": f"https://vssps.dev.azure.com/fabrikam/_apis/Graph/Users/{d}"},
                   "memberships": {"href": f"https://vssps.dev.azure.com/fabrikam/_apis/Graph/Memberships/{d}"}},
        "url": f"https://vssps.dev.azure.com/fabrikam/_apis/Graph/Users/{d}", "descriptor": d,
    }
    user.update(over)
    return user


def _entitlement(n: int, **over: Any) -> dict[str, Any]:
    ent = {
        "id": f"5a3c{n:04d}-0000-4000-8000-00000000{n:04d}",
        "user": _graph_user(n),
        "accessLevel": {"licensingSource": "account", "accountLicenseType": "express",
                        "msdnLicenseType": "none", "licenseDisplayName": "Basic", "status": "active",
                        "statusMessage": "", "assignmentSource": "unknown"},
        "lastAccessedDate": "2024-05-01T10:00:00.1234567Z",
        "dateCreated": "2023-01-02T03:04:05.67Z",
        "projectEntitlements": [], "extensions": [{"id": "ms.feed", "name": "Artifacts", "source": "none"}],
        "groupAssignments": [],
    }
    ent.update(over)
    return ent


def _entitlements_body(ents: list[Any], token: str | None = "eyJvIjoxMDB9", **over: Any) -> bytes:
    body: dict[str, Any] = {"members": ents, "items": ents, "continuationToken": token, "totalCount": len(ents)}
    body.update(over)
    return orjson.dumps(body)


def _identity(n: int, member_ids: list[str] | None = None, **over: Any) -> dict[str, Any]:
    ident = {
        "id": f"9e1f{n:04d}-aaaa-bbbb-cccc-ddddeeeeffff",
        "descriptor": f"Microsoft.TeamFoundation.Identity;S-1-9-1551374245-{n}",
        "subjectDescriptor": f"vssgp.Uy0xLTktMTU1MTM3NDI0NS0{n:04d}",
        "providerDisplayName": f"[Fabrikam]\\Group {n}", "isActive": True, "isContainer": True,
        "members": [f"Microsoft.TeamFoundation.Identity;S-1-9-{m}" for m in range(5)], "memberOf": [],
        "memberIds": member_ids if member_ids is not None else [f"m-{n}-{m}" for m in range(3)],
        "properties": {"SchemaClassName": {"$type": "System.String", "$value": "Group"},
                       "Description": {"$type": "System.String", "$value": "Members of the group"},
                       "SecurityGroup": {"$type": "System.String", "$value": "SecurityGroup"},
                       "SpecialType": {"$type": "System.String", "$value": "Generic"},
                       "VirtualPlugin": {"$type": "System.String", "$value": ""},
                       "ScopeType": {"$type": "System.String", "$value": "TeamProject"},
                       "LocalScopeId": {"$type": "System.Guid", "$value": "0c7c1e00-0000-0000-0000-000000000000"},
                       "ResourceVersion": {"$type": "System.Int32", "$value": 2}},
        "resourceVersion": 2, "metaTypeId": 255,
    }
    ident.update(over)
    return ident


def _same(decoder: PageDecoder, body: bytes) -> DecodedPage:
    """Both decodings of `body`; asserts they agree and returns the Arrow one."""
    fast, slow = decoder._arrow(body), decoder._python(body)
    assert fast.table.schema == slow.table.schema
    assert fast.table.to_pylist() == slow.table.to_pylist()
    assert fast.scalars == slow.scalars
    fast.table.validate(full=True)
    return fast


def _ent_row(e: dict[str, Any]) -> dict[str, Any]:
    """The flat row a decoder should give for one entitlement (by hand, not via the decoder)."""
    user = e.get("user") or {}
    level = e.get("accessLevel") or {}
    return {"storage_key": e.get("id"), "descriptor": user.get("descriptor"),
            "license": level.get("accountLicenseType"), "licensing_source": level.get("licensingSource"),
            "msdn_license_type": level.get("msdnLicenseType"), "license_display_name": level.get("licenseDisplayName"),
            "status": level.get("status"), "last_accessed": e.get("lastAccessedDate"),
            "date_created": e.get("dateCreated")}


def _user_row(u: dict[str, Any]) -> dict[str, Any]:
    return {"descriptor": u.get("descriptor"), "origin": u.get("origin"), "origin_id": u.get("originId"),
            "principal_name": u.get("principalName"), "display_name": u.get("displayName"),
            "mail_address": u.get("mailAddress"), "domain": u.get("domain"), "meta_type": u.get("metaType")}


# ---------------------------------------------------------------- userentitlements


def test_entitlements_page_with_nulls_and_missing_fields() -> None:
    no_level = _entitlement(3)
    del no_level["accessLevel"]
    del no_level["lastAccessedDate"]
    partial_level = _entitlement(4, accessLevel={"accountLicenseType": "stakeholder", "status": None})
    ents = [_entitlement(1), _entitlement(2, accessLevel={}), no_level, partial_level,
            _entitlement(5, lastAccessedDate="0001-01-01T00:00:00Z", accessLevel=None)]
    page = _same(ENTITLEMENTS_PAGE, _entitlements_body(ents, totalCount=1234))
    assert ENTITLEMENTS_PAGE(_entitlements_body(ents, totalCount=1234)).table == page.table
    assert page.table.column_names == list(ENTITLEMENT_PATHS)
    assert all(t == pa.string() for t in page.table.schema.types)
    assert page.scalars == {"continuationToken": "eyJvIjoxMDB9", "totalCount": 1234}
    got = page.table.to_pylist()
    assert got == [_ent_row(e) for e in ents]
    assert got[0]["descriptor"] == ents[0]["user"]["descriptor"] and got[0]["license"] == "express"
    assert got[0]["last_accessed"] == "2024-05-01T10:00:00.1234567Z"
    assert got[1]["descriptor"] == ents[1]["user"]["descriptor"] and got[1]["status"] is None  # "accessLevel": {}
    assert got[2]["license"] is None and got[2]["last_accessed"] is None  # no accessLevel, no lastAccessedDate
    assert got[3]["license"] == "stakeholder" and got[3]["status"] is None and got[3]["licensing_source"] is None
    assert got[4]["license"] is None and got[4]["last_accessed"] == "0001-01-01T00:00:00Z"


def test_entitlements_last_page_has_null_token() -> None:
    page = _same(ENTITLEMENTS_PAGE, _entitlements_body([_entitlement(7)], token=None))
    assert page.scalars == {"continuationToken": None, "totalCount": 1}
    assert page.table.column("storage_key").to_pylist() == [_entitlement(7)["id"]]


def test_entitlements_empty_list_keeps_the_columns() -> None:
    page = _same(ENTITLEMENTS_PAGE, _entitlements_body([], token=None))
    assert page.table.num_rows == 0
    assert page.table.column_names == list(ENTITLEMENT_PATHS)
    assert page.scalars == {"continuationToken": None, "totalCount": 0}


def test_entitlements_scalars_missing() -> None:
    page = _same(ENTITLEMENTS_PAGE, orjson.dumps({"members": [_entitlement(1)]}))
    assert page.scalars == {"continuationToken": None, "totalCount": None}
    assert page.table.num_rows == 1


@pytest.mark.parametrize("shape", ["items only", "members null", "members empty, items full"])
def test_entitlements_list_key_choice(shape: str) -> None:
    ents = [_entitlement(1), _entitlement(2)]
    body = {"items only": {"items": ents, "totalCount": 2},
            "members null": {"members": None, "items": ents, "totalCount": 2},
            "members empty, items full": {"members": [], "items": ents, "totalCount": 2}}[shape]
    page = _same(ENTITLEMENTS_PAGE, orjson.dumps(body))
    # the first list key present (not null) holds the items, even when it is empty
    expected = [] if shape == "members empty, items full" else [_ent_row(e) for e in ents]
    assert page.table.to_pylist() == expected
    assert page.scalars["totalCount"] == 2


def test_entitlements_members_preferred_over_items() -> None:
    body = orjson.dumps({"members": [_entitlement(1)], "items": [_entitlement(2), _entitlement(3)],
                         "continuationToken": "t", "totalCount": 3})
    page = _same(ENTITLEMENTS_PAGE, body)
    assert page.table.column("storage_key").to_pylist() == [_entitlement(1)["id"]]


def test_entitlements_pretty_printed_body() -> None:
    ents = [_entitlement(1), _entitlement(2, accessLevel=None)]
    compact = _entitlements_body(ents)
    pretty = json.dumps(orjson.loads(compact), indent=4, ensure_ascii=True).encode()
    assert b"\n    " in pretty
    assert _same(ENTITLEMENTS_PAGE, pretty).table.to_pylist() == [_ent_row(e) for e in ents]
    assert ENTITLEMENTS_PAGE(pretty).scalars == ENTITLEMENTS_PAGE(compact).scalars


# ---------------------------------------------------------------- Graph users


UNICODE_NAMES = ["Zoë Ångström", "李小龙", "مريم الحسن", "Ολυμπία", "😀 Emoji Person", "Tab\tand \"quotes\" \\ back"]


def test_graph_users_page_unicode_missing_and_null_fields() -> None:
    users = [_graph_user(i, name) for i, name in enumerate(UNICODE_NAMES)]
    del users[1]["mailAddress"]
    users[2]["domain"] = None
    users.append({"descriptor": "svc.MDAwMA", "displayName": "Fabrikam Build Service (fabrikam)"})
    body = orjson.dumps({"count": len(users), "value": users})
    page = _same(GRAPH_USERS_PAGE, body)
    assert page.scalars == {}
    assert page.table.column_names == list(GRAPH_USER_PATHS)
    got = page.table.to_pylist()
    assert got == [_user_row(u) for u in users]
    assert [r["display_name"] for r in got[:6]] == UNICODE_NAMES
    assert got[1]["mail_address"] is None and got[2]["domain"] is None
    assert got[6]["origin"] is None and got[6]["descriptor"] == "svc.MDAwMA"


def test_graph_users_pretty_printed_with_escaped_unicode() -> None:
    users = [_graph_user(i, name) for i, name in enumerate(UNICODE_NAMES)]
    pretty = json.dumps({"count": len(users), "value": users}, indent=2, ensure_ascii=True).encode()
    assert b"\\u" in pretty and b"\n  " in pretty
    page = _same(GRAPH_USERS_PAGE, pretty)
    assert page.table.column("display_name").to_pylist() == UNICODE_NAMES


def test_graph_users_empty_page() -> None:
    page = _same(GRAPH_USERS_PAGE, b'{"count": 0, "value": []}')
    assert page.table.num_rows == 0 and page.table.column_names == list(GRAPH_USER_PATHS)


# ---------------------------------------------------------------- not the route's shape: refused


REFUSED: dict[str, tuple[PageDecoder, bytes, str]] = {
    "users without value": (GRAPH_USERS_PAGE, b'{"count": 0}', "no `value` list"),
    "users value null": (GRAPH_USERS_PAGE, b'{"count": 3, "value": null}', "no `value` list"),
    "users value a string": (GRAPH_USERS_PAGE, b'{"count": 3, "value": "three"}', "`value` is string"),
    "users value an object": (GRAPH_USERS_PAGE, b'{"value": {"a": 1}}', "`value` is object"),
    "a user not an object": (GRAPH_USERS_PAGE, orjson.dumps({"value": [_graph_user(1), 7]}), "item 1 is integer"),
    "a null user": (GRAPH_USERS_PAGE, orjson.dumps({"value": [None, _graph_user(1)]}), "item 0 is null"),
    "a user without descriptor": (GRAPH_USERS_PAGE, orjson.dumps({"value": [_graph_user(1, descriptor=None)]}),
                                  "item 0 has no `descriptor`"),
    "entitlements without a list": (ENTITLEMENTS_PAGE, b'{"totalCount": 4, "continuationToken": null}',
                                    "no `members` list"),
    "an entitlement without user": (ENTITLEMENTS_PAGE,
                                    _entitlements_body([_entitlement(1), _entitlement(2, user=None)]),
                                    "item 1 has no `user.descriptor`"),
    "an entitlement without id": (ENTITLEMENTS_PAGE, _entitlements_body([_entitlement(1, id=None)]),
                                  "item 0 has no `id`"),
    "a bad date": (ENTITLEMENTS_PAGE, _entitlements_body([_entitlement(1, dateCreated="yesterday")]),
                   "item 0.dateCreated is 'yesterday', expected a timestamp"),
    "totalCount a string": (ENTITLEMENTS_PAGE, _entitlements_body([_entitlement(1)], totalCount="1"),
                            "`totalCount` is string, expected an integer"),
    "identities without value": (IDENTITY_MEMBERS_PAGE, b'{"count": 1}', "no `value` list"),
    "an identity without id": (IDENTITY_MEMBERS_PAGE, orjson.dumps({"value": [None, _identity(1, id=None)]}),
                               "item 1 has no `id`"),
    "memberIds a string": (IDENTITY_MEMBERS_PAGE, orjson.dumps({"value": [_identity(1, memberIds="a,b")]}),
                           "item 0.memberIds is string, expected an array of strings"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_page_that_is_not_the_routes_shape_is_refused_naming_what_is_wrong(case: str) -> None:
    decoder, body, message = REFUSED[case]
    with pytest.raises(ShapeError) as err:
        decoder(body)
    assert message in str(err.value)
    assert isinstance(err.value, ValueError)  # the transport reads a ValueError as a damaged page


# ---------------------------------------------------------------- identities (identitybatch, Direct)


def test_identity_members_page_with_null_identities() -> None:
    big = _identity(1, [f"member-{m:04d}" for m in range(150)])
    no_members = _identity(3)
    del no_members["memberIds"]
    value = [big, None, _identity(2, []), no_members, None, _identity(4, ["ü-ñ-✓"])]
    page = _same(IDENTITY_MEMBERS_PAGE, orjson.dumps({"count": len(value), "value": value}))
    assert page.table.schema == pa.schema([("id", pa.string()), ("subjectDescriptor", pa.string()),
                                           ("memberIds", pa.list_(pa.string()))])
    null_row = {"id": None, "subjectDescriptor": None, "memberIds": None}
    assert page.table.to_pylist() == [
        {"id": big["id"], "subjectDescriptor": big["subjectDescriptor"], "memberIds": big["memberIds"]},
        null_row,
        {"id": value[2]["id"], "subjectDescriptor": value[2]["subjectDescriptor"], "memberIds": []},
        {"id": no_members["id"], "subjectDescriptor": no_members["subjectDescriptor"], "memberIds": None},
        null_row,
        {"id": value[5]["id"], "subjectDescriptor": value[5]["subjectDescriptor"], "memberIds": ["ü-ñ-✓"]},
    ]
    assert len(page.table.column("memberIds")[0].as_py()) == 150


def test_identity_members_all_null_and_pretty() -> None:
    page = _same(IDENTITY_MEMBERS_PAGE, b'{"count": 2, "value": [null, null]}')
    assert page.table.num_rows == 2 and page.table.column("id").null_count == 2
    pretty = json.dumps({"count": 1, "value": [_identity(9)]}, indent=3).encode()
    page = _same(IDENTITY_MEMBERS_PAGE, pretty)
    assert page.table.column("memberIds").to_pylist() == [["m-9-0", "m-9-1", "m-9-2"]]


# ---------------------------------------------------------------- unexpected types: the fallback


UNEXPECTED: list[tuple[PageDecoder, dict[str, Any], str, str]] = [
    (ENTITLEMENTS_PAGE, {"members": [_entitlement(1, accessLevel={"status": 5, "accountLicenseType": "express"})],
                         "totalCount": 1}, "status", "5"),
    (ENTITLEMENTS_PAGE, {"members": [_entitlement(1, id=123456)], "totalCount": 1}, "storage_key", "123456"),
    (ENTITLEMENTS_PAGE, {"members": [_entitlement(1, lastAccessedDate=False)], "totalCount": 1},
     "last_accessed", "False"),
    (GRAPH_USERS_PAGE, {"count": 1, "value": [_graph_user(1, displayName=True)]}, "display_name", "True"),
    (GRAPH_USERS_PAGE, {"count": 1, "value": [_graph_user(1, metaType=2.5)]}, "meta_type", "2.5"),
    (IDENTITY_MEMBERS_PAGE, {"count": 1, "value": [_identity(1, subjectDescriptor=7)]}, "subjectDescriptor", "7"),
]


@pytest.mark.parametrize(("decoder", "body", "column", "expected"), UNEXPECTED,
                         ids=["status-int", "id-int", "date-bool", "name-bool", "metatype-float", "subject-int"])
def test_unexpected_type_is_refused_naming_the_field(decoder: PageDecoder, body: dict[str, Any], column: str,
                                                      expected: str) -> None:
    raw = orjson.dumps(body)
    with pytest.raises(pa.ArrowInvalid):
        decoder._arrow(raw)  # Arrow refuses it; the fallback names the field instead of guessing
    with pytest.raises(ShapeError) as err:
        decoder(raw)
    path = ".".join(decoder.paths[column])
    assert f"item 0.{path} is " in str(err.value) and "expected a string" in str(err.value)


def test_unexpected_nested_shapes_are_refused() -> None:
    body = orjson.dumps({"members": [_entitlement(1, user="aad.not-an-object")], "totalCount": 1})
    with pytest.raises(ShapeError, match=r"item 0.user is string, expected an object"):
        ENTITLEMENTS_PAGE(body)
    body = orjson.dumps({"members": [_entitlement(2, accessLevel=[])], "totalCount": 1})
    with pytest.raises(ShapeError, match=r"item 0.accessLevel is array, expected an object"):
        ENTITLEMENTS_PAGE(body)

    with pytest.raises(ShapeError, match=r"item 1.memberIds is array, expected an array of strings"):
        IDENTITY_MEMBERS_PAGE(orjson.dumps({"value": [_identity(1, ["a"]), _identity(2, [5, "b"])]}))


# ---------------------------------------------------------------- not JSON: ValueError


_REAL = _entitlements_body([_entitlement(1), _entitlement(2)])
NOT_JSON = {
    "truncated": _REAL[: len(_REAL) // 2],
    "truncated-at-end": _REAL[:-1],
    "empty": b"",
    "blank": b" \n ",
    "html": b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>",
    "two-objects": b'{"value": []}\n{"value": []}',
    "array": b"[]",
    "string": b'"value"',
    "number": b"42",
}


@pytest.mark.parametrize("decoder", [ENTITLEMENTS_PAGE, GRAPH_USERS_PAGE, IDENTITY_MEMBERS_PAGE],
                         ids=["entitlements", "users", "identities"])
@pytest.mark.parametrize("body", list(NOT_JSON.values()), ids=list(NOT_JSON))
def test_not_json_raises_value_error(decoder: PageDecoder, body: bytes) -> None:
    with pytest.raises(ValueError):
        decoder(body)


# A damaged byte in a decoded string field: not UTF-8, so not JSON (orjson refuses it).
BAD_UTF8 = {
    "entitlements": (ENTITLEMENTS_PAGE, _entitlements_body([_entitlement(1)]).replace(b'"aad.', b'"a\xff\xfed.', 1)),
    "users": (GRAPH_USERS_PAGE, orjson.dumps({"count": 1, "value": [_graph_user(1, "Zo\u00eb")]}).replace(
        b"Zo\xc3\xab", b"Zo\xc3")),
    "identities": (IDENTITY_MEMBERS_PAGE, orjson.dumps({"value": [_identity(1, ["ok"])]}).replace(b'["ok"]',
                                                                                                  b'["o\xed\xa0\x80"]')),
}


def test_invalid_utf8_is_refused_by_the_fallback() -> None:
    for decoder, body in BAD_UTF8.values():
        with pytest.raises(ValueError, match="not valid JSON"):
            decoder._python(body)


@pytest.mark.parametrize("case", list(BAD_UTF8))
def test_invalid_utf8_in_a_decoded_field_raises_value_error(case: str) -> None:
    decoder, body = BAD_UTF8[case]
    with pytest.raises(ValueError):
        decoder(body)


_NULL_BODY_SCRIPT = """
from azdo_pipeline.client.arrow_pages import GRAPH_USERS_PAGE
try:
    GRAPH_USERS_PAGE(b"null")
except ValueError:
    print("ValueError")
"""


def test_null_body_raises_value_error_instead_of_crashing() -> None:
    # In a child process: in this one the crash would take pytest down with it.
    proc = subprocess.run([sys.executable, "-c", _NULL_BODY_SCRIPT], capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stdout.strip()) == (0, "ValueError")


def test_null_member_id_is_null_in_both_paths() -> None:
    body = orjson.dumps({"count": 1, "value": [_identity(1, ["a", None])]})
    assert IDENTITY_MEMBERS_PAGE._arrow(body).table.column("memberIds").to_pylist() == [["a", None]]
    assert IDENTITY_MEMBERS_PAGE._python(body).table.column("memberIds").to_pylist() == [["a", None]]


# ---------------------------------------------------------------- property: Arrow == Python


_text = st.text(max_size=12)
_opt = st.none() | _text
_level = st.fixed_dictionaries({}, optional={
    "accountLicenseType": _opt, "licensingSource": _opt, "msdnLicenseType": _opt,
    "licenseDisplayName": _opt, "status": _opt, "statusMessage": _opt})
_user = st.fixed_dictionaries({}, optional={
    "descriptor": _opt, "displayName": _opt, "principalName": _opt, "origin": _opt,
    "_links": st.just({"self": {"href": "https://vssps.dev.azure.com/x"}})})
entitlements = st.lists(st.fixed_dictionaries({}, optional={
    "id": _opt, "user": st.none() | _user, "accessLevel": st.none() | _level,
    "lastAccessedDate": _opt, "dateCreated": _opt,
    "extensions": st.lists(st.fixed_dictionaries({"id": _text}), max_size=2),
    "projectEntitlements": st.just([])}), max_size=8)


@PROFILE
@given(ents=entitlements, token=_opt, total=st.none() | st.integers(-(2**63), 2**63 - 1),
       shape=st.sampled_from(["both", "items only", "members null"]), indent=st.booleans())
def test_arrow_equals_python_on_random_entitlement_pages(ents: list[dict[str, Any]], token: str | None,
                                                         total: int | None, shape: str, indent: bool) -> None:
    body: dict[str, Any] = {"continuationToken": token, "totalCount": total}
    body["members"] = {"both": ents, "items only": None, "members null": None}[shape]
    body["items"] = ents
    if shape == "items only":
        del body["members"]
    raw = orjson.dumps(body, option=orjson.OPT_INDENT_2 if indent else 0)
    page = _same(ENTITLEMENTS_PAGE, raw)
    assert page.table.to_pylist() == [_ent_row(e) for e in ents]
    assert page.scalars == {"continuationToken": token, "totalCount": total}


_property = st.fixed_dictionaries({"$type": _text, "$value": _text | st.integers(-(2**31), 2**31)})


@PROFILE
@given(value=st.lists(st.none() | st.fixed_dictionaries({}, optional={
    "id": _opt, "subjectDescriptor": _opt, "memberIds": st.none() | st.lists(_text, max_size=4),
    "members": st.lists(_text, max_size=3),
    "properties": st.dictionaries(_text, _property, max_size=2)}), max_size=6))
def test_arrow_equals_python_on_random_identity_pages(value: list[dict[str, Any] | None]) -> None:
    page = _same(IDENTITY_MEMBERS_PAGE, orjson.dumps({"count": len(value), "value": value}))
    assert page.table.to_pylist() == [{k: (v or {}).get(k) for k in ("id", "subjectDescriptor", "memberIds")}
                                      for v in value]
