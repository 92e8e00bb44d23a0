"""Where synapses come from: an in-memory table, or Parquet / CSV(.gz) files read in partitions."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Union

import pandas as pd
import pyarrow as pa

from ..errors import SourceError
from ..formats.csv_rows import first_rows
from ..formats.export_header import ExportHeader, header_for, read_header

__all__ = ["SynapseFiles", "SynapseInput", "resolve_files", "ALIASES", "check_arrow_types",
           "csv_first_line", "pick_columns"]

#: A synapse table in memory, or files holding one.
SynapseInput = Union[pa.Table, pd.DataFrame, str, os.PathLike, Sequence[Union[str, os.PathLike]]]

#: Canonical synapse column -> accepted names, first match wins (store names, then CAVE names).
ALIASES: dict[str, tuple[str, ...]] = {
    "pre_root_id": ("pre_root_id", "pre_pt_root_id"),
    "post_root_id": ("post_root_id", "post_pt_root_id"),
    "size": ("size",),
}


@dataclass(frozen=True)
class SynapseFiles:
    """Synapse files of one format, read one partition (file) at a time."""

    format: Literal["parquet", "csv"]
    """``parquet`` or ``csv`` (plain or gzip-compressed, one partition per file)."""
    files: tuple[Path, ...]
    """The data files, sorted."""
    header: ExportHeader | None = None
    """CSV only: the ``_header.csv`` sidecar naming the columns of header-less files."""

    def describe(self) -> str:
        """Short human description for messages."""
        first = self.files[0]
        more = f" (+{len(self.files) - 1} more)" if len(self.files) > 1 else ""
        return f"{first}{more}"


def _is_csv(p: Path) -> bool:
    return (p.name.endswith(".csv") or p.name.endswith(".csv.gz")) and not p.name.endswith(
        "_header.csv")


def _expand(path: Path) -> list[Path]:
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and (
            p.suffix == ".parquet" or _is_csv(p)))
        if not found:
            raise SourceError(f"synapse directory {path} holds no .parquet, .csv or .csv.gz files",
                              path=str(path))
        return found
    if not path.is_file():
        raise SourceError(f"synapse input {path} does not exist", path=str(path))
    return [path]


def resolve_files(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> SynapseFiles:
    """Resolve a file, a directory of partitions, or a list of either into :class:`SynapseFiles`.

    Raises
    ------
    SourceError
        A path does not exist, holds no data files, or mixes Parquet with CSV.
    """
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not items:
        raise SourceError("no synapse files given")
    files: list[Path] = []
    for item in items:  # absolute: Dask workers may run elsewhere, with another cwd
        files.extend(_expand(Path(item).absolute()))
    kinds = {"parquet" if f.suffix == ".parquet" else "csv" for f in files}
    if len(kinds) > 1:
        raise SourceError(f"synapse files mix Parquet and CSV ({files[0]}, ...); give one format",
                          path=str(files[0]))
    fmt = kinds.pop()
    header = None
    if fmt == "csv":
        first = Path(items[0])
        h = header_for(first)
        if h is None and first.is_file() is False:
            h = header_for(files[0])
        header = read_header(h) if h is not None else None
    return SynapseFiles(fmt, tuple(files), header)


def pick_columns(available: Sequence[str], origin: str) -> dict[str, str]:
    """Map canonical synapse columns to the names present in ``available``.

    Raises
    ------
    SourceError
        A required column (pre/post root id) has none of its accepted names. ``size`` is optional.
    """
    found: dict[str, str] = {}
    for canon, names in ALIASES.items():
        hit = next((n for n in names if n in available), None)
        if hit is None and canon != "size":
            raise SourceError(f"synapses from {origin}: expected a column {' or '.join(names)}; "
                              f"found columns {', '.join(available)}")
        if hit is not None:
            found[canon] = hit
    return found


def check_arrow_types(schema: pa.Schema, cols: dict[str, str], origin: str) -> None:
    """Raise :class:`SourceError` unless the root id columns are integers and size is numeric."""
    for canon in ("pre_root_id", "post_root_id"):
        t = schema.field(cols[canon]).type
        if not (pa.types.is_integer(t) or pa.types.is_null(t)):
            raise SourceError(f"synapses from {origin}: column {cols[canon]} must hold integer root "
                              f"ids; found type {t} (root ids exceed float precision)")
    if "size" in cols:
        t = schema.field(cols["size"]).type
        if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_null(t)):
            raise SourceError(f"synapses from {origin}: column size must be numeric; found type {t}")


def csv_first_line(path: Path) -> list[str]:
    """The first row of a CSV(.gz) file (its column names, when it has a header row)."""
    rows = first_rows(path, 1, expected="CSV column names")
    return rows[0] if rows else []
