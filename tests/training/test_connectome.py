"""Connectome-constrained weights (issue 24): the Wc init, Dale's law kept through training, the
drop-in init and constraint for any model, and the Wc variants in experiments."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn.utils import parametrize

from connectome_priors import priors_store
from connectome_priors.training.components import ConnectomeConstraint, bio_init_, connectome_init_
from connectome_priors.training.config import ExperimentConfig, FitConfig
from connectome_priors.training.connectome import connectome_family, dale
from connectome_priors.training.errors import TrainingError
from connectome_priors.training.experiment import run_experiment
from connectome_priors.training.initializers import spectral_radius
from connectome_priors.training.train import fit
from connectome_priors.training.variants import build_constraint, build_variant

#: A hand-built 5-cell circuit [pre, post]: cells 0, 1 excitatory, 2 inhibitory, 3 excitatory,
#: 4 inhibitory; entries are synapse counts (summed sizes would be another measure, same rule).
COUNTS = np.array([[0, 3, 1, 0, 0],
                   [2, 0, 0, 4, 0],
                   [4, 1, 0, 0, 2],
                   [0, 0, 5, 0, 1],
                   [1, 0, 2, 3, 0]], dtype=np.float64)
SIGNS = np.array([1, 1, -1, 1, -1])
SIGNED = SIGNS[:, None] * COUNTS


def _check_dale(w: np.ndarray) -> None:
    """Every weight from an excitatory cell >= 0, from an inhibitory one <= 0, zero off-support."""
    assert (w[SIGNS == 1] >= 0).all() and (w[SIGNS == -1] <= 0).all()
    assert (w[COUNTS == 0] == 0).all()


def test_connectome_init_is_the_signed_measure_scaled_on_five_cells():
    w, support, sign = connectome_family(SIGNED, SIGNS, runs=2, seed=0, dtype=torch.float64)
    assert w.shape == (2, 5, 5) and torch.equal(w[0], w[1])
    w0 = w[0].numpy()
    _check_dale(w0)
    ratio = w0[COUNTS > 0] / (SIGNS[:, None] * COUNTS)[COUNTS > 0]
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-12)  # proportional to the counts
    assert ratio[0] > 0
    assert spectral_radius(w0) == pytest.approx(0.95, abs=1e-9)
    assert torch.equal(support[0], torch.from_numpy(COUNTS > 0))
    assert sign[0].tolist() == SIGNS.tolist()
    raw, _, _ = connectome_family(SIGNED, SIGNS, runs=1, seed=0, radius=None,
                                  dtype=torch.float64)
    np.testing.assert_array_equal(raw[0].numpy(), SIGNED)


def test_unknown_classes_keep_the_magnitude_and_a_free_sign():
    signs = np.zeros(5, dtype=np.int64)
    w, support, sign = connectome_family(COUNTS, signs, runs=1, seed=0, radius=None,
                                         dtype=torch.float64)
    np.testing.assert_array_equal(w[0].numpy(), COUNTS)
    free = torch.tensor([[0.0, -2.0, 0.0, 0.0, 0.0]] * 5, dtype=torch.float64)
    out = dale(free, support[0], sign[0])
    assert out[0, 1] == -2.0 and out[1, 1] == 0.0  # sign free, support kept


def test_permuted_control_keeps_degrees_signs_and_magnitudes_not_the_wiring():
    w, support, sign = connectome_family(SIGNED, SIGNS, "connectome_permuted", runs=20, seed=3,
                                         radius=None, dtype=torch.float64)
    moved = 0
    for r in range(20):
        wr = w[r].numpy()
        assert (np.diag(wr) == 0).all()
        for i in range(5):
            assert sorted(wr[i][wr[i] != 0]) == sorted(SIGNED[i][SIGNED[i] != 0])
        assert torch.equal(support[r], torch.from_numpy(wr != 0))
        moved += not np.array_equal(wr, SIGNED)
    assert moved >= 15  # a different wiring in (nearly) every run
    w2, _, _ = connectome_family(SIGNED, SIGNS, "connectome_permuted", runs=20, seed=3,
                                 radius=None, dtype=torch.float64)
    assert torch.equal(w, w2)


def test_inputs_that_disagree_are_refused():
    with pytest.raises(ValueError, match=r"disagrees with cell_sign at .* \[pre 2, post 0\]"):
        connectome_family(COUNTS, SIGNS, runs=1, seed=0)  # unsigned matrix, inhibitory rows
    with pytest.raises(ValueError, match="no connection"):
        connectome_family(np.zeros((3, 3)), np.ones(3, dtype=int), runs=1, seed=0)
    with pytest.raises(ValueError, match="unknown connectome initialization 'wiring'"):
        connectome_family(SIGNED, SIGNS, "wiring", runs=1, seed=0)  # type: ignore[arg-type]


def test_dale_is_kept_after_training_on_five_cells():
    """Trained with the constraint (T2, 5 units, 3 runs), every run keeps the signs and the
    support, in the weights the model uses and in its raw parameter; training changed them."""
    w0, _ = build_variant("Wc", connectome_signed=SIGNED, cell_sign=SIGNS, runs=3, seed=1)
    constraint = build_constraint("Wc", connectome_signed=SIGNED, cell_sign=SIGNS, runs=3, seed=1)
    cfg = FitConfig(epochs=3, n_train=256, n_val=64, n_test=64, batch_size=32, lr=1e-2)
    res = fit("T2", w0, seeds=[0, 1, 2], config=cfg, constraint=constraint)
    w_eff = res.model.effective_recurrent().detach()
    assert constraint.violations(w_eff).tolist() == [0, 0, 0]
    assert constraint.violations(res.model.W.detach()).tolist() == [0, 0, 0]
    assert torch.equal(res.model.W.detach(), w_eff)
    assert not torch.allclose(w_eff, w0)
    for r in range(3):
        _check_dale(w_eff[r].numpy())


def test_without_the_constraint_training_breaks_dale():
    """The check can fail: the same fit without the constraint leaves weights off the wiring."""
    w0, _ = build_variant("Wc", connectome_signed=SIGNED, cell_sign=SIGNS, runs=1, seed=1)
    constraint = build_constraint("Wc", connectome_signed=SIGNED, cell_sign=SIGNS, runs=1, seed=1)
    cfg = FitConfig(epochs=2, n_train=256, n_val=64, n_test=64, batch_size=32, lr=1e-2)
    res = fit("T2", w0, seeds=[0], config=cfg)
    assert int(constraint.violations(res.model.W.detach())[0]) > 0


@pytest.fixture(scope="module")
def prior(tiny_prior):
    """The tests' ~45-unit synthetic prior (field 6_6_2) with excitatory and inhibitory cells."""
    return priors_store.load("tiny", root=tiny_prior[1])


def test_drop_in_init_and_constraint_on_nn_rnn(prior):
    n = len(prior)
    signs = np.asarray(prior["cell_sign"])
    assert (signs == -1).any() and (signs == 1).any()
    rnn = torch.nn.RNN(3, n, nonlinearity="relu", batch_first=True)
    bio_init_(rnn.weight_hh_l0, prior, init="connectome", seed=5)
    w = rnn.weight_hh_l0.detach().T.numpy()  # torch layout is [post, pre]
    signed = prior["connectome_signed"].toarray()
    expected, _ = build_variant("Wc", connectome_signed=signed, cell_sign=signs, runs=1, seed=5)
    np.testing.assert_allclose(w, expected[0].numpy(), rtol=1e-6)
    constraint = ConnectomeConstraint(prior, learn_scale=True)
    parametrize.register_parametrization(rnn, "weight_hh_l0", constraint)
    assert int(constraint.violations(rnn.weight_hh_l0)) == 0
    opt = torch.optim.Adam(rnn.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        x = torch.randn(16, 10, 3, generator=gen)
        out, _ = rnn(x)
        loss = (out[:, -1].sum(dim=1) - 1.0).pow(2).mean() + out.abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    trained = rnn.weight_hh_l0.detach()
    assert int(constraint.violations(trained)) == 0
    t = trained.T.numpy()
    assert (t[signs == 1] >= 0).all() and (t[signs == -1] <= 0).all()
    assert (t[signed == 0] == 0).all()
    assert not torch.allclose(constraint.scale.detach(), torch.ones_like(constraint.scale))
    n_types = prior.stats("connectome_type_pair")["n_types"]
    assert constraint.scale.numel() == n_types ** 2


def test_units_reindex_and_refusals(prior):
    counts = prior["connectome"].toarray()
    busiest = np.argsort(-(counts > 0).sum(axis=0) - (counts > 0).sum(axis=1))[:6][::-1]
    ids = prior.neurons.nucleus_id.to_numpy()[busiest].tolist()
    sub = prior.select(ids)
    w = torch.empty(6, 6)
    connectome_init_(w, prior, seed=0, units=ids, orientation="pre_post", radius=None)
    signed = sub["connectome_signed"].toarray()
    assert (signed != 0).any()
    np.testing.assert_array_equal(w.numpy(), signed.astype(np.float32))
    with pytest.raises(TrainingError, match=r"expects a recurrent weight of shape \(6, 6\)"):
        ConnectomeConstraint(prior, units=ids)(torch.zeros(5, 5))
    with pytest.raises(TrainingError, match="exactly one source of randomness"):
        connectome_init_(w, prior, units=ids)


def test_wc_variants_on_a_structure_only_prior(structure_only, tmp_path):
    store, manifest = structure_only
    prior = priors_store.load("wiring", root=store / "artifacts")
    assert "w_bio_modulation" not in prior.kinds and "connectome_signed" in prior.kinds
    cfg = ExperimentConfig(tasks=("T2",), variants=("Wc", "WcD*C", "Wc!"), runs=2,
                           fit=FitConfig(epochs=1, n_train=128, n_val=64, n_test=64))
    runs = run_experiment(prior, cfg, out_dir=tmp_path)
    assert len(runs) == 6 and (runs["dale_violations"] == 0).all()
    assert runs["test_accuracy"].between(0, 1).all()


def test_other_variants_record_no_dale_check(structure_only, tmp_path):
    store, _ = structure_only
    prior = priors_store.load("wiring", root=store / "artifacts")
    cfg = ExperimentConfig(tasks=("T2",), variants=("W",), runs=1,
                           fit=FitConfig(epochs=1, n_train=64, n_val=32, n_test=32))
    assert run_experiment(prior, cfg, out_dir=tmp_path)["dale_violations"].isna().all()
