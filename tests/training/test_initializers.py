"""Tests of training/init.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from connectome_priors.training.initializers import (bio, diagonal_only, off_diagonal_only, orthogonal, permuted,
                           random_positive_matched, spectral_radius)


def test_orthogonal():
    q = orthogonal(16, runs=3, seed=0)
    assert q.shape == (3, 16, 16) and q.dtype == torch.float32
    eye = torch.eye(16).expand(3, 16, 16)
    assert torch.allclose(q @ q.transpose(1, 2), eye, atol=1e-5)
    assert not torch.allclose(q[0], q[1])
    assert torch.equal(q, orthogonal(16, runs=3, seed=0))
    assert np.allclose(spectral_radius(q), 1.0, atol=1e-5)


def test_bio_mean_floor_and_radius(w_bio):
    raw = bio(w_bio, runs=2, seed=0, radius=None).double().numpy()
    for m in raw:
        nz = m[m != 0]
        assert nz.min() >= 0.01 - 1e-7
        # the mean is 0.1 before flooring; flooring only raises entries
        assert 0.1 <= m.mean() < 0.1 + 0.01
    assert np.array_equal(raw[0] != 0, w_bio != 0)  # zeros of the modulation stay zero
    scaled = bio(w_bio, runs=3, seed=0)
    assert np.allclose(spectral_radius(scaled), 0.95, atol=1e-5)
    assert not torch.allclose(scaled[0], scaled[1])  # fresh lognormal per run
    assert torch.equal(scaled, bio(w_bio, runs=3, seed=0))
    # the floor scales with the radius: the smallest non-zero entry is 0.01 * (0.95 / rho)
    rho = spectral_radius(raw[0])
    assert scaled[0][scaled[0] > 0].min().item() == pytest.approx(0.01 * 0.95 / rho, rel=1e-4)


def test_bio_floor_hand_case():
    # uniform modulation with one tiny entry: that entry is raised to the floor
    wb = np.ones((3, 3))
    wb[0, 1] = 1e-6
    m = bio(wb, runs=1, seed=5, radius=None)[0].double()
    assert m[0, 1].item() == pytest.approx(0.01, rel=1e-6)


def test_bio_rejects_bad_modulation():
    with pytest.raises(ValueError, match="square"):
        bio(np.ones((2, 3)), runs=1, seed=0)
    with pytest.raises(ValueError, match="non-negative"):
        bio(-np.ones((2, 2)), runs=1, seed=0)


def test_permuted_is_a_relabelling(w_bio):
    w = bio(w_bio, runs=2, seed=1)
    p = permuted(w, seed=3)
    assert not torch.allclose(p, w)
    for r in range(2):
        ev_w = np.sort_complex(np.linalg.eigvals(w[r].double().numpy()))
        ev_p = np.sort_complex(np.linalg.eigvals(p[r].double().numpy()))
        assert np.allclose(ev_w, ev_p, atol=1e-5)
        assert torch.equal(torch.sort(p[r].flatten()).values, torch.sort(w[r].flatten()).values)
        assert torch.equal(torch.sort(torch.diagonal(p[r])).values,
                           torch.sort(torch.diagonal(w[r])).values)


def test_controls(w_bio):
    w = bio(w_bio, runs=2, seed=2)
    d = diagonal_only(w)
    assert torch.count_nonzero(d - torch.diag_embed(torch.diagonal(d, dim1=1, dim2=2))) == 0
    assert np.allclose(spectral_radius(d), 0.95, atol=1e-5)
    o = off_diagonal_only(w)
    assert torch.all(torch.diagonal(o, dim1=1, dim2=2) == 0)
    assert np.allclose(spectral_radius(o), 0.95, atol=1e-5)
    rnd = random_positive_matched(w, seed=0)
    assert torch.all(rnd >= 0)
    assert np.allclose(spectral_radius(rnd), spectral_radius(w), atol=1e-5)
    assert torch.equal(torch.count_nonzero(rnd, dim=(1, 2)), torch.count_nonzero(w, dim=(1, 2)))
    # the diagonal dominance is gone: the diagonal holds about 1/N of the mass, not most of it
    share = torch.diagonal(rnd, dim1=1, dim2=2).sum(1) / rnd.sum((1, 2))
    share_w = torch.diagonal(w, dim1=1, dim2=2).sum(1) / w.sum((1, 2))
    assert torch.all(share < share_w)
    with pytest.raises(ValueError, match="non-negative"):
        random_positive_matched(-w, seed=0)
    with pytest.raises(ValueError, match="\\(R, N, N\\)"):
        diagonal_only(w[0])
