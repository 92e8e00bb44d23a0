"""Tests of training/components.py: the prior's initialization and penalties on any model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from connectome_priors import priors_store
from connectome_priors.priors_store.derive import communicability as store_communicability
from connectome_priors.training.components import (CommunicabilityPenalty, DistancePenalty,
                                                   WiringDistanceCommunicability, bio_init_)
from connectome_priors.training.errors import TrainingError
from connectome_priors.training.initializers import spectral_radius
from connectome_priors.training.regularizers import real_distances
from connectome_priors.training.tasks import TASKS, make_task
from connectome_priors.training.variants import build_variant



@pytest.fixture(scope="module")
def prior(tiny_prior):
    """The session's ~45-unit prior 'tiny' of field 6_6_2, loaded."""
    return priors_store.load("tiny", root=tiny_prior[1])


@pytest.fixture(scope="module")
def small(prior):
    """A 6-unit sub-prior (via select) for gradient checks."""
    return prior.select(prior.neurons.nucleus_id[[3, 0, 7, 11, 5, 2]].tolist())


def _weight(n: int, seed: int = 0, *, dtype=torch.float64) -> torch.Tensor:
    """A dense asymmetric weight with entries away from 0 (|w| is smooth there), [pre, post]."""
    gen = torch.Generator().manual_seed(seed)
    sign = torch.where(torch.rand(n, n, generator=gen) < 0.3, -1.0, 1.0)
    return (sign * (0.05 + torch.rand(n, n, generator=gen))).to(dtype)


def _arrays(prior) -> dict:
    return {"w_bio_modulation": np.asarray(prior["w_bio_modulation"], dtype=np.float64),
            "distance_um": np.asarray(prior["distance_um"], dtype=np.float64),
            "communicability_empirical": np.asarray(prior["communicability"], dtype=np.float64)}


@pytest.mark.parametrize("variant, component", [("WD*", DistancePenalty),
                                                ("WD*C", WiringDistanceCommunicability),
                                                ("W*D*C*", CommunicabilityPenalty),
                                                ("WD", DistancePenalty),
                                                ("WDC", WiringDistanceCommunicability)])
def test_penalty_equals_training_layer(prior, variant, component):
    n = len(prior)
    distance = "grid" if variant in ("WD", "WDC") else "real"
    _, reg = build_variant(variant, **_arrays(prior), runs=1, seed=0)
    w = _weight(n, 1)  # [pre, post], float64
    ours = reg(w[None])[0]
    torch_layout = component(prior, distance=distance)(w.T)  # nn.RNN layout: [post, pre]
    pre_post = component(prior, distance=distance, orientation="pre_post")(w)
    assert torch_layout.dim() == 0
    assert abs(float(torch_layout) - float(ours)) < 1e-8
    assert abs(float(pre_post) - float(ours)) < 1e-8
    # and float32, as our training runs: bit for bit
    w32 = w.float()
    assert float(component(prior, distance=distance)(w32.T)) == float(reg(w32[None])[0])


def test_penalty_hand_computed_against_priors_store(prior):
    """Independently of the shared code: numpy forms with priors_store's communicability."""
    w = _weight(len(prior), 2)
    a, d = np.abs(w.numpy()), real_distances(prior["distance_um"])
    c = store_communicability(w.numpy())
    assert float(DistancePenalty(prior, orientation="pre_post")(w)) == pytest.approx(
        0.3 * (a * d).sum(), rel=1e-12)
    assert float(WiringDistanceCommunicability(prior, orientation="pre_post")(w)) == \
        pytest.approx(0.3 * (a * d * c).sum(), rel=1e-10)
    target = np.sort(np.asarray(prior["communicability"], dtype=np.float64).ravel())
    emd = np.abs(np.sort(c.ravel()) - target).mean()
    assert float(CommunicabilityPenalty(prior, orientation="pre_post")(w)) == pytest.approx(
        0.3 * (a * d).sum() + 0.1 * emd, rel=1e-10)


@pytest.mark.parametrize("component", [DistancePenalty, WiringDistanceCommunicability,
                                       CommunicabilityPenalty])
@pytest.mark.parametrize("orientation", ["torch", "pre_post"])
def test_gradcheck(small, component, orientation):
    pen = component(small, orientation=orientation)
    w = _weight(6, 3).requires_grad_(True)
    assert torch.autograd.gradcheck(pen, (w,))


def test_orientation_transposes_the_map(prior):
    w = _weight(len(prior), 4)  # [pre, post]
    for cls in (DistancePenalty, WiringDistanceCommunicability):
        torch_pen, pp_pen = cls(prior), cls(prior, orientation="pre_post")
        assert torch.allclose(torch_pen.penalty_map(w.T), pp_pen.penalty_map(w).T, rtol=1e-12,
                              atol=0)
        assert float(torch_pen(w.T)) == pytest.approx(float(pp_pen(w)), rel=1e-12)
        assert float(torch_pen.penalty_map(w.T).sum()) == pytest.approx(float(torch_pen(w.T)),
                                                                        rel=1e-12)
    # communicability normalizes by out-strength: the orientation changes the value itself
    wdc = WiringDistanceCommunicability(prior)
    assert torch.allclose(wdc.communicability(w.T),
                          WiringDistanceCommunicability(prior, orientation="pre_post")
                          .communicability(w).T, rtol=1e-12, atol=0)
    assert float(wdc(w)) != pytest.approx(float(wdc(w.T)), rel=1e-6)
    # a batch of weights gives one penalty each
    batch = torch.stack([w.T, 2 * w.T])
    assert wdc(batch).shape == (2,)
    assert float(wdc(batch)[1]) == pytest.approx(float(wdc(2 * w.T)), rel=1e-12)


@pytest.mark.parametrize("init, variant", [("bio", "W*D*C"), ("permuted", "W!D*C"),
                                           ("diagonal_only", "WdiagD*C"),
                                           ("off_diagonal_only", "WoffD*C"),
                                           ("random_positive_matched", "WrandD*C")])
def test_bio_init_matches_our_variants(prior, init, variant):
    n = len(prior)
    w_ours, _ = build_variant(variant, **_arrays(prior), runs=1, seed=9)
    rnn = torch.nn.RNN(3, n, nonlinearity="relu", batch_first=True)
    out = bio_init_(rnn.weight_hh_l0, prior, init, seed=9)
    assert out is rnn.weight_hh_l0 and rnn.weight_hh_l0.requires_grad
    assert torch.equal(rnn.weight_hh_l0.detach(), w_ours[0].T)  # torch layout: [post, pre]
    lin = torch.nn.Linear(n, n, bias=False, dtype=torch.float64)
    bio_init_(lin.weight, prior, init, seed=9, orientation="pre_post")
    assert torch.allclose(lin.weight.detach().float(), w_ours[0], rtol=1e-5, atol=1e-7)


def test_bio_init_options(prior):
    n = len(prior)
    w = torch.empty(n, n)
    bio_init_(w, prior, seed=1, radius=0.5)
    assert spectral_radius(w) == pytest.approx(0.5, rel=1e-5)
    bio_init_(w, prior, seed=1, radius=None, mean=0.2)
    assert float(w.mean()) == pytest.approx(0.2, rel=0.05)  # the floor lifts it a little
    a, b = torch.empty(n, n), torch.empty(n, n)
    bio_init_(a, prior, generator=torch.Generator().manual_seed(3))
    bio_init_(b, prior, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    gen = torch.Generator().manual_seed(3)
    bio_init_(a, prior, generator=gen)
    bio_init_(b, prior, generator=gen)  # the generator advanced: another draw
    assert not torch.equal(a, b)
    with pytest.raises(TrainingError, match="exactly one source of randomness"):
        bio_init_(w, prior)
    with pytest.raises(TrainingError, match="found both"):
        bio_init_(w, prior, seed=1, generator=gen)
    with pytest.raises(TrainingError, match="unknown bio initialization"):
        bio_init_(w, prior, "lognormal", seed=1)


def test_units_reindex_the_prior(prior):
    ids = prior.neurons.nucleus_id.to_numpy()
    order = [int(i) for i in ids[::-1][:10]]
    sub = prior.select(order)
    w = _weight(10, 5)
    assert float(CommunicabilityPenalty(prior, units=order)(w)) == \
        float(CommunicabilityPenalty(sub)(w))
    assert DistancePenalty(prior, units=order).nucleus_ids == tuple(order)
    a, b = torch.empty(10, 10), torch.empty(10, 10)
    bio_init_(a, prior, seed=2, units=order)
    bio_init_(b, sub, seed=2)
    assert torch.equal(a, b)


def test_mismatches_raise_training_error(prior):
    n = len(prior)
    pen = WiringDistanceCommunicability(prior)
    with pytest.raises(TrainingError, match=rf"{n} units and expects a recurrent weight of shape "
                                            rf"\({n}, {n}\).*found shape \({n - 1}, {n - 1}\)"):
        pen(torch.zeros(n - 1, n - 1))
    with pytest.raises(TrainingError, match="found shape"):
        pen(torch.zeros(n, n + 1))
    with pytest.raises(TrainingError, match=r"expects a recurrent weight of shape"):
        bio_init_(torch.nn.RNN(3, n + 2).weight_hh_l0, prior, seed=0)
    with pytest.raises(TrainingError, match="units= "):
        DistancePenalty(prior, units=prior.neurons.nucleus_id[:5].tolist())(torch.zeros(n, n))
    with pytest.raises(TrainingError, match="do not match prior tiny@.*nucleus id"):
        DistancePenalty(prior, units=[-1, -2])
    first = int(prior.neurons.nucleus_id[0])
    with pytest.raises(TrainingError, match="more than once"):
        CommunicabilityPenalty(prior, units=[first, first])
    with pytest.raises(TrainingError, match="unknown orientation"):
        DistancePenalty(prior, orientation="post_pre")
    with pytest.raises(TrainingError, match="unknown distance kind"):
        DistancePenalty(prior, distance="manhattan")
    assert issubclass(TrainingError, Exception)


def test_paper_protocol_distances(prior):
    """The components offer our variants' paper-protocol distances too (flaws 3 and 4)."""
    w = _weight(len(prior), 6)
    arrays = _arrays(prior)
    pos = prior.neurons[["x_vox", "y_vox", "z_vox"]].to_numpy(np.float64)
    for variant, distance in (("WD*", "real"), ("WD", "grid")):
        _, reg = build_variant(variant, **arrays, runs=1, seed=0, protocol="paper",
                               positions_vox=pos)
        pen = DistancePenalty(prior, distance=distance, protocol="paper", orientation="pre_post")
        assert abs(float(pen(w)) - float(reg(w[None])[0])) < 1e-8


@pytest.fixture(scope="module")
def pulled(prior, tmp_path_factory):
    """The tiny prior pushed to a file:// remote, then loaded by URL through a fresh cache."""
    from connectome_priors.priors_store.remote import push

    base = tmp_path_factory.mktemp("remote")
    push("tiny", f"file://{base / 'remote'}", root=prior.directory.parent.parent)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CXP_CACHE", str(base / "cache"))
        loaded = priors_store.load(f"file://{base / 'remote'}/tiny@{prior.version}")
    assert str(loaded.directory).startswith(str(base / "cache"))
    return loaded


def test_plain_torch_rnn_learns_with_bio_init_and_communicability_penalty(pulled):
    """A plain torch.nn.RNN, a prior pulled from a remote, our initializer and penalty."""
    prior = pulled
    torch.manual_seed(0)  # nn.RNN / nn.Linear's own default initialization of the other weights
    spec = TASKS["T2"]
    n = len(prior)
    rnn = torch.nn.RNN(spec.n_in, n, nonlinearity="relu", batch_first=True)
    readout = torch.nn.Linear(n, spec.n_classes)
    bio_init_(rnn.weight_hh_l0, prior, seed=0)
    penalty = CommunicabilityPenalty(prior)
    opt = torch.optim.Adam([*rnn.parameters(), *readout.parameters()], lr=3e-3)
    x, y = make_task("T2", 256, seed=1)  # (256, time, 3), (256,)
    losses = []
    for step in range(30):
        xb, yb = x[(step % 4) * 64:(step % 4 + 1) * 64], y[(step % 4) * 64:(step % 4 + 1) * 64]
        out, _ = rnn(xb)  # (64, time, N)
        task = torch.nn.functional.cross_entropy(readout(out[:, -1]), yb)
        loss = task + penalty(rnn.weight_hh_l0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
