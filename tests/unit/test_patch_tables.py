"""sync/patch.py table helpers: dropping rows keeps every other row, in order, and the untouched
table is the same object (an unchanged table is then shared with the previous snapshot)."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest

from azdo_pipeline.sync.patch import _drop, _drop_either, _without


@pytest.mark.parametrize("seed", range(40))
def test_without_equals_a_filter(seed: int) -> None:
    rnd = random.Random(seed)
    n = rnd.choice([0, 1, 5, 50, 3000, 10000])
    table = pa.table({"a": pa.array([f"v{i % 97}" for i in range(n)]), "b": pa.array(range(n))})
    k = rnd.choice([0, 1, 3, min(n, 40), min(n, 1500), min(n, 4000)])
    if seed % 2:  # scattered rows (more than 1,000 runs: the filtered copy)
        rows = np.array(sorted(rnd.sample(range(n), min(k, n))), dtype=np.int64)
    else:  # runs of consecutive rows, as a container's memberships are (the slices)
        picked: set[int] = set()
        while n and len(picked) < min(k, n):
            start = rnd.randrange(n)
            picked.update(range(start, min(n, start + rnd.choice([1, 2, 7, 300]))))
        rows = np.array(sorted(picked), dtype=np.int64)
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


@pytest.mark.parametrize("seed", range(30))
def test_same_is_equal_rows_in_any_order(seed: int) -> None:
    """`_same` (a table is shared with the previous snapshot) agrees with sorting both tables."""
    from azdo_pipeline import schemas
    from azdo_pipeline.sync.patch import _same

    rnd = random.Random(seed)
    schema = schemas.TEAM_MEMBERS
    rows = [{"team_id": f"t{rnd.randrange(4)}", "member_descriptor": f"aad.u{i}", "member_storage_key": f"k{i}",
             "display_name": rnd.choice(["Ann", None]), "is_team_admin": False, "is_member": True}
            for i in range(rnd.choice([1, 5, 40]))]
    other = list(rows)
    rnd.shuffle(other)
    change = rnd.choice(["none", "value", "key", "duplicate", "null"])
    i = rnd.randrange(len(other))
    if change == "value":
        other[i] = {**other[i], "is_team_admin": True}
    elif change == "key":
        other[i] = {**other[i], "member_descriptor": "aad.someone-else"}
    elif change == "duplicate" and len(other) > 1:
        j = (i + 1) % len(other)
        other[j] = dict(other[i])  # one row twice, another gone: as many rows, not the same ones
    elif change == "null":
        other[i] = {**other[i], "display_name": None if other[i]["display_name"] else "Bo"}
    a, b = pa.Table.from_pylist(rows, schema=schema), pa.Table.from_pylist(other, schema=schema)
    keys = [(k, "ascending") for k in schema.names]
    expected = a.sort_by(keys).equals(b.sort_by(keys))
    assert _same(a, b, "team_members") is expected
    assert _same(b, a, "team_members") is expected


def test_users_named_by_events_are_found_as_a_map_of_every_user_would_find_them() -> None:
    """Only the names events gave are looked up; the result is what a map of every user's lower-cased
    name gives for them, names that are not ASCII included (Python's lower() decides there)."""
    from azdo_pipeline import schemas
    from azdo_pipeline.sync.patch import _index, _lower_map

    names = ["Ann@Contoso.com", "İlkay@contoso.com", "bob@contoso.com", None, "ÅSA@contoso.com", "ann@contoso.com"]
    users = pa.table({f.name: pa.nulls(len(names), f.type) for f in schemas.USERS})
    users = users.set_column(users.schema.get_field_index("principal_name"), "principal_name", pa.array(names))
    users = users.set_column(users.schema.get_field_index("descriptor"), "descriptor",
                             pa.array([f"aad.{i}" for i in range(len(names))]))
    tables = {n: pa.table({f.name: pa.nulls(0, f.type) for f in s}) for n, s in schemas.RAW_TABLES.items()}
    tables["users"] = users
    every = _lower_map(users["principal_name"], users["descriptor"])
    for wanted in (["ann@contoso.com"], [str(names[1]).lower()], ["åsa@contoso.com", "bob@contoso.com"], [],
                   ["nobody@contoso.com"]):
        got = _index("s", tables, wanted).user_by_principal
        assert {k: v for k, v in got.items() if k in wanted} == {k: v for k, v in every.items() if k in wanted}
    assert _index("s", tables, ["ann@contoso.com"]).user_by_principal["ann@contoso.com"] == "aad.5"  # the later row
