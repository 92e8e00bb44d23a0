"""The fast matrix exponential against torch.linalg.matrix_exp: values and gradients."""

import math

import numpy as np
import pytest
import torch

from connectome_priors.training.expm import THETA, expm
from connectome_priors.training.regularizers import communicability


@pytest.mark.parametrize("norm", [0.0, 0.1, 0.5, 1.0, 7.0, 60.0])
def test_values_and_gradients_match_matrix_exp(norm):
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(2, 30, 30, generator=gen, dtype=torch.float64)
    if norm:
        a = a * norm / float(a.abs().sum(dim=-2).amax())
    else:
        a = torch.zeros_like(a)
    probe = torch.randn(2, 30, 30, generator=gen, dtype=torch.float64)
    a1, a2 = a.clone().requires_grad_(), a.clone().requires_grad_()
    got, ref = expm(a1), torch.linalg.matrix_exp(a2)
    (got * probe).sum().backward()
    (ref * probe).sum().backward()
    scale = float(ref.detach().abs().max())
    assert float((got - ref).detach().abs().max()) <= 1e-12 * scale
    assert float((a1.grad - a2.grad).abs().max()) <= 1e-10 * float(a2.grad.abs().max())


def test_hand_computed_cases():
    nil = torch.tensor([[0.0, 2.0], [0.0, 0.0]], dtype=torch.float64)
    assert expm(nil).tolist() == [[1.0, 2.0], [0.0, 1.0]]
    rot = torch.tensor([[0.0, -math.pi / 2], [math.pi / 2, 0.0]], dtype=torch.float64)
    np.testing.assert_allclose(expm(rot).numpy(), [[0.0, -1.0], [1.0, 0.0]], atol=3e-10)  # the bound
    diag = torch.diag(torch.tensor([1.0, -3.0, 20.0], dtype=torch.float64))
    np.testing.assert_allclose(np.diag(expm(diag).numpy()), np.exp([1.0, -3.0, 20.0]), rtol=1e-9)


def test_gradcheck_float64_with_squarings():
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(1, 6, 6, generator=gen, dtype=torch.float64) * 2.0  # norm > THETA: squarings
    assert float(a.abs().sum(dim=-2).amax()) > 4 * THETA
    assert torch.autograd.gradcheck(expm, (a.requires_grad_(),))


def test_float32_communicability_agrees_with_float64_reference():
    gen = torch.Generator().manual_seed(1)
    w = torch.rand(3, 80, 80, generator=gen) * 0.05
    w[0, 5] = 0.0  # an isolated node (no out-strength)
    got = communicability(w)
    a = w.double().abs()
    s = a.sum(-1)
    inv = torch.where(s > 0, s.clamp(min=1e-300).rsqrt(), torch.zeros_like(s))
    ref = torch.linalg.matrix_exp(inv[:, :, None] * a * inv[:, None, :])
    keep = (s > 0)[:, :, None] & (s > 0)[:, None, :]
    ref = ref * keep * (1 - torch.eye(80, dtype=torch.float64))
    np.testing.assert_allclose(got.double().numpy(), ref.numpy(), atol=2e-6)
    assert float(got[0, 5].abs().max()) == 0.0 and float(got[0, :, 5].abs().max()) == 0.0


def test_rejects_non_square():
    with pytest.raises(ValueError, match=r"square"):
        expm(torch.zeros(3, 4))
