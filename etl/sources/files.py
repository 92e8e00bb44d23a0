"""The ``files`` source: static exports of the CAVE tables, through the same transform as ``cave``.

A directory holds one export per CAVE table, named after the table, in any of these forms:

``<table>_merged.csv.gz`` + ``<table>_merged_header.csv``
    The MICrONS static export (``storage.googleapis.com/mat_dbs/public/minnie65_phase3_v1/
    v<version>/``): header-less gzip CSV; the sidecar lists ``column,type`` per column
    (see :mod:`etl.sources.export_header`). ``<table>_merged/`` (a directory of such CSV.gz
    partitions sharing the one header file) is read the same way. A data file that starts with a
    row of column names is bound by name (the sidecar then gives the types only); a header-less one
    by the sidecar's line order, once :func:`~etl.sources.export_header.check_order` has found
    nothing in its first rows that contradicts that order (CAVE writes the sidecar from an
    unordered query).
``<table>.csv`` / ``<table>.csv.gz``
    CSV with a header row of CAVE's column names.
``<table>.parquet`` / ``<table>/`` (a directory of Parquet partitions)
    Parquet with CAVE's columns.

Positions are expected split into ``<point>_x/_y/_z`` in voxels (as the exports write them); a
list-valued ``<point>`` column (Parquet) or ``"[x y z]"`` text (CSV) is split. Booleans ``t``/``f``
are read as booleans; ``*root_id`` / ``*supervoxel_id`` / ``id`` columns must be integers (never
floats: root ids exceed float precision). The header sidecar is checked against the data: the
column count of every file's first row, and each value's type as the file is parsed (an error
names the file, the column, the type the header declares and the value found). Before that, the
first :data:`SAMPLE_ROWS` rows of each file are checked against the header's column order.

Tables: ``nucleus_detection_v0`` (required), ``aibs_metamodel_celltypes_v661``,
``coregistration_manual_v4`` (or the auto table), ``digital_twin_properties_bcm_coreg_v4`` or
``functional_properties_v3_bcm``, ``synapses_pni_2``. The synapse export (337M rows in full) is
never loaded whole: it is streamed through DuckDB and only synapses between selected cells are
kept. Everything then goes through :func:`etl.sources.cave.transform.canonical_tables`, so both
sources produce the same canonical tables, validated alike. A ``v<N>`` directory name is taken as
the materialization version unless one is given. The datastack (recorded as given, never guessed) and the
neuron selection are the caller's: ``cxp etl --source files DIR --datastack pinky100 --neurons all``.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from connectome_priors.kernel.files import atomic_path

from ..errors import SourceError
from ..tables import SourceTables
from ..formats.csv_rows import first_rows, gzip_reason
from ..formats.export_header import (ExportHeader, check_order, has_header_row, header_for, kind_of,
                            read_header)

__all__ = ["ExportFile", "FILES_TABLES", "SAMPLE_ROWS", "check_header", "find_exports", "read_export",
           "read_files", "synapses_among", "write_export"]

#: CAVE tables the ``files`` source reads, when present.
FILES_TABLES = ("nucleus_detection_v0", "aibs_metamodel_celltypes_v661", "coregistration_manual_v4",
                "coregistration_auto_phase3_fwd_apl_vess_combined_v2",
                "digital_twin_properties_bcm_coreg_v4", "functional_properties_v3_bcm",
                "synapses_pni_2")
_SYNAPSES = "synapses_pni_2"
#: Rows of each header-less data file checked against the sidecar's column order.
SAMPLE_ROWS = 1000
_SYNAPSE_COLUMNS = ("id", "pre_pt_root_id", "post_pt_root_id", "size", "ctr_pt_position_x",
                    "ctr_pt_position_y", "ctr_pt_position_z")
_TRUE = ["t", "true", "True", "TRUE", "1"]
_FALSE = ["f", "false", "False", "FALSE", "0"]
_ARROW = {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "text": pa.string(),
          "timestamp": pa.string()}


@dataclass(frozen=True)
class ExportFile:
    """One table's export: its form, data files, and header sidecar (merged exports)."""

    table: str
    """CAVE table name."""
    form: Literal["export", "csv", "parquet"]
    """``export`` (header-less CSV.gz + sidecar), ``csv`` (header row) or ``parquet``."""
    paths: tuple[Path, ...]
    """Data files (partitions), sorted."""
    header: ExportHeader | None = None
    """The sidecar of an ``export``."""
    header_row: bool = False
    """The data files of an ``export`` start with a row of column names (bound by name; see
    :func:`check_header`)."""

    def describe(self) -> str:
        """Where the table came from, for messages and origins."""
        more = f" (+{len(self.paths) - 1} partitions)" if len(self.paths) > 1 else ""
        side = f" with {self.header.path.name}" if self.header else ""
        return f"{self.paths[0]}{more}{side}"


def _find(directory: Path, table: str) -> ExportFile | None:
    merged_file = directory / f"{table}_merged.csv.gz"
    merged_dir = directory / f"{table}_merged"
    for data, files in ((merged_file, [merged_file]),
                        (merged_dir, sorted(merged_dir.glob("*.csv.gz")) if merged_dir.is_dir() else [])):
        if data.exists() and files:
            hp = header_for(data)
            if hp is None:
                raise SourceError(f"export {data} has no header file; expected "
                                  f"{directory / (table + '_merged_header.csv')} with one "
                                  "'column,type' line per column", path=str(data))
            return ExportFile(table, "export", tuple(files), read_header(hp))
    for name in (f"{table}.csv", f"{table}.csv.gz"):
        if (directory / name).is_file():
            return ExportFile(table, "csv", (directory / name,))
    if (directory / f"{table}.parquet").is_file():
        return ExportFile(table, "parquet", (directory / f"{table}.parquet",))
    part_dir = directory / table
    if part_dir.is_dir():
        parts = sorted(part_dir.rglob("*.parquet"))
        if parts:
            return ExportFile(table, "parquet", tuple(parts))
    return None


def find_exports(directory: str | Path) -> dict[str, ExportFile]:
    """The exports of :data:`FILES_TABLES` present in ``directory`` (table name -> export).

    Raises
    ------
    SourceError
        The directory does not exist, or an export lacks its header file.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise SourceError(f"files source: {directory} is not a directory; expected one holding "
                          "CAVE table exports such as nucleus_detection_v0_merged.csv.gz",
                          path=str(directory))
    found = {t: e for t in FILES_TABLES if (e := _find(directory, t)) is not None}
    return found


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


def _read_csv(export: ExportFile, path: Path) -> pa.Table:
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
        declared = {c: ("bigint" if _is_id(c) else "inferred") for c in names}
        types = {c: pa.int64() for c in names if _is_id(c)}
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


def _split_points(df: pd.DataFrame, origin: str) -> pd.DataFrame:
    """Split list-valued / ``[x y z]`` text position columns into ``_x/_y/_z``."""
    for col in [c for c in df.columns if c.endswith("position") and f"{c}_x" not in df.columns]:
        values = df[col]
        if values.dtype == object and len(values) and isinstance(values.iloc[0], str):
            values = values.str.strip("[]() ").str.replace(",", " ").str.split()
        try:
            arr = np.array([list(v) if v is not None else [np.nan] * 3 for v in values], dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise SourceError(f"{origin}: column {col}: expected points [x, y, z] in voxels; "
                              f"found {values.iloc[0]!r}") from err
        if arr.ndim != 2 or (len(arr) and arr.shape[1] != 3):
            raise SourceError(f"{origin}: column {col}: expected 3 coordinates per point; found "
                              f"shape {arr.shape}")
        arr = arr.reshape(len(df), 3)
        df = df.drop(columns=[col]).assign(**{f"{col}_{a}": arr[:, i] for i, a in enumerate("xyz")})
    return df


def _to_pandas(table: pa.Table, origin: str) -> pd.DataFrame:
    for i, name in enumerate(table.column_names):
        col = table.column(i)
        if _is_id(name) and not (pa.types.is_integer(col.type) or pa.types.is_null(col.type)):
            raise SourceError(f"{origin}: column {name}: expected integer ids; found type "
                              f"{col.type} (ids must not pass through floats)")
        if _is_id(name) and col.null_count:
            table = table.set_column(i, name, pc.fill_null(col.cast(pa.int64()), 0))
    return _split_points(table.to_pandas(), origin)


def read_export(export: ExportFile) -> pd.DataFrame:
    """Read a (small) table's export into a DataFrame with CAVE's columns (positions split).

    Null ids become 0 (CAVE's "no segment"). Not for the synapse table: see :func:`read_files`.
    """
    export = check_header(export)
    if export.form == "parquet":
        try:
            table = pa.concat_tables([pq.read_table(p) for p in export.paths], promote_options="default")
        except (pa.ArrowInvalid, OSError) as err:
            raise SourceError(f"cannot read {export.describe()}: {err}", path=str(export.paths[0])) from err
    else:
        table = pa.concat_tables([_read_csv(export, p) for p in export.paths])
    return _to_pandas(table, export.describe())


def _lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _synapse_relation(export: ExportFile) -> tuple[str, list[str]]:
    files = "[" + ", ".join(_lit(str(p)) for p in export.paths) + "]"
    if export.form == "parquet":
        names = pq.read_schema(export.paths[0]).names
        return f"read_parquet({files})", names
    if export.header is not None:
        names = list(export.header.columns)
        kinds = export.header.kinds()
        duck = {"int": "BIGINT", "float": "DOUBLE", "bool": "VARCHAR", "text": "VARCHAR",
                "timestamp": "VARCHAR"}
        spec = ", ".join(f"{_lit(c)}: {_lit(duck[kinds[c]])}" for c in names)
        if export.header_row:  # bound by name: the files' own first row orders the columns
            return f"read_csv({files}, header = true, types = {{{spec}}})", names
        return (f"read_csv({files}, header = false, auto_detect = false, columns = {{{spec}}})",
                names)
    names = _first_row(export.paths[0])
    types = ", ".join(f"{_lit(c)}: 'BIGINT'" for c in names if _is_id(c))
    return f"read_csv({files}, header = true, types = {{{types}}})", names


def synapses_among(export: ExportFile, roots: np.ndarray) -> pd.DataFrame:
    """Stream a synapse export and keep the synapses whose pre and post root ids are in ``roots``.

    DuckDB reads the files in a stream with a semi-join on the roots, so memory follows the kept
    rows, not the export (337M rows in full).
    """
    export = check_header(export)
    relation, names = _synapse_relation(export)
    missing = [c for c in ("id", "pre_pt_root_id", "post_pt_root_id", "size") if c not in names]
    if missing:
        raise SourceError(f"{export.describe()}: expected columns {missing} of synapses_pni_2; "
                          f"found {', '.join(names)}", path=str(export.paths[0]))
    cols = ", ".join(f'"{c}"' for c in _SYNAPSE_COLUMNS if c in names)
    con = duckdb.connect()
    try:
        con.register("roots", pa.table({"r": pa.array(roots, pa.int64())}))
        sql = (f"SELECT {cols} FROM {relation} WHERE pre_pt_root_id IN (SELECT r FROM roots) "
               "AND post_pt_root_id IN (SELECT r FROM roots)")
        try:
            table = con.sql(sql).to_arrow_table()
        except duckdb.Error as err:
            broken = next((p for p in export.paths if p.name.endswith(".gz") and _gzip_broken(p)), None)
            if broken is not None:
                raise SourceError(f"cannot read {broken}: corrupted or truncated gzip stream; "
                                  "expected a complete .csv.gz export", path=str(broken)) from err
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise SourceError(f"synapse export {export.describe()} could not be read: {first}",
                              path=str(export.paths[0])) from err
    finally:
        con.close()
    return _to_pandas(table, export.describe())


def read_files(directory: str | Path, *, neurons: str = "coregistered_excitatory",
               datastack: str | None = None, materialization_version: int | None = None,
               progress: bool = False) -> SourceTables:
    """Extract canonical tables from a directory of CAVE table exports.

    Parameters
    ----------
    directory
        Holds the exports (see the module docstring). A name ``v<N>`` sets the materialization
        version unless ``materialization_version`` is given.
    neurons
        Which cells become ``neurons`` (as for the ``cave`` source; default co-registered
        excitatory cells). Only synapses between them are kept.
    datastack
        Recorded on the snapshot (default: none; an export does not say which datastack it is
        of, so it is never guessed).
    materialization_version
        The version the exports were made of, recorded on the snapshot (default: from a
        ``v<N>`` directory name, else unknown).

    Returns
    -------
    SourceTables
        ``source="files"``; origins name the files each table came from.

    Examples
    --------
    >>> st = read_files("exports/v1300")   # doctest: +SKIP
    """
    from .cave.transform import canonical_tables  # noqa: PLC0415 (the shared CAVE transform)

    directory = Path(directory)
    exports = find_exports(directory)
    if "nucleus_detection_v0" not in exports:
        raise SourceError(f"files source: {directory} has no nucleus_detection_v0 export "
                          "(nucleus_detection_v0_merged.csv.gz + _merged_header.csv, "
                          ".csv or .parquet), which keys every cell", path=str(directory))
    if materialization_version is None:
        m = re.fullmatch(r"v(\d+)", directory.resolve().name)
        materialization_version = int(m.group(1)) if m else None
    small = [t for t in exports if t != _SYNAPSES]
    raw: dict[str, pd.DataFrame] = {}
    for table in tqdm(small, desc="export tables", unit="table", disable=not progress):
        raw[table] = read_export(exports[table])
    parameters = {"path": str(directory), "exports": {t: e.describe() for t, e in exports.items()}}
    kwargs = dict(datastack=datastack,
                  materialization_version=materialization_version, materialization_timestamp=None,
                  neurons=neurons)
    if _SYNAPSES in exports:
        cells = canonical_tables(raw, **kwargs, parameters=dict(parameters))
        roots = cells.tables["neurons"].column("root_id").drop_null().to_numpy()
        raw[_SYNAPSES] = synapses_among(exports[_SYNAPSES], roots)
    out = canonical_tables(raw, **kwargs, parameters=parameters,
                           origins=_origins(exports))
    out.source = "files"
    return out


def _origins(exports: Mapping[str, ExportFile]) -> dict[str, str]:
    by_store = {"neurons": ["nucleus_detection_v0", "aibs_metamodel_celltypes_v661"],
                "functional_units": ["coregistration_manual_v4",
                                     "coregistration_auto_phase3_fwd_apl_vess_combined_v2"],
                "tuning": ["digital_twin_properties_bcm_coreg_v4", "functional_properties_v3_bcm"],
                "synapses": [_SYNAPSES], "connections": [_SYNAPSES]}
    out = {}
    for store_table, tables in by_store.items():
        files = [exports[t].describe() for t in tables if t in exports]
        if store_table in ("functional_units", "tuning"):
            files = files[:1]  # one of the alternatives is used: the first present
        if files:
            out[store_table] = "files " + " + ".join(files)
    return out


_PG_TYPES = {"i": "bigint", "u": "bigint", "f": "double precision", "b": "boolean",
             "M": "timestamp without time zone", "O": "character varying"}


def _quoting(data: pa.Table) -> str:
    """Quote strings only when some value needs it (as PostgreSQL's COPY ... CSV writes them)."""
    for col in data.columns:
        if pa.types.is_string(col.type) and pc.any(
                pc.match_substring_regex(col, r'[,"\n\r]')).as_py():
            return "needed"
    return "none"


def write_export(df: pd.DataFrame, directory: str | Path, table: str, *,
                 form: Literal["export", "csv", "parquet"] = "export") -> Path:
    """Write a DataFrame with CAVE's columns the way the static exports come (for tests, demos).

    ``export``: ``<table>_merged.csv.gz`` without a header row (booleans ``t``/``f``) plus
    ``<table>_merged_header.csv``; ``csv``: ``<table>.csv`` with a header row; ``parquet``:
    ``<table>.parquet``. Each file is written to a temporary name and renamed. Returns the data file.
    """
    from ..formats.export_header import write_header  # noqa: PLC0415

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cols: dict[str, pa.Array] = {}
    types: list[tuple[str, str]] = []
    for name in df.columns:
        s = df[name]
        kind = s.dtype.kind if s.dtype != object else "O"
        if form != "parquet" and kind == "b":
            cols[name] = pa.array(np.where(s.to_numpy(bool), "t", "f"))
        elif form != "parquet" and kind == "M":
            cols[name] = pa.array(s.dt.strftime("%Y-%m-%d %H:%M:%S.%f").to_numpy(object), pa.string())
        else:
            cols[name] = pa.array(s.to_numpy() if kind != "O" else list(s))
        types.append((name, _PG_TYPES.get(kind, "character varying")))
    data = pa.table(cols)
    if form == "export":
        path = directory / f"{table}_merged.csv.gz"
        with atomic_path(path) as tmp, gzip.open(tmp, "wb") as fh:
            pcsv.write_csv(data, fh, write_options=pcsv.WriteOptions(include_header=False,
                                                                      quoting_style=_quoting(data)))
        write_header(directory / f"{table}_merged_header.csv", types)
    elif form == "csv":
        path = directory / f"{table}.csv"
        with atomic_path(path) as tmp:
            pcsv.write_csv(data, tmp, write_options=pcsv.WriteOptions(quoting_style=_quoting(data)))
    elif form == "parquet":
        path = directory / f"{table}.parquet"
        with atomic_path(path) as tmp:
            pq.write_table(data, tmp)
    else:
        raise SourceError(f"export form must be export, csv or parquet; found {form!r}")
    return path
