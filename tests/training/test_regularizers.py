"""Tests of training/regularizers.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from connectome_priors.priors_store.derive import communicability as store_communicability
from connectome_priors.training.regularizers import (Regularizer, communicability, grid_distances,
                                   grid_distances_paper, grid_shape, penalty_distances,
                                   real_distances)


def test_communicability_matches_priors_store():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20, 20)) * (rng.random((20, 20)) < 0.4)
    a[3, :] = 0.0  # a zero (out-)strength node: isolated in both
    ours = communicability(torch.from_numpy(a)).numpy()
    assert np.allclose(ours, store_communicability(a), atol=1e-8, rtol=0)
    assert np.all(ours[3] == 0) and np.all(ours[:, 3] == 0)
    batched = communicability(torch.from_numpy(np.stack([a, 2 * a.T])))
    assert np.allclose(batched[1].numpy(), store_communicability(2 * a.T), atol=1e-8, rtol=0)


def test_communicability_gradient_is_finite_with_isolated_nodes():
    w = torch.tensor([[0.0, 1.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64,
                     requires_grad=True)
    communicability(w).sum().backward()
    assert torch.all(torch.isfinite(w.grad))
    w2 = torch.rand(4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) + 0.1
    w2.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda m: communicability(m).sum(), (w2,))


def test_grid():
    assert grid_shape(312) == (12, 13, 2)
    assert grid_shape(160) == (8, 10, 2) and grid_shape(70) == (5, 7, 2)
    assert grid_shape(7) == (1, 7, 1)
    d = grid_distances_paper(4)  # (1, 2, 2): points (0,0,0), (0,0,1), (0,1,0), (0,1,1)
    assert d[0, 1] == 1.0 and d[0, 3] == pytest.approx(np.sqrt(2))
    raw = grid_distances_paper(312)
    assert raw.mean() == pytest.approx(6.6, abs=0.2)  # the study's scale (flaw 3)
    norm = grid_distances(312)
    assert norm.max() == 1.0 and norm.min() == 0.0
    assert np.allclose(norm, raw / raw.max())


def test_real_distances_minmax():
    d = np.array([[0.0, 100.0, 50.0], [100.0, 0.0, 80.0], [50.0, 80.0, 0.0]])
    assert np.allclose(real_distances(d), d / 100.0)
    with pytest.raises(ValueError, match="square"):
        real_distances(np.ones((2, 3)))


def test_penalties_hand_computed():
    w = torch.tensor([[[1.0, -2.0], [0.0, 3.0]]])  # (R=1, 2, 2)
    d = np.array([[0.0, 1.0], [1.0, 0.0]])
    assert Regularizer("L1", strength=0.3)(w).tolist() == pytest.approx([1.8])
    assert Regularizer("L1", strength=0.3, paper_l1=True)(w).tolist() == pytest.approx([6.0])
    assert Regularizer("WD", strength=0.5, distance=d)(w).tolist() == pytest.approx([1.0])
    c = store_communicability(w[0].double().numpy())
    wdc = 0.3 * (np.abs(w[0].numpy()) * d * c).sum()
    assert Regularizer("WDC", strength=0.3, distance=d)(w).tolist() == pytest.approx([wdc])
    target = np.array([[0.0, 0.5], [0.25, 0.0]])
    emd = np.abs(np.sort(c.ravel()) - np.sort(target.ravel())).mean()
    star = Regularizer("C*", strength=0.3, distance=d, empirical_communicability=target,
                       emd_strength=0.1)
    assert star(w).tolist() == pytest.approx([0.3 * 2.0 + 0.1 * emd], rel=1e-5)


def test_penalties_batched_per_run():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(3, 6, 6, generator=gen)
    d = grid_distances(6)
    reg = Regularizer("WDC", distance=d)
    together = reg(w)
    assert together.shape == (3,)
    for r in range(3):
        assert together[r].item() == pytest.approx(reg(w[r:r + 1]).item(), rel=1e-6)
    # the gradient of run 0's penalty does not touch run 1
    w.requires_grad_(True)
    reg(w)[0].backward()
    assert torch.all(w.grad[1:] == 0) and torch.any(w.grad[0] != 0)


def test_regularizer_errors():
    with pytest.raises(ValueError, match="unknown regularizer"):
        Regularizer("L2")
    with pytest.raises(ValueError, match="needs a distance"):
        Regularizer("WD")
    with pytest.raises(ValueError, match="empirical communicability"):
        Regularizer("C*", distance=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="matching sizes"):
        Regularizer("WD", distance=np.zeros((3, 3)))(torch.zeros(1, 2, 2))


def test_penalty_distances_without_distance_um():
    """Grid distances need only N (a structure-only or any prior: no array read); the corrected
    D* needs the prior's distance_um."""
    np.testing.assert_array_equal(penalty_distances("grid", distance_um=None, n_units=9),
                                  grid_distances(9))
    np.testing.assert_array_equal(
        penalty_distances("grid", distance_um=None, n_units=9, protocol="paper"),
        grid_distances_paper(9))
    np.testing.assert_array_equal(  # distance_um, where given, sets N
        penalty_distances("grid", distance_um=np.ones((4, 4)), n_units=9), grid_distances(4))
    with pytest.raises(ValueError, match="grid distances D need N: pass distance_um or n_units"):
        penalty_distances("grid", distance_um=None)
    with pytest.raises(ValueError, match="D\\* is the prior's distance_um.*pass distance_um"):
        penalty_distances("real", distance_um=None, n_units=9)
