"""The harness checks itself: every official example against its own operation's schema.

Known spec errors are listed in docs/spec-deviations.md; the lists there must be exact, so a new
mismatch (a harness bug or a spec update) and a fixed one both fail here.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest

from . import shape, spec

DOC = Path(__file__).resolve().parents[2] / "docs" / "spec-deviations.md"


def _section(name: str) -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    m = re.search(rf"<!-- {name}:begin -->\n(.*?)<!-- {name}:end -->", text, re.S)
    assert m, f"{DOC} lacks the {name} section"
    return [line for line in m.group(1).splitlines() if line.strip()]


def _documented_errors() -> set[tuple[str, str, str, str]]:
    rows = set()
    for line in _section("known-spec-errors")[2:]:  # skip the header and the |---| line
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        assert len(cells) == 5 and cells[4], f"malformed row (needs evidence): {line}"
        rows.add((cells[0], cells[1], cells[2], cells[3]))
    return rows


def _found_errors() -> set[tuple[str, str, str, str]]:
    return {(ex.rel, f.path, f.kind, f.detail) for ex in spec.examples() for f in spec.example_findings(ex)}


def test_every_area_loads_and_has_operations() -> None:
    for area in spec.AREAS:
        s = spec.spec(area)
        assert s.operations, area
        assert all(op.api_version.startswith("7.1") for op in s.operations if op.api_version), area


def test_every_example_is_checked() -> None:
    exs = spec.examples()
    assert len(exs) >= 85  # 90 example files, 87 of them referenced by an operation
    assert {ex.area for ex in exs} == set(spec.AREAS)


def test_known_spec_errors_list_is_exact() -> None:
    documented, found = _documented_errors(), _found_errors()
    new = sorted(found - documented)
    fixed = sorted(documented - found)
    assert not new, "undocumented example/spec mismatches (add them to docs/spec-deviations.md §2):\n" + \
        "\n".join(" | ".join(r) for r in new)
    assert not fixed, "documented mismatches no longer found (remove them from §2):\n" + \
        "\n".join(" | ".join(r) for r in fixed)


def test_unreferenced_examples_list_is_exact() -> None:
    documented = {re.match(r"- `([^`]+)`", line).group(1) for line in _section("unreferenced-examples")}
    referenced = {ex.path.resolve() for ex in spec.examples()}
    on_disk = {p.relative_to(spec.SPECS_ROOT).as_posix()
               for p in spec.SPECS_ROOT.glob("*/7.1/httpExamples/*/*.json") if p.resolve() not in referenced}
    assert on_disk == documented


def test_audit_value_wrapper_is_caught() -> None:
    """The known audit example error (E1) is found by the strict check, and the real body passes."""
    (ex,) = spec.examples_for("audit", "Audit Log_Query")
    assert any(f.path == "$.value" and f.kind == "undeclared" for f in spec.example_findings(ex))
    assert spec.validate("audit", "Audit Log_Query", ex.body["value"]) == []


@pytest.mark.parametrize("key", [
    ("GET", "/fabrikam/_apis/graph/users", "7.1-preview.1"),
    ("GET", "/Fabrikam/_apis/Graph/Users"),
    "Users_List",
])
def test_operation_lookup(key: str | tuple[str, ...]) -> None:
    op = spec.operation("graph", key)
    assert op.operation_id == "Users_List"
    assert op.api_version == "7.1-preview.1"
    assert op.wrapped and "X-MS-ContinuationToken" in op.response_headers


def test_operation_lookup_distinguishes_templates_and_versions() -> None:
    assert spec.operation("graph", ("GET", "/o/_apis/graph/Memberships/aad.X")).operation_id == "Memberships_List"
    assert spec.operation("graph", ("GET", "/o/_apis/graph/memberships/aad.X/vssgp.Y")).operation_id \
        == "Memberships_Get"
    assert spec.operation("graph", ("PUT", "/o/_apis/graph/memberships/aad.X/vssgp.Y")).operation_id \
        == "Memberships_Add"
    with pytest.raises(LookupError):
        spec.operation("graph", ("GET", "/o/_apis/graph/users", "5.0-preview.1"))
    with pytest.raises(LookupError):
        spec.operation("graph", ("GET", "/o/_apis/graph/nothing"))


def test_validator_reports_readable_errors() -> None:
    (ex,) = spec.examples_for("graph", "Users_Get")
    body = copy.deepcopy(ex.body)
    body["displayName"] = 42
    body["surprise"] = True
    body["_links"]["self"] = {"nohref": 1}
    errors = spec.validate("graph", "Users_Get", body)
    assert "$.displayName: type: expected string, got integer" in errors
    assert "$.surprise: undeclared: key not declared in the spec" in errors
    assert any(e.startswith("$._links.self") for e in errors), errors
    assert spec.validate("graph", "Users_Get", body, strict=False, allow_undeclared=()) != []
    assert "$.surprise: undeclared: key not declared in the spec" not in \
        spec.validate("graph", "Users_Get", body, allow_undeclared=["$.surprise"])
    with pytest.raises(AssertionError, match="displayName"):
        spec.assert_valid("graph", "Users_Get", body)


def test_nulls_allowed_for_members_not_for_the_body() -> None:
    (ex,) = spec.examples_for("graph", "Users_Get")
    body = dict(ex.body, mailAddress=None)
    assert spec.validate("graph", "Users_Get", body) == []
    assert spec.validate("graph", "Users_Get", None) != []


def test_formats_and_enums_are_checked() -> None:
    body = {"count": 1, "value": [{"id": "not-a-guid", "name": "p", "state": "exploded",
                                   "lastUpdateTime": "yesterday"}]}
    errors = spec.validate("core", "Projects_List", body)
    assert "$.value[0].id: format: 'not-a-guid' is not a uuid" in errors
    assert "$.value[0].state: enum: 'exploded' not in the spec enum" in errors
    assert "$.value[0].lastUpdateTime: format: 'yesterday' is not a date-time" in errors


# ---- the shape comparator must be able to fail ------------------------------------------------

def test_shape_comparator_accepts_the_example_itself() -> None:
    for ex in spec.examples("graph"):
        if isinstance(ex.body, dict | list):
            s = shape.shape_of(ex.body, maps={"$.value"} if "Subjectlookup" in ex.rel else ())
            assert shape.compare(s, ex.body, maps={"$.value"} if "Subjectlookup" in ex.rel else ()) == [], ex.rel


def test_shape_comparator_catches_missing_key_wrong_type_extra_key_and_url_form() -> None:
    (ex,) = spec.examples_for("graph", "Users_List")
    expected = shape.shape_of(ex.body)
    body = copy.deepcopy(ex.body)
    aad = next(u for u in body["value"] if u["descriptor"].startswith("aad."))
    del aad["principalName"]
    aad["displayName"] = ["not", "a", "string"]
    aad["favouriteColour"] = "green"
    aad["url"] = "https://vssps.dev.azure.com/fabrikam/_apis/graph/user/" + aad["descriptor"]
    aad["originId"] = "not-a-guid"
    errors = shape.compare(expected, body)
    assert "$.value[*]: missing key 'principalName'" in errors
    assert "$.value[*].displayName: type array, the examples have string" in errors
    assert "$.value[*]: extra key 'favouriteColour' (not in the examples)" in errors
    assert any(e.startswith("$.value[*].url:") and "graph/user/{id}" in e for e in errors), errors
    assert any(e.startswith("$.value[*].originId:") and "form text" in e for e in errors), errors
    # allowances are explicit and per path
    errors = shape.compare(expected, body, allow_extra={"$.value[*].favouriteColour": "test"},
                           allow_missing={"$.value[*].principalName": "test"})
    assert not any("favouriteColour" in e or "principalName" in e for e in errors)


def test_shape_variants_by_descriptor_prefix() -> None:
    """An aad user without metaType fails even though the svc example item has none."""
    (ex,) = spec.examples_for("graph", "Users_List")
    body = copy.deepcopy(ex.body)
    aad = next(u for u in body["value"] if u["descriptor"].startswith("aad."))
    del aad["metaType"]
    assert "$.value[*]: missing key 'metaType'" in shape.compare(shape.shape_of(ex.body), body)


def test_url_template() -> None:
    assert shape.url_template("https://vssps.dev.azure.com/Fabrikam/_apis/Graph/Users/aad.YWJj?x=1") == \
        "https://vssps.dev.azure.com/{org}/_apis/Graph/Users/{id}"
    assert shape.url_template(
        "https://dev.azure.com/fabrikam/_apis/projects/eb6e4656-77fc-42a1-9181-4c6d8e9da5d1") == \
        "https://dev.azure.com/{org}/_apis/projects/{id}"
