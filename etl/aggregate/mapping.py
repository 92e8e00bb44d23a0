"""root id -> nucleus id lookup shared by every engine."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import pyarrow as pa

from ..errors import SourceError

__all__ = ["RootMap", "root_map"]


@dataclass(frozen=True)
class RootMap:
    """Sorted root ids with their nucleus ids; root ids that name two or more nuclei are left out."""

    root_ids: np.ndarray
    """int64, sorted ascending, unique, all >= 1."""
    nucleus_ids: np.ndarray
    """int64, the nucleus of each root id."""
    n_ambiguous: int
    """Root ids dropped because more than one nucleus carries them (merged cells)."""

    @cached_property
    def _index(self) -> pd.Index:
        return pd.Index(self.root_ids)

    def lookup(self, roots: np.ndarray) -> np.ndarray:
        """Index into :attr:`root_ids` of each root, or -1 where it maps to no neuron."""
        return self._index.get_indexer(np.asarray(roots, dtype=np.int64)).astype(np.int64)

    def frame(self) -> pd.DataFrame:
        """The mapping as a DataFrame (root_id, nucleus_id)."""
        return pd.DataFrame({"root_id": self.root_ids, "nucleus_id": self.nucleus_ids})


def root_map(neurons: pa.Table | pd.DataFrame) -> RootMap:
    """Build the root id -> nucleus id map of a neurons table (columns nucleus_id, root_id).

    Null or non-positive root ids are ignored. A root id carried by two or more nuclei (a merge
    in the segmentation) is ambiguous: its synapses cannot be assigned to one cell, so it is left
    out and counted in :attr:`RootMap.n_ambiguous`.
    """
    if isinstance(neurons, pd.DataFrame):
        neurons = pa.Table.from_pandas(neurons, preserve_index=False)
    for col in ("nucleus_id", "root_id"):
        if col not in neurons.column_names:
            raise SourceError(f"neurons table: expected a column {col!r}; found columns "
                              f"{', '.join(neurons.column_names)}")
    nuc = neurons.column("nucleus_id").cast(pa.int64()).to_numpy(zero_copy_only=False)
    roots = neurons.column("root_id").cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
    keep = roots > 0
    nuc, roots = nuc[keep], roots[keep]
    order = np.argsort(roots, kind="stable")
    roots, nuc = roots[order], nuc[order]
    uniq, first, counts = np.unique(roots, return_index=True, return_counts=True)
    single = counts == 1
    return RootMap(uniq[single].astype(np.int64), nuc[first[single]].astype(np.int64),
                   int((~single).sum()))
