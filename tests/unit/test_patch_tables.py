"""sync/patch.py table helpers: dropping rows keeps every other row, in order, and the untouched
table is the same object (an unchanged table is then shared with the previous snapshot)."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest

from azdo_pipeline.sync.patch import _drop, _drop_either, _without


@pytest.mark.parametrize("seed", range(30))
def test_without_equals_a_filter(seed: int) -> None:
    rnd = random.Random(seed)
    n = rnd.choice([0, 1, 5, 50, 3000])
    table = pa.table({"a": pa.array([f"v{i % 97}" for i in range(n)]), "b": pa.array(range(n))})
    k = rnd.choice([0, 1, 3, min(n, 40), min(n, 1500)])
    rows = np.array(sorted(rnd.sample(range(n), min(k, n))), dtype=np.int64)
    keep = np.ones(n, dtype=bool)
    keep[rows] = False
    got = _without(table, rows)
    assert got.equals(table.filter(pa.array(keep)))
    if not len(rows):
        assert got is table


def test_drop_and_drop_either() -> None:
    t = pa.table({"c": ["g1", "g2", "g1", "g3"], "m": ["u1", "u2", "g3", "u1"]})
    assert _drop(t, "c", ["nope"]) is t
    assert _drop(t, "c", ["g1"]).to_pydict() == {"c": ["g2", "g3"], "m": ["u2", "u1"]}
    assert _drop_either(t, ("c", ["g2"]), ("m", ["u1"])).to_pydict() == {"c": ["g1"], "m": ["g3"]}
    assert _drop_either(t, ("c", []), ("m", ["zz"])) is t
