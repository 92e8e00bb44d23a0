"""Reading one ``files`` export: binding its header sidecar, small tables whole, large ones streamed.

Booleans ``t``/``f`` are read as booleans; id columns (``id``, ``*root_id``, ``*supervoxel_id``,
``target_id``, and any column a profile maps to an id field) must be integers, never floats (root
ids exceed float precision). The header sidecar is checked against the data: the column count
of every file's first row, the first :data:`SAMPLE_ROWS` rows against the header's column order
(:func:`~etl.formats.export_header.check_order`), and each value's type as the file is parsed (an
error names the file, the column, the type the header declares and the value found).
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from ...errors import SourceError
from ...formats.csv_rows import first_rows, gzip_reason
from ...formats.export_header import check_order, has_header_row, kind_of
from .layout import ExportFile

__all__ = ["SAMPLE_ROWS", "check_header", "columns_of", "read_export", "stream_export"]

#: Rows of each header-less data file checked against the sidecar's column order.
SAMPLE_ROWS = 1000
_TRUE = ["t", "true", "True", "TRUE", "1"]
_FALSE = ["f", "false", "False", "FALSE", "0"]
_ARROW = {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "text": pa.string(),
          "timestamp": pa.string()}


def _first_rows(path: Path, n: int) -> list[list[str]]:
    return first_rows(path, n, expected="a CAVE table export")


def _first_row(path: Path) -> list[str]:
    rows = _first_rows(path, 1)
    return rows[0] if rows else []


def check_header(export: ExportFile) -> ExportFile:
    """Bind an ``export``'s header sidecar to its data files, or refuse it.

    A data file whose first row names the header's columns is bound by name (``header_row``).
    Otherwise its first row must have as many values as the header lists columns, and its first
    :data:`SAMPLE_ROWS` rows must not contradict the header's column order
    (:func:`etl.sources.export_header.check_order`). All partitions must agree.

    Returns
    -------
    ExportFile
        ``export`` with ``header_row`` set (unchanged for other forms).

    Raises
    ------
    SourceError
        Naming the data file, the column, what was expected and what was found.
    """
    if export.header is None:
        return export
    want = len(export.header.columns)
    layouts = {}
    for path in export.paths:
        rows = _first_rows(path, SAMPLE_ROWS)
        if not rows:
            continue
        layouts[path] = has_header_row(export.header, rows[0], path)
        if layouts[path]:
            continue
        if len(rows[0]) != want:
            raise SourceError(
                f"{path}: first row has {len(rows[0])} values; header {export.header.path} lists "
                f"{want} columns ({', '.join(export.header.columns)})", path=str(path))
        check_order(export.header, rows, path)
    if len(set(layouts.values())) > 1:
        named = [p.name for p, h in layouts.items() if h]
        raise SourceError(f"{export.describe()}: some partitions start with a row of column names "
                          f"({', '.join(named)}), others do not; expected one layout for all",
                          path=str(export.paths[0]))
    return replace(export, header_row=any(layouts.values()))


def _conversion_error(err: Exception, path: Path, names: list[str], types: dict[str, str]) -> SourceError:
    msg = str(err)
    m = re.search(r"column #(\d+)", msg)
    value = re.search(r"invalid value '([^']*)'", msg)
    if m and int(m.group(1)) < len(names):
        col = names[int(m.group(1))]
        found = f"value {value.group(1)!r}" if value else msg
        return SourceError(f"{path}: column {col}: expected type {types.get(col, '?')} "
                           f"(from the header); found {found}", path=str(path))
    return SourceError(f"{path}: cannot be parsed: {msg}", path=str(path))


def _read_csv(export: ExportFile, path: Path, ids: Sequence[str] = ()) -> pa.Table:
    if export.header is not None and export.header_row:  # bound by name; the sidecar gives types
        names = _first_row(path)
        declared = dict(zip(export.header.columns, export.header.types))
        types = {c: _ARROW[kind_of(t)] for c, t in declared.items()}
        read = pcsv.ReadOptions()
    elif export.header is not None:
        names = list(export.header.columns)
        declared = dict(zip(export.header.columns, export.header.types))
        types = {c: _ARROW[kind_of(t)] for c, t in declared.items()}
        read = pcsv.ReadOptions(column_names=names)
    else:
        names = _first_row(path)
        declared = {c: ("bigint" if _is_id(c) or c in ids else "inferred") for c in names}
        types = {c: pa.int64() for c in names if _is_id(c) or c in ids}
        read = pcsv.ReadOptions()
    conv = pcsv.ConvertOptions(column_types=types, true_values=_TRUE, false_values=_FALSE,
                               strings_can_be_null=True)
    try:
        return pcsv.read_csv(path, read_options=read, convert_options=conv)
    except pa.ArrowInvalid as err:
        if path.name.endswith(".gz") and _gzip_broken(path):
            raise SourceError(f"cannot read {path}: corrupted or truncated gzip stream ({err}); "
                              "expected a complete .csv.gz export", path=str(path)) from err
        if "UTF8" in str(err) or "utf8" in str(err).lower():
            raise SourceError(f"{path}: not UTF-8 text ({err}); expected a CAVE table export in "
                              "UTF-8 CSV", path=str(path)) from err
        raise _conversion_error(err, path, names, declared) from err
    except (OSError, EOFError) as err:
        raise SourceError(f"cannot read {path}: {gzip_reason(path, err)}", path=str(path)) from err


def _gzip_broken(path: Path) -> bool:
    """Whether ``path``'s gzip stream fails to decompress to its end."""
    try:
        with gzip.open(path, "rb") as fh:
            while fh.read(1 << 20):
                pass
    except (OSError, EOFError, zlib.error):
        return True
    return False


def _is_id(col: str) -> bool:
    return col == "id" or col.endswith("root_id") or col.endswith("supervoxel_id") or col == "target_id"


def _to_pandas(table: pa.Table, origin: str, ids: Sequence[str] = ()) -> pd.DataFrame:
    for i, name in enumerate(table.column_names):
        col = table.column(i)
        if (_is_id(name) or name in ids) and not (pa.types.is_integer(col.type)
                                                  or pa.types.is_null(col.type)):
            raise SourceError(f"{origin}: column {name}: expected integer ids; found type "
                              f"{col.type} (ids must not pass through floats)")
        if (_is_id(name) or name in ids) and col.null_count:
            table = table.set_column(i, name, pc.fill_null(col.cast(pa.int64()), 0))
    return table.to_pandas()


def columns_of(export: ExportFile) -> list[str]:
    """The columns of a (header-bound, see :func:`check_header`) export, without reading it."""
    if export.form == "parquet":
        try:
            return list(pq.read_schema(export.paths[0]).names)
        except (pa.ArrowInvalid, OSError) as err:
            raise SourceError(f"cannot read {export.describe()}: {err}",
                              path=str(export.paths[0])) from err
    if export.header is not None and not export.header_row:
        return list(export.header.columns)
    return [c.strip() for c in _first_row(export.paths[0])]


def read_export(export: ExportFile, *, ids: Sequence[str] = ()) -> pd.DataFrame:
    """Read a (small) table's export whole into a DataFrame with the file's own columns.

    ``ids``: further columns that must hold integer ids. Null ids become 0 (CAVE's "no segment").
    Positions are left as the file has them (:mod:`etl.profiles.normalize` parses them).
    """
    export = check_header(export)
    if export.form == "parquet":
        try:
            table = pa.concat_tables([pq.read_table(p) for p in export.paths], promote_options="default")
        except (pa.ArrowInvalid, OSError) as err:
            raise SourceError(f"cannot read {export.describe()}: {err}", path=str(export.paths[0])) from err
    else:
        table = pa.concat_tables([_read_csv(export, p, ids) for p in export.paths])
    return _to_pandas(table, export.describe(), ids)


def _lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _relation(export: ExportFile, ids: Sequence[str]) -> str:
    files = "[" + ", ".join(_lit(str(p)) for p in export.paths) + "]"
    if export.form == "parquet":
        return f"read_parquet({files})"
    if export.header is not None:
        kinds = export.header.kinds()
        duck = {"int": "BIGINT", "float": "DOUBLE", "bool": "VARCHAR", "text": "VARCHAR",
                "timestamp": "VARCHAR"}
        spec = ", ".join(f"{_lit(c)}: {_lit(duck[kinds[c]])}" for c in export.header.columns)
        if export.header_row:  # bound by name: the files' own first row orders the columns
            return f"read_csv({files}, header = true, types = {{{spec}}})"
        return f"read_csv({files}, header = false, auto_detect = false, columns = {{{spec}}})"
    names = columns_of(export)
    types = ", ".join(f"{_lit(c)}: 'BIGINT'" for c in names if _is_id(c) or c in ids)
    return f"read_csv({files}, header = true, types = {{{types}}})"


def stream_export(export: ExportFile, columns: Sequence[str], *, ids: Sequence[str] = (),
                  batch_rows: int = 1 << 20) -> Iterator[pd.DataFrame]:
    """Stream ``columns`` of a (large) export in batches of at most ``batch_rows`` rows, in file
    order; memory follows the batch, not the export (337M rows in full for minnie65's synapses).

    Raises
    ------
    SourceError
        The export cannot be read (naming a corrupted gzip stream, or DuckDB's first line).
    """
    export = check_header(export)
    cols = ", ".join('"' + c.replace('"', '""') + '"' for c in columns)
    con = duckdb.connect()
    try:
        try:
            reader = con.sql(f"SELECT {cols} FROM {_relation(export, ids)}").to_arrow_reader(
                batch_rows)
            for batch in reader:
                yield _to_pandas(pa.Table.from_batches([batch]), export.describe(), ids)
        except (duckdb.Error, OSError, pa.ArrowException) as err:  # DuckDB's, through Arrow's reader
            broken = next((p for p in export.paths if p.name.endswith(".gz") and _gzip_broken(p)), None)
            if broken is not None:
                raise SourceError(f"cannot read {broken}: corrupted or truncated gzip stream; "
                                  "expected a complete .csv.gz export", path=str(broken)) from err
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise SourceError(f"export {export.describe()} could not be read: {first}",
                              path=str(export.paths[0])) from err
    finally:
        con.close()
