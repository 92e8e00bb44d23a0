"""Tests of priors_store/derive/communication.py."""

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse as sp

from connectome_priors.priors_store.derive.communication import communicability, node_strength


def test_two_node_symmetric_graph_is_sinh_1():
    for w in (1.0, 0.3, 17.0):  # the normalization removes the scale
        c = communicability(np.array([[0.0, w], [w, 0.0]]))
        assert c[0, 1] == pytest.approx(np.sinh(1.0), rel=1e-12)
        assert c[1, 0] == pytest.approx(np.sinh(1.0), rel=1e-12)
        np.testing.assert_array_equal(np.diag(c), 0.0)


def test_two_node_directed_graph_closed_form():
    # A = [[0, a], [b, 0]], out-strengths (a, b): M = [[0, sqrt(a/b)], [sqrt(b/a), 0]], M^2 = I,
    # so expm(M) = cosh(1) I + sinh(1) M.
    a, b = 4.0, 1.0
    c = communicability(np.array([[0.0, a], [b, 0.0]]))
    assert c[0, 1] == pytest.approx(np.sinh(1.0) * np.sqrt(a / b), rel=1e-12)
    assert c[1, 0] == pytest.approx(np.sinh(1.0) * np.sqrt(b / a), rel=1e-12)


def test_signs_are_ignored():
    a = np.array([[0.0, -2.0], [2.0, 0.0]])
    np.testing.assert_allclose(communicability(a), communicability(np.abs(a)))


def test_strength_orientation_is_rows_for_out():
    a = np.array([[0.0, 2.0, 0.0], [0.0, 0.0, 1.0], [3.0, 0.0, 0.0]])
    np.testing.assert_array_equal(node_strength(a), [2.0, 1.0, 3.0])
    np.testing.assert_array_equal(node_strength(a, strength="in"), [3.0, 2.0, 1.0])
    for kind, s in (("out", a.sum(1)), ("in", a.sum(0))):
        d = np.diag(1 / np.sqrt(s))
        expected = scipy.linalg.expm(d @ a @ d)
        np.fill_diagonal(expected, 0.0)
        np.testing.assert_allclose(communicability(a, strength=kind), expected, rtol=1e-12)


def test_zero_strength_node_is_isolated_not_blown_up():
    # node 2 sends nothing (zero out-strength) but receives from node 0
    a = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    c = communicability(a)
    np.testing.assert_array_equal(c[2], 0.0)
    np.testing.assert_array_equal(c[:, 2], 0.0)
    # the rest: M = [[0, 1/sqrt(2)], [1/sqrt(2), 0]] (node 0's out-strength is 2)
    assert c[0, 1] == pytest.approx(np.sinh(1 / np.sqrt(2)), rel=1e-12)
    assert np.isfinite(c).all() and c.max() < 10
    # the study's eps = 1e-10 instead gives an artefact of order 1 / sqrt(eps) = 1e5
    s = a.sum(1) + 1e-10
    d = np.diag(1 / np.sqrt(s))
    assert scipy.linalg.expm(d @ a @ d).max() > 1e4


def test_all_zero_matrix_gives_zeros():
    np.testing.assert_array_equal(communicability(np.zeros((3, 3))), np.zeros((3, 3)))


def test_zero_strength_raise():
    a = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match=r"zero out-strength \(first: \[2\]\)"):
        communicability(a, zero_strength="raise")


def test_sparse_equals_dense_and_properties():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 1, (30, 30)) * (rng.uniform(size=(30, 30)) < 0.2)
    c = communicability(a)
    np.testing.assert_allclose(communicability(sp.csr_matrix(a)), c, rtol=1e-12, atol=1e-15)
    assert (c >= 0).all()
    np.testing.assert_array_equal(np.diag(c), 0.0)
    sym = a + a.T
    cs = communicability(sym)
    np.testing.assert_allclose(cs, cs.T, rtol=1e-10)


@pytest.mark.parametrize("weights, kwargs, match", [
    (np.zeros((2, 3)), {}, "square"),
    (np.array([[0.0, np.nan], [1.0, 0.0]]), {}, "non-finite"),
    (np.eye(2), {"zero_strength": "eps"}, "zero_strength must be"),
    (np.eye(2), {"strength": "total"}, "strength must be"),
])
def test_errors(weights, kwargs, match):
    with pytest.raises(ValueError, match=match):
        communicability(weights, **kwargs)
