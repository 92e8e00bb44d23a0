"""Connectome-constrained recurrent weights: the init from the EM wiring and Dale's law.

A connectome-constrained model (flyvis-style) takes its recurrent weights from the wiring: the
magnitude of ``W[pre, post]`` from the connection's synapse count or summed size, its sign from
the presynaptic cell's class (Dale's law: an excitatory cell's outgoing weights stay >= 0, an
inhibitory cell's <= 0), zero where there is no connection, optionally times a learned scale per
(presynaptic type, postsynaptic type) pair. The prior holds the inputs
(``connectome_signed``, ``cell_sign``, ``connectome_type_pair``; :mod:`priors_store.derive.signed`).

- :func:`connectome_family` builds the initial weights of the ``Wc`` variants (``"connectome"``:
  the signed measure scaled to a spectral radius) and of their control ``Wc!``
  (``"connectome_permuted"``: every presynaptic cell's connections moved to random targets, run by
  run: same out-degrees, magnitudes and signs, no wiring), with the support and signs that
  constrain them.
- :func:`dale` is the constraint: ``support * sign[pre] * |W|`` (rows of unknown sign: ``support
  * W``); :func:`dale_violations` counts the entries of a weight that break it.
- :class:`DaleMask` holds a support and signs (and optionally a learned scale per type pair) as an
  ``nn.Module``: :class:`~training.model.BatchedRNN` and the drop-in
  :class:`training.components.ConnectomeConstraint` both apply it.

Matrices are [pre, post] (rows presynaptic); batched ones ``(R, N, N)``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from .initializers import spectral_radius

__all__ = ["ConnectomeInit", "DaleMask", "SEED_OFFSET", "connectome_family", "dale", "dale_violations"]

#: ``"connectome"`` (Wc) or ``"connectome_permuted"`` (Wc!, the control).
ConnectomeInit = Literal["connectome", "connectome_permuted"]

#: The ``Wc!`` permutations use ``seed + SEED_OFFSET`` of a variant's init seed (``W!`` uses
#: ``+ 1``, ``Wrand`` ``+ 2``), in the variants and in ``connectome_init_`` alike.
SEED_OFFSET = 4


def _inputs(signed, signs) -> tuple[np.ndarray, np.ndarray]:
    w = signed.toarray() if sp.issparse(signed) else np.asarray(signed)
    w = np.asarray(w, dtype=np.float64)
    s = np.asarray(signs)
    if w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise ValueError(f"connectome_signed must be a square (N, N) matrix; found shape "
                         f"{w.shape}")
    if s.shape != (w.shape[0],) or not np.isin(s, (-1, 0, 1)).all():
        raise ValueError(f"cell_sign must hold one of -1, 0, +1 per neuron ({w.shape[0]}); found "
                         f"shape {s.shape}")
    if not np.isfinite(w).all():
        raise ValueError("connectome_signed holds non-finite values")
    wrong = ((s[:, None] > 0) & (w < 0)) | ((s[:, None] < 0) & (w > 0)) | \
            ((s[:, None] == 0) & (w < 0))
    if wrong.any():
        i, j = np.argwhere(wrong)[0]
        raise ValueError(f"connectome_signed disagrees with cell_sign at {int(wrong.sum())} "
                         f"entries, e.g. [pre {i}, post {j}] = {w[i, j]} with sign {s[i]}: pass "
                         "the [pre, post] matrix of the same prior")
    if not (w != 0).any():
        raise ValueError("connectome_signed has no connection: nothing to initialize from")
    return np.abs(w), s.astype(np.int64)


def _scaled(m: np.ndarray, radius: float | None) -> np.ndarray:
    """``m`` scaled to spectral radius ``radius`` (to spectral norm ``radius`` where its spectral
    radius is 0: an acyclic wiring); unchanged for ``radius=None``."""
    if radius is None:
        return m
    rho = float(spectral_radius(m))
    if rho < 1e-12:
        rho = float(np.linalg.norm(m, 2))
    return m * (radius / rho)


def _shuffle_targets(mag: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Every row's non-zero values moved to random distinct off-diagonal columns."""
    n = mag.shape[0]
    out = np.zeros_like(mag)
    for i in range(n):
        values = mag[i][mag[i] != 0]
        if not values.size:
            continue
        targets = np.delete(np.arange(n), i)
        if values.size > targets.size:  # a self-connection in a full row: keep the diagonal
            targets = np.arange(n)
        out[i, rng.choice(targets, size=values.size, replace=False)] = rng.permutation(values)
    return out


def connectome_family(connectome_signed, cell_sign, init: ConnectomeInit = "connectome", *,
                      runs: int, seed: int, radius: float | None = 0.95,
                      dtype: torch.dtype = torch.float32
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Initial weights of the ``Wc`` variants, with the support and signs that constrain them.

    Parameters
    ----------
    connectome_signed
        ``(N, N)`` [pre, post] signed measure (the prior's ``connectome_signed``; dense or
        scipy.sparse): its magnitudes are synapse counts or summed sizes.
    cell_sign
        ``(N,)`` +1 (excitatory), -1 (inhibitory) or 0 (unknown) per neuron (``cell_sign``).
    init
        ``"connectome"``: ``W = c * sign[pre] * |connectome_signed|`` (unknown signs: ``+``),
        the same for every run, ``c`` setting the spectral radius to ``radius``.
        ``"connectome_permuted"``: per run, every row's magnitudes moved to random off-diagonal
        columns (out-degree, magnitudes and sign of every presynaptic cell kept, the wiring
        lost), then scaled the same way. (A joint permutation of rows and columns, like ``W!``,
        would relabel the units only, which a model with random input weights cannot tell apart.)
    runs
        Runs R.
    seed
        Seed of the permutations (``"connectome_permuted"``); ``"connectome"`` draws nothing.
    radius
        Target spectral radius (the spectral norm where the wiring has spectral radius 0);
        ``None`` keeps the raw measure.
    dtype
        Torch dtype of the weights.

    Returns
    -------
    weight : torch.Tensor
        ``(R, N, N)`` [run, pre, post].
    support : torch.Tensor
        ``(R, N, N)`` bool, where each run's weight may be non-zero.
    sign : torch.Tensor
        ``(R, N)`` float, the sign each row must keep (0: free).

    Raises
    ------
    ValueError
        For an unknown ``init``, or inputs that are not one prior's signed matrix and signs.

    Examples
    --------
    >>> w, support, sign = connectome_family(np.array([[0., 2.], [-1., 0.]]), np.array([1, -1]),
    ...                                      runs=1, seed=0, radius=None)
    >>> w[0].tolist(), sign[0].tolist()
    ([[0.0, 2.0], [-1.0, 0.0]], [1.0, -1.0])
    """
    if init not in ("connectome", "connectome_permuted"):
        raise ValueError(f"unknown connectome initialization {init!r}; expected 'connectome' or "
                         "'connectome_permuted'")
    if runs < 1:
        raise ValueError(f"runs must be >= 1; found {runs}")
    mag, s = _inputs(connectome_signed, cell_sign)
    row = np.where(s == 0, 1.0, s.astype(np.float64))[:, None]
    rng = np.random.default_rng(seed)
    weights, supports = [], []
    for _ in range(runs):
        m = mag if init == "connectome" else _shuffle_targets(mag, rng)
        weights.append(_scaled(row * m + 0.0, radius))  # + 0.0: no -0.0 off the support
        supports.append(m != 0)
    sign = torch.from_numpy(np.tile(s.astype(np.float64), (runs, 1))).to(dtype)
    return (torch.from_numpy(np.stack(weights)).to(dtype), torch.from_numpy(np.stack(supports)),
            sign)


def dale(w: torch.Tensor, support: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """The constrained weight: ``support * sign[pre] * |w|``; rows of sign 0: ``support * w``.

    ``w`` is ``(N, N)`` or ``(R, N, N)`` [pre, post]; ``support`` broadcasts to it, ``sign`` is
    ``(N,)`` or ``(R, N)``. Differentiable (through ``|w|``); idempotent; a weight that already
    keeps the constraint is returned unchanged.
    """
    s = sign.to(w.dtype).unsqueeze(-1)  # (..., N, 1): one sign per presynaptic row
    mag = w.abs()
    signed = torch.where(s > 0, mag, torch.where(s < 0, -mag, w))
    return signed * support.to(w.dtype)


def dale_violations(w: torch.Tensor, support: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """Entries of ``w`` that break the constraint: non-zero off the support, or of the wrong sign
    for their presynaptic cell. ``(R,)`` int64 for ``(R, N, N)``, a 0-d tensor for ``(N, N)``."""
    s = sign.to(w.dtype).unsqueeze(-1)
    bad = ((w != 0) & ~support.bool()) | ((s > 0) & (w < 0)) | ((s < 0) & (w > 0))
    return bad.sum(dim=(-2, -1))


class DaleMask(nn.Module):
    """A weight constraint: support and signs (:func:`dale`), optionally times a learned scale
    per cell-type pair (flyvis-style).

    Parameters
    ----------
    support
        ``(N, N)`` or ``(R, N, N)`` bool [pre, post].
    sign
        ``(N,)`` or ``(R, N)``: +1, -1, or 0 (row free in sign).
    type_pair
        Optional ``(N, N)`` int64: 0 off the support, ``1 + p`` for a connection of type pair
        ``p`` (the prior's ``connectome_type_pair``); with it, ``forward`` multiplies each entry by
        a learned ``scale[p]`` (``n_pairs`` of them, initialized to 1).
    n_pairs
        Number of type pairs (``T * T``); required with ``type_pair``.
    """

    support: torch.Tensor
    sign: torch.Tensor
    type_pair: torch.Tensor

    def __init__(self, support: torch.Tensor, sign: torch.Tensor, *,
                 type_pair: torch.Tensor | None = None, n_pairs: int | None = None) -> None:
        super().__init__()
        # not persistent: the prior and the seed define them; state dicts keep their layout
        self.register_buffer("support", support.bool(), persistent=False)
        self.register_buffer("sign", sign.to(torch.float32), persistent=False)
        self.scale: nn.Parameter | None = None
        if type_pair is not None:
            if n_pairs is None or n_pairs < 1:
                raise ValueError(f"type_pair needs n_pairs >= 1 (T * T); found {n_pairs}")
            if int(type_pair.max()) > n_pairs or int(type_pair.min()) < 0:
                raise ValueError(f"type_pair must hold 0 or 1 + p with p < n_pairs = {n_pairs}; "
                                 f"found values from {int(type_pair.min())} to "
                                 f"{int(type_pair.max())}")
            self.register_buffer("type_pair", type_pair.long(), persistent=False)
            self.scale = nn.Parameter(torch.ones(n_pairs))

    def project(self, w: torch.Tensor) -> torch.Tensor:
        """``w`` under the support and signs only (no scale): :func:`dale`."""
        return dale(w, self.support, self.sign)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        """The constrained weight (times the type-pair scales when learned)."""
        out = self.project(w)
        if self.scale is not None:
            scale = torch.cat([self.scale.new_ones(1), self.scale]).to(out.dtype)
            out = out * scale[self.type_pair]
        return out

    def violations(self, w: torch.Tensor) -> torch.Tensor:
        """:func:`dale_violations` of ``w`` under this constraint."""
        return dale_violations(w, self.support, self.sign)

    def runs(self, lo: int, hi: int) -> DaleMask:
        """The constraint of runs ``lo:hi`` of a batched one (a batch of a cell's runs)."""
        if self.scale is not None:
            raise ValueError("a DaleMask with learned scales is not split by runs")
        return DaleMask(self.support[lo:hi], self.sign[lo:hi])

    def extra_repr(self) -> str:
        return (f"support={tuple(self.support.shape)}, "
                f"learned_scales={0 if self.scale is None else self.scale.numel()}")
