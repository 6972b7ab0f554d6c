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
    grouped = table.select(keys).group_by(keys).aggregate([([], "count_all")])
    dupes = grouped.filter(pc.greater(grouped["count_all"], 1))
    sample = [" / ".join(str(dupes[k][i].as_py()) for k in keys) for i in range(min(examples, dupes.num_rows))]
    return CheckOutcome(dupes.num_rows == 0, dupes.num_rows, sample)


def unresolved_members(memberships: pa.Table, known: list[pa.Array | pa.ChunkedArray],
                       groups: pa.Array | pa.ChunkedArray, *, examples: int = 5) -> CheckOutcome:
    """Membership edges whose container is not a known group or whose member is not a known subject."""
    if memberships.num_rows == 0:
        return CheckOutcome(True, 0, [])
    subjects = pa.chunked_array([c for arr in known for c in (arr.chunks if isinstance(arr, pa.ChunkedArray)
                                                              else [arr])], type=pa.string())
    member_ok = pc.is_in(memberships["member_descriptor"], value_set=subjects.combine_chunks())
    container_ok = pc.is_in(memberships["container_descriptor"],
                            value_set=pa.chunked_array(groups).combine_chunks()
                            if isinstance(groups, pa.ChunkedArray) else groups)
    bad = memberships.filter(pc.invert(pc.and_(member_ok, container_ok)))
    sample = [f"{bad['container_descriptor'][i].as_py()} -> {bad['member_descriptor'][i].as_py()}"
              for i in range(min(examples, bad.num_rows))]
    return CheckOutcome(bad.num_rows == 0, bad.num_rows, sample)
