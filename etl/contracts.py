"""Validate incoming tables against the store contracts in ``schemas/store``.

A contract is checked column by column (presence, type, nullability, bounds, order within lists),
then keys and foreign keys. The first violation raises :class:`~etl.errors.ValidationError` naming
the table, column, origin, what was expected and what was found; nothing is stored.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from connectome_priors.schemas import STORE_TABLES, store_contract

from .errors import ValidationError
from .tables import ParquetRows

__all__ = ["REQUIRED_TABLES", "arrow_type", "arrow_schema", "require_rows", "validate_streamed", "validate_table",
           "validate_tables"]

#: Tables each source must provide with at least one row: a snapshot without them holds nothing
#: the rest of the pipeline can use (cave and files: cells; nwb: scan units and their spikes).
REQUIRED_TABLES: dict[str, tuple[str, ...]] = {
    "synthetic": ("neurons", "functional_units"),
    "blueprint": ("neurons", "functional_units"),
    "cave": ("neurons",),
    "files": ("neurons",),
    "nwb": ("functional_units", "spikes"),
}

_TYPES: dict[str, pa.DataType] = {
    "int64": pa.int64(),
    "float64": pa.float64(),
    "string": pa.string(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "list<float64>": pa.list_(pa.float64()),
}

_EXAMPLES = 3


def arrow_type(contract_type: str) -> pa.DataType:
    """Map a contract type name (``int64``, ``list<float64>``, ...) to its Arrow type."""
    return _TYPES[contract_type]


def arrow_schema(table: str) -> pa.Schema:
    """Arrow schema of store table ``table`` as its contract defines it (without snapshot_id)."""
    cols = store_contract(table)["columns"]
    return pa.schema([pa.field(c["name"], arrow_type(c["type"]), c["nullable"]) for c in cols])


def _castable(found: pa.DataType, want: pa.DataType) -> bool:
    if found == want or pa.types.is_null(found):
        return True
    if pa.types.is_integer(want):
        return pa.types.is_integer(found)
    if pa.types.is_floating(want):
        return pa.types.is_integer(found) or pa.types.is_floating(found)
    if pa.types.is_string(want):
        return pa.types.is_string(found) or pa.types.is_large_string(found)
    if pa.types.is_timestamp(want):
        return pa.types.is_timestamp(found)
    if pa.types.is_list(want) or pa.types.is_large_list(want):
        return (pa.types.is_list(found) or pa.types.is_large_list(found)) and _castable(
            found.value_type, want.value_type)
    return False


def _rows(table: pa.Table, mask: np.ndarray, columns: list[str]) -> str:
    idx = np.flatnonzero(mask)[:_EXAMPLES]
    keep = [c for c in columns if c in table.column_names]
    sub = table.select(keep).take(pa.array(idx)).to_pylist()
    return "; ".join(f"row {i}: {r}" for i, r in zip(idx, sub))


def _check_column(table: pa.Table, col: dict, name: str, origin: str, id_cols: list[str]) -> pa.Array:
    cname = col["name"]
    want = arrow_type(col["type"])
    arr = table.column(cname)
    if not _castable(arr.type, want):
        raise ValidationError(table=name, column=cname, origin=origin,
                              expected=f"type {col['type']}", found=f"type {arr.type}")
    try:
        arr = arr.cast(want)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise ValidationError(table=name, column=cname, origin=origin,
                              expected=f"values representable as {col['type']}",
                              found=str(err)) from err
    values = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    is_list = pa.types.is_list(want)
    numeric = values.values if is_list else values
    nulls = np.asarray(values.is_null(nan_is_null=not is_list and pa.types.is_floating(want)))
    if not col["nullable"] and nulls.any():
        raise ValidationError(table=name, column=cname, origin=origin, expected="no missing values",
                              found=f"{int(nulls.sum())} null/NaN value(s), e.g. "
                                    + _rows(table, nulls, id_cols + [cname]))
    if is_list or pa.types.is_floating(want):
        flat = np.asarray(numeric.to_numpy(zero_copy_only=False), dtype=float)
        # scalar NaN is a null (checked above); inside a list nothing may be NaN or infinite
        bad = ~np.isfinite(flat) if is_list else np.isinf(flat)
        if bad.any():
            mask = _row_mask(values, bad) if is_list else bad
            raise ValidationError(table=name, column=cname, origin=origin,
                                  expected="finite values",
                                  found=f"{int(bad.sum())} non-finite value(s), e.g. "
                                        + _rows(table, mask, id_cols))
    for key, op, word in (("minimum", np.less, ">="), ("maximum", np.greater, "<="),
                          ("exclusive_maximum", np.greater_equal, "<")):
        if key not in col or want == pa.string():
            continue
        flat = np.asarray(numeric.to_numpy(zero_copy_only=False), dtype=float)
        with np.errstate(invalid="ignore"):
            bad = op(flat, col[key]) & ~np.isnan(flat)
        if bad.any():
            mask = _row_mask(values, bad) if is_list else bad
            raise ValidationError(
                table=name, column=cname, origin=origin,
                expected=f"values {word} {col[key]}" + (f" ({col['unit']})" if "unit" in col else ""),
                found=f"{int(mask.sum())} row(s) out of range (e.g. {flat[bad][:_EXAMPLES].tolist()}): "
                      + _rows(table, mask, id_cols))
    if is_list and col.get("sorted"):
        flat = np.asarray(numeric.to_numpy(zero_copy_only=False), dtype=float)
        offsets = np.asarray(values.offsets)
        step_down = np.diff(flat) < 0
        # a decrease across a row boundary is fine: mask out positions that start a new row
        starts = offsets[1:-1][(offsets[1:-1] > 0) & (offsets[1:-1] < len(flat))] - 1
        step_down[starts] = False
        if step_down.any():
            mask = _row_mask(values, np.append(step_down, False))
            raise ValidationError(table=name, column=cname, origin=origin,
                                  expected="times sorted ascending within each row",
                                  found=f"{int(mask.sum())} unsorted row(s): " + _rows(table, mask, id_cols))
    return arr


def _row_mask(list_array: pa.ListArray, flat_bad: np.ndarray) -> np.ndarray:
    """Rows of a list column that contain at least one flagged element."""
    offsets = np.asarray(list_array.offsets)
    counts = np.add.reduceat(np.append(flat_bad, False).astype(np.int64), offsets[:-1]) \
        if len(flat_bad) else np.zeros(len(list_array), dtype=np.int64)
    counts[np.diff(offsets) == 0] = 0
    return counts > 0


def _key_frame(table: pa.Table, cols: list[str]):
    return table.select(cols).to_pandas()


def validate_table(table: pa.Table, name: str, *, origin: str) -> pa.Table:
    """Check ``table`` against the contract of store table ``name``; return it cast to canonical types.

    Checks column presence and extra columns, types, nullability, finiteness, bounds, sortedness
    of list columns and primary-key uniqueness. Foreign keys need the other tables: see
    :func:`validate_tables`.

    Raises
    ------
    ValidationError
        On the first violation, naming table, column, origin, expectation and finding.
    """
    contract = store_contract(name)
    cols = contract["columns"]
    wanted = [c["name"] for c in cols]
    missing = [c for c in wanted if c not in table.column_names]
    if missing:
        raise ValidationError(table=name, column=missing[0], origin=origin,
                              expected=f"columns {wanted}",
                              found=f"columns {table.column_names} (missing {missing})")
    extra = [c for c in table.column_names if c not in wanted]
    if extra:
        raise ValidationError(table=name, column=extra[0], origin=origin,
                              expected=f"columns {wanted}", found=f"unexpected column(s) {extra}")
    id_cols = contract["primary_key"]
    arrays = [_check_column(table, c, name, origin, id_cols) for c in cols]
    out = pa.Table.from_arrays(arrays, schema=arrow_schema(name))
    key = contract["primary_key"]
    if out.num_rows:
        frame = _key_frame(out, key)
        dup = frame.duplicated(keep=False).to_numpy()
        if dup.any():
            raise ValidationError(table=name, column=",".join(key), origin=origin,
                                  expected=f"unique key ({', '.join(key)})",
                                  found=f"{int(frame.duplicated().sum())} duplicate key(s), e.g. "
                                        + _rows(out, dup, key))
    return out


def require_rows(source: str, tables: Mapping[str, pa.Table | ParquetRows], *,
                 origins: Mapping[str, str]) -> None:
    """Check that every table ``source`` must provide (:data:`REQUIRED_TABLES`) is present with
    at least one row.

    Raises
    ------
    ValidationError
        Naming the table and where it came from (e.g. an empty ``nucleus_detection_v0`` export).
    """
    for name in REQUIRED_TABLES.get(source, ()):
        table = tables.get(name)
        if table is None or table.num_rows == 0:
            raise ValidationError(
                table=name, column=None, origin=origins.get(name, f"source {source!r}"),
                expected=f"at least one row (every {source} snapshot needs {name})",
                found="no table" if table is None else "0 rows",
                hint="Nothing was stored; check that the input is complete (an empty export, a "
                     "filter or selection that keeps nothing)")


def validate_tables(tables: Mapping[str, pa.Table], *, origins: Mapping[str, str]) -> dict[str, pa.Table]:
    """Validate every table (contract order), then every foreign key; return the cast tables.

    A foreign key is checked for rows whose key columns are non-null (a nullable reference, such as
    ``functional_units.nucleus_id`` of an ``nwb`` snapshot, may be null); a table whose references
    are all null needs no table to join against. Unknown table names are refused. Tables a source
    does not provide are simply absent.
    """
    unknown = sorted(set(tables) - set(STORE_TABLES))
    if unknown:
        raise ValidationError(table=unknown[0], column=None, origin=origins.get(unknown[0], "?"),
                              expected=f"one of the store tables {list(STORE_TABLES)}",
                              found=f"table {unknown[0]!r}")
    out: dict[str, pa.Table] = {}
    for name in STORE_TABLES:
        if name in tables:
            out[name] = validate_table(tables[name], name, origin=origins.get(name, "?"))
    for name, table in out.items():
        _check_foreign_keys(table, name, out, origins.get(name, "?"))
    return out


def _check_foreign_keys(table: pa.Table, name: str, tables: Mapping[str, pa.Table],
                        origin: str) -> None:
    """Every non-null reference of ``table`` (store table ``name``) must exist in ``tables``."""
    for fk in store_contract(name).get("foreign_keys", []):
        ref = fk["references"]
        table_fk = _non_null(table, fk["columns"])  # a null reference refers to nothing
        if table_fk.num_rows == 0:
            continue
        if ref["table"] not in tables:
            raise ValidationError(table=name, column=",".join(fk["columns"]), origin=origin,
                                  expected=f"table {ref['table']} to join against",
                                  found=f"no {ref['table']} table in this source")
        _check_join(table_fk, fk["columns"], tables[ref["table"]], ref, name, origin)


def _increasing(keys: list[np.ndarray]) -> np.ndarray:
    """Whether each row's key is greater than the previous row's (lexicographically)."""
    greater = np.zeros(len(keys[0]) - 1, bool)
    equal = np.ones(len(keys[0]) - 1, bool)
    for k in keys:
        greater |= equal & (k[1:] > k[:-1])
        equal &= k[1:] == k[:-1]
    return greater


def validate_streamed(rows: ParquetRows, name: str, tables: Mapping[str, pa.Table], *, origin: str,
                      batch_rows: int) -> None:
    """Check a table given as Parquet (:class:`~etl.tables.ParquetRows`) batch by batch: each batch
    as :func:`validate_table` does, the whole file sorted strictly by the primary key (so the key is
    unique), and its foreign keys against ``tables`` (validated, held ones).

    Raises
    ------
    ValidationError
        As :func:`validate_table`, or naming the first key out of order.
    """
    contract = store_contract(name)
    key = contract["primary_key"]
    last: list[np.ndarray] | None = None
    seen = 0
    for batch in rows.batches(batch_rows):
        out = validate_table(batch, name, origin=origin)
        keys = [out.column(c).to_numpy(zero_copy_only=False) for c in key]
        joined = keys if last is None else [np.concatenate([a, b]) for a, b in zip(last, keys)]
        bad = np.flatnonzero(~_increasing(joined))
        if bad.size:
            at = bad[0] + 1
            raise ValidationError(table=name, column=",".join(key), origin=origin,
                                  expected=f"rows sorted strictly by ({', '.join(key)}) in "
                                           f"{rows.path}",
                                  found=f"row {seen + at - (1 if last is not None else 0):,} "
                                        f"has key {tuple(int(k[at]) for k in joined)} after "
                                        f"{tuple(int(k[at - 1]) for k in joined)}")
        _check_foreign_keys(out, name, tables, origin)
        last = [k[-1:] for k in keys]
        seen += out.num_rows


def _non_null(table: pa.Table, cols: list[str]) -> pa.Table:
    """Rows of ``table`` whose foreign-key columns are all non-null (only those must join)."""
    mask = None
    for c in cols:
        valid = pc.is_valid(table.column(c))
        mask = valid if mask is None else pc.and_(mask, valid)
    return table if mask is None or pc.all(mask).as_py() is not False else table.filter(mask)


def _check_join(table: pa.Table, cols: list[str], ref_table: pa.Table, ref: dict, name: str,
                origin: str) -> None:
    if len(cols) == 1:
        mask = ~np.asarray(pc.is_in(table.column(cols[0]), value_set=ref_table.column(ref["columns"][0])
                                     .combine_chunks()).fill_null(True))
    else:
        left = _key_frame(table, cols)
        right = _key_frame(ref_table, ref["columns"])
        right.columns = cols
        merged = left.merge(right.drop_duplicates().assign(_hit=True), on=cols, how="left")
        mask = merged["_hit"].isna().to_numpy()
    if mask.any():
        raise ValidationError(
            table=name, column=",".join(cols), origin=origin,
            expected=f"every ({', '.join(cols)}) to exist in {ref['table']}.({', '.join(ref['columns'])})",
            found=f"{int(mask.sum())} row(s) that do not join, e.g. " + _rows(table, mask, cols))
