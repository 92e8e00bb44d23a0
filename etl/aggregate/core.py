"""``synapses_to_connections``: raw synapses -> the ``connections`` table, on a chosen engine."""

from __future__ import annotations

import time
from typing import Any, Literal

import pandas as pd
import pyarrow as pa

from ..errors import EtlError
from .inputs import SynapseInput, resolve_files
from .mapping import root_map
from .partial import finalize

__all__ = ["AggregateEngine", "synapses_to_connections"]

#: Aggregation engines.
AggregateEngine = Literal["duckdb", "dask"]


def synapses_to_connections(synapses: SynapseInput, neurons: pa.Table | pd.DataFrame, *,
                            engine: AggregateEngine = "duckdb", scheduler: Any = None,
                            keep_self: bool = False, memory_limit: str | None = None,
                            n_workers: int = 2, threads: int | None = None,
                            progress: bool = False, report: dict | None = None) -> pa.Table:
    """Aggregate synapses into directed cell-to-cell connections.

    A synapse counts when both its pre- and its postsynaptic root id belong to a cell of
    ``neurons``; it is then counted for the pair (pre nucleus, post nucleus).

    Parameters
    ----------
    synapses
        A ``pyarrow.Table`` / ``pandas.DataFrame`` with ``pre_root_id``, ``post_root_id`` and
        optionally ``size`` (CAVE names ``pre_pt_root_id`` / ``post_pt_root_id`` also accepted), or
        a path / list of paths: Parquet files, CSV or CSV.gz files (a static export's header-less
        ``*_merged.csv.gz`` with its ``*_merged_header.csv``, or CSV with a header row), or
        directories of such partitions.
    neurons
        Table with ``nucleus_id`` and ``root_id``. Null / 0 root ids are ignored; a root id carried
        by two or more nuclei is ambiguous and its synapses are not counted.
    engine
        ``"duckdb"`` (one process, streaming, spills to disk) or ``"dask"`` (one task per file,
        each streamed in batches, partial sums combined in a tree on a Dask cluster).
    scheduler
        Dask only: ``None`` starts a ``LocalCluster`` of ``n_workers`` single-threaded worker
        processes; a ``"tcp://HOST:PORT"`` address or a ``distributed.Client`` uses that cluster.
    keep_self
        Count synapses whose pre and post root are the same cell (autapses). Default False: they
        are dropped (in MICrONS most are segmentation errors; prior matrices have a zero diagonal).
    memory_limit
        DuckDB: the process's limit (default ``"4GB"``; beyond it the aggregate spills).
        Dask LocalCluster: each worker's limit (default ``"2GiB"``).
    threads
        DuckDB threads (default: all cores).
    report
        If given, filled with facts of the run (engine, seconds, ambiguous root ids, sizes).

    Returns
    -------
    pyarrow.Table
        ``pre_nucleus_id``, ``post_nucleus_id``, ``n_synapses`` (int64) and ``sum_size`` (float64,
        the exact sum of sizes rounded to whole voxels; null where any synapse of the pair has no
        size), sorted by (pre, post). Both engines return identical tables.

    Examples
    --------
    >>> conns = synapses_to_connections("exports/synapses_pni_2", neurons)  # doctest: +SKIP
    >>> conns = synapses_to_connections(paths, neurons, engine="dask",
    ...                                 scheduler="tcp://10.0.0.5:8786")     # doctest: +SKIP
    """
    t0 = time.perf_counter()
    rmap = root_map(neurons)
    if isinstance(synapses, pd.DataFrame):
        synapses = pa.Table.from_pandas(synapses, preserve_index=False)
    src = synapses if isinstance(synapses, pa.Table) else resolve_files(synapses)
    if engine == "duckdb":
        from .engine_duckdb import aggregate_duckdb

        cols = aggregate_duckdb(src, rmap, keep_self=keep_self,
                                memory_limit=memory_limit or "4GB", threads=threads)
    elif engine == "dask":
        from .engine_dask import aggregate_dask

        cols = aggregate_dask(src, rmap, keep_self=keep_self, scheduler=scheduler,
                              n_workers=n_workers, memory_limit=memory_limit or "2GiB",
                              progress=progress)
    else:
        raise EtlError(f"unknown aggregation engine {engine!r}; expected duckdb or dask")
    table = finalize(cols)
    if report is not None:
        report.update({
            "engine": engine, "seconds": round(time.perf_counter() - t0, 3),
            "n_connections": table.num_rows,
            "n_synapses_counted": int(cols["n"].sum()),
            "ambiguous_root_ids": rmap.n_ambiguous, "neurons_mapped": len(rmap.root_ids),
            "keep_self": keep_self,
            "input": "in-memory table" if isinstance(src, pa.Table) else
            {"format": src.format, "files": len(src.files)},
        })
    return table
