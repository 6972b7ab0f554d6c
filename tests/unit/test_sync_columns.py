"""The columnar sync helpers (azdo_pipeline.sync.columns) against their scalar references in
azdo_pipeline.sync.rows: timestamps, subject types, the Graph users split and entitlement batches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from unittest import mock

import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from azdo_pipeline import schemas
from azdo_pipeline.client.arrow_pages import ENTITLEMENTS_PAGE, GRAPH_USERS_PAGE
from azdo_pipeline.sync import columns, rows
from azdo_pipeline.sync.full import _ENTITLEMENT_PART, _USER_PART

PROFILE = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NEVER = "0001-01-01T00:00:00Z"


def _strings(values: list[str | None]) -> pa.Array:
    return pa.array(values, pa.string())


def _reference(values: list[str | None]) -> list[datetime | None]:
    return [rows.parse_time(v) for v in values]


# ---------------------------------------------------------------- parse_times


@st.composite
def azdo_times(draw: st.DrawFn) -> str:
    """A timestamp as Azure DevOps writes one: 0-7 fractional digits; Z, ±hh:mm or no zone."""
    # a day's margin at both ends, so that the UTC value of any offset stays within years 1-9999
    dt = draw(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30, 23, 59, 59)))
    text = f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
    digits = draw(st.integers(0, 7))
    if digits:
        text += "." + (f"{dt.microsecond:06d}" + str(draw(st.integers(0, 9))))[:digits]
    zone = draw(st.sampled_from(["Z", "offset", "none"]))
    if zone == "Z":
        text += "Z"
    elif zone == "offset":
        minutes = draw(st.integers(-(23 * 60 + 59), 23 * 60 + 59))
        sign = "-" if minutes < 0 else "+"
        text += f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return text


@PROFILE
@given(st.lists(azdo_times() | st.sampled_from([NEVER, "", None]), max_size=20))
def test_parse_times_equals_parse_time(values: list[str | None]) -> None:
    expected = _reference(values)
    # these are all Arrow-parseable: the vectorised path must not fall back to rows.parse_time
    with mock.patch.object(rows, "parse_time", side_effect=AssertionError("fell back to rows.parse_time")):
        got = columns.parse_times(_strings(values))
    assert got.type == schemas.TS
    assert got.to_pylist() == expected


def test_parse_times_known_values() -> None:
    values = ["2024-05-01T10:00:00.1234567Z", "2024-05-01T10:00:00Z", "2024-05-01T10:00:00.5",
              "2024-05-01T10:00:00.123+05:30", "2024-05-01T10:00:00-08:00", NEVER, "0001-01-01T00:00:00.0000000",
              "", None, "1999-12-31T23:59:59.9999999+00:00"]
    got = columns.parse_times(_strings(values)).to_pylist()
    assert got == _reference(values)
    assert got == [
        datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC), datetime(2024, 5, 1, 10, tzinfo=UTC),
        datetime(2024, 5, 1, 10, 0, 0, 500000, tzinfo=UTC), datetime(2024, 5, 1, 4, 30, 0, 123000, tzinfo=UTC),
        datetime(2024, 5, 1, 18, tzinfo=UTC), None, None, None, None,
        datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ]
    # the column is UTC whatever the input's offset
    assert got[3].utcoffset() == timedelta(0)


@pytest.mark.parametrize("odd", [
    "2024-05-01",  # date only
    "2024-05-01T10:00:00+05",  # hour-only offset
    "2024-05-01T10:00:00 +05:00",  # space before the offset
    "2024-05-01T10:00:00.Z",  # a dot without digits
    "20240501T100000Z",  # ISO basic format
    "2024-05-01T10:00:00,5Z",  # decimal comma
    "2024-05-01T10:00:00+05:30:15",  # offset with seconds
])
def test_parse_times_falls_back_for_what_arrow_refuses(odd: str) -> None:
    values = ["2024-05-01T10:00:00.1234567Z", odd, None, NEVER, ""]
    expected = _reference(values)
    assert expected[1] is not None  # Python reads it
    with mock.patch.object(rows, "parse_time", wraps=rows.parse_time) as spy:
        got = columns.parse_times(_strings(values))
    assert spy.call_count == len(values)  # the whole column went through the fallback
    assert got.type == schemas.TS
    assert got.to_pylist() == expected
    assert got[0].as_py() == datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)


def test_parse_times_known_fallback_values() -> None:
    got = columns.parse_times(_strings(["2024-05-01", "2024-05-01T10:00:00+05", "2024-05-01T10:00:00,25Z"]))
    assert got.to_pylist() == [datetime(2024, 5, 1, tzinfo=UTC), datetime(2024, 5, 1, 5, tzinfo=UTC),
                               datetime(2024, 5, 1, 10, 0, 0, 250000, tzinfo=UTC)]


@pytest.mark.parametrize("value", ["2024-05-01 10:00:00", "2024-05-01 10:00:00.1234567Z", "2024-05-01T10Z",
                                   "2024-05-01T10:00", "2024-05-01T10:00:00-0530"])
def test_parse_times_other_spellings_agree(value: str) -> None:
    assert columns.parse_times(_strings([value])).to_pylist() == _reference([value])
    assert _reference([value])[0] is not None


@pytest.mark.parametrize("bad", ["2024-05-01T10:00:00z", "yesterday", "2024-05-01T24:00:00Z", "2024-13-01T00:00:00Z"])
def test_parse_times_raises_where_parse_time_does(bad: str) -> None:
    with pytest.raises(ValueError):
        rows.parse_time(bad)
    with pytest.raises(ValueError):
        columns.parse_times(_strings(["2024-05-01T10:00:00Z", bad]))


def test_parse_times_empty_and_all_null() -> None:
    for values in ([], [None, None], ["", NEVER]):
        got = columns.parse_times(_strings(values))
        assert got.type == schemas.TS and got.to_pylist() == [None] * len(values)


def test_parse_times_offset_result_is_the_same_instant() -> None:
    value = "2024-02-29T23:30:00.7654321-02:30"
    got = columns.parse_times(_strings([value]))[0].as_py()
    assert got == datetime(2024, 2, 29, 23, 30, 0, 765432, tzinfo=timezone(-timedelta(hours=2, minutes=30)))
    assert got == datetime(2024, 3, 1, 2, 0, 0, 765432, tzinfo=UTC)


# ---------------------------------------------------------------- subject_types


DESCRIPTORS = ["aad.ZjQ5YmQ4ZjA", "msa.NzY1NDM", "svc.MDAwMDAw", "aadsp.YWJj", "vssgp.Uy0xLTk", "s2s.MDAw",
               "msa.a.b.c", "nodot", "", ".leading", "trailing.", "ünï.cödé", None]


def test_subject_types_match_rows() -> None:
    got = columns.subject_types(_strings(DESCRIPTORS)).to_pylist()
    assert got == [None if d is None else rows.subject_type(d) for d in DESCRIPTORS]
    assert got == ["aad", "msa", "svc", "aadsp", "vssgp", "s2s", "msa", "", "", "", "trailing", "ünï", None]


@PROFILE
@given(st.lists(st.text(alphabet=st.sampled_from("a.svcż\n"), max_size=8) | st.text(max_size=8), max_size=20))
def test_subject_types_property(descriptors: list[str]) -> None:
    assert columns.subject_types(_strings(descriptors)).to_pylist() == [rows.subject_type(d) for d in descriptors]


# ---------------------------------------------------------------- split_graph_users


def _graph_user(descriptor: str | None, name: str, **over: Any) -> dict[str, Any]:
    user = {"subjectKind": "user", "metaType": "member", "domain": "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "principalName": f"{name.lower()}@contoso.com", "mailAddress": f"{name.lower()}@contoso.com",
            "origin": "aad", "originId": f"oid-{name}", "displayName": name, "descriptor": descriptor,
            "_links": {"self": {"href": "https://vssps.dev.azure.com/fabrikam/_apis/Graph/Users/x"}}}
    user.update(over)
    return user


def _users_page(users: list[dict[str, Any]]) -> pa.Table:
    # The Arrow reader alone: the decoder itself refuses a page with a user lacking its descriptor
    # (test_arrow_pages); columns still drop such rows should one reach them.
    return GRAPH_USERS_PAGE._arrow(orjson.dumps({"count": len(users), "value": users})).table


def test_split_graph_users_people_accounts_and_skipped() -> None:
    people = [_graph_user("aad.QQ", "Ana"), _graph_user("msa.Qg", "Bo", origin="msa", domain="Windows Live ID",
                                                         metaType=None),
              _graph_user("aad.Qw", "Zoë", mailAddress=None)]
    svcs = [_graph_user("svc.MA", "Fabrikam Build Service", origin="vsts", domain="Build"),
            _graph_user("svc.MQ", "Project Collection Build Service", origin="vsts")]
    others = [_graph_user(d, f"sys{i}") for i, d in enumerate(["aadsp.AA", "s2s.AA", "s2s.AB", "bnd.AA", "nodot"])]
    nameless = _graph_user(None, "Ghost")
    order = [others[0], people[0], svcs[0], others[1], nameless, people[1], others[2], svcs[1], others[3],
             people[2], others[4]]
    got_people, got_svcs, skipped = columns.split_graph_users(_users_page(order), _USER_PART, schemas.SERVICE_ACCOUNTS)

    assert got_people.schema == _USER_PART
    assert got_svcs.schema == schemas.SERVICE_ACCOUNTS
    assert got_people.to_pylist() == [{k: rows.user_row(u, None)[k] for k in _USER_PART.names} for u in people]
    assert got_svcs.to_pylist() == [rows.service_account_row(u) for u in svcs]
    assert skipped == {"aadsp": 1, "s2s": 2, "bnd": 1, "": 1}  # the row without a descriptor is not counted
    assert got_people.column("subject_type").to_pylist() == ["aad", "msa", "aad"]
    assert got_people.column("display_name").to_pylist() == ["Ana", "Bo", "Zoë"]
    assert got_svcs.column("origin").to_pylist() == ["vsts", "vsts"]


def test_split_graph_users_only_people_and_empty_pages() -> None:
    people = [_graph_user(f"aad.{i}", f"U{i}") for i in range(4)]
    got_people, got_svcs, skipped = columns.split_graph_users(_users_page(people), _USER_PART,
                                                              schemas.SERVICE_ACCOUNTS)
    assert got_people.num_rows == 4 and got_svcs.num_rows == 0 and skipped == {}
    assert got_svcs.schema == schemas.SERVICE_ACCOUNTS

    for page in (_users_page([]), _users_page([_graph_user(None, "Ghost")])):
        got_people, got_svcs, skipped = columns.split_graph_users(page, _USER_PART, schemas.SERVICE_ACCOUNTS)
        assert (got_people.num_rows, got_svcs.num_rows, skipped) == (0, 0, {})
        assert got_people.schema == _USER_PART and got_svcs.schema == schemas.SERVICE_ACCOUNTS


# ---------------------------------------------------------------- entitlement_batch


def _entitlement(descriptor: str | None, key: str, **over: Any) -> dict[str, Any]:
    ent: dict[str, Any] = {
        "id": key, "user": {"descriptor": descriptor, "displayName": key} if descriptor is not None else None,
        "accessLevel": {"accountLicenseType": "express", "licensingSource": "account", "msdnLicenseType": "none",
                        "licenseDisplayName": "Basic", "status": "active"},
        "lastAccessedDate": "2024-05-01T10:00:00.1234567Z", "dateCreated": "2023-01-02T03:04:05Z",
    }
    ent.update(over)
    return ent


def _entitlements_page(ents: list[dict[str, Any]]) -> pa.Table:
    return ENTITLEMENTS_PAGE._arrow(orjson.dumps({"members": ents, "items": ents, "continuationToken": None,
                                           "totalCount": len(ents)})).table


def _expected_batch(ents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"descriptor": e["user"]["descriptor"], **rows.entitlement_fields(e)}
            for e in ents if (e.get("user") or {}).get("descriptor") is not None]


def test_entitlement_batch_drops_rows_without_descriptor_and_parses_times() -> None:
    no_descriptor = _entitlement(None, "k-nouser")
    empty_user = _entitlement(None, "k-emptyuser", user={"displayName": "No descriptor"})
    ents = [
        _entitlement("aad.A", "k-a"),
        no_descriptor,
        _entitlement("aad.B", "k-b", lastAccessedDate=NEVER, accessLevel={"accountLicenseType": "stakeholder"}),
        empty_user,
        _entitlement("msa.C", "k-c", lastAccessedDate="2025-12-31T23:00:00-02:00", dateCreated="2020-02-29T12:00:00"),
        _entitlement("aad.D", "k-d", accessLevel=None, dateCreated=""),
    ]
    batch = columns.entitlement_batch(_entitlements_page(ents), _ENTITLEMENT_PART)
    assert batch.schema == _ENTITLEMENT_PART
    assert batch.to_pylist() == _expected_batch(ents)
    assert batch.column("descriptor").to_pylist() == ["aad.A", "aad.B", "msa.C", "aad.D"]
    assert batch.column("last_accessed").to_pylist() == [
        datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC), None, datetime(2026, 1, 1, 1, tzinfo=UTC),
        datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)]
    assert batch.column("date_created").to_pylist() == [
        datetime(2023, 1, 2, 3, 4, 5, tzinfo=UTC), datetime(2023, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(2020, 2, 29, 12, tzinfo=UTC), None]
    assert batch.column("license").to_pylist() == ["express", "stakeholder", "express", None]
    assert batch.column("storage_key").to_pylist() == ["k-a", "k-b", "k-c", "k-d"]


def test_entitlement_batch_with_a_fallback_timestamp() -> None:
    ents = [_entitlement("aad.A", "k-a", lastAccessedDate="2024-05-01"), _entitlement("aad.B", "k-b")]
    batch = columns.entitlement_batch(_entitlements_page(ents), _ENTITLEMENT_PART)
    assert batch.to_pylist() == _expected_batch(ents)
    assert batch.column("last_accessed").to_pylist() == [datetime(2024, 5, 1, tzinfo=UTC),
                                                         datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)]


def test_entitlement_batch_all_dropped_or_empty() -> None:
    for ents in ([], [_entitlement(None, "k1"), _entitlement(None, "k2")]):
        batch = columns.entitlement_batch(_entitlements_page(ents), _ENTITLEMENT_PART)
        assert batch.num_rows == 0 and batch.schema == _ENTITLEMENT_PART


def test_member_kinds_match_rows_member_kind() -> None:
    from azdo_pipeline.sync.columns import member_kinds

    descs = ["aad.x", "msa.y", "svc.z", "aadsp.q", "vssgp.g", "aadgp.h", "s2s.w", "bnd.v", "nodot", "", "aad."]
    assert member_kinds(pa.array(descs)).to_pylist() == [rows.member_kind(d) for d in descs]
