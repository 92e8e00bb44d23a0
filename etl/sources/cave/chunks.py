"""Big CAVE tables in chunks, split while the server caps them, checkpointed per chunk.

A chunk is a query: either an id range ``lo <= column < hi`` or ``column IN (ids)`` (optionally
with a second, fixed ``IN`` filter). The server silently cuts a result at its row cap (only a
``Warning`` header says so); a capped chunk is split -- a range at the median id it returned, a
list in halves -- until no piece is capped. Offsets are never used: without an ORDER BY they page
through an unordered result.

Each finished chunk is written (temporary file, then rename) to
``<cache>/<table>/<key>.parquet``; a split leaves ``<key>.split.json`` naming its pieces. A killed
pull therefore resumes where it stopped, and since the assembled table is sorted by ``id`` it is
identical to an uninterrupted pull.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from connectome_priors.kernel.files import atomic_path, atomic_write_text

from .client import CaveError

__all__ = ["Chunk", "ChunkCache", "pull_table", "range_chunk", "list_chunks"]

log = logging.getLogger(__name__)

#: Upper end of the first id range (ids are positive int64).
ID_MAX = 2**62


@dataclass(frozen=True)
class Chunk:
    """One query of a chunked pull."""

    table: str
    """CAVE table."""
    column: str
    """Column the chunk bounds (``id`` for ranges, a root id column for lists)."""
    lo: int | None = None
    """Inclusive lower id (range chunks)."""
    hi: int | None = None
    """Exclusive upper id (range chunks)."""
    ids: tuple[int, ...] | None = None
    """Allowed values of ``column`` (list chunks)."""
    other_column: str | None = None
    """Column of a second IN filter (e.g. ``post_pt_root_id``)."""
    other_ids: tuple[int, ...] | None = None
    """Allowed values of ``other_column``."""

    @property
    def key(self) -> str:
        """Stable name of the chunk (sha256 of its definition)."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:24]

    def filters(self) -> dict:
        """Keyword filters of ``MaterializationClient.query_table``."""
        if self.ids is not None:
            inn = {self.column: list(self.ids)}
            if self.other_column is not None:
                inn[self.other_column] = list(self.other_ids or ())
            return {"filter_in_dict": inn}
        return {"filter_greater_equal_dict": {self.column: int(self.lo)},
                "filter_less_dict": {self.column: int(self.hi)}}

    def split(self, returned: pd.DataFrame) -> list[Chunk]:
        """Two smaller chunks covering this one (``returned``: the capped result)."""
        if self.ids is not None:
            if len(self.ids) > 1:
                half = len(self.ids) // 2
                return [Chunk(**{**asdict(self), "ids": self.ids[:half]}),
                        Chunk(**{**asdict(self), "ids": self.ids[half:]})]
            if self.other_ids is not None and len(self.other_ids) > 1:
                half = len(self.other_ids) // 2
                return [Chunk(**{**asdict(self), "other_ids": self.other_ids[:half]}),
                        Chunk(**{**asdict(self), "other_ids": self.other_ids[half:]})]
            raise CaveError(f"{self.table}: the server capped a query for one {self.column} "
                            f"({self.ids[0]}) and it cannot be split further; raise the server's "
                            "row limit or lower the chunk", path=self.table)
        if self.hi - self.lo <= 1:
            raise CaveError(f"{self.table}: the server capped a query for the single id {self.lo}",
                            path=self.table)
        mid = None
        if self.column in returned.columns and len(returned):
            mid = int(np.median(returned[self.column].to_numpy(np.int64)))
        if mid is None or not self.lo < mid < self.hi:
            mid = self.lo + (self.hi - self.lo) // 2
        return [Chunk(**{**asdict(self), "hi": mid}), Chunk(**{**asdict(self), "lo": mid})]


def range_chunk(table: str, column: str = "id") -> Chunk:
    """A single chunk spanning every id of ``table``."""
    return Chunk(table=table, column=column, lo=0, hi=ID_MAX)


def list_chunks(table: str, column: str, ids, size: int, *, other_column: str | None = None,
                other_ids=None) -> list[Chunk]:
    """``ids`` (sorted, unique) cut into chunks of at most ``size``."""
    ids = sorted({int(i) for i in ids})
    other = None if other_ids is None else tuple(sorted({int(i) for i in other_ids}))
    return [Chunk(table=table, column=column, ids=tuple(ids[i:i + size]), other_column=other_column,
                  other_ids=other) for i in range(0, len(ids), max(1, size))]


class ChunkCache:
    """Checkpoints of one pull: ``<root>/<table>/<key>.parquet`` and ``<key>.split.json``."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def _dir(self, chunk: Chunk) -> Path:
        return self.root / chunk.table

    def get(self, chunk: Chunk) -> pa.Table | None:
        """The finished chunk's rows, or None."""
        path = self._dir(chunk) / f"{chunk.key}.parquet"
        return pq.read_table(path) if path.is_file() else None

    def put(self, chunk: Chunk, table: pa.Table) -> pa.Table:
        """Store a finished chunk atomically; returns the rows as they will be read back."""
        d = self._dir(chunk)
        d.mkdir(parents=True, exist_ok=True)
        final = d / f"{chunk.key}.parquet"
        with atomic_path(final) as tmp:
            pq.write_table(table, tmp)
            if pq.read_metadata(tmp).num_rows != table.num_rows:
                raise CaveError(f"checkpoint {final} lost rows while writing", path=str(final))
        return pq.read_table(final)

    def pieces(self, chunk: Chunk) -> list[Chunk] | None:
        """The chunks a capped chunk was split into, or None."""
        path = self._dir(chunk) / f"{chunk.key}.split.json"
        if not path.is_file():
            return None
        out = []
        for d in json.loads(path.read_text()):
            for k in ("ids", "other_ids"):
                if d[k] is not None:
                    d[k] = tuple(d[k])
            out.append(Chunk(**d))
        return out

    def put_pieces(self, chunk: Chunk, pieces: list[Chunk]) -> None:
        """Record that ``chunk`` was split into ``pieces`` (atomically)."""
        d = self._dir(chunk)
        d.mkdir(parents=True, exist_ok=True)
        atomic_write_text(d / f"{chunk.key}.split.json", json.dumps([asdict(p) for p in pieces]))

    def clear(self) -> None:
        """Delete every checkpoint of this pull."""
        shutil.rmtree(self.root, ignore_errors=True)


def pull_table(chunks: list[Chunk], fetch: Callable[[Chunk], tuple[pd.DataFrame, bool]],
               cache: ChunkCache, *, progress: bool = False, stats: dict | None = None) -> pd.DataFrame:
    """Run ``chunks`` (checkpointed, split while capped) and return all rows sorted by ``id``.

    Parameters
    ----------
    chunks
        The initial chunks (disjoint).
    fetch
        Runs one chunk: returns its rows and whether the server capped them.
    cache
        Where finished chunks and splits are checkpointed.
    stats
        If given, counts ``queries``, ``capped``, ``presplit``, ``from_checkpoint`` and ``rows``.

    Notes
    -----
    Once a list chunk of ``n`` ids comes back capped, later list chunks longer than ``n / 2`` are
    split before they are sent (a capped answer is a wasted transfer). Every split is recorded
    in the checkpoints, so a resumed pull follows the same chunks.
    """
    stats = stats if stats is not None else {}
    max_ids = 2**62  # list chunks longer than this are split without a query (see below)
    for k in ("queries", "capped", "presplit", "from_checkpoint", "rows"):
        stats.setdefault(k, 0)
    todo = list(reversed(chunks))
    parts: list[pa.Table] = []
    table = chunks[0].table if chunks else "?"
    with tqdm(total=len(chunks), desc=table, unit="chunk", disable=not progress) as bar:
        while todo:
            chunk = todo.pop()
            done = cache.get(chunk)
            if done is not None:
                stats["from_checkpoint"] += 1
                parts.append(done)
                bar.update(1)
                continue
            pieces = cache.pieces(chunk)
            if pieces is None and chunk.ids is not None and len(chunk.ids) > max_ids:
                # an earlier chunk of this pull was capped at a smaller size: split before asking
                pieces = chunk.split(pd.DataFrame())
                stats["presplit"] += 1
                cache.put_pieces(chunk, pieces)
            if pieces is None:
                df, capped = fetch(chunk)
                stats["queries"] += 1
                if not capped:
                    parts.append(cache.put(chunk, pa.Table.from_pandas(df, preserve_index=False)))
                    bar.update(1)
                    continue
                stats["capped"] += 1
                pieces = chunk.split(df)
                if chunk.ids is not None and len(chunk.ids) > 1:
                    max_ids = min(max_ids, len(pieces[0].ids))
                log.info("%s: capped at %d rows; split into %d chunks", table, len(df), len(pieces))
                cache.put_pieces(chunk, pieces)
            todo.extend(reversed(pieces))
            bar.total += len(pieces) - 1
            bar.refresh()
    if not parts:
        return pd.DataFrame()
    merged = pa.concat_tables(parts, promote_options="permissive")
    df = merged.to_pandas()
    if "id" in df.columns:
        df = df.drop_duplicates("id").sort_values("id", kind="stable").reset_index(drop=True)
    stats["rows"] += len(df)
    return df
