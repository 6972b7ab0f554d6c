"""Small Arrow ↔ numpy helpers shared by the access-graph modules."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .closure import I32, Paths


def codes(values: pa.Array | pa.ChunkedArray, dictionary: pa.Array) -> np.ndarray:
    """Position of each value in `dictionary` (int32), -1 where absent or null."""
    idx = pc.index_in(values, value_set=dictionary)
    if isinstance(idx, pa.ChunkedArray):
        idx = idx.combine_chunks() if idx.num_chunks else pa.array([], pa.int32())
    return idx.fill_null(-1).to_numpy(zero_copy_only=False).astype(I32)


def to_np(arr: pa.Array | pa.ChunkedArray, fill: object) -> np.ndarray:
    return arr.fill_null(fill).to_numpy(zero_copy_only=False)


def dict_array(indices: np.ndarray, dictionary: pa.Array, index_type: pa.DataType = pa.int32(),
               *, null: np.ndarray | None = None, compact: bool | None = None) -> pa.DictionaryArray:
    """Dictionary array over `dictionary`; indices < 0 (or `null`) become null.

    compact (default: when the dictionary is large) keeps only the values used, so a Parquet row
    group does not carry a dictionary page of every descriptor in the organization.
    """
    mask = indices < 0 if null is None else null
    idx = np.where(mask, 0, indices) if mask.any() else indices
    if compact is None:
        compact = len(dictionary) > 4096
    if compact:
        used = np.zeros(len(dictionary), bool)
        used[idx[~mask]] = True
        remap = np.cumsum(used, dtype=np.int64) - 1
        dictionary = dictionary.filter(pa.array(used))
        idx = remap[idx] if len(dictionary) else np.zeros(len(idx), np.int64)
    arr = pa.array(idx.astype(index_type.to_pandas_dtype(), copy=False), index_type,
                   mask=mask if mask.any() else None)
    return pa.DictionaryArray.from_arrays(arr, dictionary)


def list_array(paths: Paths, values: pa.Array) -> pa.ListArray:
    """Ragged int lists → list<values-type>, e.g. list<dictionary<string>> with values = dict_array(...)."""
    return pa.ListArray.from_arrays(pa.array(paths.offsets.astype(np.int32)), values)


class Lookup:
    """A column's distinct non-null values as a dictionary, and each row's position in it.

    Arrow dictionaries must be free of nulls and duplicates (Parquet and pandas refuse them), so
    columns that may hold either (names, ids of possibly-duplicated raw rows) go through this.
    """

    def __init__(self, values: pa.Array | pa.ChunkedArray) -> None:
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks() if values.num_chunks else pa.array([], values.type)
        self.dictionary = pc.unique(values.drop_null())
        self.code = codes(values, self.dictionary)  # per row, -1 for null

    def array(self, rows: np.ndarray, index_type: pa.DataType = pa.int32()) -> pa.DictionaryArray:
        """Dictionary array of the values at `rows` (rows < 0 give null)."""
        c = np.where(rows >= 0, self.code[np.maximum(rows, 0)], -1) if len(self.code) else np.full(len(rows), -1)
        return dict_array(c, self.dictionary, index_type)


def block(schema: pa.Schema, n: int, columns: dict[str, object]) -> pa.Table:
    """`n` rows of `schema`: arrays are cast, scalars repeated, absent columns null."""
    arrays = []
    for f in schema:
        v = columns.get(f.name)
        if v is None:
            arrays.append(pa.nulls(n, f.type))
        elif isinstance(v, pa.Array | pa.ChunkedArray):
            arrays.append(v.cast(f.type))
        else:
            arrays.append(pa.array([v] * n, f.type))
    return pa.Table.from_arrays(arrays, schema=schema)
