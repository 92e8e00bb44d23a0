"""The ``<table>_merged_header.csv`` sidecar of CAVE static exports: column names and types.

The public MICrONS static exports (``https://storage.googleapis.com/mat_dbs/public/
minnie65_phase3_v1/v<version>/``) ship each materialized table as ``<table>_merged.csv.gz``, a
CSV **without** a header row, plus ``<table>_merged_header.csv`` with one ``column,type`` line per
column, in the data's column order (no title line). Types are PostgreSQL type names as the
materialization database reports them (``bigint``, ``integer``, ``boolean``, ``double
precision``/``float``, ``timestamp without time zone``, ``character varying`` ...); booleans are
written ``t``/``f`` and points are split into ``<name>_x``, ``_y``, ``_z`` columns in voxels.
The exact set of type spellings is an assumption (only ``column,type`` lines and the split
positions were confirmed from public readers); unknown spellings are read as text.
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

__all__ = ["ExportHeader", "Kind", "read_header", "header_for", "write_header", "kind_of"]

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
