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
