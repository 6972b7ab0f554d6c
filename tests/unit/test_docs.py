"""docs/tables.md is generated from the Arrow schemas and must not drift from them."""

from __future__ import annotations

from azdo_pipeline import docs, schemas
from azdo_pipeline.accessgraph.schemas import DERIVED_TABLES


def test_committed_tables_md_is_the_generated_text() -> None:
    assert docs.TABLES_MD.read_text(encoding="utf-8") == docs.render(), \
        "docs/tables.md is out of date: run `python -m azdo_pipeline.docs`"


def test_every_table_and_column_is_documented() -> None:
    text = docs.render()
    for name, schema in {**schemas.RAW_TABLES, **DERIVED_TABLES}.items():
        assert f"### `{name}`" in text
        for f in schema:
            assert f"| `{f.name}` |" in text


def test_check_mode_reports_drift(tmp_path) -> None:
    out = tmp_path / "tables.md"
    out.write_text("stale\n")
    assert docs.main(["--check", "--output", str(out)]) == 1
    assert docs.main(["--output", str(out)]) == 0
    assert docs.main(["--check", "--output", str(out)]) == 0


def test_committed_requests_md_is_the_generated_text() -> None:
    from azdo_pipeline.provisioning import reference

    assert docs.REQUESTS_MD.read_text(encoding="utf-8") == reference.render(), \
        "docs/requests.md is out of date: run `python -m azdo_pipeline.docs`"


def test_requests_md_holds_every_field_status_and_outcome_column() -> None:
    from azdo_pipeline.provisioning import reference
    from azdo_pipeline.provisioning.outcomes import PROVISIONING_OUTCOMES, Status
    from azdo_pipeline.provisioning.requests import FIELDS

    text = reference.render()
    for name in FIELDS[1:]:
        assert f"| `{name}` |" in text
    for s in Status:
        assert f"| `{s.value}` |" in text
    for f in PROVISIONING_OUTCOMES:
        assert f"| `{f.name}` |" in text


def test_check_mode_reports_requests_md_drift(tmp_path) -> None:
    out = tmp_path / "requests.md"
    out.write_text("stale\n")
    assert docs.main(["--check", "--requests-output", str(out)]) == 1
    assert docs.main(["--requests-output", str(out)]) == 0
    assert docs.main(["--check", "--requests-output", str(out)]) == 0
