"""Community structure (modules) by Leiden modularity maximisation, with the modularity Q."""

from __future__ import annotations

import random
from typing import Literal

import numpy as np
import scipy.sparse as sp

__all__ = ["modules", "modules_functional", "modules_wiring", "CommunityEngine"]


#: Which Leiden implementation runs: igraph's C core (fast) or the leidenalg package.
CommunityEngine = Literal["igraph", "leidenalg"]


def modules(weights: np.ndarray | sp.spmatrix, *, resolution: float = 1.0, seed: int = 0,
            directed: bool = False, engine: CommunityEngine = "igraph") -> tuple[np.ndarray, float]:
    """Partition a weighted graph into modules by Leiden modularity maximisation.

    Leiden (Traag, Waltman & van Eck 2019) on the modularity objective with a resolution
    parameter, iterated until the partition stops improving; deterministic for a given input and
    ``seed``. The matrix is used as given: self-loops (diagonal entries) count.

    ``engine="igraph"`` (default) runs python-igraph's C implementation: about 0.4 s for 15k nodes
    and 150k edges, directed or not. igraph draws its random numbers from one process-wide
    generator; this function points it at a private ``random.Random(seed)`` for the call and then
    back to igraph's default (the ``random`` module), so it never touches the ``random`` module's
    state, but calls from concurrent threads are not isolated from each other.
    ``engine="leidenalg"`` runs the leidenalg package (RB configuration partition, its own seeded
    generator; thread-safe, but about 10x slower and a slightly different optimiser, so the
    labels differ from igraph's).

    Parameters
    ----------
    weights
        ``(N, N)`` dense or scipy.sparse non-negative weights; entry [i, j] is the edge i -> j
        (for connectomes: [pre, post]). With ``directed=False`` it must be symmetric (symmetrize
        first, e.g. ``A + A.T``); its upper triangle and diagonal are the edges.
    resolution
        Resolution parameter gamma (> 0); larger gives more, smaller modules. 1 is plain
        modularity.
    seed
        Seed of the random node order and refinement.
    directed
        Treat the graph as directed (directed modularity, Leicht & Newman 2008).
    engine
        ``"igraph"`` or ``"leidenalg"`` (see above).

    Returns
    -------
    labels : numpy.ndarray
        ``(N,)`` int64 module label per node, 0 .. k-1, numbered by decreasing module size (ties:
        by first node). Nodes without edges each form their own module.
    Q : float
        Modularity of the partition at resolution 1 (standard Newman modularity, directed if
        ``directed``), comparable across resolutions; NaN for a graph without edges.

    Examples
    --------
    >>> two_triangles = np.zeros((6, 6))
    >>> for a, b in [(0, 1), (1, 2), (0, 2), (3, 4), (4, 5), (3, 5), (2, 3)]:
    ...     two_triangles[a, b] = two_triangles[b, a] = 1.0
    >>> labels, q = modules(two_triangles)
    >>> labels, round(q, 4)
    (array([0, 0, 0, 1, 1, 1]), 0.3571)
    """
    import igraph as ig  # heavy import, used here only

    resolution = float(resolution)
    if not np.isfinite(resolution) or resolution <= 0:
        raise ValueError(f"resolution must be a positive number; found {resolution}")
    if engine not in ("igraph", "leidenalg"):
        raise ValueError(f"engine must be 'igraph' or 'leidenalg'; found {engine!r}")
    rows, cols, vals, n = _edges(weights, directed=directed)
    if vals.size == 0:
        return np.arange(n, dtype=np.int64), float("nan")
    graph = ig.Graph(n=n, edges=np.column_stack([rows, cols]).tolist(), directed=directed)
    graph.es["weight"] = vals.tolist()
    if engine == "igraph":
        ig.set_random_number_generator(random.Random(int(seed)))
        try:
            membership = graph.community_leiden(
                objective_function="modularity", weights="weight", resolution=resolution,
                n_iterations=-1).membership
        finally:
            ig.set_random_number_generator(random)
    else:
        import leidenalg

        membership = leidenalg.find_partition(
            graph, leidenalg.RBConfigurationVertexPartition, weights="weight",
            resolution_parameter=resolution, n_iterations=-1, seed=int(seed)).membership
    labels = _by_size(np.asarray(membership, dtype=np.int64))
    q = graph.modularity(labels.tolist(), weights="weight", resolution=1.0, directed=directed)
    return labels, float(q)


def _by_size(labels: np.ndarray) -> np.ndarray:
    """Renumber labels 0 .. k-1 by decreasing module size, ties by first node."""
    uniq, first, inverse, sizes = np.unique(labels, return_index=True, return_inverse=True,
                                            return_counts=True)
    rank = np.lexsort((first, -sizes))  # module order: biggest first, then earliest node
    new = np.empty(uniq.size, dtype=np.int64)
    new[rank] = np.arange(uniq.size)
    return new[inverse]


def modules_functional(corr: np.ndarray, *, resolution: float = 1.0, seed: int = 0,
                       engine: CommunityEngine = "igraph") -> tuple[np.ndarray, float]:
    """Modules of a functional matrix: its positive part, diagonal removed, undirected.

    Negative correlations are set to 0 (modularity needs non-negative weights), as are NaN
    entries (pairs with a silent unit: such a unit ends up alone in its module).

    Parameters
    ----------
    corr
        ``(N, N)`` symmetric functional matrix (correlation, symmetric STTC), dimensionless.
    resolution, seed, engine
        As in :func:`modules`.

    Returns
    -------
    labels : numpy.ndarray
        ``(N,)`` int64 module labels.
    Q : float
        Modularity of the partition on that graph.

    Examples
    --------
    >>> c = np.array([[1.0, 0.8, -0.2], [0.8, 1.0, -0.1], [-0.2, -0.1, 1.0]])
    >>> modules_functional(c)[0]
    array([0, 0, 1])
    """
    arr = np.asarray(corr.toarray() if sp.issparse(corr) else corr, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"corr must be a square (N, N) matrix; found shape {arr.shape}")
    if np.any(np.isinf(arr)):
        raise ValueError("corr holds infinite entries; expected finite values (NaN allowed)")
    pos = np.where(np.isnan(arr), 0.0, arr).clip(min=0.0)
    np.fill_diagonal(pos, 0.0)
    if not np.allclose(pos, pos.T, rtol=0, atol=1e-12):
        raise ValueError("corr must be symmetric; found an asymmetric matrix (a lower-triangular "
                         "STTC from the release? symmetrize it first with symmetrize_lower)")
    return modules(np.maximum(pos, pos.T), resolution=resolution, seed=seed, directed=False,
                   engine=engine)


def modules_wiring(connectome: np.ndarray | sp.spmatrix, *, resolution: float = 1.0,
                   seed: int = 0, directed: bool = False,
                   engine: CommunityEngine = "igraph") -> tuple[np.ndarray, float]:
    """Modules of the wiring graph: synapse counts, autapses removed, symmetrized by default.

    Parameters
    ----------
    connectome
        ``(N, N)`` dense or sparse synapse counts indexed [pre, post].
    resolution, seed, engine
        As in :func:`modules`.
    directed
        ``False`` (default): undirected graph weighted by ``A + A.T``, the synapses between a
        pair in either direction. ``True``: the directed graph ``A`` (slower; directed
        modularity).

    Returns
    -------
    labels : numpy.ndarray
        ``(N,)`` int64 module labels.
    Q : float
        Modularity of the partition on that graph.

    Examples
    --------
    >>> a = np.array([[0, 3, 0, 0], [1, 0, 0, 0], [0, 0, 0, 2], [0, 1, 1, 0]])
    >>> modules_wiring(a)[0]
    array([0, 0, 1, 1])
    """
    mat = sp.csr_matrix(connectome, dtype=np.float64)
    if mat.ndim != 2 or mat.shape[0] != mat.shape[1]:
        raise ValueError(f"connectome must be a square (N, N) matrix; found shape {mat.shape}")
    mat.setdiag(0)
    mat.eliminate_zeros()
    if not directed:
        mat = (mat + mat.T).tocsr()
    return modules(mat, resolution=resolution, seed=seed, directed=directed, engine=engine)


def _edges(weights, *, directed: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(rows, cols, values, n) of the edges of a square non-negative matrix."""
    if sp.issparse(weights):
        mat = sp.coo_matrix(weights, dtype=np.float64)
    else:
        arr = np.asarray(weights, dtype=np.float64)
        if arr.ndim != 2:
            raise ValueError(f"weights must be a square (N, N) matrix; found shape {arr.shape}")
        mat = sp.coo_matrix(arr)
    if mat.shape[0] != mat.shape[1]:
        raise ValueError(f"weights must be a square (N, N) matrix; found shape {mat.shape}")
    mat.sum_duplicates()
    mat.eliminate_zeros()
    if mat.data.size and not np.all(np.isfinite(mat.data)):
        raise ValueError("weights hold non-finite entries; expected finite non-negative weights")
    if mat.data.size and mat.data.min() < 0:
        raise ValueError(f"weights must be non-negative for modularity; found {mat.data.min()} "
                         "(take the positive part or |A| first)")
    rows, cols, vals = mat.row, mat.col, mat.data
    if not directed:
        csr = mat.tocsr()
        if (abs(csr - csr.T) > 1e-12 * max(1.0, float(np.abs(vals).max(initial=0)))).nnz:
            raise ValueError("weights must be symmetric for an undirected graph; found an "
                             "asymmetric matrix (symmetrize it, e.g. A + A.T, or pass "
                             "directed=True)")
        upper = rows <= cols
        rows, cols, vals = rows[upper], cols[upper], vals[upper]
    return rows.astype(np.int64), cols.astype(np.int64), vals, mat.shape[0]
