"""``BatchedRNN``: R independent vanilla RNNs, trained together on stacked weights.

Orientation: every recurrent matrix is indexed ``W[r, pre, post]`` like the prior artifacts (rows
presynaptic), so one step is ``h_{t+1} = relu(h_t @ W + x_t @ W_in + b)``: entry ``W[r, i, j]``
carries activity from unit ``i`` to unit ``j`` of run ``r``. (``torch.nn.RNN`` stores the
transpose, [post, pre].)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["ModelConfig", "BatchedRNN"]


@dataclass(frozen=True)
class ModelConfig:
    """Shape and constraint of a batch of RNNs."""

    n_units: int
    """Recurrent units N per run."""
    n_in: int
    """Input channels."""
    n_classes: int
    """Readout classes (softmax over the final state)."""
    runs: int = 1
    """Independent runs R stacked on the leading dimension."""
    positive_only: bool = False
    """Use only the non-negative part of the recurrent weights (the positive-only arm)."""


class BatchedRNN(nn.Module):
    """R independent discrete-time ReLU RNNs without leak, with a linear readout.

    Parameters
    ----------
    config
        Shapes and the positive-only flag.
    constraint
        Optional module applied to the recurrent parameter in the forward pass (e.g. the
        connectome's support and Dale signs, :class:`~training.connectome.DaleMask`), batched
        over runs like ``recurrent``.
    recurrent
        ``(R, N, N)`` initial recurrent weights indexed [run, pre, post].
    seeds
        One seed per run for the input and readout weights (Glorot uniform; biases zero), so that
        run ``r`` of a batch equals a single-run model built with ``seeds[r]``.

    Examples
    --------
    >>> cfg = ModelConfig(n_units=4, n_in=3, n_classes=2, runs=2)
    >>> model = BatchedRNN(cfg, torch.zeros(2, 4, 4), seeds=[0, 1])
    >>> tuple(model(torch.zeros(5, 7, 3)).shape)
    (2, 5, 2)
    """

    def __init__(self, config: ModelConfig, recurrent: torch.Tensor, *, seeds,
                 constraint: nn.Module | None = None) -> None:
        super().__init__()
        r, n = config.runs, config.n_units
        if tuple(recurrent.shape) != (r, n, n):
            raise ValueError(f"recurrent weights have shape {tuple(recurrent.shape)}; expected "
                             f"(runs, N, N) = {(r, n, n)} from the config")
        seeds = list(seeds)
        if len(seeds) != r:
            raise ValueError(f"got {len(seeds)} seeds for {r} runs; expected one seed per run")
        self.config = config
        w_in, w_out = [], []
        for seed in seeds:
            gen = torch.Generator().manual_seed(int(seed))
            w_in.append(_glorot((config.n_in, n), gen))  # (n_in, N)
            w_out.append(_glorot((n, config.n_classes), gen))  # (N, n_classes)
        self.W = nn.Parameter(recurrent.detach().to(torch.float32).clone())  # (R, N, N) pre, post
        self.W_in = nn.Parameter(torch.stack(w_in))  # (R, n_in, N)
        self.b = nn.Parameter(torch.zeros(r, n))  # (R, N)
        self.W_out = nn.Parameter(torch.stack(w_out))  # (R, N, n_classes)
        self.b_out = nn.Parameter(torch.zeros(r, config.n_classes))  # (R, n_classes)
        self.constraint = constraint

    def effective_recurrent(self) -> torch.Tensor:
        """The recurrent matrix the forward pass uses, ``(R, N, N)`` [run, pre, post].

        Equal to the raw parameter, or its non-negative part in the positive-only arm, or the
        constraint applied to it. Compute every metric on this, never on the raw parameter.
        """
        w = self.W.clamp(min=0.0) if self.config.positive_only else self.W
        return w if self.constraint is None else self.constraint(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits at the final step.

        Parameters
        ----------
        x
            ``(batch, time, n_in)`` (the same trials for every run) or ``(R, batch, time, n_in)``.

        Returns
        -------
        torch.Tensor
            ``(R, batch, n_classes)`` logits.
        """
        r = self.config.runs
        if x.dim() == 3:
            x = x.unsqueeze(0).expand(r, *x.shape)
        if x.dim() != 4 or x.shape[0] != r or x.shape[-1] != self.config.n_in:
            raise ValueError(f"input has shape {tuple(x.shape)}; expected (batch, time, "
                             f"{self.config.n_in}) or ({r}, batch, time, {self.config.n_in})")
        w = self.effective_recurrent()
        bias = self.b[:, None, :]  # (R, 1, N)
        h = torch.zeros(r, x.shape[1], self.config.n_units, dtype=w.dtype)  # (R, batch, N)
        # the input drive is computed step by step: materializing the whole (R, batch, time, N)
        # drive costs more memory traffic than the recurrence itself at N ~ 300
        for x_t in x.unbind(2):  # x_t: (R, batch, n_in)
            h = torch.relu(torch.baddbmm(torch.baddbmm(bias, x_t, self.W_in), h, w))
        return torch.baddbmm(self.b_out[:, None, :], h, self.W_out)  # (R, batch, n_classes)


def _glorot(shape: tuple[int, int], gen: torch.Generator) -> torch.Tensor:
    limit = math.sqrt(6.0 / (shape[0] + shape[1]))
    return (torch.rand(shape, generator=gen) * 2.0 - 1.0) * limit
