"""Data-quality checks over Arrow tables (pure; the Dagster asset checks call these)."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc


@dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    count: int  # offending rows
    examples: list[str]


def duplicate_keys(table: pa.Table, keys: list[str], *, examples: int = 5) -> CheckOutcome:
    """Rows whose key columns repeat (the key must identify a row)."""
    if table.num_rows == 0:
        return CheckOutcome(True, 0, [])
    t = table.select(keys)
    if all(pa.types.is_dictionary(t[k].type) for k in keys):
        return _duplicate_coded_keys(t.unify_dictionaries(), keys, examples)
    grouped = t.group_by(keys).aggregate([([], "count_all")])
    dupes = grouped.filter(pc.greater(grouped["count_all"], 1))
    sample = [" / ".join(str(dupes[k][i].as_py()) for k in keys) for i in range(min(examples, dupes.num_rows))]
    return CheckOutcome(dupes.num_rows == 0, dupes.num_rows, sample)


def _duplicate_coded_keys(t: pa.Table, keys: list[str], examples: int) -> CheckOutcome:
    """duplicate_keys over dictionary columns with one dictionary each: the key is the tuple of
    dictionary indices packed into one int64, so the grouping never hashes the strings (a million
    memberships: ~10 MB of codes instead of the descriptors)."""
    code: pa.ChunkedArray | None = None
    for k in keys:
        idx = pa.chunked_array([c.indices.cast(pa.int64()) for c in t[k].chunks], type=pa.int64())
        code = idx if code is None else pc.add(pc.multiply(code, len(t[k].chunks[0].dictionary)), idx)
    assert code is not None
    grouped = pa.table({"code": code}).group_by("code").aggregate([([], "count_all")])
    dupes = grouped.filter(pc.greater(grouped["count_all"], 1))
    if dupes.num_rows == 0:
        return CheckOutcome(True, 0, [])
    first = pc.index_in(code, value_set=dupes["code"].slice(0, examples).combine_chunks())
    rows = t.filter(pc.is_valid(first))
    seen: dict[str, None] = {}
    for i in range(rows.num_rows):
        seen.setdefault(" / ".join(str(rows[k][i].as_py()) for k in keys))
    return CheckOutcome(False, dupes.num_rows, list(seen)[:examples])


def _is_in(column: pa.ChunkedArray, value_set: pa.Array) -> pa.ChunkedArray:
    """pc.is_in, looking up a dictionary chunk's distinct values once rather than every row."""
    out = []
    for chunk in column.chunks:
        if pa.types.is_dictionary(chunk.type):
            out.append(pc.fill_null(pc.take(pc.is_in(chunk.dictionary, value_set=value_set), chunk.indices), False))
        else:
            out.append(pc.is_in(chunk, value_set=value_set))
    return pa.chunked_array(out, type=pa.bool_())


def unresolved_members(memberships: pa.Table, known: list[pa.Array | pa.ChunkedArray],
                       groups: pa.Array | pa.ChunkedArray, *, examples: int = 5) -> CheckOutcome:
    """Membership edges whose container is not a known group or whose member is not a known subject."""
    if memberships.num_rows == 0:
        return CheckOutcome(True, 0, [])
    subjects = pa.chunked_array([c for arr in known for c in (arr.chunks if isinstance(arr, pa.ChunkedArray)
                                                              else [arr])], type=pa.string())
    member_ok = _is_in(memberships["member_descriptor"], subjects.combine_chunks())
    container_ok = _is_in(memberships["container_descriptor"],
                          pa.chunked_array(groups).combine_chunks() if isinstance(groups, pa.ChunkedArray) else groups)
    bad = memberships.filter(pc.invert(pc.and_(member_ok, container_ok)))
    sample = [f"{bad['container_descriptor'][i].as_py()} -> {bad['member_descriptor'][i].as_py()}"
              for i in range(min(examples, bad.num_rows))]
    return CheckOutcome(bad.num_rows == 0, bad.num_rows, sample)
