"""One large synapse export (a single gzip CSV member) -> ``connections``, streamed and resumable.

The static release's synapse view is one ``.csv.gz`` of 337M rows (about 20 GB). It is read as a
stream of chunks of :data:`CHUNK_BYTES` of text cut at line ends; no step holds the table:

decompress
    ``isal`` (Intel ISA-L's inflate) in a background thread (``igzip_threaded``), so it overlaps
    the rest. Chosen by measurement on the stand-in (README, ``bench/stream_release.py``): about
    3x zlib's throughput per core; ``rapidgzip``'s parallel decoding of one member cost more CPU in
    total than ISA-L on one thread, and both cores are needed for parsing.
parse
    Arrow's CSV reader on the chunk (its blocks parsed on both cores), only the pre/post root id
    and size columns converted.
map
    root id -> cell through :class:`~etl.aggregate.RootMap`'s hash index (roots carried by several
    nuclei are left out), pre and post side on two threads.
aggregate
    per chunk: synapses per (pre cell, post cell) key, with the number of sizes known and their
    sum (:mod:`etl.aggregate.partial`'s rules: autapses dropped unless ``keep_self``).
write
    the chunk's partial sums as ``part-<k>.parquet`` in the work folder, the ids of its rows
    between cells (``ids-<k>.parquet``), then the checkpoint ``state.json`` (chunk count, text
    offset, rows), each written to a temporary name and renamed.

With ``synapses_of``, the chunk's synapses between cells go to ``syn-<k>.parquet`` beside it.
At the end DuckDB sums the parts per pair into ``connections.parquet`` sorted by
(pre_nucleus_id, post_nucleus_id), and sorts the synapse parts by id into ``synapses.parquet``
(bounded memory, spilling to the work folder): files the store copies batch by batch
(:class:`~etl.tables.ParquetRows`), so a point query for one cell's partners reads the row groups
whose statistics admit it. A load killed at any point resumes from
its last checkpoint: finished chunks are not parsed, mapped, aggregated or written again (the text
before the checkpoint's offset is decompressed and skipped, the cheapest step); the work folder
names the file (path, size, mtime), the cells and the rules, so a changed input starts over.
Nothing here is visible to store readers: the caller publishes the result as one snapshot.

Synapse ids are the dump's primary key. A repeated id is dropped as the held path drops it
(:func:`~etl.sources.cave.transform.connectivity.synapses_among`): the first row in file order is
kept, among the rows between cells (``synapses_of``' roots, or with no ``synapses_of`` the rows
whose roots both map to a cell), and the drops are counted (``StreamResult.duplicates``). Checking
costs nothing when no two chunks' id ranges overlap (the parts' Parquet statistics) and no chunk
repeats an id; otherwise DuckDB finds the repeats over the id parts and subtracts them.
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from connectome_priors.kernel.files import atomic_path, atomic_write_text
from connectome_priors.kernel.pause import pause

from ...aggregate.mapping import RootMap
from ...errors import SourceError
from .layout import ExportFile

__all__ = ["CHUNK_BYTES", "StreamResult", "stream_connections", "work_key"]

#: Text bytes per chunk (one checkpoint each): about 440k rows of the synapse view.
CHUNK_BYTES = 64 << 20
_PRE, _POST, _SIZE = "pre_pt_root_id", "post_pt_root_id", "size"
_STAGES = ("decompress", "parse", "map", "aggregate", "write", "combine")
_ID = "id"
_SYNAPSE_EXTRA = ("ctr_pt_position_x", "ctr_pt_position_y", "ctr_pt_position_z")
#: Bumped when the work folder's parts change form, so an older folder is not resumed.
_WORK_FORMAT = "2"


@dataclass
class StreamResult:
    """The streamed ``connections`` and the facts of the run."""

    connections: Path
    """Parquet: ``pre_nucleus_id``, ``post_nucleus_id``, ``n_synapses``, ``sum_size``, sorted by
    (pre, post)."""
    synapses: Path | None
    """Parquet: the kept synapses in the store's columns, sorted by ``synapse_id`` (or None)."""
    rows: int
    """Synapse rows read."""
    counted: int
    """Synapses counted in ``connections`` (both sides a cell, no autapse unless kept)."""
    chunks: int
    """Chunks of the stream."""
    resumed: int
    """Chunks found finished at the start (from an interrupted run), not redone."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall seconds spent per stage (``decompress`` is time waiting for text)."""
    text_bytes: int = 0
    """Decompressed bytes."""
    autapses: int = 0
    """Synapses whose pre and post cell are the same, left out of ``connections`` (0 with
    ``keep_self``)."""
    duplicates: int = 0
    """Rows dropped because an earlier row between cells had their synapse id."""
    duplicates_between_cells: int = 0
    """Of those, the rows whose roots both map to a cell (they would have been counted)."""


def work_key(export: ExportFile, rmap: RootMap, *, synapses_of: np.ndarray | None,
             keep_self: bool, chunk_bytes: int) -> str:
    """What a work folder is for: the file (path, size, mtime), the cells, the rules (hex)."""
    path = export.paths[0]
    st = path.stat()
    h = hashlib.sha256(f"{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0{keep_self}\0"
                       f"{chunk_bytes}\0{export.header_row}\0{_WORK_FORMAT}\0".encode())
    h.update(rmap.root_ids.tobytes())
    h.update(rmap.nucleus_ids.tobytes())
    h.update(b"-" if synapses_of is None else np.unique(np.asarray(synapses_of, np.int64)).tobytes())
    return h.hexdigest()[:16]


class _Text:
    """Chunks of decompressed text cut at line ends, read ahead by one thread."""

    def __init__(self, path: Path, start: int, chunk_bytes: int) -> None:
        from isal import igzip_threaded  # only for this step

        self.path = path
        self.raw = open(path, "rb")  # closed in close()
        self.fh = igzip_threaded.open(self.raw, "rb", threads=1) if path.name.endswith(".gz") \
            else self.raw
        self.chunk_bytes = chunk_bytes
        self.offset = 0
        while self.offset < start:  # resume: skip finished text without parsing it
            got = self.fh.read(min(chunk_bytes, start - self.offset))
            if not got:
                raise SourceError(f"{path}: ends at {self.offset:,} bytes of text, before the "
                                  f"checkpoint's {start:,}; the file changed", path=str(path))
            self.offset += len(got)
        self.queue: queue.Queue = queue.Queue(maxsize=2)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        carry = b""
        try:
            while True:
                got = self.fh.read(self.chunk_bytes)
                buf = carry + got if carry else got
                if not got:
                    if buf:  # a last line without its newline
                        self.queue.put((buf + b"\n", len(buf)))
                    break
                cut = buf.rfind(b"\n") + 1
                if cut == 0:
                    carry = buf
                    continue
                carry = buf[cut:]
                self.queue.put((buf[:cut], cut))
            self.queue.put(None)
        except BaseException as err:  # noqa: BLE001 (handed to the consumer, which raises it)
            self.queue.put(err)

    def __iter__(self) -> Iterator[tuple[bytes, int]]:
        """(text ending with a newline, bytes of the file's text it stands for)."""
        while True:
            item = self.queue.get()
            if item is None:
                return
            if isinstance(item, Exception):
                raise SourceError(f"cannot read {self.path}: {item or type(item).__name__}; "
                                  "expected a complete .csv.gz export (corrupted or truncated?)",
                                  path=str(self.path)) from item
            if isinstance(item, BaseException):
                raise item
            yield item

    def compressed_at(self) -> int:
        return self.raw.tell()

    def close(self) -> None:
        self.fh.close()
        self.raw.close()


def _parse(chunk: bytes, names: list[str], columns: list[str], skip: int, first_line: int,
           where: str) -> pa.Table:
    """The chunk's ``columns`` as int64; its first data line is line ``first_line`` of the file."""
    read = pcsv.ReadOptions(column_names=names, use_threads=True, skip_rows=skip,
                            block_size=max(1 << 20, len(chunk) // 4))
    conv = pcsv.ConvertOptions(include_columns=columns, column_types=dict.fromkeys(columns, pa.int64()))
    try:
        return pcsv.read_csv(pa.py_buffer(chunk), read_options=read, convert_options=conv)
    except pa.ArrowInvalid as err:
        bad = _first_bad_value(chunk, names, columns, skip)
        if bad is not None:
            i, column, found = bad
            what = ("expected one field per header line" if column is None else
                    f"column {column} (line {names.index(column) + 1} of the header): expected "
                    "an integer")
            raise SourceError(f"{where}: line {first_line + i}, {what}; found {found}",
                              path=where) from err
        raise SourceError(f"{where}: cannot be parsed near line {first_line}: "
                          f"{str(err).splitlines()[0]}; expected the columns of its header "
                          f"({', '.join(names)})", path=where) from err


def _first_bad_value(chunk: bytes, names: list[str], columns: list[str], skip: int
                     ) -> tuple[int, str | None, str] | None:
    """Where Arrow failed (it names no row): the first data line of the chunk with another number
    of fields than the header (column None) or whose value in one of ``columns`` is not an integer
    (an empty field is null, not an error); with that column and what was found there."""
    at = [(names.index(c), c) for c in columns]
    for i, line in enumerate(chunk.splitlines()[skip:]):
        fields = line.decode(errors="replace").split(",")
        if len(fields) != len(names):
            return i, None, f"{len(fields)} fields, not {len(names)}"
        for j, column in at:
            value = fields[j].strip()
            if value and not value.lstrip("+-").isdigit():
                return i, column, repr(value)
    return None


def _aggregate(table: pa.Table, rmap: RootMap, by_rank: np.ndarray, rank: np.ndarray,
               pool: ThreadPoolExecutor, keep_self: bool, seconds: dict[str, float]
               ) -> tuple[pa.Table, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """The chunk's partial sums per (pre, post) cell pair; with the root ids of its rows, their
    cells (index into ``rmap``, -1 for none) and the number of autapses left out."""
    t = time.perf_counter()
    pre = table.column(_PRE).fill_null(0).to_numpy()
    post = table.column(_POST).fill_null(0).to_numpy()
    ip, iq = pool.map(rmap.lookup, (pre, post))
    ok = (ip >= 0) & (iq >= 0)
    autapses = 0
    if not keep_self:
        autapses = int((ok & (ip == iq)).sum())
        ok &= ip != iq
    t2 = time.perf_counter()
    seconds["map"] += t2 - t
    m = np.int64(max(len(rmap.root_ids), 1))
    key = rank[ip[ok]] * m + rank[iq[ok]]
    size = table.column(_SIZE)
    known = size.is_valid().to_numpy(zero_copy_only=False)[ok]
    sizes = size.fill_null(0).to_numpy()[ok]
    uniq, inv = np.unique(key, return_inverse=True)
    out = pa.table({"pre_nucleus_id": by_rank[uniq // m], "post_nucleus_id": by_rank[uniq % m],
                    "n": np.bincount(inv, minlength=len(uniq)).astype(np.int64),
                    "n_known": np.bincount(inv, known, len(uniq)).astype(np.int64),
                    "size": np.bincount(inv, sizes, len(uniq)).astype(np.int64)})
    seconds["aggregate"] += time.perf_counter() - t2
    return out, pre, post, ip, iq, autapses


def _id_rows(table: pa.Table, keep: np.ndarray, ip: np.ndarray, iq: np.ndarray,
             rmap: RootMap) -> tuple[pa.Table, int]:
    """The chunk's rows between cells (``keep``), in file order: synapse id, their cells' nucleus
    ids (null where a root maps to none) and size; with the number of ids it repeats itself."""
    ids = table.column(_ID).to_numpy()[keep]
    nucleus = rmap.nucleus_ids
    ip, iq = ip[keep], iq[keep]
    out = pa.table({"id": ids,
                    "pre": pa.array(nucleus[np.maximum(ip, 0)], mask=ip < 0),
                    "post": pa.array(nucleus[np.maximum(iq, 0)], mask=iq < 0),
                    "size": table.column(_SIZE).filter(pa.array(keep))})
    return out, int(len(ids) - len(np.unique(ids)))


def _synapse_rows(table: pa.Table, keep: np.ndarray) -> pa.Table:
    """The chunk's synapses between cells (``keep``), in the store's columns."""
    rows = table.filter(pa.array(keep))

    def vox(name: str) -> pa.ChunkedArray:
        return pc.cast(rows.column(name), pa.float64())

    return pa.table({"synapse_id": rows.column(_ID), "pre_root_id": rows.column(_PRE),
                     "post_root_id": rows.column(_POST), "size": vox(_SIZE),
                     "x_vox": vox("ctr_pt_position_x"), "y_vox": vox("ctr_pt_position_y"),
                     "z_vox": vox("ctr_pt_position_z")})


def _sql_path(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _ranges_overlap(id_parts: list[Path]) -> bool:
    """Whether two parts' id ranges (their Parquet statistics) overlap, so an id might repeat
    across chunks."""
    ranges = []
    for part in id_parts:
        meta = pq.read_metadata(part)
        for g in range(meta.num_row_groups):
            stats = meta.row_group(g).column(0).statistics
            if meta.row_group(g).num_rows and stats is not None and stats.has_min_max:
                ranges.append((stats.min, stats.max))
    ranges.sort()
    return any(b[0] <= a[1] for a, b in zip(ranges, ranges[1:], strict=False))


@dataclass
class _Repeats:
    dropped: int = 0
    between_cells: int = 0
    autapses: int = 0


def _find_repeats(con: duckdb.DuckDBPyConnection, id_parts: list[Path], keep_self: bool) -> _Repeats:
    """Make the temporary table ``dropped``: every row between cells whose id an earlier row (in
    file order: chunk, then row) had."""
    con.execute(f"""CREATE TEMP TABLE dropped AS SELECT id, pre, post, size FROM (
        SELECT *, row_number() OVER (PARTITION BY id ORDER BY filename, file_row_number) AS nth
        FROM read_parquet([{', '.join(map(_sql_path, id_parts))}], filename = true,
                          file_row_number = true)) WHERE nth > 1""")
    row = con.execute(f"""SELECT count(*), count(pre IS NOT NULL AND post IS NOT NULL OR NULL),
                                 count(pre = post OR NULL) * {0 if keep_self else 1}
                          FROM dropped""").fetchall()[0]
    return _Repeats(*(int(v) for v in row))


def _combine(work: Path, parts: list[Path], id_parts: list[Path], synapse_parts: list[Path],
             memory_limit: str, *, repeats_possible: bool, keep_self: bool
             ) -> tuple[Path, Path | None, int, _Repeats]:
    """Sum the parts per pair into ``connections.parquet`` sorted by (pre, post); the synapse parts
    into ``synapses.parquet`` sorted by id; repeated ids dropped (``repeats_possible``: look for
    them). DuckDB, bounded by ``memory_limit``, spilling to ``work``. Returns the two files, the
    synapses counted and the repeats dropped."""
    out, syn = work / "connections.parquet", work / "synapses.parquet"
    con = duckdb.connect(config={"memory_limit": memory_limit, "threads": 2,
                                 "temp_directory": str(work / "spill"),
                                 "preserve_insertion_order": False})
    try:
        repeats = _find_repeats(con, id_parts, keep_self) if repeats_possible else _Repeats()
        source = (f"SELECT * FROM read_parquet([{', '.join(map(_sql_path, parts))}])" if parts else
                  "SELECT 1::BIGINT AS pre_nucleus_id, 1::BIGINT AS post_nucleus_id, "
                  "1::BIGINT AS n, 1::BIGINT AS n_known, 1::BIGINT AS size WHERE false")
        if repeats.between_cells:  # take the repeats back out of the partial sums
            source += f"""
                UNION ALL SELECT pre, post, -count(*), -count(size), -coalesce(sum(size), 0)
                FROM dropped WHERE pre IS NOT NULL AND post IS NOT NULL
                                   {'' if keep_self else 'AND pre <> post'}
                GROUP BY pre, post"""
        with atomic_path(out) as tmp:
            con.execute(f"""COPY (SELECT pre_nucleus_id, post_nucleus_id,
                                sum(n)::BIGINT AS n_synapses,
                                CASE WHEN sum(n_known) = sum(n) THEN sum(size)::DOUBLE END AS sum_size
                              FROM ({source}) GROUP BY ALL HAVING sum(n) > 0
                              ORDER BY pre_nucleus_id, post_nucleus_id)
                            TO {_sql_path(tmp)} (FORMAT parquet, COMPRESSION zstd)""")
        row = con.execute(f"SELECT sum(n_synapses) FROM read_parquet({_sql_path(out)})").fetchall()
        counted = int(row[0][0] or 0) if row else 0
        if not synapse_parts:
            return out, None, counted, repeats
        files = ", ".join(map(_sql_path, synapse_parts))
        first = ("SELECT * EXCLUDE (filename, file_row_number) FROM read_parquet("
                 f"[{files}], filename = true, file_row_number = true) QUALIFY row_number() "
                 "OVER (PARTITION BY synapse_id ORDER BY filename, file_row_number) = 1"
                 if repeats.dropped else f"SELECT * FROM read_parquet([{files}])")
        with atomic_path(syn) as tmp:
            con.execute(f"COPY ({first} ORDER BY synapse_id) TO {_sql_path(tmp)} "
                        "(FORMAT parquet, COMPRESSION zstd)")
        return out, syn, counted, repeats
    finally:
        con.close()


def _state(work: Path) -> dict:
    path = work / "state.json"
    state = {"done": 0, "offset": 0, "rows": 0, "autapses": 0, "repeated_in_chunks": 0}
    return {**state, **json.loads(path.read_text())} if path.is_file() else state


def stream_connections(export: ExportFile, rmap: RootMap, work: str | Path, *,
                       synapses_of: np.ndarray | None = None, keep_self: bool = False,
                       chunk_bytes: int = CHUNK_BYTES, memory_limit: str = "2GB",
                       progress: bool = False) -> StreamResult:
    """Aggregate one (header-bound) CSV export of synapses into ``connections``, in chunks.

    Parameters
    ----------
    export
        One data file (``.csv.gz`` or ``.csv``) whose header sidecar names ``pre_pt_root_id``,
        ``post_pt_root_id`` and ``size`` (and, with ``synapses_of``, ``id`` and
        ``ctr_pt_position_x/y/z``).
    rmap
        Root id -> cell (:func:`~etl.aggregate.root_map` of the ``neurons`` table).
    work
        The run's folder: chunk parts, the checkpoint and the results (kept for a resume; the
        caller removes it once the result is stored).
    synapses_of
        Also keep the synapses whose pre and post root ids are both among these (the cells' root
        ids, ambiguous ones included, as the held path does), in the store's ``synapses`` columns.
    keep_self
        Count autapses (default False, as :func:`~etl.aggregate.synapses_to_connections`).
    chunk_bytes
        Text per chunk and checkpoint.
    memory_limit
        DuckDB's limit for the final sums and sort (beyond it, it spills to ``work``).
    progress
        Show a bar of compressed bytes read, with rows and an ETA.

    Raises
    ------
    SourceError
        The export is not one CSV file with a header naming those columns, or cannot be parsed.
    """
    if export.header is None or len(export.paths) != 1 or export.form != "export":
        found = (f"{len(export.paths)} partitions" if len(export.paths) != 1
                 else {"csv": "a CSV with its own header row and no sidecar",
                       "parquet": "Parquet"}.get(export.form, "no sidecar"))
        raise SourceError(f"{export.describe()}: streaming (--stream, --connections-only) reads "
                          "the static dump's layout, one CSV(.gz) data file with a _header.csv "
                          f"sidecar; found {found}. Load it without --stream and "
                          "--connections-only: the held load reads every layout the files source "
                          "knows", path=str(export.paths[0]))
    names = list(export.header.columns)
    columns = [_ID, _PRE, _POST, _SIZE] + (list(_SYNAPSE_EXTRA) if synapses_of is not None else [])
    missing = [c for c in columns if c not in names]
    if missing:
        raise SourceError(f"{export.header.path}: no column {', '.join(missing)}; expected "
                          f"{', '.join(columns)}; found {', '.join(names)}",
                          path=str(export.header.path))
    path, where = export.paths[0], export.describe()
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    state = _state(work)
    resumed, k, rows, autapses = state["done"], state["done"], state["rows"], state["autapses"]
    repeated_in_chunks = state["repeated_in_chunks"]
    seconds = dict.fromkeys(_STAGES, 0.0)
    by_rank = np.sort(rmap.nucleus_ids)
    rank = np.argsort(np.argsort(rmap.nucleus_ids, kind="stable"), kind="stable").astype(np.int64)
    members = None if synapses_of is None else pd.Index(np.unique(np.asarray(synapses_of, np.int64)))
    rmap.lookup(np.zeros(1, np.int64))  # its hash index, built once before the threads use it
    text = _Text(path, state["offset"], chunk_bytes)
    offset = state["offset"]
    bar = tqdm(total=path.stat().st_size, desc=path.name, unit="B", unit_scale=True,
               disable=not progress)
    try:
        with ThreadPoolExecutor(2) as pool:
            t = time.perf_counter()
            for chunk, consumed in text:
                seconds["decompress"] += time.perf_counter() - t
                t = time.perf_counter()
                table = _parse(chunk, names, columns,
                               1 if export.header_row and offset == 0 else 0,
                               rows + int(export.header_row) + 1, where)
                seconds["parse"] += time.perf_counter() - t
                part, pre, post, ip, iq, self_rows = _aggregate(table, rmap, by_rank, rank, pool,
                                                                keep_self, seconds)
                t = time.perf_counter()
                keep = ((ip >= 0) & (iq >= 0) if members is None else
                        (members.get_indexer(pre) >= 0) & (members.get_indexer(post) >= 0))
                ids, repeated = _id_rows(table, keep, ip, iq, rmap)
                repeated_in_chunks += repeated
                with atomic_path(work / f"ids-{k:06d}.parquet") as tmp:
                    pq.write_table(ids, tmp, compression="zstd")
                if members is not None:
                    with atomic_path(work / f"syn-{k:06d}.parquet") as tmp:
                        pq.write_table(_synapse_rows(table, keep), tmp, compression="zstd")
                with atomic_path(work / f"part-{k:06d}.parquet") as tmp:
                    pq.write_table(part, tmp, compression="zstd")
                pause(f"files-stream:before-checkpoint:{k}")
                offset += consumed
                rows += table.num_rows
                autapses += self_rows
                k += 1
                atomic_write_text(work / "state.json", json.dumps(
                    {"done": k, "offset": offset, "rows": rows, "autapses": autapses,
                     "repeated_in_chunks": repeated_in_chunks}))
                seconds["write"] += time.perf_counter() - t
                pause(f"files-stream:after-checkpoint:{k}")
                bar.update(text.compressed_at() - bar.n)
                bar.set_postfix_str(f"{rows:,} rows")
                t = time.perf_counter()
    finally:
        text.close()
        bar.close()
    t = time.perf_counter()
    id_parts = [work / f"ids-{i:06d}.parquet" for i in range(k)]
    connections, synapses, counted, repeats = _combine(
        work, [work / f"part-{i:06d}.parquet" for i in range(k)], id_parts,
        [work / f"syn-{i:06d}.parquet" for i in range(k)] if members is not None else [],
        memory_limit, repeats_possible=bool(repeated_in_chunks) or _ranges_overlap(id_parts),
        keep_self=keep_self)
    seconds["combine"] = time.perf_counter() - t
    return StreamResult(connections, synapses, rows, counted, k, resumed,
                        {s: round(v, 3) for s, v in seconds.items()}, offset,
                        autapses - repeats.autapses, repeats.dropped, repeats.between_cells)
