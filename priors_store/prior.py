"""A loaded prior artifact (:class:`Prior`): its neuron order and every kind, indexed consistently.

:meth:`Prior.open` is the one way a published folder becomes a :class:`Prior`, for local
artifacts (:func:`~.reader.load`) and cached copies of remote ones (:func:`~.remote.load_url`)
alike: the manifest is checked and every file's presence and size, and each file's sha256 when its
data is first read. Matrices are memory-mapped (copy-on-write), so opening a 15k x 15k matrix
costs no copy. :meth:`Prior.select` re-indexes every kind consistently for a sub-population.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .errors import ArtifactIntegrityError
from .verification import check_hash, verify

__all__ = ["As", "Prior"]

#: What :meth:`Prior.get` returns a kind as.
As = Literal["numpy", "sparse", "torch"]


class Prior:
    """A loaded prior artifact: its neuron order and every kind, indexed consistently.

    Matrices are [pre, post] (rows presynaptic) like the connectome.
    """

    def __init__(self, directory: Path, manifest: dict, index: np.ndarray | None = None,
                 verified: set[str] | None = None) -> None:
        self.directory = directory
        self.manifest = manifest
        self._index = index
        self._verified = verified if verified is not None else set()
        table = pd.read_parquet(self._file("neurons.parquet"))
        self.neurons: pd.DataFrame = (table if index is None
                                      else table.iloc[index].reset_index(drop=True))
        """The neuron order: row i of every matrix is neuron i of this table."""

    @classmethod
    def open(cls, directory: str | os.PathLike) -> Prior:
        """The published artifact in ``directory``, its manifest checked (schema, kinds, version
        re-derived, folder names) and every file's presence and size; each file's sha256 is
        checked when its data is first read.

        Raises
        ------
        ArtifactIntegrityError
            Naming the first file or manifest field that differs from what the build wrote.
        """
        directory = Path(directory)
        return cls(directory, verify(directory, hashes=False))

    @property
    def name(self) -> str:
        """Artifact name."""
        return self.manifest["name"]

    @property
    def version(self) -> str:
        """Version id (of the recipe; manifest_version 1: of the content)."""
        return self.manifest["version"]

    @property
    def kinds(self) -> list[str]:
        """Names of the kinds this artifact holds."""
        return sorted(self.manifest["kinds"])

    def __len__(self) -> int:
        return len(self.neurons)

    def __contains__(self, kind: str) -> bool:
        return kind in self.manifest["kinds"]

    def __repr__(self) -> str:
        return f"Prior({self.name}@{self.version}, {len(self)} neurons, kinds={self.kinds})"

    def _file(self, filename: str) -> Path:
        """Path of one of the artifact's files, its sha256 checked on first use."""
        path = self.directory / filename
        if filename not in self._verified:
            sums = {f["path"]: f["sha256"] for f in self.manifest["files"]}
            if filename not in sums:
                raise ArtifactIntegrityError(f"{path}: not listed in the manifest", path=str(path))
            check_hash(path, sums[filename])
            self._verified.add(filename)
        return path

    def _entry(self, kind: str) -> dict:
        try:
            return self.manifest["kinds"][kind]
        except KeyError:
            raise KeyError(f"artifact {self.name}@{self.version} has no kind {kind!r}; "
                           f"it has {self.kinds}") from None

    def get(self, kind: str, *, as_: As | None = None):
        """Return ``kind`` as numpy (memory-mapped), scipy.sparse CSR or a torch tensor.

        Default: numpy for dense and label kinds, sparse for sparse kinds.
        """
        entry = self._entry(kind)
        path = self._file(entry["file"])
        if entry["format"] == "npz-sparse":
            value = sp.load_npz(path).tocsr()
            if self._index is not None:
                value = value[self._index][:, self._index]
            if as_ in (None, "sparse"):
                return value
            dense = value.toarray()
        else:
            # copy-on-write map: no copy, no write to the file, writable for torch.from_numpy
            dense = np.load(path, mmap_mode="c", allow_pickle=False)
            if self._index is not None:
                dense = dense[np.ix_(self._index, self._index)] if dense.ndim == 2 else dense[self._index]
            if as_ == "sparse":
                return sp.csr_matrix(dense)
        if as_ == "torch":
            import torch  # optional consumer; keeps numpy users free of torch import cost

            return torch.from_numpy(dense)
        return dense

    __getitem__ = get

    def stats(self, kind: str) -> dict:
        """Summary numbers recorded for ``kind`` at build time (e.g. modularity Q)."""
        return dict(self._entry(kind).get("stats", {}))

    def select(self, nucleus_ids: Sequence[int]) -> Prior:
        """The sub-population ``nucleus_ids`` (in that order), every kind re-indexed alike."""
        table = pd.read_parquet(self._file("neurons.parquet"))
        base = self._index if self._index is not None else np.arange(len(table))
        position = pd.Series(np.arange(len(base)), index=table.nucleus_id.to_numpy()[base])
        wanted = pd.Index(np.asarray(nucleus_ids, dtype=np.int64))
        missing = wanted.difference(position.index)
        if len(missing):
            raise KeyError(f"{len(missing)} nucleus id(s) are not in {self.name}@{self.version}, "
                           f"e.g. {missing[:5].tolist()}")
        return Prior(self.directory, self.manifest, base[position.loc[wanted].to_numpy()],
                     self._verified)
