"""connectome_priors.etl.sources.cave.chunks: splitting capped chunks, checkpoints, resume (a table-backed fetch)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from connectome_priors.etl.sources.cave.chunks import Chunk, ChunkCache, list_chunks, pull_table, range_chunk
from connectome_priors.etl.sources.cave.client import CaveError


def _table(n: int = 1000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"id": rng.permutation(np.arange(1, 5 * n, 5))[:n],
                         "pre": rng.integers(0, 40, n), "size": rng.integers(1, 100, n)})


def _fetcher(df: pd.DataFrame, cap: int, calls: list):
    """Answer a chunk like the server: filter, then silently cut at ``cap`` rows."""
    def fetch(chunk: Chunk):
        calls.append(chunk)
        if chunk.ids is not None:
            hit = df[df[chunk.column].isin(chunk.ids)]
        else:
            hit = df[(df[chunk.column] >= chunk.lo) & (df[chunk.column] < chunk.hi)]
        return hit.iloc[:cap], len(hit) > cap
    return fetch


def test_split_rules():
    r = Chunk(table="t", column="id", lo=0, hi=100)
    a, b = r.split(pd.DataFrame({"id": [10, 20, 30, 40]}))
    assert (a.lo, a.hi, b.lo, b.hi) == (0, 25, 25, 100)  # at the median id returned
    a, b = Chunk(table="t", column="pre", ids=(1, 2, 3)).split(pd.DataFrame())
    assert (a.ids, b.ids) == ((1,), (2, 3))
    a, b = Chunk(table="t", column="pre", ids=(1,), other_column="post", other_ids=(5, 6)).split(
        pd.DataFrame())
    assert (a.other_ids, b.other_ids) == ((5,), (6,))
    with pytest.raises(CaveError, match="cannot be split further"):
        Chunk(table="t", column="pre", ids=(1,)).split(pd.DataFrame())
    assert Chunk(table="t", column="pre", ids=(1, 2)).key == Chunk(table="t", column="pre", ids=(1, 2)).key
    assert Chunk(table="t", column="pre", ids=(1, 2)).key != Chunk(table="t", column="pre", ids=(1, 3)).key


@pytest.mark.parametrize("kind", ["range", "list"])
def test_capped_pull_is_complete_sorted_and_resumes_from_checkpoints(tmp_path, kind):
    df = _table()
    calls: list = []
    chunks = ([range_chunk("t")] if kind == "range"
              else list_chunks("t", "pre", range(40), 20))
    cache = ChunkCache(tmp_path / "cache")
    stats: dict = {}
    out = pull_table(chunks, _fetcher(df, 60, calls), cache, stats=stats)
    assert out["id"].tolist() == sorted(df["id"])
    assert out.set_index("id").sort_index().equals(df.set_index("id").sort_index())
    assert stats["capped"] >= 1 and stats["queries"] == len(calls)
    if kind == "list":
        assert stats["presplit"] >= 1  # later chunks split before being sent
    again: list = []
    stats2: dict = {}
    out2 = pull_table(chunks, _fetcher(df, 60, again), cache, stats=stats2)
    assert again == [] and stats2["from_checkpoint"] > 0  # everything from checkpoints
    assert out2.equals(out)
    cache.clear()
    assert not (tmp_path / "cache").exists()
