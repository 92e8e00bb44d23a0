"""Which file of a ``files`` folder is which table: the published layouts, by their real names.

A table named ``T`` (a CAVE table name, or a file stem a profile gives) is found in the first of
these forms present in the folder:

``T_merged.csv.gz`` + ``T_merged_header.csv`` (or ``T_merged/``, CSV.gz partitions)
    The MICrONS static dumps' merged tables (``mat_dbs/public/minnie65_phase3_v1/v<N>/``).
``T.csv.gz`` (or ``T.csv``) + ``T_header.csv``
    The static dumps' other tables and views (e.g. ``synapses_pni_2_v1_filtered_view``).
``T.csv`` / ``T.csv.gz``
    CSV with a header row (the flat files of the open-data bucket, caveclient frames saved).
``T.parquet`` / ``T/`` (Parquet partitions)

A header sidecar (``column,type`` lines) binds to its data by line order only after the data's
first rows agree with it (:func:`.read.check_header`). :func:`inventory` accounts for every entry
of the folder: each is a table of a role, a table not used (another table plays its role), or not
recognized; nothing is skipped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ...errors import SourceError
from ...formats.export_header import ExportHeader, read_header
from ...profiles import Profile, RoleSpec

__all__ = ["ExportFile", "Inventory", "find_table", "inventory"]


@dataclass(frozen=True)
class ExportFile:
    """One table's export: its form, data files, and header sidecar."""

    table: str
    """Table name (the file stem)."""
    form: Literal["export", "csv", "parquet"]
    """``export`` (CSV with a ``column,type`` sidecar), ``csv`` (header row) or ``parquet``."""
    paths: tuple[Path, ...]
    """Data files (partitions), sorted."""
    header: ExportHeader | None = None
    """The sidecar of an ``export``."""
    header_row: bool = False
    """The data files of an ``export`` start with a row of column names (bound by name)."""
    entries: tuple[Path, ...] = ()
    """The folder's entries this export consists of (data file or partition folder, sidecar)."""

    def describe(self) -> str:
        """Where the table came from, for messages and origins."""
        more = f" (+{len(self.paths) - 1} partitions)" if len(self.paths) > 1 else ""
        side = f" with {self.header.path.name}" if self.header else ""
        return f"{self.paths[0]}{more}{side}"

    def name(self) -> str:
        """The entry's name in its folder (``synapses_pni_2.csv.gz``, ``T_merged/``)."""
        first = self.entries[0] if self.entries else self.paths[0]
        return first.name + ("/" if first.is_dir() else "")


def _sidecar(data: Path, directory: Path, stem: str) -> ExportFile:
    header = directory / f"{stem}_header.csv"
    if not header.is_file():
        raise SourceError(f"export {data} has no header file; expected {header} with one "
                          "'column,type' line per column", path=str(data))
    files = sorted(data.glob("*.csv.gz")) if data.is_dir() else [data]
    return ExportFile(stem.removesuffix("_merged"), "export", tuple(files), read_header(header),
                      entries=(data, header))


def find_table(directory: Path, table: str) -> ExportFile | None:
    """The export of ``table`` in ``directory`` (first form present; see the module docstring).

    Raises
    ------
    SourceError
        A ``T_merged`` export without its ``T_merged_header.csv``.
    """
    merged = f"{table}_merged"
    for data in (directory / f"{merged}.csv.gz", directory / merged):
        if data.is_file() or (data.is_dir() and any(data.glob("*.csv.gz"))):
            return _sidecar(data, directory, merged)
    for name in (f"{table}.csv.gz", f"{table}.csv"):
        data = directory / name
        if data.is_file():
            if (directory / f"{table}_header.csv").is_file():
                return _sidecar(data, directory, table)
            return ExportFile(table, "csv", (data,), entries=(data,))
    if (directory / f"{table}.parquet").is_file():
        data = directory / f"{table}.parquet"
        return ExportFile(table, "parquet", (data,), entries=(data,))
    part_dir = directory / table
    if part_dir.is_dir():
        parts = sorted(part_dir.rglob("*.parquet"))
        if parts:
            return ExportFile(table, "parquet", tuple(parts), entries=(part_dir,))
    return None


@dataclass
class Inventory:
    """Every entry of a ``files`` folder, accounted for."""

    chosen: dict[str, tuple[RoleSpec, ExportFile]] = field(default_factory=dict)
    """Role -> the spec it matched and the export that plays it."""
    unused: list[tuple[ExportFile, str]] = field(default_factory=list)
    """Exports of a role's table that another export already plays, with why."""
    unrecognized: list[Path] = field(default_factory=list)
    """Entries that are no table of the profile."""


def inventory(directory: str | Path, profile: Profile) -> Inventory:
    """Match every entry of ``directory`` to a role of ``profile``, or list it as unrecognized.

    Raises
    ------
    SourceError
        ``directory`` is not a directory; an export lacks its header file.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise SourceError(f"files source: {directory} is not a directory; expected one holding "
                          "table exports such as nucleus_detection_v0_merged.csv.gz",
                          path=str(directory))
    inv = Inventory()
    claimed: set[Path] = set()
    for role, specs in profile.roles.items():
        for spec in specs:
            for table in spec.tables:
                export = find_table(directory, table)
                if export is None or set(export.entries) <= claimed:
                    continue
                claimed |= set(export.entries)
                if role in inv.chosen:
                    inv.unused.append((export, f"{role} is read from {inv.chosen[role][1].name()}"))
                else:
                    inv.chosen[role] = (spec, export)
    inv.unrecognized = sorted(p for p in directory.iterdir() if p not in claimed)
    return inv
