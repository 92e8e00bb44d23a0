"""Tests of priors_store/derive/partition.py."""

import time

import numpy as np
import pytest
import scipy.sparse as sp

from connectome_priors.priors_store.derive.partition import modules, modules_functional, modules_wiring


def two_triangles() -> np.ndarray:
    a = np.zeros((6, 6))
    for i, j in [(0, 1), (1, 2), (0, 2), (3, 4), (4, 5), (3, 5), (2, 3)]:
        a[i, j] = a[j, i] = 1.0
    return a


def planted(n: int, k: int, *, seed: int, p_in: float = 0.7, edges: int | None = None):
    """Sparse [pre, post] counts with k planted groups (a fraction p_in of edges inside)."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, k, n)
    e = edges or 10 * n
    pre = rng.integers(0, n, e)
    members = [np.flatnonzero(group == g) for g in range(k)]
    inside = rng.random(e) < p_in
    post = rng.integers(0, n, e)
    post[inside] = _pick(members, group[pre[inside]], rng)
    counts = rng.integers(1, 5, e).astype(float)
    return sp.csr_matrix((counts, (pre, post)), shape=(n, n)), group


def _pick(members, groups, rng):
    out = np.empty(groups.size, dtype=np.int64)
    for g in np.unique(groups):
        sel = groups == g
        out[sel] = rng.choice(members[g], sel.sum())
    return out


def agreement(found: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of nodes in the planted group that is the majority of their found module."""
    hits = 0
    for lab in np.unique(found):
        hits += np.bincount(truth[found == lab]).max()
    return hits / found.size


def test_two_triangles_hand_computed_q():
    labels, q = modules(two_triangles())
    np.testing.assert_array_equal(labels, [0, 0, 0, 1, 1, 1])
    # m = 7, each side: 3 internal edges, degree sum 7 -> Q = 2 (3/7 - (7/14)^2) = 5/14
    assert q == pytest.approx(5 / 14)


@pytest.mark.parametrize("engine", ["igraph", "leidenalg"])
def test_partition_properties_and_determinism(engine):
    a, group = planted(600, 6, seed=1)
    labels, q = modules_wiring(a, seed=3, engine=engine)
    assert labels.shape == (600,) and labels.dtype == np.int64
    k = labels.max() + 1
    assert set(labels.tolist()) == set(range(k))  # every label used, each node exactly one
    sizes = np.bincount(labels)
    assert (np.diff(sizes) <= 0).all()  # numbered by decreasing size
    assert 0 < q < 1
    again, q2 = modules_wiring(a, seed=3, engine=engine)
    np.testing.assert_array_equal(labels, again)
    assert q == q2
    assert labels.max() + 1 == 6 and agreement(labels, group) > 0.95  # planted groups found


def test_dense_and_sparse_agree():
    a, _ = planted(200, 4, seed=2)
    sym = (a + a.T).tocsr()
    la, qa = modules(sym, seed=0)
    lb, qb = modules(sym.toarray(), seed=0)
    np.testing.assert_array_equal(la, lb)
    assert qa == pytest.approx(qb)


def test_directed():
    a, group = planted(300, 3, seed=4)
    labels, q = modules_wiring(a, directed=True, seed=0)
    assert agreement(labels, group) > 0.95
    assert 0 < q < 1


def test_resolution_changes_the_number_of_modules():
    a, _ = planted(400, 4, seed=5)
    few = modules_wiring(a, resolution=0.05)[0].max() + 1
    many = modules_wiring(a, resolution=5.0)[0].max() + 1
    assert few < many


def test_does_not_touch_the_random_module():
    import random
    random.seed(123)
    before = random.getstate()
    modules(two_triangles(), seed=7)
    assert random.getstate() == before


def test_edgeless_graph():
    labels, q = modules(np.zeros((4, 4)))
    np.testing.assert_array_equal(labels, [0, 1, 2, 3])
    assert np.isnan(q)


def test_functional_uses_the_positive_part_without_diagonal():
    c = np.array([
        [1.0, 0.8, 0.7, -0.5, -0.4],
        [0.8, 1.0, 0.6, -0.3, np.nan],
        [0.7, 0.6, 1.0, 0.05, -0.2],
        [-0.5, -0.3, 0.05, 1.0, 0.9],
        [-0.4, np.nan, -0.2, 0.9, 1.0],
    ])
    labels, q = modules_functional(c)
    np.testing.assert_array_equal(labels, [0, 0, 0, 1, 1])
    expected_graph = np.clip(np.nan_to_num(c), 0, None)
    np.fill_diagonal(expected_graph, 0)
    assert q == pytest.approx(modules(expected_graph)[1])


def test_wiring_symmetrizes_counts():
    a = np.array([[5, 3, 0, 0], [1, 0, 0, 0], [0, 0, 0, 2], [0, 1, 1, 0]])
    labels, q = modules_wiring(a)
    np.testing.assert_array_equal(labels, [0, 0, 1, 1])
    sym = (a + a.T).astype(float)
    np.fill_diagonal(sym, 0)
    assert q == pytest.approx(modules(sym)[1])


@pytest.mark.parametrize("weights, kwargs, match", [
    (-two_triangles(), {}, "non-negative"),
    (np.triu(two_triangles()), {}, "symmetric"),
    (np.ones((2, 3)), {}, "square"),
    (two_triangles(), {"resolution": 0}, "resolution must be"),
    (two_triangles(), {"engine": "louvain"}, "engine must be"),
])
def test_errors(weights, kwargs, match):
    with pytest.raises(ValueError, match=match):
        modules(weights, **kwargs)


def test_functional_rejects_lower_triangular_sttc():
    with pytest.raises(ValueError, match="symmetrize_lower"):
        modules_functional(np.tril(np.full((3, 3), 0.5)))


@pytest.mark.slow
def test_15k_node_sparse_graph_in_seconds():
    a, group = planted(15_000, 30, seed=0, edges=150_000)
    start = time.perf_counter()
    labels, q = modules_wiring(a, seed=0)
    elapsed = time.perf_counter() - start
    assert labels.shape == (15_000,)
    assert q > 0.5
    assert elapsed < 30
