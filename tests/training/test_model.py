"""Tests of training/model.py."""

from __future__ import annotations

import pytest
import torch

from connectome_priors.training.model import BatchedRNN, ModelConfig


def _model(w, *, positive_only=False, n_in=2):
    r, n = w.shape[0], w.shape[-1]
    cfg = ModelConfig(n_units=n, n_in=n_in, n_classes=2, runs=r, positive_only=positive_only)
    return BatchedRNN(cfg, w, seeds=list(range(r)))


def _hidden(model, x):
    """Final hidden state, by re-running the recurrence of the model's documented equation."""
    w = model.effective_recurrent()
    h = torch.zeros(w.shape[0], x.shape[0], w.shape[-1])
    for t in range(x.shape[1]):
        h = torch.relu(h @ w + x[None, :, t] @ model.W_in + model.b[:, None])
    return h


def test_orientation_pre_post():
    # a single nonzero entry W[pre=0, post=1]: activity moves from unit 0 to unit 1
    w = torch.zeros(1, 3, 3)
    w[0, 0, 1] = 1.0
    model = _model(w, n_in=1)
    with torch.no_grad():
        model.W_in.zero_()
        model.W_in[0, 0, 0] = 1.0  # input drives unit 0 only
        model.W_out.copy_(torch.eye(3)[None, :, :2])  # logits read units 0 and 1
    x = torch.tensor([[[1.0], [0.0]]])  # (batch 1, time 2, n_in 1): pulse, then nothing
    logits = model(x)
    # step 1: h = (1, 0, 0); step 2: h = h @ W = (0, 1, 0)
    assert logits[0, 0].tolist() == [0.0, 1.0]


def test_forward_matches_equation_and_shapes():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(3, 5, 5, generator=gen) * 0.3
    model = _model(w)
    x = torch.randn(4, 6, 2, generator=gen)  # (batch, time, n_in)
    logits = model(x)
    assert logits.shape == (3, 4, 2)
    expected = _hidden(model, x) @ model.W_out + model.b_out[:, None]
    assert torch.allclose(logits, expected, atol=1e-6)
    # per-run inputs (R, batch, time, n_in) give the same when every run sees the same trials
    assert torch.allclose(model(x.expand(3, *x.shape)), logits, atol=1e-6)


def test_runs_are_independent_and_seeded():
    w = torch.randn(2, 4, 4, generator=torch.Generator().manual_seed(1))
    batch = _model(w)
    alone = BatchedRNN(ModelConfig(4, 2, 2, runs=1), w[1:], seeds=[1])
    assert torch.equal(batch.W_in[1], alone.W_in[0])
    assert not torch.equal(batch.W_in[0], batch.W_in[1])
    x = torch.randn(3, 5, 2, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(batch(x)[1], alone(x)[0], atol=1e-6)


def test_effective_recurrent_positive_only():
    w = torch.tensor([[[1.0, -2.0], [-0.5, 3.0]]])
    assert torch.equal(_model(w).effective_recurrent(), w)
    eff = _model(w, positive_only=True).effective_recurrent()
    assert eff.tolist() == [[[1.0, 0.0], [0.0, 3.0]]]


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="expected \\(runs, N, N\\)"):
        BatchedRNN(ModelConfig(4, 2, 2, runs=2), torch.zeros(1, 4, 4), seeds=[0, 1])
    with pytest.raises(ValueError, match="one seed per run"):
        BatchedRNN(ModelConfig(4, 2, 2, runs=2), torch.zeros(2, 4, 4), seeds=[0])
    with pytest.raises(ValueError, match="input has shape"):
        _model(torch.zeros(2, 4, 4))(torch.zeros(3, 5, 7))
