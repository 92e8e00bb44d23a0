"""Tests of training/metrics.py, on graphs with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from connectome_priors.training.metrics import (assortativity, binarize, clustering, global_efficiency, modularity,
                              organization, small_world_sigma, weight_entropy)


def _ring(n, k):
    adj = np.zeros((n, n), bool)
    i = np.arange(n)
    for d in range(1, k + 1):
        adj[i, (i + d) % n] = adj[(i + d) % n, i] = True
    return adj


def _er(n, p, seed):
    a = np.triu(np.random.default_rng(seed).random((n, n)) < p, 1)
    return a | a.T


def test_binarize_keeps_top_decile_undirected_no_loops():
    w = np.arange(100, dtype=float).reshape(10, 10) - 50  # |W| ranks by distance from 50
    w[0, 0] = 1000.0  # a large self-loop is dropped
    adj = binarize(torch.from_numpy(w))
    assert adj.dtype == bool and np.array_equal(adj, adj.T) and not adj.diagonal().any()
    # kept: entries of |W| strictly above its 90th percentile, symmetrized
    a = np.abs(w)
    kept = a > np.percentile(a, 90)
    np.fill_diagonal(kept, False)
    assert np.array_equal(adj, kept | kept.T)
    assert adj[0, 1] and adj[1, 0] and not adj[5, 5]


def test_modularity_two_cliques_is_half():
    two = np.kron(np.eye(2), np.ones((5, 5))).astype(bool)
    np.fill_diagonal(two, False)
    assert modularity(two) == pytest.approx(0.5)
    assert modularity(np.zeros((4, 4), bool)) == 0.0


def test_clustering_and_efficiency_hand_cases():
    tri = np.ones((3, 3), bool)
    np.fill_diagonal(tri, False)
    assert clustering(tri) == 1.0 and global_efficiency(tri) == 1.0
    path = np.zeros((3, 3), bool)
    path[0, 1] = path[1, 0] = path[1, 2] = path[2, 1] = True
    assert clustering(path) == 0.0
    assert global_efficiency(path) == pytest.approx((4 * 1 + 2 * 0.5) / 6)
    split = np.zeros((4, 4), bool)
    split[0, 1] = split[1, 0] = True  # two isolated nodes: 1/inf = 0
    assert global_efficiency(split) == pytest.approx(2 / 12)


def test_small_world_sigma_ring_vs_random():
    ring = _ring(100, 5)
    assert small_world_sigma(ring, seed=0) > 2.5
    er = _er(100, 0.1, seed=1)
    assert small_world_sigma(er, seed=0) == pytest.approx(1.0, abs=0.15)
    assert small_world_sigma(ring, seed=4) == pytest.approx(small_world_sigma(ring, seed=4))
    with pytest.raises(ValueError, match="with edges"):
        small_world_sigma(np.zeros((5, 5), bool))


def test_assortativity_star_is_minus_one():
    star = np.zeros((6, 6), bool)
    star[0, 1:] = star[1:, 0] = True
    assert assortativity(star) == pytest.approx(-1.0)
    assert np.isnan(assortativity(_ring(10, 1)))  # every degree equal: undefined


def test_weight_entropy():
    rng = np.random.default_rng(0)
    u = rng.random(5000)
    h = weight_entropy(u)
    assert np.log2(100) - 0.1 < h <= np.log2(100)  # near-uniform on the grid
    assert weight_entropy(3 * u + 7) == pytest.approx(h)  # scale and shift invariant
    spiky = np.concatenate([np.zeros(4900), rng.random(100)])
    assert weight_entropy(spiky) < h - 1.0
    assert weight_entropy(np.ones(10)) == 0.0


def test_organization_runs_on_a_matrix():
    w = np.random.default_rng(3).normal(size=(40, 40))
    out = organization(w, n_null=5)
    assert set(out) == {"modularity", "small_world_sigma", "assortativity", "entropy"}
    assert all(np.isfinite(v) for v in out.values())
    with pytest.raises(ValueError, match="square"):
        organization(np.ones((3, 4)))
