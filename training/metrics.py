"""Organization metrics of a trained recurrent matrix (docs/method.md#metrics, corrected nulls).

Pass ``model.effective_recurrent()[r]`` (or any ``(N, N)`` array); the graph is built from
``|W|``: entries above the 90th percentile kept, binarized, made undirected, self-loops dropped.

Small-world sigma uses the *efficiency* form, which stays defined on disconnected graphs:
``sigma = (C / C_null) / (L / L_null)`` with the characteristic path length replaced by the
inverse global efficiency, i.e. ``sigma = (C / C_null) * (E / E_null)``; ``C`` is the mean local
clustering (0 for nodes of degree < 2) and the nulls are Erdos-Renyi G(n, m) graphs with the
*same number of edges* (density-matched, unlike the study's nulls, flaw 8), drawn from a seeded
numpy generator.
"""

from __future__ import annotations

import igraph as ig
import numpy as np
import torch
from scipy.stats import gaussian_kde

__all__ = ["binarize", "modularity", "clustering", "global_efficiency", "small_world_sigma",
           "assortativity", "weight_entropy", "organization"]


def binarize(w: np.ndarray | torch.Tensor, *, percentile: float = 90.0) -> np.ndarray:
    """Undirected binary adjacency of the strongest entries of ``|W|``.

    Parameters
    ----------
    w
        ``(N, N)`` weights [pre, post].
    percentile
        Entries of ``|W|`` strictly above this percentile of all N*N entries are kept.

    Returns
    -------
    numpy.ndarray
        ``(N, N)`` bool, symmetric, False on the diagonal.
    """
    a = np.abs(_as_numpy(w))
    keep = a > np.percentile(a, percentile)
    keep = keep | keep.T
    np.fill_diagonal(keep, False)
    return keep


def _graph(adj: np.ndarray) -> ig.Graph:
    adj = np.asarray(adj, dtype=bool)
    if adj.ndim != 2 or adj.shape[0] != adj.shape[1]:
        raise ValueError(f"adjacency must be square (N, N); found shape {adj.shape}")
    i, j = np.nonzero(np.triu(adj | adj.T, k=1))
    return ig.Graph(n=adj.shape[0], edges=list(zip(i.tolist(), j.tolist())))


def modularity(adj: np.ndarray) -> float:
    """Modularity Q of the greedy (Clauset-Newman-Moore) partition of an undirected graph.

    Returns 0.0 for a graph without edges.

    Examples
    --------
    >>> two = np.kron(np.eye(2), np.ones((3, 3))).astype(bool)
    >>> modularity(two)
    0.5
    """
    g = _graph(adj)
    if g.ecount() == 0:
        return 0.0
    return float(g.community_fastgreedy().as_clustering().modularity)


def clustering(adj: np.ndarray) -> float:
    """Mean local clustering coefficient (nodes of degree < 2 count as 0)."""
    return float(np.mean(_graph(adj).transitivity_local_undirected(mode="zero")))


def global_efficiency(adj: np.ndarray) -> float:
    """Mean inverse shortest-path length over ordered pairs of distinct nodes (1/inf = 0)."""
    g = _graph(adj)
    n = g.vcount()
    if n < 2:
        return 0.0
    d = np.asarray(g.distances(), dtype=np.float64)
    with np.errstate(divide="ignore"):
        inv = 1.0 / d
    np.fill_diagonal(inv, 0.0)
    return float(inv.sum() / (n * (n - 1)))


def _er_null(n: int, m: int, rng: np.random.Generator) -> np.ndarray:
    pairs = n * (n - 1) // 2
    chosen = rng.choice(pairs, size=m, replace=False)
    iu = np.triu_indices(n, k=1)
    adj = np.zeros((n, n), dtype=bool)
    adj[iu[0][chosen], iu[1][chosen]] = True
    return adj | adj.T


def small_world_sigma(adj: np.ndarray, *, n_null: int = 20, seed: int = 0) -> float:
    """Small-world sigma against density-matched Erdos-Renyi nulls (efficiency form).

    Parameters
    ----------
    adj
        ``(N, N)`` undirected binary adjacency.
    n_null
        Number of G(n, m) null graphs with the same number of edges.
    seed
        Seed of the numpy generator of the nulls.

    Returns
    -------
    float
        ``(C / C_null) * (E / E_null)``, ~1 for random graphs, >> 1 for lattice-like ones.

    Raises
    ------
    ValueError
        If the graph has no edges, or the nulls have no clustering (too sparse to compare).
    """
    adj = np.asarray(adj, dtype=bool)
    n = adj.shape[0]
    m = int(np.triu(adj | adj.T, k=1).sum())
    if m == 0:
        raise ValueError("small-world sigma needs a graph with edges; found none")
    rng = np.random.default_rng(seed)
    c_null, e_null = [], []
    for _ in range(n_null):
        null = _er_null(n, m, rng)
        c_null.append(clustering(null))
        e_null.append(global_efficiency(null))
    c_r, e_r = float(np.mean(c_null)), float(np.mean(e_null))
    if c_r == 0 or e_r == 0:
        raise ValueError(f"the density-matched nulls ({m} edges on {n} nodes) have zero "
                         "clustering or efficiency; sigma is undefined for so sparse a graph")
    return (clustering(adj) / c_r) * (global_efficiency(adj) / e_r)


def assortativity(adj: np.ndarray) -> float:
    """Degree assortativity of an undirected graph (NaN when every degree is equal)."""
    return float(_graph(adj).assortativity_degree(directed=False))


def weight_entropy(w: np.ndarray | torch.Tensor, *, grid: int = 100) -> float:
    """Entropy in bits of a Gaussian KDE of all the weights, evaluated on a regular grid.

    The KDE (Scott's bandwidth) is evaluated at ``grid`` points spanning ``[min, max]`` of the
    weights, normalized to a probability vector ``p``; returns ``-sum p log2 p``, at most
    ``log2(grid)``. Invariant to scaling and shifting the weights.
    """
    values = (w.detach().cpu().numpy() if isinstance(w, torch.Tensor) else np.asarray(w))
    values = values.ravel().astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError("weights hold non-finite entries; expected finite weights")
    if values.size < 2 or np.ptp(values) == 0:
        return 0.0
    points = np.linspace(values.min(), values.max(), grid)
    p = gaussian_kde(values)(points)
    p = p / p.sum()
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def organization(w: np.ndarray | torch.Tensor, *, percentile: float = 90.0, n_null: int = 20,
                 seed: int = 0) -> dict[str, float]:
    """All four metrics of one ``(N, N)`` matrix: modularity, sigma, assortativity, entropy."""
    adj = binarize(w, percentile=percentile)
    return {"modularity": modularity(adj),
            "small_world_sigma": small_world_sigma(adj, n_null=n_null, seed=seed),
            "assortativity": assortativity(adj),
            "entropy": weight_entropy(w)}


def _as_numpy(w: np.ndarray | torch.Tensor) -> np.ndarray:
    arr = w.detach().cpu().numpy() if isinstance(w, torch.Tensor) else np.asarray(w)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"expected one square (N, N) matrix; found shape {arr.shape}")
    return arr
