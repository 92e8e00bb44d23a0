"""The deterministic part of the study's biological weight initialization."""

from __future__ import annotations

import numpy as np

from .distance import minmax_normalized

__all__ = ["w_bio_modulation", "symmetrize_lower"]


def symmetrize_lower(matrix: np.ndarray) -> np.ndarray:
    """Mirror the lower triangle (and diagonal) onto the upper one.

    The study's ``sttc_matrix.npy`` fills only its lower triangle; this is how its consumers
    read it. A matrix that is already symmetric comes back unchanged.

    Parameters
    ----------
    matrix
        ``(N, N)`` array.

    Returns
    -------
    numpy.ndarray
        ``(N, N)`` float64 symmetric array equal to ``matrix`` on and below the diagonal.

    Examples
    --------
    >>> symmetrize_lower(np.array([[1.0, 0.0], [0.3, 1.0]]))
    array([[1. , 0.3],
           [0.3, 1. ]])
    """
    arr = _square(matrix, "matrix")
    lower = np.tril(arr)
    return lower + np.tril(arr, -1).T


def w_bio_modulation(corr: np.ndarray, sttc: np.ndarray) -> np.ndarray:
    """``minmax(corr) * minmax(STTC symmetrized)``: the study's biological modulation matrix.

    Each matrix is min-max normalized over all its entries, diagonal included (as the study did;
    see :func:`~priors_store.derive.distance.minmax_normalized`). ``sttc`` is symmetrized from its
    lower triangle first, so the released lower-triangular ``sttc_matrix.npy`` and the symmetric
    output of :func:`~priors_store.derive.functional.sttc` give the same result. Entries that are
    undefined in either input (NaN: pairs with a silent unit) get weight 0 — no functional
    evidence, no modulation — and are ignored when finding the ranges.

    Parameters
    ----------
    corr
        ``(N, N)`` Pearson correlation (dimensionless).
    sttc
        ``(N, N)`` STTC, symmetric or lower-triangular (dimensionless).

    Returns
    -------
    numpy.ndarray
        ``(N, N)`` float64 in [0, 1], symmetric, no NaN. Indexed like the inputs; as an RNN
        recurrent matrix it is read [pre, post] (it is symmetric, so the orientation is moot).

    Examples
    --------
    >>> c = np.array([[1.0, 0.2], [0.2, 1.0]])
    >>> s = np.array([[1.0, 0.0], [0.5, 1.0]])
    >>> w_bio_modulation(c, s)
    array([[1., 0.],
           [0., 1.]])
    """
    c = _square(corr, "corr")
    s = symmetrize_lower(sttc)
    if c.shape != s.shape:
        raise ValueError(f"corr has shape {c.shape} but sttc has shape {s.shape}; expected the "
                         "same (N, N) population")
    out = minmax_normalized(c) * minmax_normalized(s)
    return np.nan_to_num(out, nan=0.0)


def _square(matrix: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(matrix, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"{name} must be a square (N, N) matrix; found shape {arr.shape}")
    return arr
