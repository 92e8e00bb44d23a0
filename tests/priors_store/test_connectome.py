"""Tests of priors_store/derive/wiring.py."""

import numpy as np
import pytest
import scipy.sparse as sp

from connectome_priors.priors_store.derive.wiring import connectome, synapse_size


def test_counts_are_pre_post_and_duplicates_sum():
    mat = connectome([0, 0, 1, 2], [1, 1, 2, 0], [2, 1, 5, 1], n=4)
    assert sp.isspmatrix_csr(mat) or isinstance(mat, sp.csr_matrix)
    assert mat.shape == (4, 4)
    assert mat.dtype == np.int64
    expected = np.zeros((4, 4), dtype=np.int64)
    expected[0, 1], expected[1, 2], expected[2, 0] = 3, 5, 1
    np.testing.assert_array_equal(mat.toarray(), expected)
    assert mat.nnz == 3


def test_zero_counts_are_not_stored():
    mat = connectome([0, 1], [1, 0], [0, 2], n=2)
    assert mat.nnz == 1
    assert mat[1, 0] == 2


def test_sizes_give_the_summed_size_matrix():
    mat = connectome([0, 0, 1], [1, 1, 0], [1, 1, 1], n=2, sizes=[1000.0, 500.0, 900.0])
    assert mat.dtype == np.float64
    np.testing.assert_array_equal(mat.toarray(), [[0.0, 1500.0], [900.0, 0.0]])
    np.testing.assert_array_equal(
        mat.toarray(), synapse_size([0, 0, 1], [1, 1, 0], [1000.0, 500.0, 900.0], n=2).toarray())


def test_empty_connection_list():
    mat = connectome(np.array([], dtype=int), np.array([], dtype=int), np.array([], dtype=int), n=3)
    assert mat.shape == (3, 3) and mat.nnz == 0


@pytest.mark.parametrize("pre, post, counts, match", [
    ([0, 3], [1, 1], [1, 1], r"pre_idx must lie in \[0, 3\)"),
    ([0, 1], [-1, 1], [1, 1], r"post_idx must lie in"),
    ([0, 1], [1], [1, 1], "equal length"),
    ([0, 1], [1, 0], [1, -2], "counts must be >= 0"),
    ([0, 1], [1, 0], [1.5, 2.0], "whole numbers"),
    ([0.0, 1.0], [1, 0], [1, 2], "integer neuron indices"),
])
def test_connectome_errors(pre, post, counts, match):
    with pytest.raises(ValueError, match=match):
        connectome(pre, post, counts, n=3)


def test_bad_n():
    with pytest.raises(ValueError, match="non-negative integer"):
        connectome([0], [0], [1], n=-1)


def test_negative_sizes():
    with pytest.raises(ValueError, match="sizes must be >= 0"):
        synapse_size([0], [1], [-3.0], n=2)
