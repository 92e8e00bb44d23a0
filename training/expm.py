"""A matrix exponential whose gradient costs about twice its forward pass.

``torch.linalg.matrix_exp`` differentiates through the exponential of a ``2N x 2N`` block matrix,
so one forward + backward of a 312 x 312 matrix costs ~12 forward passes (docs/method.md#speed:
the study's expm gradient takes ~9x the arithmetic it needs). The communicability penalties
(``WDC``, ``C*``) evaluate it at every update, which made them ~2.7x slower than plain training.

:func:`expm` uses scaling and squaring with a degree-9 Taylor polynomial evaluated by the
Paterson-Stockmeyer scheme (4 matrix products) and lets autograd differentiate the products
(2 products each). The scaling keeps ``||A / 2^s||_1 <= 0.5``, where the truncation error is below
``0.5^10 / 10! ~ 2.7e-10`` relative, far under float32 resolution; the tests compare values and
gradients with ``torch.linalg.matrix_exp`` in float64.
"""

from __future__ import annotations

import math

import torch

__all__ = ["expm", "THETA", "DEGREE"]

#: Largest 1-norm the Taylor polynomial is evaluated at (after scaling).
THETA = 0.5
#: Degree of the Taylor polynomial.
DEGREE = 9

_COEF = [1.0 / math.factorial(k) for k in range(DEGREE + 1)]


def _squarings(a: torch.Tensor) -> int:
    """Number of squarings so that every matrix of the batch has 1-norm <= THETA."""
    norm = float(a.detach().abs().sum(dim=-2).amax())  # max column sum over the whole batch
    if not math.isfinite(norm):
        return 0  # propagate the non-finite values instead of looping
    return max(0, math.ceil(math.log2(norm / THETA))) if norm > THETA else 0


def expm(a: torch.Tensor) -> torch.Tensor:
    """Matrix exponential of ``a`` (``(..., N, N)``), differentiable, batched over leading dims.

    Parameters
    ----------
    a
        Square matrices, float32 or float64.

    Returns
    -------
    torch.Tensor
        ``exp(a)``, same shape and dtype.

    Examples
    --------
    >>> x = torch.tensor([[0.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    >>> expm(x).tolist()
    [[1.0, 1.0], [0.0, 1.0]]
    """
    if a.dim() < 2 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"expm needs square matrices (..., N, N); found shape {tuple(a.shape)}")
    s = _squarings(a)
    x = a / (2.0 ** s) if s else a
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device).expand_as(a)
    c = _COEF
    x2 = x @ x
    x3 = x2 @ x
    b0 = c[0] * eye + c[1] * x + c[2] * x2
    b1 = c[3] * eye + c[4] * x + c[5] * x2
    b2 = c[6] * eye + c[7] * x + c[8] * x2 + c[9] * x3
    out = b0 + x3 @ (b1 + x3 @ b2)  # sum_{k<=9} x^k / k!
    for _ in range(s):
        out = out @ out
    return out
