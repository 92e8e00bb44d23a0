"""A seeded stand-in of minnie65's static release, in the exact published layout (issue 22).

**Synthetic: generated, not measured.** The rows follow :mod:`.synapse_synth`'s model (cells with
a nucleus, orphan fragments, local wiring in cell order so pairs repeat, log-normal sizes,
positions within :data:`~.synapse_synth.VOLUME_BOUNDS`); what this module adds is the layout users
download from ``mat_dbs/public/minnie65_phase3_v1/v<N>/``::

    OUT/synapses_pni_2_v1_filtered_view.csv.gz      ONE gzip member, header-less CSV, 15 columns
    OUT/synapses_pni_2_v1_filtered_view_header.csv  column,type lines (MaterializationEngine's dump)
    OUT/nucleus_detection_v0_merged.csv.gz + nucleus_detection_v0_merged_header.csv

The real view at v1412 is 337,312,429 rows (about 20 GB of gzip). The same ``config`` gives the
same bytes; rows are generated ``config.rows_per_file`` at a time, so memory does not grow with
``config.rows``.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
from tqdm.auto import tqdm

from ..etl.formats.export_header import write_header
from ..kernel.files import atomic_path
from .synapse_synth import (NUCLEUS_COLUMNS, SynapseSynthConfig, _csv_gz, _nuclei,
                            synapse_partition, synthetic_cells)

__all__ = ["VIEW_COLUMNS", "VIEW_TABLE", "release_config", "write_release"]

#: The synapse view of the static dump.
VIEW_TABLE = "synapses_pni_2_v1_filtered_view"
#: Its columns as the v1412 dump's ``_header.csv`` lists them (column, PostgreSQL type).
VIEW_COLUMNS: list[tuple[str, str]] = [
    ("id", "bigint"), ("pre_pt_position_x", "integer"), ("pre_pt_position_y", "integer"),
    ("pre_pt_position_z", "integer"), ("ctr_pt_position_x", "integer"),
    ("ctr_pt_position_y", "integer"), ("ctr_pt_position_z", "integer"),
    ("post_pt_position_x", "integer"), ("post_pt_position_y", "integer"),
    ("post_pt_position_z", "integer"), ("size", "integer"),
    ("pre_pt_supervoxel_id", "bigint"), ("pre_pt_root_id", "bigint"),
    ("post_pt_supervoxel_id", "bigint"), ("post_pt_root_id", "bigint")]


def release_config(rows: int, *, seed: int = 0, n_neurons: int = 144_000,
                   n_fragments: int = 2_000_000, pair_repeat: float = 0.3) -> SynapseSynthConfig:
    """The stand-in's parameters for ``rows`` synapses (defaults: minnie65's ~144k nuclei; 30 % of
    synapses repeat a pair of their million rows, about 1.4 synapses per connected cell pair)."""
    return SynapseSynthConfig(rows=rows, rows_per_file=min(max(rows, 1), 1_000_000),
                              n_neurons=n_neurons, n_fragments=n_fragments,
                              pair_repeat=pair_repeat, seed=seed)


def _text(k: int) -> bytes:
    """Partition ``k`` as header-less CSV text (runs in a worker; see :func:`_start_worker`)."""
    config, cells, names = _WORKER
    part = synapse_partition(config, k, cells).select(names)
    sink = pa.BufferOutputStream()
    pcsv.write_csv(part, sink, write_options=pcsv.WriteOptions(include_header=False,
                                                               quoting_style="none"))
    return sink.getvalue().to_pybytes()


_WORKER: tuple = ()


def _start_worker(config: SynapseSynthConfig) -> None:
    global _WORKER
    _WORKER = (config, synthetic_cells(config), [c for c, _ in VIEW_COLUMNS])


def write_release(out: str | os.PathLike, config: SynapseSynthConfig, *, compresslevel: int = 1,
                  workers: int = 1, progress: bool = False) -> dict[str, Path]:
    """Write the release stand-in under ``out`` (see the module docstring); atomically per file.

    ``workers`` > 1 formats the CSV text of successive partitions in that many processes while
    this one compresses (ISA-L, ``compresslevel`` 0-3) into the one gzip member in partition
    order, so the bytes do not depend on ``workers``. At most ``2 * workers`` partitions (about
    145 MB of text each) are in flight. Full size (337M rows) on 2 cores: see README.

    Returns
    -------
    dict
        ``synapses`` (the view's ``.csv.gz``), ``synapses_header``, ``nucleus``.

    Examples
    --------
    >>> write_release("/tmp/v1412", release_config(10_000_000), workers=2)  # doctest: +SKIP
    """
    from isal import igzip

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"synapses": out / f"{VIEW_TABLE}.csv.gz",
             "synapses_header": out / f"{VIEW_TABLE}_header.csv",
             "nucleus": out / "nucleus_detection_v0_merged.csv.gz"}
    write_header(out / "nucleus_detection_v0_merged_header.csv", NUCLEUS_COLUMNS)
    _csv_gz(_nuclei(config), paths["nucleus"])
    bar = tqdm(total=config.rows, desc=f"{VIEW_TABLE}.csv.gz", unit="rows", unit_scale=True,
               disable=not progress)
    # one member, as dumped; no name or time in its header, so the same config gives the same bytes
    with atomic_path(paths["synapses"]) as tmp, open(tmp, "wb") as raw, \
            igzip.IGzipFile(filename="", mode="wb", compresslevel=compresslevel, fileobj=raw,
                            mtime=0) as fh:
        for k, text in enumerate(_texts(config, workers)):
            fh.write(text)
            bar.update(min(config.rows_per_file, config.rows - k * config.rows_per_file))
    bar.close()
    write_header(paths["synapses_header"], VIEW_COLUMNS)
    return paths


def _texts(config: SynapseSynthConfig, workers: int) -> Iterator[bytes]:
    """Every partition's text in partition order: here, or formatted in ``workers`` processes with
    at most ``2 * workers`` partitions in flight."""
    if workers <= 1:
        _start_worker(config)
        yield from map(_text, range(config.n_files))
        return
    with ProcessPoolExecutor(workers, initializer=_start_worker, initargs=(config,)) as pool:
        pending: deque[Future[bytes]] = deque()
        for k in range(config.n_files):
            pending.append(pool.submit(_text, k))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
