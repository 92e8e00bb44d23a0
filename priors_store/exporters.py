"""Export a prior artifact for any model: npz, safetensors or Parquet (no pickles anywhere).

Each kind becomes one array named after the kind. Sparse kinds are written dense in npz and
safetensors (what models consume) and as (pre, post, value) rows in Parquet. The neuron order
travels with them: ``nucleus_id``, ``root_id``, ``unit_id`` arrays (-1 where unknown) in npz and
safetensors, a ``neurons`` table in Parquet.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from connectome_priors.kernel.files import atomic_path

from .errors import PriorsError
from .prior import Prior

__all__ = ["ExportFormat", "export"]

ExportFormat = Literal["npz", "safetensors", "parquet"]

#: Dense exports of sparse kinds above this many neurons are refused (use parquet).
MAX_DENSE_EXPORT_N = 20000


def _order_arrays(prior: Prior) -> dict[str, np.ndarray]:
    t = prior.neurons
    return {col: t[col].astype("Int64").fillna(-1).to_numpy(dtype=np.int64)
            for col in ("nucleus_id", "root_id", "unit_id")}


def _dense(prior: Prior, kind: str) -> np.ndarray:
    value = prior.get(kind)
    if sp.issparse(value):
        if len(prior) > MAX_DENSE_EXPORT_N:
            raise PriorsError(f"kind {kind!r} has {len(prior)} neurons: too large to export dense; "
                              "use --format parquet")
        value = value.toarray()
    return np.ascontiguousarray(value)


def export(prior: Prior, out: str | os.PathLike, *, fmt: ExportFormat = "npz") -> Path:
    """Write ``prior`` to ``out`` (a file for npz/safetensors, a folder for parquet); return it.

    The file is written to a temporary name beside ``out`` and renamed into place.
    """
    out = Path(out)
    if fmt not in ("npz", "safetensors", "parquet"):
        raise PriorsError(f"unknown export format {fmt!r}; expected npz, safetensors or parquet")
    if out.is_dir():
        shutil.rmtree(out)
    with atomic_path(out) as tmp:
        if fmt == "npz":
            arrays = {kind: _dense(prior, kind) for kind in prior.kinds} | _order_arrays(prior)
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
        elif fmt == "safetensors":
            from safetensors.numpy import save_file  # only this format needs it

            arrays = {kind: _dense(prior, kind) for kind in prior.kinds} | _order_arrays(prior)
            save_file(arrays, str(tmp), metadata={"name": prior.name, "version": prior.version,
                                                  "orientation": "[pre, post]"})
        elif fmt == "parquet":
            tmp.mkdir()
            prior.neurons.to_parquet(tmp / "neurons.parquet", index=False)
            for kind in prior.kinds:
                _kind_table(prior, kind).to_parquet(tmp / f"{kind}.parquet", index=False)
    return out


def _kind_table(prior: Prior, kind: str) -> pd.DataFrame:
    value = prior.get(kind)
    if sp.issparse(value):
        coo = value.tocoo()
        return pd.DataFrame({"pre": coo.row.astype(np.int64), "post": coo.col.astype(np.int64),
                             "value": coo.data})
    if value.ndim == 1:
        return pd.DataFrame({"neuron": np.arange(len(value)), "value": np.asarray(value)})
    n = value.shape[0]
    return pd.DataFrame({"pre": np.repeat(np.arange(n), n), "post": np.tile(np.arange(n), n),
                         "value": np.asarray(value).ravel()})
