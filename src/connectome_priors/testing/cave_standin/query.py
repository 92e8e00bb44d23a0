"""A table query as the MaterializationEngine answers it: filters, the join of a reference table
with its target, the row cap and its warning, positions scaled to the requested resolution, and
an Arrow IPC body (compressed as the client accepts).

Examples
--------
>>> QueryError(404, "table t not found").status
404
"""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pyarrow as pa

from .deployment import VOXEL
from .layouts import merge_reference
from .state import ServerState

__all__ = ["QueryError", "answer_query"]

#: The filters of a query body: (column values, filter value) -> rows kept.
_FILTERS = {"filter_in_dict": lambda c, v: np.isin(c, np.asarray(v)),
            "filter_notin_dict": lambda c, v: ~np.isin(c, np.asarray(v)),
            "filter_out_dict": lambda c, v: ~np.isin(c, np.asarray(v)),
            "filter_equal_dict": lambda c, v: c == v,
            "filter_greater_dict": lambda c, v: c > v,
            "filter_less_dict": lambda c, v: c < v,
            "filter_greater_equal_dict": lambda c, v: c >= v,
            "filter_less_equal_dict": lambda c, v: c <= v}

_ARROW_NOTICE = ("Response is in pyarrow IPC format. If you encounter a parsing error, please "
                 "upgrade CAVEClient to >=5.9.0 with: pip install --upgrade caveclient. To "
                 "suppress this warning, pass arrow_format=True in your query parameters.")


class QueryError(Exception):
    """A query the server refuses: ``status`` is the HTTP status, the message its body's."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


def answer_query(state: ServerState, version: int, tables: list[str], data: dict, args: dict, *,
                 accept_encoding: str) -> tuple[bytes, list[tuple[str, str]]]:
    """The body and headers answering a simple (one table) or join (two tables) query.

    Parameters
    ----------
    state
        The server's tables and options; the codec chosen is appended to ``state.codecs``.
    version
        Materialization version (known to ``state``).
    tables
        One table, or a reference table and its target (joined ``target_id`` = ``id``).
    data
        The JSON body: filters, ``select_columns``, ``suffix_map``, ``limit``, ``offset``,
        ``desired_resolution``.
    args
        The URL's query parameters (``arrow_format``, ``ipc_compress``), parsed.
    accept_encoding
        The request's ``Accept-Encoding`` header.

    Raises
    ------
    QueryError
        A filter or selected column the table lacks (400), or a join with a suffix on the first
        table (400).
    """
    frames = {table: _filtered(state.served(state.versions[version][table]), table, data)
              for table in tables}
    out, names = _select_or_join(frames, tables, data)
    limit = min(int(data.get("limit") or state.row_cap), state.row_cap)
    offset = int(data.get("offset") or 0)
    out = out.iloc[offset: offset + limit]
    warnings = []
    if len(out) == limit:
        warnings.append(f'201 - "Limited query to {limit} rows')
    for t in tables:
        if state.notices.get(t):
            warnings.append(f"Table Owner Notice on {t}: {state.notices[t]}")
    if not (args.get("arrow_format", ["False"])[0].lower() == "true"):
        warnings.append(_ARROW_NOTICE)
    res = data.get("desired_resolution") or VOXEL
    encoding = accept_encoding.lower()
    compress = args.get("ipc_compress", ["True"])[0].lower() != "false"
    codec = None
    if compress and "lz4" in encoding:
        codec = "lz4"
    elif compress and "zstd" in encoding:
        codec = "zstd"
    state.codecs.append(codec)
    body = _arrow_ipc(_scaled(pa.Table.from_pandas(out, preserve_index=False), res), codec)
    headers: list[tuple[str, str]] = [("Warning", w.replace("\n", " ")) for w in warnings]
    headers += [("dataframe_resolution", str(float(r))) for r in res]  # a list: one line each
    headers.append(("column_names", str(names)))
    if "gzip" in encoding:
        body = gzip.compress(body)
        headers += [("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")]
    return body, headers


def _filtered(df: pd.DataFrame, table: str, data: dict) -> pd.DataFrame:
    """The rows of ``df`` that every filter of the query body naming ``table`` keeps."""
    mask = np.ones(len(df), dtype=bool)
    for key, op in _FILTERS.items():
        for col, value in (data.get(key) or {}).get(table, {}).items():
            if col not in df.columns:
                raise QueryError(400, f"column {col} not in table {table}")
            mask &= op(df[col].to_numpy(), value)
    return df if mask.all() else df[mask]


def _select_or_join(frames: dict[str, pd.DataFrame], tables: list[str],
                    data: dict) -> tuple[pd.DataFrame, dict[str, dict[str, str]]]:
    """The selected columns of one table, or the join of two; with the ``column_names`` header."""
    if len(tables) == 1:
        table = tables[0]
        out = frames[table]
        names = {table: {c: c for c in out.columns}}
        cols = data.get("select_columns")
        if cols:
            missing = [c for c in cols if c not in out.columns]
            if missing:
                raise QueryError(400, f"column {missing[0]} not in table {table}")
            out = out[list(cols)]
        return out, names
    table, ref = tables
    suffixes = data.get("suffix_map") or {table: "", ref: "_ref"}
    if suffixes.get(table, ""):
        raise QueryError(400, "the stand-in joins with no suffix on the first table")
    out = merge_reference(frames[table], frames[ref], suffix=suffixes.get(ref, "_ref"))
    return out, {t: {c: c for c in frames[t].columns} for t in tables}


def _scaled(table: pa.Table, resolution) -> pa.Table:
    """Positions (``*position_x/_y/_z``, in :data:`VOXEL` units) scaled to ``resolution`` (nm)."""
    scale = np.asarray(VOXEL, dtype=np.float64) / np.asarray(resolution, dtype=np.float64)
    for i, axis in enumerate("xyz"):
        if scale[i] == 1.0:
            continue
        for j, col in enumerate(table.column_names):
            if col.endswith(f"position_{axis}"):
                values = table.column(j).to_numpy(zero_copy_only=False).astype(np.float64)
                table = table.set_column(j, col, pa.array(values * scale[i]))
    return table


def _arrow_ipc(table: pa.Table, codec: str | None) -> bytes:
    """``table`` as an Arrow IPC stream, its buffers compressed with ``codec`` (or not)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema,
                           options=pa.ipc.IpcWriteOptions(compression=codec)) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()
