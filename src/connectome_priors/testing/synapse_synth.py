"""Seeded synthetic full-volume synapse table, written like the MICrONS static export.

**Synthetic: generated, not measured.** For tests and benchmarks of the aggregation engines at
the real table's scale (minnie65 ``synapses_pni_2``: 337,312,429 rows) without downloading it.

Model
-----
``n_neurons`` cells with a nucleus (ids and root ids drawn once from ``seed``) and
``n_fragments`` other segments (orphan axons and dendrites with no soma in the volume). Each
synapse's presynaptic segment is a cell with probability ``p_pre_cell`` (else a uniformly drawn
fragment), its postsynaptic segment a cell with probability ``p_post_cell``. A cell-to-cell
synapse from cell ``i`` goes to cell ``(i + d) mod n_neurons`` with ``d`` rounded from
N(0, ``partner_sd``): wiring is local in cell order and pairs repeat, as in cortex; a fraction
``pair_repeat`` of synapses copies the pair of another synapse of its partition (multi-synapse
connections). About
``autapse_fraction`` of cell synapses are autapses (pre = post). Sizes are whole voxel counts,
``max(1, round(LogNormal(log(size_median), 0.9)))``. Positions are uniform within minnie65's
volume bounds (:data:`VOLUME_BOUNDS`, voxels). Partition ``k`` is drawn from ``numpy.random.default_rng([seed, k])`` alone, so
files are independent and the same seed gives the same rows.

Layout (``write_synthetic_synapses``), mirroring ``storage.googleapis.com/mat_dbs/public/
minnie65_phase3_v1/v<version>/``::

    OUT/synapses_pni_2_merged_header.csv      column,type lines (no title line)
    OUT/synapses_pni_2_merged/part-00000.csv.gz ...   header-less gzip CSV partitions
    OUT/synapses_pni_2/part-00000.parquet ...         the same rows as Parquet partitions
    OUT/nucleus_detection_v0_merged.csv.gz + _merged_header.csv   the cells' nuclei
    OUT/neurons.parquet                       nucleus_id, root_id (what aggregation needs)

The real export is one ``synapses_pni_2_merged.csv.gz`` (~20 GB); gzip cannot be split, so
the generator writes many smaller files, one partition each.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from ..kernel.files import atomic_path

from ..etl.errors import SourceError
from ..etl.formats.export_header import write_header

__all__ = ["SynapseSynthConfig", "SYNAPSE_COLUMNS", "NUCLEUS_COLUMNS", "VOLUME_BOUNDS", "synthetic_cells",
           "synapse_partition", "write_synthetic_synapses"]

#: Columns of the synapse export (assumed order and PostgreSQL types of ``synapses_pni_2``).
SYNAPSE_COLUMNS: list[tuple[str, str]] = [
    ("id", "bigint"), ("created", "timestamp without time zone"), ("superceded_id", "bigint"),
    ("valid", "boolean"),
    ("pre_pt_position_x", "integer"), ("pre_pt_position_y", "integer"),
    ("pre_pt_position_z", "integer"),
    ("post_pt_position_x", "integer"), ("post_pt_position_y", "integer"),
    ("post_pt_position_z", "integer"),
    ("ctr_pt_position_x", "integer"), ("ctr_pt_position_y", "integer"),
    ("ctr_pt_position_z", "integer"),
    ("size", "integer"),
    ("pre_pt_supervoxel_id", "bigint"), ("pre_pt_root_id", "bigint"),
    ("post_pt_supervoxel_id", "bigint"), ("post_pt_root_id", "bigint"),
]
#: Columns of the nucleus export (assumed order and types of ``nucleus_detection_v0``).
NUCLEUS_COLUMNS: list[tuple[str, str]] = [
    ("id", "bigint"), ("created", "timestamp without time zone"), ("superceded_id", "bigint"),
    ("valid", "boolean"), ("volume", "double precision"),
    ("pt_supervoxel_id", "bigint"), ("pt_root_id", "bigint"),
    ("pt_position_x", "integer"), ("pt_position_y", "integer"), ("pt_position_z", "integer"),
]

_CREATED = "2020-11-04 06:48:46.138049"
_ROOT_BASE = 864691135_000_000_000
#: minnie65's volume bounds in voxels (4, 4, 40 nm), [low, high) per axis: [52708, 64831, 14838] to
#: [427816, 311022, 27868] (the v1412 synapse table's extent, issue 22).
VOLUME_BOUNDS = ((52_708, 427_816), (64_831, 311_022), (14_838, 27_868))
_BOUNDS = VOLUME_BOUNDS


@dataclass(frozen=True)
class SynapseSynthConfig:
    """Parameters of the synthetic synapse table (see the module docstring for the model)."""

    rows: int = 1_000_000
    """Total synapses (the real table: 337,312,429)."""
    rows_per_file: int = 1_000_000
    """Rows per partition file."""
    n_neurons: int = 80_000
    """Cells with a nucleus."""
    n_fragments: int = 5_000_000
    """Segments without a nucleus."""
    p_pre_cell: float = 0.3
    """Probability that a synapse's presynaptic segment is a cell."""
    p_post_cell: float = 0.6
    """Probability that its postsynaptic segment is a cell."""
    partner_sd: float = 400.0
    """SD of the cell-order offset between connected cells."""
    autapse_fraction: float = 0.002
    """Fraction of cell-to-cell synapses with pre = post."""
    size_median: float = 300.0
    """Median synapse size (voxels)."""
    pair_repeat: float = 0.0
    """Fraction of synapses that copy the segment pair of another synapse of their partition
    (multi-synapse connections; drawn from their own stream, so 0 leaves every other draw as it
    was)."""
    seed: int = 0
    """Seed of every draw."""

    def __post_init__(self) -> None:
        if self.rows < 0 or self.rows_per_file < 1 or self.n_neurons < 1 or self.n_fragments < 1:
            raise SourceError("synthetic synapses: rows >= 0, rows_per_file >= 1, n_neurons >= 1 "
                              f"and n_fragments >= 1 expected; found {self}")

    @property
    def n_files(self) -> int:
        """Number of partitions."""
        return max(1, -(-self.rows // self.rows_per_file))


def synthetic_cells(config: SynapseSynthConfig) -> tuple[np.ndarray, np.ndarray]:
    """(nucleus ids, root ids) of the cells, in the cell order that wiring is local in."""
    rng = np.random.default_rng([config.seed, 1_000_003])
    n = config.n_neurons
    nucleus = np.sort(rng.choice(np.arange(1, 40 * n + 1, dtype=np.int64), n, replace=False))
    roots = _ROOT_BASE + rng.permutation(np.arange(n, dtype=np.int64)) * 97 + 13
    return nucleus, roots


def _fragment_roots(idx: np.ndarray, config: SynapseSynthConfig) -> np.ndarray:
    # distinct from cell roots: cells are BASE + 97k + 13, fragments BASE + 97 * n_neurons + idx
    return _ROOT_BASE + 97 * config.n_neurons + 1000 + idx.astype(np.int64)


def synapse_partition(config: SynapseSynthConfig, k: int,
                      cells: tuple[np.ndarray, np.ndarray] | None = None) -> pa.Table:
    """Partition ``k`` of the synthetic synapse table, with the export's columns."""
    if not 0 <= k < config.n_files:
        raise SourceError(f"partition {k} out of range; the table has {config.n_files}")
    _, roots = cells if cells is not None else synthetic_cells(config)
    start = k * config.rows_per_file
    n = int(min(config.rows_per_file, config.rows - start))
    rng = np.random.default_rng([config.seed, k])
    nn = config.n_neurons
    pre_cell = rng.random(n) < config.p_pre_cell
    post_cell = rng.random(n) < config.p_post_cell
    pre_i = rng.integers(0, nn, n)
    offset = np.rint(rng.normal(0.0, config.partner_sd, n)).astype(np.int64)
    offset[rng.random(n) < config.autapse_fraction] = 0
    offset[(offset == 0) & (rng.random(n) >= config.autapse_fraction)] = 1
    post_i = np.where(pre_cell, (pre_i + offset) % nn, rng.integers(0, nn, n))
    pre_root = np.where(pre_cell, roots[pre_i],
                        _fragment_roots(rng.integers(0, config.n_fragments, n), config))
    post_root = np.where(post_cell, roots[post_i],
                         _fragment_roots(rng.integers(0, config.n_fragments, n), config))
    size = np.maximum(1, np.rint(rng.lognormal(np.log(config.size_median), 0.9, n))).astype(np.int64)
    if config.pair_repeat > 0 and n:
        rep_rng = np.random.default_rng([config.seed, k, 7])
        rep = np.flatnonzero(rep_rng.random(n) < config.pair_repeat)
        src = rep_rng.integers(0, n, len(rep))
        pre_root[rep], post_root[rep] = pre_root[src], post_root[src]
    cols: dict[str, pa.Array] = {
        "id": pa.array(np.arange(start + 1, start + n + 1, dtype=np.int64)),
        "created": pa.array(np.full(n, np.datetime64(_CREATED.replace(" ", "T"), "us"))),
        "superceded_id": pa.nulls(n, pa.int64()),
        "valid": pa.array(np.ones(n, dtype=bool)),
    }
    ctr = [rng.integers(lo, hi, n) for lo, hi in _BOUNDS]
    jitter = rng.integers(-40, 41, (4, n))  # pre/post sides lie ~100 nm off the cleft in x-y
    for j, axis in enumerate("xyz"):
        lo, hi = _BOUNDS[j]
        cols[f"pre_pt_position_{axis}"] = pa.array(np.clip(ctr[j] + (jitter[j] if j < 2 else 0),
                                                           lo, hi - 1))
        cols[f"post_pt_position_{axis}"] = pa.array(np.clip(ctr[j] + (jitter[2 + j] if j < 2 else 0),
                                                            lo, hi - 1))
    for axis, c in zip("xyz", ctr):
        cols[f"ctr_pt_position_{axis}"] = pa.array(c)
    cols["size"] = pa.array(size)
    cols["pre_pt_supervoxel_id"] = pa.array(pre_root - _ROOT_BASE + 88_000_000_000_000_000)
    cols["pre_pt_root_id"] = pa.array(pre_root)
    cols["post_pt_supervoxel_id"] = pa.array(post_root - _ROOT_BASE + 88_000_000_000_000_000)
    cols["post_pt_root_id"] = pa.array(post_root)
    order = [c for c, _ in SYNAPSE_COLUMNS]
    return pa.table({c: cols[c] for c in order})


def _csv_gz(table: pa.Table, path: Path) -> None:
    """Header-less CSV like the export (booleans as t/f), gzip level 1, atomically."""
    cols = []
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_boolean(col.type):
            col = pa.array(np.where(col.to_numpy(zero_copy_only=False), "t", "f"))
        elif pa.types.is_timestamp(col.type):
            col = pa.array(np.full(len(col), _CREATED))
        cols.append(col)
    out = pa.table(cols, names=table.column_names)
    with atomic_path(path) as tmp, gzip.open(tmp, "wb", compresslevel=1) as fh:
        pcsv.write_csv(out, fh, write_options=pcsv.WriteOptions(include_header=False,
                                                                quoting_style="none"))


def _parquet(table: pa.Table, path: Path) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, row_group_size=256 * 1024, compression="zstd")


def _nuclei(config: SynapseSynthConfig) -> pa.Table:
    nucleus, roots = synthetic_cells(config)
    rng = np.random.default_rng([config.seed, 1_000_033])
    n = len(nucleus)
    return pa.table({
        "id": nucleus, "created": pa.array(np.full(n, np.datetime64(_CREATED.replace(" ", "T"), "us"))),
        "superceded_id": pa.nulls(n, pa.int64()), "valid": np.ones(n, dtype=bool),
        "volume": np.round(rng.lognormal(np.log(250.0), 0.3, n), 3),
        "pt_supervoxel_id": roots - _ROOT_BASE + 88_000_000_000_000_000, "pt_root_id": roots,
        **{f"pt_position_{a}": rng.integers(lo, hi, n) for a, (lo, hi) in zip("xyz", _BOUNDS)},
    })


def write_synthetic_synapses(out: str | os.PathLike, config: SynapseSynthConfig = SynapseSynthConfig(),
                             *, formats: Sequence[str] = ("parquet", "csv.gz"),
                             progress: bool = False) -> dict[str, Path]:
    """Write the synthetic synapse table (and its cells) under ``out``; see the module docstring.

    Returns
    -------
    dict
        ``neurons`` (Parquet: nucleus_id, root_id), ``nucleus`` (CSV.gz export), and per format
        ``parquet`` (directory of partitions) / ``csv.gz`` (directory of partitions; its header
        file is ``synapses_pni_2_merged_header.csv`` beside it).

    Examples
    --------
    >>> paths = write_synthetic_synapses("/tmp/syn", SynapseSynthConfig(rows=10_000_000))  # doctest: +SKIP
    """
    bad = set(formats) - {"parquet", "csv.gz"}
    if bad or not formats:
        raise SourceError(f"synthetic synapses: formats must be parquet and/or csv.gz; found "
                          f"{sorted(formats)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cells = synthetic_cells(config)
    paths: dict[str, Path] = {"neurons": out / "neurons.parquet",
                              "nucleus": out / "nucleus_detection_v0_merged.csv.gz"}
    _parquet(pa.table({"nucleus_id": cells[0], "root_id": cells[1]}), paths["neurons"])
    write_header(out / "nucleus_detection_v0_merged_header.csv", NUCLEUS_COLUMNS)
    _csv_gz(_nuclei(config), paths["nucleus"])
    if "parquet" in formats:
        paths["parquet"] = out / "synapses_pni_2"
        paths["parquet"].mkdir(exist_ok=True)
    if "csv.gz" in formats:
        paths["csv.gz"] = out / "synapses_pni_2_merged"
        paths["csv.gz"].mkdir(exist_ok=True)
        write_header(out / "synapses_pni_2_merged_header.csv", SYNAPSE_COLUMNS)
    for k in tqdm(range(config.n_files), desc="synthetic synapse partitions", unit="file",
                  disable=not progress):
        part = synapse_partition(config, k, cells)
        if "parquet" in formats:
            _parquet(part, paths["parquet"] / f"part-{k:05d}.parquet")
        if "csv.gz" in formats:
            _csv_gz(part, paths["csv.gz"] / f"part-{k:05d}.csv.gz")
    return paths
