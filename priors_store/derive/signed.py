"""Signed structural weights (Dale's law) and cell-type pairs from the wiring and cell classes.

A connectome-constrained model (e.g. flyvis) sets each recurrent weight from the wiring: its
magnitude from the synapse count or summed synapse size of the connection, its sign from the
presynaptic cell (Dale's law: an excitatory cell's outgoing weights are >= 0, an inhibitory
cell's <= 0), and optionally a learned scale per (presynaptic type, postsynaptic type) pair. This
module derives those three facts on bare arrays: :func:`cell_signs` (one sign per neuron),
:func:`signed_weight` (the signed matrix) and :func:`type_pairs` (the pair index of every
connection). Matrices are indexed [pre, post] (rows presynaptic), like the connectome.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = ["CLASS_SIGNS", "cell_signs", "signed_weight", "type_pairs"]

#: Sign of a cell's outgoing weights by its class; any other class (or none) is unknown: 0.
CLASS_SIGNS: dict[str, int] = {"excitatory": 1, "inhibitory": -1}


def _labels(values, name: str) -> list[str | None]:
    arr = np.asarray(values, dtype=object)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of one label per neuron; found shape "
                         f"{arr.shape}")
    out: list[str | None] = []
    for v in arr:
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
            out.append(None)
        elif isinstance(v, str):
            out.append(v if v.strip() else None)
        else:
            raise ValueError(f"{name} must hold strings or missing values; found {v!r} "
                             f"({type(v).__name__})")
    return out


def cell_signs(cell_class) -> tuple[np.ndarray, tuple[str, ...]]:
    """The Dale sign of every neuron from its cell class.

    Parameters
    ----------
    cell_class
        ``(N,)`` class labels (``"excitatory"``, ``"inhibitory"``; ``None``/NaN/empty where the
        source has none).

    Returns
    -------
    signs : numpy.ndarray
        ``(N,)`` int64: +1 excitatory, -1 inhibitory, 0 unknown.
    unrecognized : tuple of str
        The sorted distinct labels that are neither class (missing labels are not listed).

    Examples
    --------
    >>> cell_signs(["excitatory", "inhibitory", None, "glia"])
    (array([ 1, -1,  0,  0]), ('glia',))
    """
    labels = _labels(cell_class, "cell_class")
    signs = np.array([CLASS_SIGNS.get(v, 0) if v is not None else 0 for v in labels],
                     dtype=np.int64)
    unrecognized = tuple(sorted({v for v in labels if v is not None and v not in CLASS_SIGNS}))
    return signs, unrecognized


def signed_weight(magnitude: sp.spmatrix | sp.sparray, signs: np.ndarray) -> sp.csr_matrix:
    """The connectome's magnitudes signed by their presynaptic cell.

    Parameters
    ----------
    magnitude
        ``(N, N)`` non-negative [pre, post] matrix: synapse counts or summed synapse sizes.
    signs
        ``(N,)`` +1, -1 or 0 per neuron (:func:`cell_signs`). Rows of sign 0 (unknown class)
        keep their unsigned magnitude: the wiring is known, its sign is not.

    Returns
    -------
    scipy.sparse.csr_matrix
        ``(N, N)`` float64, ``sign[pre] * magnitude[pre, post]`` (``magnitude`` where the sign is
        0); the same support as ``magnitude``.

    Raises
    ------
    ValueError
        If the matrix is not square, holds negative or non-finite values, or ``signs`` does not
        hold one of -1, 0, +1 per row.

    Examples
    --------
    >>> signed_weight(sp.csr_matrix([[0, 2], [3, 0]]), np.array([1, -1])).toarray()
    array([[ 0.,  2.],
           [-3.,  0.]])
    """
    mat = sp.csr_matrix(magnitude, dtype=np.float64)
    s = np.asarray(signs)
    if mat.shape[0] != mat.shape[1]:
        raise ValueError(f"magnitude must be a square (N, N) matrix; found shape {mat.shape}")
    if s.shape != (mat.shape[0],) or not np.isin(s, (-1, 0, 1)).all():
        raise ValueError(f"signs must hold one of -1, 0, +1 per row of magnitude "
                         f"({mat.shape[0]}); found shape {s.shape}, values "
                         f"{sorted(set(np.unique(s).tolist()) - {-1, 0, 1})[:5] or 'in range'}")
    if mat.nnz and (not np.isfinite(mat.data).all() or mat.data.min() < 0):
        raise ValueError("magnitude must hold finite values >= 0 (synapse counts or sizes); found "
                         f"min {mat.data.min()}")
    row_sign = np.where(s == 0, 1, s).astype(np.float64)
    out = sp.csr_matrix(sp.diags(row_sign) @ mat)
    out.eliminate_zeros()
    out.sort_indices()
    return out


def type_pairs(support: sp.spmatrix | sp.sparray,
               cell_type) -> tuple[sp.csr_matrix, tuple[str | None, ...]]:
    """The cell-type-pair index of every connection.

    Parameters
    ----------
    support
        ``(N, N)`` [pre, post] matrix whose non-zero entries are the connections.
    cell_type
        ``(N,)`` type labels (``None``/NaN/empty where unknown: one type of its own).

    Returns
    -------
    pairs : scipy.sparse.csr_matrix
        ``(N, N)`` int64 on the support of ``support``: ``1 + t_pre * T + t_post``, where ``t`` is
        a neuron's index in ``types`` and ``T = len(types)`` (1-based, so that no connection
        holds an explicit zero). ``(value - 1) // T`` and ``(value - 1) % T`` give the pair.
    types : tuple
        The type vocabulary: the sorted known labels, then ``None`` when some neuron has none.

    Examples
    --------
    >>> pairs, types = type_pairs(sp.csr_matrix([[0, 1], [1, 1]]), ["BC", "23P"])
    >>> pairs.toarray(), types
    (array([[0, 3],
           [2, 1]]), ('23P', 'BC'))
    """
    mat = sp.csr_matrix(support)
    labels = _labels(cell_type, "cell_type")
    if mat.shape != (len(labels), len(labels)):
        raise ValueError(f"support must be (N, N) with N = len(cell_type) = {len(labels)}; found "
                         f"shape {mat.shape}")
    mat.eliminate_zeros()
    known = sorted({v for v in labels if v is not None})
    types: tuple[str | None, ...] = tuple(known) + ((None,) if None in labels else ())
    index = {t: i for i, t in enumerate(types)}
    t = np.array([index[v] for v in labels], dtype=np.int64)
    coo = mat.tocoo()
    values = 1 + t[coo.row] * len(types) + t[coo.col]
    out = sp.csr_matrix((values.astype(np.int64), (coo.row, coo.col)), shape=mat.shape)
    out.sort_indices()
    return out, types
