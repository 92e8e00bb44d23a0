"""Directed synapse-count (and summed synapse-size) matrices from connection lists."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["connectome", "synapse_size"]


def _entries(pre_idx, post_idx, values, n: int, values_name: str):
    pre = np.asarray(pre_idx)
    post = np.asarray(post_idx)
    vals = np.asarray(values)
    if not (pre.ndim == post.ndim == vals.ndim == 1) or not (pre.size == post.size == vals.size):
        raise ValueError(f"pre_idx, post_idx and {values_name} must be 1-D arrays of equal length; "
                         f"found shapes {pre.shape}, {post.shape}, {vals.shape}")
    if int(n) != n or n < 0:
        raise ValueError(f"n must be a non-negative integer number of neurons; found {n}")
    n = int(n)
    for name, idx in (("pre_idx", pre), ("post_idx", post)):
        if idx.size and idx.dtype.kind not in "iu":
            raise ValueError(f"{name} must hold integer neuron indices; found dtype {idx.dtype}")
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise ValueError(f"{name} must lie in [0, {n}); found values from {idx.min()} "
                             f"to {idx.max()}")
    if vals.size and not np.all(np.isfinite(vals.astype(np.float64))):
        raise ValueError(f"{values_name} holds non-finite values; expected finite numbers")
    if vals.size and vals.min() < 0:
        raise ValueError(f"{values_name} must be >= 0; found {vals.min()}")
    return pre.astype(np.int64), post.astype(np.int64), vals, n


def connectome(pre_idx: np.ndarray, post_idx: np.ndarray, counts: np.ndarray, *, n: int,
               sizes: np.ndarray | None = None) -> sp.csr_matrix:
    """Directed synapse-count matrix, indexed [pre, post], from a list of connections.

    Parameters
    ----------
    pre_idx, post_idx
        ``(E,)`` integer indices in ``[0, n)`` of the presynaptic and postsynaptic neuron.
    counts
        ``(E,)`` non-negative synapse counts per listed connection. Repeated (pre, post) pairs
        are summed.
    n
        Number of neurons (the matrix is ``n x n``).
    sizes
        Optional ``(E,)`` summed synapse sizes (voxels, as the source reports them). When given,
        the summed-size matrix is returned instead of the counts (see :func:`synapse_size`).

    Returns
    -------
    scipy.sparse.csr_matrix
        ``(n, n)``; rows presynaptic, columns postsynaptic. int64 counts, or float64 summed sizes
        when ``sizes`` is given. Duplicates summed, explicit zeros removed, indices sorted.

    Examples
    --------
    >>> connectome([0, 0, 1], [1, 1, 2], [2, 1, 5], n=3).toarray()
    array([[0, 3, 0],
           [0, 0, 5],
           [0, 0, 0]])
    """
    if sizes is not None:
        return synapse_size(pre_idx, post_idx, sizes, n=n)
    pre, post, vals, n = _entries(pre_idx, post_idx, counts, n, "counts")
    if vals.size and vals.dtype.kind == "f" and not np.all(vals == np.round(vals)):
        raise ValueError("counts must be whole numbers of synapses; found fractional values")
    return _csr(pre, post, vals.astype(np.int64), n)


def synapse_size(pre_idx: np.ndarray, post_idx: np.ndarray, sizes: np.ndarray, *,
                 n: int) -> sp.csr_matrix:
    """Directed summed-synapse-size matrix, indexed [pre, post].

    Parameters
    ----------
    pre_idx, post_idx
        ``(E,)`` integer indices in ``[0, n)``.
    sizes
        ``(E,)`` non-negative summed synapse sizes per listed connection (the source's unit,
        voxels for MICrONS). Repeated (pre, post) pairs are summed.
    n
        Number of neurons.

    Returns
    -------
    scipy.sparse.csr_matrix
        ``(n, n)`` float64; rows presynaptic, columns postsynaptic.

    Examples
    --------
    >>> synapse_size([0, 1], [1, 0], [3000.0, 900.0], n=2).toarray()
    array([[   0., 3000.],
           [ 900.,    0.]])
    """
    pre, post, vals, n = _entries(pre_idx, post_idx, sizes, n, "sizes")
    return _csr(pre, post, vals.astype(np.float64), n)


def _csr(pre: np.ndarray, post: np.ndarray, vals: np.ndarray, n: int) -> sp.csr_matrix:
    mat = sp.coo_matrix((vals, (pre, post)), shape=(n, n)).tocsr()  # sums duplicates
    mat.eliminate_zeros()
    mat.sort_indices()
    return mat
