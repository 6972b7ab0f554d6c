"""Shared checks of the route contract tests: schema validation + shape comparison in one call."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from . import shape, spec

DEVIATIONS = "docs/spec-deviations.md"


def contract_errors(area: str, operation_id: str, body: Any, *, maps: Iterable[str] = (),
                    opaque: Iterable[str] = (), allow_extra: Mapping[str, str] | None = None,
                    allow_missing: Mapping[str, str] | None = None,
                    allow_null: Mapping[str, str] | None = None,
                    allow_undeclared: Iterable[str] = (), example_bodies: list[Any] | None = None,
                    skip: Mapping[str, str] | None = None) -> list[str]:
    """Schema errors (strict) plus shape differences from the operation's official examples.

    example_bodies: use these instead of the operation's examples (e.g. the audit example's `value`,
    D1). Every allow_* entry is path -> reason and the reason must cite docs/spec-deviations.md.
    """
    for reasons in (allow_extra, allow_missing, allow_null, skip):
        for path, why in (reasons or {}).items():
            assert DEVIATIONS in why or "behaviour doc" in why, f"allowance {path} must cite its source"
    errors = ["schema " + e for e in spec.validate(area, operation_id, body, allow_undeclared=allow_undeclared)]
    assert example_bodies is None or example_bodies, "example_bodies given but empty: nothing to compare with"
    bodies = example_bodies if example_bodies is not None else \
        [ex.body for ex in spec.examples_for(area, operation_id)]
    if bodies:
        maps = set(maps)
        expected = shape.shape_of(*bodies, maps=maps, opaque=opaque)
        errors += ["shape " + e for e in shape.compare(expected, body, allow_extra=allow_extra,
                                                        allow_missing=allow_missing, allow_null=allow_null,
                                                        maps=maps, skip=skip)]
    return errors


def assert_contract(area: str, operation_id: str, body: Any, **kwargs: Any) -> None:
    errors = contract_errors(area, operation_id, body, **kwargs)
    assert not errors, f"{area} {operation_id}:\n  " + "\n  ".join(errors[:60])


def msa_variant(aad_user: dict[str, Any]) -> dict[str, Any]:
    """An official aad GraphUser example turned into the msa user the examples never show.

    No example has an msa user (Users/CreateUserMSA.json is an aad guest). graph.json documents the
    difference itself: GraphMember.domain "For MSA this is 'Windows Live ID'", origin "msa", and the
    descriptor prefix is `msa` (behaviour doc §3.1). Everything else keeps the aad example's shape.
    """
    d = "msa." + aad_user["descriptor"].split(".", 1)[1]
    out = dict(aad_user, domain="Windows Live ID", origin="msa", descriptor=d)
    out["url"] = aad_user["url"].replace(aad_user["descriptor"], d)
    out["_links"] = {k: {"href": v["href"].replace(aad_user["descriptor"], d)} for k, v in aad_user["_links"].items()}
    return out
