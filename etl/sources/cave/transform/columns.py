"""Column checks and nullable Arrow columns shared by every table the transform reads.

Examples
--------
>>> root_ids([5, 0]).to_pylist()
[5, None]
>>> nullable_floats([1.5, float("nan")]).to_pylist()
[1.5, None]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa

from ....errors import SourceError

__all__ = ["first_present", "need", "none_left", "nullable_floats", "root_ids", "valid_rows"]


def need(df: pd.DataFrame, table: str, columns: list[str]) -> None:
    """Raise :class:`SourceError` naming the columns of ``columns`` that ``df`` lacks."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SourceError(f"CAVE table {table!r} lacks column(s) {missing}; expected at least "
                          f"{columns} (positions split into _x/_y/_z, in voxels); found "
                          f"{list(df.columns)}", path=table)


def valid_rows(df: pd.DataFrame, table: str, report: dict) -> pd.DataFrame:
    """Rows whose ``valid`` is true; the others are counted (``<table>_invalid_rows``)."""
    if "valid" in df.columns:
        keep = df["valid"].astype(bool)
        if (~keep).any():
            report[f"{table}_invalid_rows"] = int((~keep).sum())
        df = df[keep]
    return df


def none_left(table: str, n: int, why: str) -> SourceError:
    """The error for a table none of whose ``n`` rows survived (``why`` says what they lacked)."""
    return SourceError(f"{table}: none of its {n:,} rows is usable ({why}); expected rows naming "
                       "cells of the nucleus table of the same materialization", path=table)


def root_ids(values) -> pa.Array:
    """Root ids as int64, root id 0 (no segment) as null."""
    arr = np.asarray(values, dtype=np.int64)
    return pa.array(arr, pa.int64(), mask=arr == 0)


def nullable_floats(values) -> pa.Array:
    """Floats as float64, NaN as null (a missing value is null in the store, never NaN)."""
    arr = np.asarray(values, dtype=np.float64)
    return pa.array(arr, pa.float64(), mask=np.isnan(arr))


def first_present(raw: Mapping[str, pd.DataFrame],
                  names: Iterable[str]) -> tuple[str | None, pd.DataFrame | None]:
    """The first of ``names`` (in order of preference) that ``raw`` holds, with its frame."""
    for name in names:
        if name in raw and raw[name] is not None:
            return name, raw[name]
    return None, None
