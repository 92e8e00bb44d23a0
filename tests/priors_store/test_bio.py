"""Tests of priors_store/derive/bio.py."""

import numpy as np
import pytest

from connectome_priors.priors_store.derive.bio import symmetrize_lower, w_bio_modulation


def test_hand_computed_modulation():
    corr = np.array([[1.0, 0.2, -0.6], [0.2, 1.0, 0.4], [-0.6, 0.4, 1.0]])
    sttc_lower = np.array([[1.0, 0.0, 0.0], [0.5, 1.0, 0.0], [0.0, 0.25, 1.0]])
    w = w_bio_modulation(corr, sttc_lower)
    # minmax(corr): (x + 0.6) / 1.6; minmax(sttc sym): x / 1
    expected = np.array([
        [1.0, 0.5 * 0.5, 0.0],
        [0.5 * 0.5, 1.0, 0.625 * 0.25],
        [0.0, 0.625 * 0.25, 1.0],
    ])
    np.testing.assert_allclose(w, expected)
    np.testing.assert_array_equal(w, w.T)


def test_lower_triangular_and_symmetric_sttc_agree():
    rng = np.random.default_rng(1)
    x = rng.uniform(-0.2, 0.8, (6, 6))
    sym = np.tril(x, -1) + np.tril(x, -1).T + np.eye(6)
    corr = np.corrcoef(rng.normal(size=(6, 50)))
    np.testing.assert_array_equal(w_bio_modulation(corr, np.tril(sym)),
                                  w_bio_modulation(corr, sym))


def test_silent_pairs_get_zero_weight():
    corr = np.array([[1.0, np.nan, 0.3], [np.nan, np.nan, np.nan], [0.3, np.nan, 1.0]])
    sttc = np.array([[1.0, np.nan, 0.1], [np.nan, np.nan, np.nan], [0.1, np.nan, 1.0]])
    w = w_bio_modulation(corr, sttc)
    assert not np.isnan(w).any()
    np.testing.assert_array_equal(w[1], 0.0)
    np.testing.assert_array_equal(w[:, 1], 0.0)
    assert w[0, 0] == 1.0


def test_symmetrize_lower():
    m = np.array([[1.0, 9.0], [0.3, 1.0]])
    np.testing.assert_array_equal(symmetrize_lower(m), [[1.0, 0.3], [0.3, 1.0]])


@pytest.mark.parametrize("corr, sttc, match", [
    (np.eye(3), np.eye(2), "same"),
    (np.ones((2, 3)), np.eye(2), "square"),
    (np.eye(2), np.ones(4), "square"),
])
def test_errors(corr, sttc, match):
    with pytest.raises(ValueError, match=match):
        w_bio_modulation(corr, sttc)
