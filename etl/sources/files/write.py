"""Writing a DataFrame the way the static exports come (for tests and demos): ``<table>_merged``
+ sidecar, CSV with a header row, or Parquet."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from connectome_priors.kernel.files import atomic_path

from ...errors import SourceError
from ...formats.export_header import write_header

__all__ = ["write_export"]


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
