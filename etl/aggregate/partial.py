"""Partial aggregation of synapse batches into pair counts and sums, shared by the engines.

A pair is encoded as one int64 key, ``pre_index * n_roots + post_index``, where the indices point
into :attr:`RootMap.root_ids`. Partial results are frames indexed by key with integer columns
``n`` (synapses), ``n_known`` (synapses with a size) and ``size`` (summed size, each size rounded
to the nearest integer voxel count first). Integer sums are exact, so partial results can be
combined in any order and every engine gets the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import SourceError
from .mapping import RootMap

__all__ = ["PAIR_COLUMNS", "aggregate_batch", "combine", "decode", "finalize", "int_ids",
           "rounded_sizes"]

#: Columns of a partial result (index: ``key``).
PAIR_COLUMNS = ("n", "n_known", "size")


def int_ids(arr: pa.Array | pa.ChunkedArray, column: str, origin: str) -> np.ndarray:
    """Root ids as int64 numpy (null -> 0, i.e. no segment).

    Raises
    ------
    SourceError
        The column is not integer-typed (floating root ids lose precision above 2**53).
    """
    if not pa.types.is_integer(arr.type) and not pa.types.is_null(arr.type):
        raise SourceError(f"synapses from {origin}: column {column} must hold integer root ids; "
                          f"found type {arr.type} (root ids exceed float precision)")
    return pc.fill_null(arr.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)


def rounded_sizes(arr: pa.Array | pa.ChunkedArray | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(known mask, sizes rounded half up to int64 with 0 where unknown) of a size column."""
    if arr is None:
        return np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64)
    if not (pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type)
            or pa.types.is_null(arr.type)):
        raise SourceError(f"synapse column size must be numeric; found type {arr.type}")
    if pa.types.is_integer(arr.type):
        known = pc.is_valid(arr).to_numpy(zero_copy_only=False)
        return known, pc.fill_null(arr.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
    vals = pc.fill_null(arr.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False)
    known = ~np.isnan(vals)
    return known, np.where(known, np.floor(vals + 0.5), 0).astype(np.int64)


def aggregate_batch(batch: pa.Table | pa.RecordBatch, rmap: RootMap, *, keep_self: bool,
                    origin: str) -> pd.DataFrame:
    """Aggregate one batch with canonical columns (pre_root_id, post_root_id[, size])."""
    names = batch.schema.names
    pre = int_ids(batch.column(names.index("pre_root_id")), "pre_root_id", origin)
    post = int_ids(batch.column(names.index("post_root_id")), "post_root_id", origin)
    size = batch.column(names.index("size")) if "size" in names else None
    ip, iq = rmap.lookup(pre), rmap.lookup(post)
    ok = (ip >= 0) & (iq >= 0)
    if not keep_self:
        ok &= ip != iq
    known, sizes = rounded_sizes(size, len(pre))
    m = np.int64(max(len(rmap.root_ids), 1))
    frame = pd.DataFrame({"key": ip[ok] * m + iq[ok], "n": np.ones(int(ok.sum()), np.int64),
                          "n_known": known[ok].astype(np.int64), "size": sizes[ok]})
    return frame.groupby("key", sort=False).sum()


def combine(parts: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Combine partial results (sums per key)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame({c: np.zeros(0, np.int64) for c in PAIR_COLUMNS},
                            index=pd.Index(np.zeros(0, np.int64), name="key"))
    if len(parts) == 1:
        return parts[0]
    return pd.concat(parts).groupby(level=0, sort=False).sum()


def decode(partial: pd.DataFrame, rmap: RootMap) -> dict[str, np.ndarray]:
    """Turn keys back into nucleus ids: columns pre, post, n, n_known, size."""
    m = np.int64(max(len(rmap.root_ids), 1))
    key = partial.index.to_numpy(np.int64)
    return {"pre": rmap.nucleus_ids[key // m], "post": rmap.nucleus_ids[key % m],
            **{c: partial[c].to_numpy(np.int64) for c in PAIR_COLUMNS}}


def finalize(cols: dict[str, np.ndarray]) -> pa.Table:
    """Build the ``connections`` contract table, sorted by (pre, post).

    ``sum_size`` is the exact integer sum as float64 where every synapse of the pair has a size,
    and null where any size is unknown.
    """
    order = np.lexsort((cols["post"], cols["pre"]))
    n, n_known = cols["n"][order], cols["n_known"][order]
    sums = cols["size"][order].astype(np.float64)
    return pa.table({
        "pre_nucleus_id": pa.array(cols["pre"][order], pa.int64()),
        "post_nucleus_id": pa.array(cols["post"][order], pa.int64()),
        "n_synapses": pa.array(n, pa.int64()),
        "sum_size": pa.array(sums, pa.float64(), mask=n_known != n),
    })
