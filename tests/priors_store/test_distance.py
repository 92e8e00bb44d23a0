"""Tests of priors_store/derive/distance.py."""

import numpy as np
import pytest

from connectome_priors.priors_store.derive.distance import distance_um, minmax_normalized


def test_distance_of_a_3_4_5_triangle():
    pos = np.array([[0.0, 0.0, 0.0], [3.0, 0.0, 0.0], [0.0, 4.0, 0.0]])
    d = distance_um(pos)
    assert d == pytest.approx(np.array([[0, 3, 4], [3, 0, 5], [4, 5, 0]], dtype=float))
    assert d.dtype == np.float64


def test_distance_properties():
    pos = np.random.default_rng(0).uniform(0, 500, size=(40, 3))
    d = distance_um(pos)
    assert d.shape == (40, 40)
    np.testing.assert_array_equal(d, d.T)
    np.testing.assert_array_equal(np.diag(d), 0.0)
    assert (d >= 0).all()
    # triangle inequality on a few triples
    assert (d[0, 1] <= d[0, 2] + d[2, 1] + 1e-12)
    # against scipy's reference
    from scipy.spatial.distance import cdist
    np.testing.assert_allclose(d, cdist(pos, pos), atol=1e-10)


def test_distance_block_against_all_equals_rows_of_the_full_matrix():
    pos = np.random.default_rng(1).uniform(0, 500, size=(25, 3))
    full = distance_um(pos)
    np.testing.assert_array_equal(distance_um(pos[10:17], pos), full[10:17])
    with pytest.raises(ValueError, match="other_um has 2 coordinates"):
        distance_um(pos, pos[:, :2])


def test_distance_one_neuron():
    np.testing.assert_array_equal(distance_um(np.array([[1.0, 2.0, 3.0]])), [[0.0]])


@pytest.mark.parametrize("bad, match", [
    (np.zeros(3), r"\(N, 3\)"),
    (np.zeros((0, 3)), r"N >= 1"),
    (np.array([[0.0, np.nan, 0.0]]), "non-finite"),
])
def test_distance_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        distance_um(bad)


def test_minmax_of_distance_divides_by_the_largest():
    d = distance_um(np.array([[0.0, 0.0, 0.0], [3.0, 0.0, 0.0], [0.0, 4.0, 0.0]]))
    n = minmax_normalized(d)
    np.testing.assert_allclose(n, d / 5.0)
    assert n.min() == 0.0 and n.max() == 1.0


def test_minmax_includes_the_diagonal_and_keeps_nan():
    m = np.array([[1.0, 0.5, np.nan], [0.5, 1.0, -0.5], [np.nan, -0.5, 1.0]])
    n = minmax_normalized(m)
    assert np.isnan(n[0, 2]) and np.isnan(n[2, 0])
    assert n[0, 0] == 1.0  # the unit diagonal is the maximum
    assert n[1, 2] == 0.0
    assert n[0, 1] == pytest.approx(2 / 3)


@pytest.mark.parametrize("bad, match", [
    (np.ones((2, 2)), "constant"),
    (np.full((2, 2), np.nan), "non-NaN"),
    (np.zeros((0, 0)), "non-NaN"),
    (np.array([[0.0, np.inf]]), "infinite"),
])
def test_minmax_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        minmax_normalized(bad)
