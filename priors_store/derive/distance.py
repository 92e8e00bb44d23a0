"""Pairwise soma distances, and the study's min-max normalized form."""

from __future__ import annotations

import numpy as np

__all__ = ["distance_um", "minmax_normalized"]


def distance_um(positions_um: np.ndarray, other_um: np.ndarray | None = None) -> np.ndarray:
    """Pairwise Euclidean distance between soma positions.

    Parameters
    ----------
    positions_um
        ``(N, 3)`` soma positions in micrometres (any ``(N, d)`` works; the unit carries through).
        Convert released voxel positions first: x, y times 4 nm, z times 40 nm.
    other_um
        Optional ``(M, 3)`` second set of positions, um: then the ``(N, M)`` distances from each
        of ``positions_um`` to each of ``other_um`` (for computing a large matrix block by block).

    Returns
    -------
    numpy.ndarray
        ``(N, N)`` float64 distances in um, symmetric, exactly 0 on the diagonal (``(N, M)``
        with ``other_um``; identical points are exactly 0 apart).

    Examples
    --------
    >>> distance_um(np.array([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0]]))
    array([[0., 5.],
           [5., 0.]])
    >>> distance_um(np.array([[0.0, 0.0, 0.0]]), np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0]]))
    array([[5., 0.]])
    """
    pos = _positions(positions_um, "positions_um")
    other = pos if other_um is None else _positions(other_um, "other_um")
    if other.shape[1] != pos.shape[1]:
        raise ValueError(f"other_um has {other.shape[1]} coordinates per point but positions_um "
                         f"has {pos.shape[1]}; expected the same")
    diff = pos[:, None, :] - other[None, :, :]
    dist = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
    if other_um is None:
        np.fill_diagonal(dist, 0.0)
    return dist


def _positions(positions: np.ndarray, name: str) -> np.ndarray:
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[0] == 0 or pos.shape[1] == 0:
        raise ValueError(f"{name} must be an (N, 3) array of coordinates in um with N >= 1; "
                         f"found shape {pos.shape}")
    if not np.all(np.isfinite(pos)):
        raise ValueError(f"{name} holds non-finite coordinates; expected finite um values")
    return pos


def minmax_normalized(matrix: np.ndarray) -> np.ndarray:
    """Min-max normalize a matrix to [0, 1] over all its entries, as the study did.

    The minimum and maximum are taken over every entry, the diagonal included (for a distance
    matrix the diagonal zeros set the minimum, so distances are simply divided by the largest;
    for a correlation matrix the unit diagonal sets the maximum). NaN entries are ignored when
    finding the range and stay NaN.

    Parameters
    ----------
    matrix
        Any real array (typically ``(N, N)``), in any unit.

    Returns
    -------
    numpy.ndarray
        float64 array of the same shape, ``(x - min) / (max - min)``, dimensionless in [0, 1].

    Raises
    ------
    ValueError
        If the matrix is empty, all NaN, or constant (the range is 0, so it cannot be scaled).

    Examples
    --------
    >>> minmax_normalized(np.array([[0.0, 5.0], [5.0, 0.0]]))
    array([[0., 1.],
           [1., 0.]])
    """
    arr = np.asarray(matrix, dtype=np.float64)
    if arr.size == 0 or np.all(np.isnan(arr)):
        raise ValueError(f"minmax_normalized needs at least one non-NaN entry; found shape "
                         f"{arr.shape} with no finite value")
    if np.any(np.isinf(arr)):
        raise ValueError("minmax_normalized got infinite entries; expected finite values or NaN")
    lo, hi = np.nanmin(arr), np.nanmax(arr)
    if hi == lo:
        raise ValueError(f"minmax_normalized got a constant matrix (every entry {lo}); "
                         "expected a range to scale")
    return (arr - lo) / (hi - lo)
