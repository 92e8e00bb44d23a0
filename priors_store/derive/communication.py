"""Weighted communicability of a network: C = expm(S^-1/2 |A| S^-1/2), diagonal zeroed."""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.linalg
import scipy.sparse as sp

__all__ = ["communicability", "node_strength", "ZeroStrength", "Strength"]

#: What to do with nodes of zero strength: ``"isolate"`` or ``"raise"``.
ZeroStrength = Literal["isolate", "raise"]

#: Which sums of ``|A|`` are the node strengths: ``"out"`` (row sums) or ``"in"`` (column sums).
Strength = Literal["out", "in"]


def node_strength(weights: np.ndarray | sp.spmatrix, *, strength: Strength = "out") -> np.ndarray:
    """Node strengths of a weighted directed matrix indexed [pre, post].

    Parameters
    ----------
    weights
        ``(N, N)`` dense or sparse matrix, rows presynaptic (source), columns postsynaptic
        (target), as every artifact of this package.
    strength
        ``"out"``: row sums of ``|A|``, each node's total outgoing weight — what the study (and
        seRNN) computed on a Keras kernel, which is also [pre, post]. ``"in"``: column sums,
        total incoming weight. For a PyTorch ``weight_hh`` ([post, pre]) pass its transpose.

    Returns
    -------
    numpy.ndarray
        ``(N,)`` float64 strengths, in the unit of the weights.

    Examples
    --------
    >>> node_strength(np.array([[0.0, 2.0], [-1.0, 0.0]]))
    array([2., 1.])
    """
    mat = _as_square(weights)
    axis = {"out": 1, "in": 0}.get(strength)
    if axis is None:
        raise ValueError(f"strength must be 'out' (row sums) or 'in' (column sums); "
                         f"found {strength!r}")
    return np.asarray(abs(mat).sum(axis=axis), dtype=np.float64).ravel()


def communicability(weights: np.ndarray | sp.spmatrix, *,
                    zero_strength: ZeroStrength = "isolate",
                    strength: Strength = "out") -> np.ndarray:
    """Weighted communicability ``expm(S^-1/2 |A| S^-1/2)`` with a zeroed diagonal.

    ``S`` is the diagonal matrix of node strengths (row sums of ``|A|`` by default, i.e.
    out-strengths of an [pre, post] matrix, as the study computed them).

    Nodes of zero strength have no defined normalization. With ``zero_strength="isolate"`` (the
    default) their rows and columns of the normalized matrix ``S^-1/2 |A| S^-1/2`` are set to 0,
    so they neither send nor receive communicability: their rows and columns of C are exactly 0.
    (For ``strength="out"`` such a node has no outgoing weight, so this drops only the weight
    *into* it.) The study instead added eps = 1e-10 to the strengths, which turns any weight into
    a zero-strength node into a value of order 1e5 (artefacts up to 1.4e5 in its runs).
    ``zero_strength="raise"`` refuses such input.

    Parameters
    ----------
    weights
        ``(N, N)`` dense or scipy.sparse matrix indexed [pre, post]; signs are ignored (``|A|``).
    zero_strength
        ``"isolate"`` or ``"raise"`` (see above).
    strength
        ``"out"`` (row sums, the study's choice) or ``"in"`` (column sums).

    Returns
    -------
    numpy.ndarray
        ``(N, N)`` float64 dense communicability, indexed like ``weights``, zero diagonal,
        non-negative, dimensionless.

    Raises
    ------
    ValueError
        If the matrix is not square or has non-finite entries, or ``zero_strength="raise"`` and
        some node has zero strength.

    Examples
    --------
    >>> c = communicability(np.array([[0.0, 1.0], [1.0, 0.0]]))
    >>> bool(np.isclose(c[0, 1], np.sinh(1.0)))
    True
    """
    if zero_strength not in ("isolate", "raise"):
        raise ValueError(f"zero_strength must be 'isolate' or 'raise'; found {zero_strength!r}")
    mat = abs(_as_square(weights))
    s = node_strength(mat, strength=strength)
    zero = s == 0
    if zero.any() and zero_strength == "raise":
        nodes = np.flatnonzero(zero)
        raise ValueError(f"{nodes.size} node(s) have zero {strength}-strength (first: "
                         f"{nodes[:10].tolist()}); expected every node to have weight, or use "
                         "zero_strength='isolate'")
    inv_sqrt = np.zeros_like(s)
    inv_sqrt[~zero] = 1.0 / np.sqrt(s[~zero])
    if sp.issparse(mat):
        norm = sp.diags(inv_sqrt) @ mat @ sp.diags(inv_sqrt)
        norm = norm.toarray()
    else:
        norm = inv_sqrt[:, None] * mat * inv_sqrt[None, :]
    out = scipy.linalg.expm(norm)
    np.fill_diagonal(out, 0.0)
    out[zero, :] = 0.0  # expm gives 1 on their diagonal and 0 elsewhere; make it explicit
    out[:, zero] = 0.0
    return out


def _as_square(weights):
    if sp.issparse(weights):
        mat = sp.csr_matrix(weights, dtype=np.float64)
        finite = np.all(np.isfinite(mat.data))
    else:
        mat = np.asarray(weights, dtype=np.float64)
        finite = np.all(np.isfinite(mat))
    if mat.ndim != 2 or mat.shape[0] != mat.shape[1] or mat.shape[0] == 0:
        raise ValueError(f"weights must be a non-empty square (N, N) matrix; found shape "
                         f"{mat.shape}")
    if not finite:
        raise ValueError("weights hold non-finite entries (NaN or inf); expected finite weights")
    return mat
