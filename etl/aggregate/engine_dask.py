"""The ``dask`` engine: one task per file on a Dask cluster, partial sums combined in trees.

Each task streams its file in record batches (Parquet row groups / CSV blocks of
``BATCH_ROWS``-ish rows), maps root ids to cell indices and sums per pair, so a worker holds one
batch plus its file's pair sums, never the file. The file's pair sums are split into buckets by
pair key (``key mod n_buckets``); each bucket is combined in its own tree of ``_FAN_IN``-way
sums, so no worker ever holds more than about 1/n_buckets of the connections table. The client
gathers the buckets one by one (the result it returns is the whole table). gzip CSV cannot be split, so a static export
should come as many files (``cxp synth-synapses`` writes them that way); one 20 GB file is still
read correctly, but by one task.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from connectome_priors.kernel.dask import dask_client
from ..errors import SourceError
from .inputs import SynapseFiles, check_arrow_types, csv_first_line, pick_columns
from .mapping import RootMap
from .partial import aggregate_batch, combine, decode

__all__ = ["aggregate_dask", "BATCH_ROWS"]

#: Rows per streamed batch (Parquet); CSV blocks are sized to about as many rows.
BATCH_ROWS = 1 << 20
_CSV_BLOCK = 16 << 20
_FAN_IN = 8


@dataclass(frozen=True)
class _Spec:
    format: str
    columns: dict[str, str]            # canonical -> name in the file
    csv_names: tuple[str, ...] | None  # header-less CSV: all column names


def _batches(path: str, spec: _Spec) -> Iterator[pa.Table]:
    rename = {v: k for k, v in spec.columns.items()}
    if spec.format == "parquet":
        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=list(spec.columns.values())):
            yield pa.Table.from_batches([batch]).rename_columns(
                [rename[n] for n in batch.schema.names])
        return
    types = {spec.columns["pre_root_id"]: pa.int64(), spec.columns["post_root_id"]: pa.int64()}
    if "size" in spec.columns:
        types[spec.columns["size"]] = pa.float64()
    read = pcsv.ReadOptions(column_names=list(spec.csv_names) if spec.csv_names else None,
                            block_size=_CSV_BLOCK)
    conv = pcsv.ConvertOptions(include_columns=list(spec.columns.values()), column_types=types)
    with pcsv.open_csv(path, read_options=read, convert_options=conv) as reader:
        for batch in reader:
            yield pa.Table.from_batches([batch]).rename_columns(
                [rename[n] for n in batch.schema.names])


def _split(frame: pd.DataFrame, n_buckets: int) -> tuple[pd.DataFrame, ...]:
    if n_buckets == 1:
        return (frame,)
    bucket = frame.index.to_numpy(np.int64) % n_buckets
    return tuple(frame[bucket == b] for b in range(n_buckets))


def _identity(x):
    return x


def _file_task(path: str, spec: _Spec, rmap: RootMap, keep_self: bool,
               n_buckets: int) -> tuple[pd.DataFrame, ...]:
    parts: list[pd.DataFrame] = []
    try:
        for batch in _batches(path, spec):
            parts.append(aggregate_batch(batch, rmap, keep_self=keep_self, origin=path))
            if len(parts) >= _FAN_IN:
                parts = [combine(parts)]
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, EOFError) as err:
        raise SourceError(f"synapse file {path} could not be read: {err}", path=path) from None
    return _split(combine(parts), n_buckets)


def _table_task(table: pa.Table, rmap: RootMap, keep_self: bool,
                n_buckets: int) -> tuple[pd.DataFrame, ...]:
    return _split(aggregate_batch(table, rmap, keep_self=keep_self,
                                  origin="the in-memory synapse table"), n_buckets)


def _pick(parts: tuple[pd.DataFrame, ...], b: int) -> pd.DataFrame:
    return parts[b]


def _combine_task(*parts: pd.DataFrame) -> pd.DataFrame:
    return combine(parts)


def _spec(src: SynapseFiles) -> _Spec:
    origin = src.describe()
    if src.format == "parquet":
        schema = pq.read_schema(src.files[0])
        cols = pick_columns(schema.names, origin)
        check_arrow_types(schema, cols, origin)
        return _Spec("parquet", cols, None)
    if src.header is not None:
        cols = pick_columns(src.header.columns, f"{origin} (header {src.header.path})")
        kinds = src.header.kinds()
        for canon in ("pre_root_id", "post_root_id"):
            if kinds[cols[canon]] != "int":
                raise SourceError(f"export header {src.header.path}: column {cols[canon]} must be "
                                  "an integer type", path=str(src.header.path))
        return _Spec("csv", cols, src.header.columns)
    return _Spec("csv", pick_columns(csv_first_line(src.files[0]), origin), None)


def aggregate_dask(src: pa.Table | SynapseFiles, rmap: RootMap, *, keep_self: bool,
                   scheduler=None, n_workers: int = 2, memory_limit: str = "2GiB",
                   n_buckets: int | None = None, progress: bool = False) -> dict[str, np.ndarray]:
    """Aggregate on a Dask cluster; returns columns pre, post, n, n_known, size.

    ``n_buckets`` (default: one per 4 partitions, at most 64) sets how many independent combine
    trees share the pair sums.
    """
    from distributed import as_completed

    if isinstance(src, pa.Table):
        cols = pick_columns(src.column_names, "the in-memory synapse table")
        check_arrow_types(src.schema, cols, "the in-memory synapse table")
        src = src.select(list(cols.values())).rename_columns(list(cols.keys()))
        n_parts = max(1, -(-src.num_rows // BATCH_ROWS))
    else:
        spec = _spec(src)
        n_parts = len(src.files)
    buckets = n_buckets or max(1, min(64, n_parts // 4))
    with dask_client(scheduler, n_workers=n_workers, memory_limit=memory_limit) as client:
        # a task, not scattered data: a worker restarted for memory can recompute it
        rmap_f = client.submit(_identity, rmap, pure=False)
        if isinstance(src, pa.Table):
            slices = [src.slice(i, BATCH_ROWS) for i in range(0, max(src.num_rows, 1), BATCH_ROWS)]
            leaves = [client.submit(_table_task, client.submit(_identity, t, pure=False), rmap_f,
                                    keep_self, buckets, pure=False) for t in slices]
        else:
            leaves = [client.submit(_file_task, str(Path(f)), spec, rmap_f, keep_self, buckets,
                                    pure=False) for f in src.files]
        roots = []
        for b in range(buckets):
            level = [client.submit(_pick, leaf, b, pure=False) for leaf in leaves]
            while len(level) > 1:
                level = [client.submit(_combine_task, *level[i:i + _FAN_IN], pure=False)
                         for i in range(0, len(level), _FAN_IN)]
            roots.append(level[0])
        with tqdm(total=len(leaves), desc="synapse partitions", unit="part",
                  disable=not progress) as bar:
            for _ in as_completed(leaves):
                bar.update(1)
        del leaves
        parts = []
        for b in range(buckets):
            parts.append(decode(roots[b].result(), rmap))
            roots[b] = None  # release the bucket on the cluster
    return {c: np.concatenate([p[c] for p in parts]) for c in ("pre", "post", "n", "n_known", "size")}
