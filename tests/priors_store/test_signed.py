"""Tests of priors_store/derive/signed.py and the signed kinds a build records (issue 24)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from connectome_priors import priors_store
from connectome_priors.priors_store.derive.signed import cell_signs, signed_weight, type_pairs

#: A hand-built 5-cell circuit: cells 0, 1 excitatory, 2 inhibitory, 3 no class, 4 "glia".
CLASSES = ["excitatory", "excitatory", "inhibitory", None, "glia"]
TYPES = ["23P", "23P", "BC", None, "MC"]
#: (pre, post, synapses, summed size)
EDGES = [(0, 1, 3, 1200.0), (0, 2, 1, 400.0), (1, 0, 2, 900.0), (2, 0, 4, 2000.0),
         (2, 1, 1, 300.0), (3, 4, 5, 2500.0), (4, 2, 2, 700.0)]


def _matrix(column: int) -> sp.csr_matrix:
    pre, post = [e[0] for e in EDGES], [e[1] for e in EDGES]
    return sp.csr_matrix(([e[column] for e in EDGES], (pre, post)), shape=(5, 5))


def test_signs_follow_the_class_and_report_what_is_unknown():
    signs, unrecognized = cell_signs(CLASSES)
    assert signs.tolist() == [1, 1, -1, 0, 0] and signs.dtype == np.int64
    assert unrecognized == ("glia",)
    assert cell_signs([np.nan, "", "inhibitory"])[0].tolist() == [0, 0, -1]


@pytest.mark.parametrize("column", [2, 3], ids=["synapses", "size"])
def test_signed_weight_on_five_cells(column):
    signs, _ = cell_signs(CLASSES)
    w = signed_weight(_matrix(column), signs).toarray()
    expected = np.zeros((5, 5))
    for pre, post, *measures in EDGES:
        sign = {0: 1, 1: 1, 2: -1, 3: 1, 4: 1}[pre]  # unknown classes keep the magnitude
        expected[pre, post] = sign * measures[column - 2]
    np.testing.assert_array_equal(w, expected)
    assert (w[signs == 1] >= 0).all() and (w[signs == -1] <= 0).all()
    assert ((w != 0) == (_matrix(2).toarray() > 0)).all()  # the connectome's support, exactly


def test_signed_weight_refuses_bad_input():
    with pytest.raises(ValueError, match=r"signs must hold one of -1, 0, \+1 per row"):
        signed_weight(_matrix(2), np.array([1, 2, 0, 0, 0]))
    with pytest.raises(ValueError, match="magnitude must hold finite values >= 0"):
        signed_weight(sp.csr_matrix([[0, -1], [0, 0]]), np.array([1, 1]))
    with pytest.raises(ValueError, match=r"square \(N, N\)"):
        signed_weight(sp.csr_matrix(np.ones((2, 3))), np.array([1, 1]))


def test_type_pairs_index_every_connection():
    pairs, types = type_pairs(_matrix(2), TYPES)
    assert types == ("23P", "BC", "MC", None)
    t = {0: 0, 1: 0, 2: 1, 3: 3, 4: 2}
    dense = pairs.toarray()
    for pre, post, *_ in EDGES:
        assert dense[pre, post] == 1 + t[pre] * 4 + t[post]
        assert ((dense[pre, post] - 1) // 4, (dense[pre, post] - 1) % 4) == (t[pre], t[post])
    assert pairs.nnz == len(EDGES) and pairs.dtype == np.int64


def test_type_pairs_refuses_a_mismatched_size():
    with pytest.raises(ValueError, match=r"N = len\(cell_type\) = 4"):
        type_pairs(_matrix(2), TYPES[:4])


def test_build_records_the_signed_kinds(built):
    from connectome_priors.priors_store import load

    root, m = built
    prior = load("f662", root=root)
    for kind in ("cell_sign", "connectome_signed", "connectome_type_pair"):
        assert kind in m["kinds"], kind
    assert m["parameters"]["signed_measure"] == "synapses"
    classes = prior.neurons.cell_class.to_numpy(object)
    signs = prior["cell_sign"]
    np.testing.assert_array_equal(signs, cell_signs(classes)[0])
    stats = prior.stats("cell_sign")
    assert stats["n_inhibitory"] == int((classes == "inhibitory").sum()) > 0
    assert stats["n_unknown"] == 0 and stats["unrecognized_classes"] == []
    signed, counts = prior["connectome_signed"].toarray(), prior["connectome"].toarray()
    np.testing.assert_array_equal(np.abs(signed), counts)
    np.testing.assert_array_equal(signed, signs[:, None] * counts)
    pairs = prior["connectome_type_pair"]
    types = prior.stats("connectome_type_pair")["cell_types"]
    assert pairs.nnz == (counts > 0).sum()
    coo = pairs.tocoo()
    t = {v: i for i, v in enumerate(types)}
    cell_type = prior.neurons.cell_type.tolist()
    assert all(v == 1 + t[cell_type[i]] * len(types) + t[cell_type[j]]
               for i, j, v in zip(coo.row, coo.col, coo.data))


def test_an_unknown_measure_is_refused_before_building(small_store):
    from connectome_priors.etl.store import Store
    from connectome_priors.priors_store import DeriveParams, Population
    from connectome_priors.priors_store.errors import PriorsError
    from connectome_priors.priors_store.pipeline import plan

    with pytest.raises(PriorsError, match=r"signed_measure must be one of synapses, size; "
                                          r"found 'volume'"):
        plan(Population.of_fields("6_6_2"), Store(small_store),
             params=DeriveParams(signed_measure="volume"))


def test_cli_signed_measure_size_records_summed_sizes(small_store, tmp_path, capsys):
    """`cxp priors build --signed-measure size`: connectome_signed holds the summed sizes (equal
    to connectome_size in magnitude), and the recipe records the choice."""
    from connectome_priors.cli import main

    root = tmp_path / "artifacts"
    assert main(["priors", "build", "sized", "--fields", "6_6_2", "--no-precision",
                 "--signed-measure", "size", "--store", str(small_store), "--artifacts", str(root),
                 "--no-progress"]) == 0
    prior = priors_store.load("sized", root=root)
    assert prior.manifest["parameters"]["signed_measure"] == "size"
    signed = prior["connectome_signed"].toarray()
    size = prior["connectome_size"].toarray()
    np.testing.assert_allclose(np.abs(signed), size)
    assert (signed < 0).any()  # inhibitory cells' rows are negative
