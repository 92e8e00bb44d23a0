"""The ``<table>_merged_header.csv`` sidecar of CAVE static exports: column names and types.

The public MICrONS static exports (``https://storage.googleapis.com/mat_dbs/public/
minnie65_phase3_v1/v<version>/``) ship each materialized table as ``<table>_merged.csv.gz``, a
CSV **without** a header row, plus ``<table>_merged_header.csv`` with one ``column,type`` line per
column (no title line), read as the data's column order. Types are PostgreSQL type names as the
materialization database reports them (``bigint``, ``integer``, ``boolean``, ``double
precision``/``float``, ``timestamp without time zone``, ``character varying`` ...); booleans are
written ``t``/``f`` and points are split into ``<name>_x``, ``_y``, ``_z`` columns in voxels.
The exact set of type spellings is an assumption (only ``column,type`` lines and the split
positions were confirmed from public readers, which all take the sidecar's line order as the
data's); unknown spellings are read as text. A frozen database's merged table orders its columns
as the table's flattened schema does (MaterializationEngine ``merge_tables``), which is where
:func:`check_order`'s "``_x`` before ``_y``, ``pre_`` before ``post_``" rule comes from; that the
public exports were dumped from such tables, point columns already split, is an assumption.

**The header's line order is not guaranteed.** MaterializationEngine's CSV dump
(``DumpTableToBucketAsCSV`` in ``materializationengine/blueprints/materialize/api.py``) writes the
data with ``gcloud sql export csv --query "SELECT * from <table>"`` (no header row) and the header
with ``SELECT column_name, data_type from INFORMATION_SCHEMA.COLUMNS where TABLE_NAME = ...``,
which has no ``ORDER BY ordinal_position``: PostgreSQL may return those lines in any order, and
values would then land in the wrong columns silently. So a header is bound to the data only after
:func:`check_order` has found nothing in the data that contradicts it, and a data file that carries
its own row of column names is bound by name (:func:`has_header_row`), the sidecar giving types only.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from connectome_priors.kernel.files import atomic_write_text

from ..errors import SourceError

__all__ = ["ExportHeader", "Kind", "check_order", "has_header_row", "header_for", "kind_of",
           "read_header", "schema_kind", "value_kind", "write_header"]

#: The value kinds a header type maps to.
Kind = Literal["int", "float", "bool", "text", "timestamp"]

_KINDS: dict[str, Kind] = {
    "bigint": "int", "integer": "int", "int": "int", "int8": "int", "int4": "int", "int2": "int",
    "smallint": "int", "int64": "int", "int32": "int", "numeric": "float",
    "double precision": "float", "float": "float", "float8": "float", "float4": "float",
    "real": "float", "float64": "float", "float32": "float",
    "boolean": "bool", "bool": "bool",
    "timestamp": "timestamp", "timestamp without time zone": "timestamp",
    "timestamp with time zone": "timestamp", "timestamptz": "timestamp",
    "text": "text", "character varying": "text", "varchar": "text", "string": "text",
    "user-defined": "text", "geometry": "text",
}


def kind_of(type_name: str) -> Kind:
    """Value kind (``int``, ``float``, ``bool``, ``text``, ``timestamp``) of a header type name."""
    t = re.sub(r"\(.*\)", "", type_name.strip().lower()).strip()
    return _KINDS.get(t, "text")


@dataclass(frozen=True)
class ExportHeader:
    """Columns of one static export, in file order."""

    path: Path
    """The header file."""
    columns: tuple[str, ...]
    """Column names in the data's column order."""
    types: tuple[str, ...]
    """Type name of each column, as written in the file."""

    def kinds(self) -> dict[str, Kind]:
        """Column name -> value kind."""
        return {c: kind_of(t) for c, t in zip(self.columns, self.types)}


def read_header(path: str | Path) -> ExportHeader:
    """Parse a ``<table>_merged_header.csv`` file.

    Raises
    ------
    SourceError
        The file is missing, empty, has a line that is not ``column,type``, or repeats a column.

    Examples
    --------
    >>> read_header("synapses_pni_2_merged_header.csv").columns[:2]   # doctest: +SKIP
    ('id', 'created')
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise SourceError(f"export header {path} is not UTF-8 text (byte "
                          f"{err.object[err.start:err.start + 1]!r} at offset {err.start}); expected "
                          "'column,type' lines", path=str(path)) from err
    except OSError as err:
        raise SourceError(f"cannot read export header {path}: {err}", path=str(path)) from err
    columns: list[str] = []
    types: list[str] = []
    for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            raise SourceError(f"export header {path} line {lineno}: expected 'column,type'; "
                              f"found {','.join(row)!r}", path=str(path))
        name = row[0].strip()
        if name in columns:
            raise SourceError(f"export header {path} line {lineno}: column {name!r} appears twice",
                              path=str(path))
        columns.append(name)
        types.append(row[1].strip())
    if not columns:
        raise SourceError(f"export header {path} is empty; expected one 'column,type' line per "
                          "column of the data file", path=str(path))
    return ExportHeader(path, tuple(columns), tuple(types))


def write_header(path: str | Path, columns: list[tuple[str, str]]) -> None:
    """Write a ``column,type`` header file (``columns`` as (name, type) pairs), atomically."""
    path = Path(path)
    atomic_write_text(path, "".join(f"{c},{t}\n" for c, t in columns))


def _stem(name: str) -> str:
    for suffix in (".csv.gz", ".csv"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return re.sub(r"\.part-?\d+$", "", name)


def header_for(data: str | Path) -> Path | None:
    """Find the header file of a CSV data file or of a directory of CSV partitions.

    Looks for ``<stem>_header.csv`` next to the file (``x_merged.csv.gz`` ->
    ``x_merged_header.csv``; a ``.part-00003`` suffix is ignored), then, for a file inside a
    directory ``D``, for ``D/../<D name>_header.csv`` and for a single ``*_header.csv`` in ``D``.
    Returns None when there is none (the CSV then carries its own header row).
    """
    data = Path(data)
    if data.is_dir():
        candidates = [data.parent / f"{data.name}_header.csv"]
        inside = sorted(data.glob("*_header.csv"))
        candidates += inside if len(inside) == 1 else []
    else:
        d = data.parent
        candidates = [d / f"{_stem(data.name)}_header.csv", d.parent / f"{d.name}_header.csv"]
        inside = sorted(d.glob("*_header.csv"))
        candidates += inside if len(inside) == 1 else []
    for c in candidates:
        if c.is_file():
            return c
    return None


# --- binding a header to the data ------------------------------------------------------------

_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?|[+-]?(?i:nan|inf|infinity)")
_BOOL = frozenset({"t", "f", "true", "false"})
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}(:?\d{2})?)?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SAYS: dict[Kind, str] = {"int": "integers", "float": "numbers", "bool": "booleans (t/f)",
                          "timestamp": "timestamps", "text": "text"}
_WHAT = "an integer", "a number", "a boolean", "a timestamp", "text"


def schema_kind(column: str) -> Kind | None:
    """Kind of values a column of CAVE's annotation tables holds, by its name; None if unknown.

    The known schema (``emannotationschemas``, flattened as the exports write it): annotation
    ``id``, ``target_id``, ``*_root_id``, ``*_supervoxel_id``, and the co-registration keys
    ``session``, ``scan_idx``, ``field``, ``unit_id`` are integers; ``*_position_x/_y/_z`` are
    numbers (voxels); ``valid`` is a boolean; ``created``/``deleted`` are timestamps.
    """
    if column in ("id", "target_id", "superceded_id", "session", "scan_idx", "field", "unit_id") \
            or column.endswith(("_root_id", "_supervoxel_id")):
        return "int"
    if re.fullmatch(r".+_position_[xyz]", column):
        return "float"
    if column == "valid":
        return "bool"
    if column in ("created", "deleted"):
        return "timestamp"
    return None


def _fits(kind: Kind, value: str) -> bool:
    if kind == "int":
        return bool(_INT.fullmatch(value))
    if kind == "float":
        return bool(_FLOAT.fullmatch(value))
    if kind == "bool":
        return value.lower() in _BOOL or value in ("0", "1")
    if kind == "timestamp":
        return bool(_TIMESTAMP.fullmatch(value))
    return True


def value_kind(value: str) -> Kind:
    """The most specific kind a CSV value fits (``'12'``: int, ``'t'``: bool, ...)."""
    for kind in ("int", "float", "bool", "timestamp"):
        if _fits(kind, value):
            return kind
    return "text"


def has_header_row(header: ExportHeader, first_row: list[str], data: str | Path) -> bool:
    """Whether a data file's first row is a row of column names (then bind by name, not order).

    True when every value of the row is a column of ``header`` and the row names each column
    once. A row of names that does not match the header's columns is refused.

    Raises
    ------
    SourceError
        The first row names columns, but not exactly the header's.
    """
    names = [v.strip() for v in first_row]
    known = set(header.columns)
    hits = [n for n in names if n in known]
    if not hits or not all(_NAME.fullmatch(n) for n in names):
        return False
    missing = [c for c in header.columns if c not in names]
    extra = [n for n in names if n not in known]
    if missing or extra or len(set(names)) != len(names):
        raise SourceError(
            f"{data}: the first row names columns ({', '.join(names)}) but not those of "
            f"{header.path} (missing {missing or 'none'}, not in the header {extra or 'none'}, "
            f"{len(names) - len(set(names))} repeated); make the header file list the data's columns",
            path=str(data))
    return True


def check_order(header: ExportHeader, rows: list[list[str]], data: str | Path) -> None:
    """Refuse a header whose column order contradicts the (header-less) data rows.

    Three rules, on the rows given (a sample of the data file):

    1. CAVE's tables put a point's ``_x``, ``_y``, ``_z`` in that order, and ``pre_*`` before
       ``post_*``; a header listing them otherwise is not in the data's order.
    2. A column whose name CAVE's schema types (:func:`schema_kind`) must not be declared with
       another type.
    3. Every non-empty value at a column's position must fit the column's type (the schema's,
       else the declared one); an ``id`` column must not repeat a value.

    Columns of the same type swapped with each other (two float columns, say) cannot be told apart
    by their values; outside rule 1 the header's order is then trusted.

    Raises
    ------
    SourceError
        Naming the data file, the column, the type expected and the value found, and what to do.
    """
    cols = list(header.columns)
    pos = {c: i for i, c in enumerate(cols)}
    fix = (f"Put the lines of {header.path} in the order of the data's columns (CAVE writes them "
           "from an unordered INFORMATION_SCHEMA query), or use an export whose data files start "
           "with a row of column names.")
    in_order: list[tuple[str, str]] = []  # (first, then) pairs of CAVE's column order
    for c in cols:
        if re.fullmatch(r".+_position_x", c):
            axes = [a for a in (c, f"{c[:-2]}_y", f"{c[:-2]}_z") if a in pos]
            in_order += list(zip(axes, axes[1:]))
        if c.startswith("pre_") and f"post_{c[4:]}" in pos:
            in_order.append((c, f"post_{c[4:]}"))
    for first, then in in_order:
        if pos[first] > pos[then]:
            raise SourceError(
                f"{data}: column {then}: the header places it before {first} (lines "
                f"{pos[then] + 1} and {pos[first] + 1}); CAVE's tables put {first} first. {fix}",
                path=str(data))
    declared = dict(zip(header.columns, header.types))
    expected: dict[str, Kind] = {}
    for c in cols:
        known, said = schema_kind(c), kind_of(declared[c])
        if known is not None and said not in (known, "text") and not (known == "float" and said == "int"):
            raise SourceError(
                f"{header.path}: column {c} is declared {declared[c]!r}; CAVE's tables hold "
                f"{_SAYS[known]} in {c}. Correct the type in the header file.", path=str(header.path))
        expected[c] = known if said == "text" and known is not None else said
    seen_ids: set[str] = set()
    for r, row in enumerate(rows, start=1):
        if len(row) != len(cols):
            continue  # the reader reports the width
        for c, value in zip(cols, row):
            if value == "":
                continue
            if not _fits(expected[c], value):
                found = _WHAT[("int", "float", "bool", "timestamp", "text").index(value_kind(value))]
                raise SourceError(
                    f"{data}: column {c} (line {pos[c] + 1} of {header.path.name}): expected "
                    f"{_SAYS[expected[c]]} (declared {declared[c]!r}); found {value!r} in row {r}, "
                    f"{found}. Either the header's lines are not in the data's column order or "
                    f"its type for {c} is wrong. {fix}", path=str(data))
        if "id" in pos and row[pos["id"]] != "":
            if row[pos["id"]] in seen_ids:
                raise SourceError(
                    f"{data}: column id (line {pos['id'] + 1} of {header.path.name}): expected "
                    f"unique annotation ids; found {row[pos['id']]!r} again in row {r} (a header "
                    "out of order puts another column's values under id; a file that truly "
                    f"repeats an id among its first {len(rows)} rows is refused too). {fix}",
                    path=str(data))
            seen_ids.add(row[pos["id"]])
