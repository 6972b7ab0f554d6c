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
