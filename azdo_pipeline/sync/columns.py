"""Arrow pages (azdo_pipeline.client.arrow_pages) → columns of the raw tables. Pure functions.

The vectorised twins of rows.py for the two big lists of a full sync (users, entitlements);
tests/unit/test_sync_columns.py checks that both give the same values.
"""

from __future__ import annotations

from typing import Any, cast

import pyarrow as pa
import pyarrow.compute as pc

from .. import schemas
from . import rows

_TS = schemas.TS
_NULL_STRING = pa.scalar(None, pa.string())
_EMPTY = pa.scalar("", pa.string())


def subject_types(descriptors: pa.Array[Any]) -> pa.Array[Any]:
    """rows.subject_type for a column: the prefix before the first '.', or '' when there is none."""
    prefix = pc.list_element(pc.split_pattern(descriptors, ".", max_splits=1), 0)
    return cast("pa.Array[Any]", pc.if_else(pc.match_substring(descriptors, "."), prefix, ""))


def parse_times(values: pa.Array[Any]) -> pa.Array[Any]:
    """rows.parse_time for a column of Azure DevOps timestamp strings → timestamp[us, UTC].

    Seven fractional digits are cut to six, a value without a zone is UTC, the year-1 'never'
    and empty strings are null. A value Arrow's ISO-8601 parser refuses falls back to rows.
    """
    values = values.cast(pa.string())
    text = pc.replace_substring_regex(values, r"(\.\d{6})\d+", r"\1")
    zoned = pc.match_substring_regex(text, r"(Z|[+-]\d\d:?\d\d)$")
    text = pc.if_else(zoned, text, pc.replace_substring_regex(text, "$", "Z"))
    missing = pc.or_kleene(pc.starts_with(values, "0001-01-01"), pc.equal(values, _EMPTY))
    text = pc.if_else(missing, _NULL_STRING, text)
    try:
        return cast("pa.Array[Any]", pc.cast(text, _TS))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.array([rows.parse_time(v) for v in values.to_pylist()], type=_TS)


ENTITLEMENT_TIME_COLUMNS = ("last_accessed", "date_created")


def entitlement_batch(page: pa.Table, schema: pa.Schema) -> pa.Table:
    """An entitlement page (descriptor + rows.entitlement_fields columns) in `schema`; rows
    without a user descriptor are dropped (they cannot be joined to a user)."""
    page = page.filter(pc.is_valid(page.column("descriptor")))
    cols = {name: (parse_times(page.column(name).combine_chunks()) if name in ENTITLEMENT_TIME_COLUMNS
                   else page.column(name)) for name in schema.names}
    return pa.table(cols).cast(schema)


def split_graph_users(page: pa.Table, user_schema: pa.Schema,
                      account_schema: pa.Schema) -> tuple[pa.Table, pa.Table, dict[str, int]]:
    """A Graph users page → (people in `user_schema`, service accounts, skipped counts by type).

    People are rows.USER_TYPES descriptors, service accounts rows.SERVICE_ACCOUNT_TYPES; others
    (acs, s2s, bnd, …) are system identities and are only counted.
    """
    page = page.filter(pc.is_valid(page.column("descriptor")))
    types = subject_types(page.column("descriptor").combine_chunks())
    page = page.append_column("subject_type", types)
    people = pc.is_in(types, pa.array(sorted(rows.USER_TYPES)))
    accounts = pc.is_in(types, pa.array(sorted(rows.SERVICE_ACCOUNT_TYPES)))
    other = pc.invert(pc.or_(people, accounts))
    skipped: dict[str, int] = {}
    if pc.any(other).as_py():
        counts = pc.value_counts(types.filter(other))
        for value, n in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True):
            skipped[str(value)] = int(n or 0)
    return (page.filter(people).select(user_schema.names).cast(user_schema),
            page.filter(accounts).select(account_schema.names).cast(account_schema), skipped)


def member_kinds(descriptors: pa.Array[Any]) -> pa.Array[Any]:
    """rows.member_kind for a column: user | service_account | service_principal | group | other."""
    types = subject_types(descriptors)
    known = pa.array(list(rows.KIND_BY_TYPE))
    kinds = pa.array(list(rows.KIND_BY_TYPE.values()))
    return cast("pa.Array[Any]", pc.fill_null(pc.take(kinds, pc.index_in(types, value_set=known)),
                                              pa.scalar("other", pa.string())))


def first_sight(page: pa.Table, seen: set[str]) -> pa.Table:
    """The rows of a Graph page whose descriptor was not listed before (added to `seen`); rows
    without a descriptor stay (split_graph_users drops them, the sync counts them)."""
    keep: list[bool] = []
    for d in page.column("descriptor").to_pylist():
        if d is None:
            keep.append(True)
        elif d in seen:
            keep.append(False)
        else:
            seen.add(d)
            keep.append(True)
    return page if all(keep) else page.filter(pa.array(keep, pa.bool_()))
