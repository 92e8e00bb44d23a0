"""What a source hands to the store: canonical tables plus the facts about where they came from."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["ParquetRows", "Source", "SourceTables"]

#: The sources the ETL knows.
Source = Literal["synthetic", "blueprint", "cave", "files", "nwb"]


@dataclass(frozen=True)
class ParquetRows:
    """A table too large to hold, already written as one Parquet file with the contract's columns
    (no ``snapshot_id``), **sorted strictly by its primary key**. The store validates, hashes and
    copies it batch by batch (:meth:`etl.store.Store.load`); the sort makes the key's uniqueness a
    check of neighbours."""

    path: Path
    """The Parquet file (the source's; the store copies it into the snapshot)."""

    @property
    def num_rows(self) -> int:
        """Rows, from the file's footer."""
        return pq.read_metadata(self.path).num_rows

    def batches(self, rows: int) -> Iterator[pa.Table]:
        """The rows in order, ``rows`` at a time (the last may be fewer), each one chunk."""
        pending: list[pa.RecordBatch] = []
        have = 0
        for batch in pq.ParquetFile(self.path).iter_batches(batch_size=rows):
            pending.append(batch)
            have += batch.num_rows
            while have >= rows:
                table = pa.Table.from_batches(pending).combine_chunks()
                yield table.slice(0, rows)
                rest = table.slice(rows)
                pending, have = rest.to_batches(), rest.num_rows
        if have:
            yield pa.Table.from_batches(pending).combine_chunks()


@dataclass
class SourceTables:
    """Canonical tables extracted by one source, before validation and storage."""

    source: Source
    """Which source produced the tables."""
    tables: dict[str, pa.Table]
    """Store table name -> Arrow table with the contract's columns (no snapshot_id)."""
    parameters: dict = field(default_factory=dict)
    """JSON-serializable parameters of the extraction (path, seed, mode, voxel size in nm, ...)."""
    report: dict = field(default_factory=dict)
    """JSON-serializable account of what was checked, skipped or excluded."""
    origins: dict[str, str] = field(default_factory=dict)
    """Store table name -> human description of the file(s)/table(s) it came from (for errors)."""
    datastack: str | None = None
    """CAVE datastack, where there is one."""
    materialization_version: int | None = None
    """CAVE materialization version, where known."""
    materialization_timestamp: str | None = None
    """ISO-8601 UTC timestamp of the materialization, where known."""
    streamed: dict[str, ParquetRows] = field(default_factory=dict)
    """Store table name -> rows too many to hold, written to Parquet (not also in ``tables``)."""

    def origin(self, table: str) -> str:
        """Describe where ``table`` came from, for error messages."""
        return self.origins.get(table, f"source {self.source!r}")
