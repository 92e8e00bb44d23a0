"""Points (x, y, z) as exports write them, parsed strictly into an (n, 3) float array.

Three shapes reach us: split columns (``pt_position_x``, ``_y``, ``_z``: numbers), one list column
(Parquet ``list<double>``/``fixed_size_list``, or caveclient's frames without
``split_positions``), and one text column ``"[x y z]"`` (what a CSV written from such a frame
holds; any spacing, commas allowed, ``numpy`` float spellings such as ``1.5e+05`` accepted). A
value that is not a point is an error naming where it came from, the row and the value: never a
silent NaN. A null point stays null (NaN in the returned array, counted by the caller).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import SourceError

__all__ = ["parse_points"]

_NUM = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
#: ``[x y z]`` with any spacing; commas allowed between values; brackets optional.
_POINT = (rf"^\s*[\[(]?\s*(?P<x>{_NUM})\s*[,\s]\s*(?P<y>{_NUM})\s*[,\s]\s*(?P<z>{_NUM})\s*[\])]?\s*$")


def _fail(origin: str, column: str, row: int, value, why: str) -> SourceError:
    return SourceError(f"{origin}: column {column}, row {row + 1}: expected a point [x y z] "
                       f"(three numbers); found {value!r} ({why})", path=origin)


def parse_points(values, *, origin: str, column: str, row_offset: int = 0) -> np.ndarray:
    """Parse one point column into an ``(n, 3)`` float64 array (nulls -> NaN rows).

    Parameters
    ----------
    values
        A pyarrow (chunked) array of lists or strings, or a sequence of lists / strings / None.
    origin, column
        Named in errors (the file or table, and the column).
    row_offset
        Rows before these in the file (errors name the file's row, counted from 1).

    Raises
    ------
    SourceError
        A value is not three numbers, naming the row and the value.

    Examples
    --------
    >>> parse_points(["[1 2 3]", "[ 4.5,5 ,6e1 ]"], origin="f.csv", column="pt_position")
    array([[ 1. ,  2. ,  3. ],
           [ 4.5,  5. , 60. ]])
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        try:
            values = pa.array(list(values))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as err:
            raise SourceError(f"{origin}: column {column}: expected points [x y z]; found values "
                              f"of mixed types ({err})", path=origin) from err
    n = len(values)
    out = np.full((n, 3), np.nan)
    if n == 0 or values.null_count == n:
        return out
    valid = ~np.asarray(values.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    t = values.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        parts = pc.extract_regex(values, _POINT)
        bad = valid & np.asarray(parts.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise _fail(origin, column, row_offset + i, values[i].as_py(), "not three numbers")
        for k, axis in enumerate("xyz"):
            col = pc.struct_field(parts, axis)
            out[valid, k] = pc.cast(col.filter(pa.array(valid)), pa.float64()).to_numpy()
    elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        lengths = np.asarray(pc.list_value_length(values).to_numpy(zero_copy_only=False))
        bad = valid & (lengths != 3)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise _fail(origin, column, row_offset + i, values[i].as_py(),
                        f"{int(lengths[i])} values")
        inner = values.filter(pa.array(valid)).flatten()
        if inner.null_count or not (pa.types.is_integer(inner.type) or pa.types.is_floating(inner.type)):
            i = int(np.flatnonzero(valid)[0])
            raise _fail(origin, column, row_offset + i, values[i].as_py(),
                        f"values of type {inner.type}, with {inner.null_count} null"
                        if inner.null_count else f"values of type {inner.type}")
        out[valid] = inner.to_numpy(zero_copy_only=False).astype(np.float64).reshape(-1, 3)
    else:
        i = int(np.flatnonzero(valid)[0])
        raise _fail(origin, column, row_offset + i, values[i].as_py(), f"a column of type {t}")
    if not np.isfinite(out[valid]).all():
        i = int(np.flatnonzero(valid & ~np.isfinite(out).all(axis=1))[0])
        raise _fail(origin, column, row_offset + i, values[i].as_py(), "not finite")
    return out
