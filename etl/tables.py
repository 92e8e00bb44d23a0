"""What a source hands to the store: canonical tables plus the facts about where they came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa

__all__ = ["Source", "SourceTables"]

#: The sources the ETL knows.
Source = Literal["synthetic", "blueprint", "cave", "files", "nwb"]


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

    def origin(self, table: str) -> str:
        """Describe where ``table`` came from, for error messages."""
        return self.origins.get(table, f"source {self.source!r}")
