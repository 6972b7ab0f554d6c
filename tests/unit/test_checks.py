from __future__ import annotations

import pyarrow as pa

from azdo_pipeline.checks import duplicate_keys, unresolved_members


def test_duplicate_keys_found_and_clean() -> None:
    t = pa.table({"a": ["x", "y", "x"], "b": [1, 2, 1]})
    out = duplicate_keys(t, ["a", "b"])
    assert not out.passed and out.count == 1 and out.examples == ["x / 1"]
    assert duplicate_keys(t, ["a", "b"]).count == 1
    assert duplicate_keys(pa.table({"a": ["x", "y"]}), ["a"]).passed


def test_unresolved_members() -> None:
    m = pa.table({"container_descriptor": ["g1", "g1", "g9"], "member_descriptor": ["u1", "u2", "u1"]})
    out = unresolved_members(m, [pa.array(["u1"]), pa.array(["g1"])], pa.array(["g1"]))
    assert out.count == 2
    assert sorted(out.examples) == ["g1 -> u2", "g9 -> u1"]
    ok = unresolved_members(m.slice(0, 1), [pa.array(["u1"])], pa.array(["g1"]))
    assert ok.passed


def _as_read_back(t: pa.Table, tmp_path, row_group_size: int):  # type: ignore[no-untyped-def]
    """The table written to Parquet in several row groups and read back with dictionary columns,
    as reconciliation reads the memberships (each row group has its own dictionary)."""
    import pyarrow.parquet as pq

    path = tmp_path / "t.parquet"
    pq.write_table(t, path, row_group_size=row_group_size)
    return pq.read_table(path, read_dictionary=t.column_names)


def test_dictionary_columns_give_the_same_outcomes_as_strings(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import random

    rng = random.Random(7)
    for case in range(30):
        n = rng.randint(1, 300)
        groups = [f"g{i}" for i in range(rng.randint(1, 12))]
        members = [f"u{i}" for i in range(rng.randint(1, 40))]
        pick = lambda xs: rng.choice([*xs, "gone"]) if rng.random() < 0.05 else rng.choice(xs)  # noqa: E731
        m = pa.table({"container_descriptor": [pick(groups) for _ in range(n)],
                      "member_descriptor": [pick(members) for _ in range(n)]})
        coded = _as_read_back(m, tmp_path, rng.randint(1, 60))
        assert pa.types.is_dictionary(coded["member_descriptor"].type)
        keys = ["container_descriptor", "member_descriptor"]
        plain, dict_ = duplicate_keys(m, keys), duplicate_keys(coded, keys)
        assert (plain.passed, plain.count) == (dict_.passed, dict_.count), case
        assert set(dict_.examples) <= {f"{a} / {b}" for a, b in zip(m[keys[0]].to_pylist(),
                                                                     m[keys[1]].to_pylist(), strict=True)}
        assert len(dict_.examples) == min(5, dict_.count)
        known = [pa.array(members), pa.array(groups)]
        u_plain = unresolved_members(m, known, pa.array(groups))
        u_dict = unresolved_members(coded, known, pa.array(groups))
        assert (u_plain.count, sorted(u_plain.examples)) == (u_dict.count, sorted(u_dict.examples)), case
