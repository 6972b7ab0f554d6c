"""Provisioning request parsing: valid documents round-trip, every bad one is a RequestError naming the field."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from azdo_pipeline.provisioning.requests import (
    EXAMPLES,
    MAX_REQUEST_BYTES,
    Action,
    License,
    ProjectRole,
    RequestError,
    parse_request,
    request_json_schema,
)

SCHEMA = request_json_schema()
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def _grant(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"id": "r1", "organization": "fabrikam", "action": "grant",
                            "principal": "alice@fabrikam.com", "target": "[Web]\\Contributors"}
    base.update(kw)
    return {k: v for k, v in base.items() if v is not None}


def _problems(doc: Any) -> dict[str, str]:
    raw = doc if isinstance(doc, bytes | str) else json.dumps(doc)
    with pytest.raises(RequestError) as info:
        parse_request(raw)
    return {p.field: p.message for p in info.value.problems}


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_examples_parse_round_trip_and_match_the_schema(name: str) -> None:
    doc = EXAMPLES[name]
    VALIDATOR.validate(doc)
    req = parse_request(json.dumps(doc).encode())
    assert parse_request(req.to_json()) == req
    VALIDATOR.validate(json.loads(req.to_json()))


def test_principal_and_target_forms() -> None:
    r = parse_request(json.dumps(_grant(principal="aad.QUJD", target="vssgp.Uy0xLTk")))
    assert r.principal.descriptor == "aad.QUJD" and r.target is not None and r.target.descriptor == "vssgp.Uy0xLTk"
    r = parse_request(json.dumps(_grant(principal={"name": "Bob@Fabrikam.com"}, target={"team": "Web\\Web Team"})))
    assert r.principal.name == "Bob@Fabrikam.com" and r.target is not None and r.target.team == "Web\\Web Team"
    r = parse_request(json.dumps(_grant(principal="[Web]\\Readers", target="aadgp.Uy0x")))
    assert r.principal.is_group and r.target is not None and r.target.is_entra_group
    assert r.membership_key == ("fabrikam", "aadgp.uy0x", "[web]\\readers")


def test_licences_accept_the_ui_names() -> None:
    for given_name, lic in [("Basic", License.EXPRESS), ("express", License.EXPRESS),
                            ("Visual Studio Subscriber", License.VISUAL_STUDIO_SUBSCRIBER),
                            ("stakeholder", License.STAKEHOLDER)]:
        r = parse_request(json.dumps({"id": "a", "organization": "o", "action": "create_account",
                                      "principal": "x@y.z", "license": given_name,
                                      "projects": ["Web", {"project": "Ops", "role": "reader"}]}))
        assert r.license is lic
        assert [(p.project, p.role) for p in r.projects] == [("Web", ProjectRole.CONTRIBUTOR),
                                                             ("Ops", ProjectRole.READER)]
    assert ProjectRole.ADMINISTRATOR.group_type == "projectAdministrator"


@pytest.mark.parametrize(("doc", "field", "words"), [
    (_grant(action="grnat"), "action", "did you mean 'grant'"),
    (_grant(action=None), "action", "is required"),
    (_grant(target=None), "target", "required for grant and revoke"),
    (_grant(target="Contributors"), "target", "[Project]\\Group Name"),
    (_grant(target="aad.QUJD"), "target", "not allowed here"),
    (_grant(principal=7), "principal", "string or an object"),
    (_grant(principal="not a name"), "principal", "alice@contoso.com"),
    (_grant(principal={"descriptor": "aad.x", "name": "a@b.c"}), "principal", "exactly one"),
    (_grant(license="express"), "license", "only used by create_account"),
    (_grant(dry_run="yes"), "dry_run", "true or false"),
    (_grant(id="../../etc/passwd"), "id", "letters, digits"),
    (_grant(organization="fab rikam"), "organization", "organization name"),
    (_grant(requested_at="yesterday"), "requested_at", "ISO 8601"),
    (_grant(requested_at="2026-01-01T10:00:00"), "requested_at", "time zone"),
    (_grant(targte="x"), "targte", "did you mean 'target'"),
    ({"id": "a", "organization": "o", "action": "create_account", "principal": "aad.QUJD", "license": "basic"},
     "principal", "principal name"),
    ({"id": "a", "organization": "o", "action": "create_account", "principal": "a@b.c"}, "license", "required"),
    ({"id": "a", "organization": "o", "action": "create_account", "principal": "a@b.c", "license": "gold"},
     "license", "stakeholder"),
    ({"id": "a", "organization": "o", "action": "create_account", "principal": "a@b.c", "license": "basic",
      "projects": [{"project": "Web", "role": "owner"}]}, "projects[0].role", "contributor"),
    ({"id": "a", "organization": "o", "action": "deprovision_account", "principal": "a@b.c",
      "target": "[P]\\G"}, "target", "not used by deprovision_account"),
])
def test_bad_fields_are_named_with_the_fix(doc: dict[str, Any], field: str, words: str) -> None:
    problems = _problems(doc)
    assert field in problems, problems
    assert words in problems[field]
    assert not VALIDATOR.is_valid(doc), "the published schema must reject what the parser rejects"


def test_every_problem_is_reported_at_once_with_the_request_id() -> None:
    with pytest.raises(RequestError) as info:
        parse_request(json.dumps({"id": "req-9", "action": "grant", "principal": 1, "target": 2}))
    err = info.value
    assert err.request_id == "req-9"
    assert {p.field for p in err.problems} == {"organization", "principal", "target"}
    assert "req-9" in err.reason


@pytest.mark.parametrize(("raw", "words"), [
    (b"\xff\xfe{}", "not UTF-8"),
    (b"", "empty"),
    (b"{", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object, got a list"),
    (b'{"id": "a", "id": "b"}', "appears twice"),
    (b'{"id": NaN}', "not valid JSON"),
    (b'{"id": ' + b"9" * 5000 + b"}", "not valid JSON"),
    (b"[" * 30000 + b"]" * 30000, "nested too deeply"),
    (b" " * (MAX_REQUEST_BYTES + 1), "at most 65,536 bytes"),
])
def test_unreadable_documents(raw: bytes, words: str) -> None:
    with pytest.raises(RequestError) as info:
        parse_request(raw)
    assert words in str(info.value)


def test_utf8_bom_is_accepted() -> None:
    assert parse_request(b"\xef\xbb\xbf" + json.dumps(_grant()).encode()).id == "r1"


# ---- fuzzing: never anything but RequestError -------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20)

field_values = st.one_of(
    json_values, st.sampled_from([a.value for a in Action]), st.sampled_from(["basic", "express", "gold"]),
    st.sampled_from(["a@b.c", "a@b.c\n", " a@b.c", "Basic", "STAKEHOLDER", "aad.QUJD", "vssgp.QUJD", "aadgp.QUJD",
                     "[P]\\G", "P\\T", "x"]))

documents = st.dictionaries(
    st.sampled_from(["id", "organization", "action", "principal", "target", "license", "projects", "dry_run",
                     "requested_at", "comment", "bogus"]), field_values, max_size=9)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_fuzzed_documents_parse_or_raise_request_error_agreeing_with_the_schema(doc: dict[str, Any]) -> None:
    try:
        req = parse_request(json.dumps(doc))
    except RequestError as exc:
        assert exc.problems and all(p.message for p in exc.problems)
        return
    # Accepted: the schema accepts it too, and it round-trips.
    assert VALIDATOR.is_valid(doc), list(VALIDATOR.iter_errors(doc))
    assert parse_request(req.to_json()) == req


@settings(max_examples=300)
@given(st.binary(max_size=300) | st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_fuzzed_bytes_never_raise_anything_else(raw: bytes) -> None:
    try:
        parse_request(raw)
    except RequestError as exc:
        assert str(exc)


@settings(max_examples=100)
@given(json_values)
def test_fuzzed_json_values_never_raise_anything_else(value: Any) -> None:
    with pytest.raises(RequestError):
        parse_request(json.dumps(value))
