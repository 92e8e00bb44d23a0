"""Penalties on the recurrent matrix, batched over runs (METHOD.md section 3).

All take ``W`` ``(R, N, N)`` indexed [run, pre, post] (use ``model.effective_recurrent()``) and
return one penalty per run, ``(R,)``:

- ``"L1"``: ``lam * sum |W|`` (the study's ``W``; its code used coefficient 1, flaw 2:
  ``paper_l1=True``).
- ``"WD"``: ``lam * sum |W| * D``.
- ``"WDC"``: ``lam * sum |W| * D * C(|W|)``, communicability recomputed from ``|W|`` at every call
  and differentiated through :func:`training.expm.expm` (scaling and squaring; its gradient costs
  ~4x less than ``torch.linalg.matrix_exp``'s).
- ``"C*"``: ``lam * sum |W| * D + lam_emd * mean |sort(C(|W|)) - sort(C_empirical)|`` (the sorted
  entries of both matrices, a 1-D earth mover's distance between their value distributions).

Distances: ``D*`` are real soma distances min-max normalized (:func:`real_distances`); ``D`` are
grid distances (:func:`grid_distances`), min-max normalized the same way in the corrected
protocol (flaw 3), raw integers in the ``paper`` protocol (:func:`grid_distances_paper`), whose
``D*`` are the study's scrambled coordinates (flaw 4, :func:`scrambled_distances_paper`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from connectome_priors.priors_store.derive.distance import minmax_normalized

from .expm import expm

__all__ = ["RegularizerKind", "Regularizer", "communicability", "grid_shape", "grid_distances",
           "grid_distances_paper", "real_distances", "scrambled_distances_paper"]

RegularizerKind = Literal["L1", "WD", "WDC", "C*"]


def communicability(w: torch.Tensor) -> torch.Tensor:
    """Differentiable weighted communicability ``expm(S^-1/2 |W| S^-1/2)``, zero diagonal.

    Matches ``priors_store.derive.communicability`` (strength = row sums of ``|W|``, the
    out-strength of an [pre, post] matrix; zero-strength nodes isolated: their rows and columns
    are 0).

    Parameters
    ----------
    w
        ``(N, N)`` or ``(R, N, N)`` weights [pre, post].

    Returns
    -------
    torch.Tensor
        Same shape and dtype, non-negative.

    Examples
    --------
    >>> c = communicability(torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64))
    >>> round(float(c[0, 1]), 6) == round(float(np.sinh(1.0)), 6)
    True
    """
    single = w.dim() == 2
    a = w.abs().unsqueeze(0) if single else w.abs()  # (R, N, N)
    s = a.sum(dim=-1)  # (R, N) out-strengths
    alive = s > 0
    inv_sqrt = torch.where(alive, torch.rsqrt(torch.where(alive, s, torch.ones_like(s))),
                           torch.zeros_like(s))  # (R, N)
    norm = inv_sqrt[:, :, None] * a * inv_sqrt[:, None, :]  # (R, N, N)
    c = expm(norm)
    keep = (alive[:, :, None] & alive[:, None, :]).to(c.dtype)  # (R, N, N)
    keep = keep * (1.0 - torch.eye(a.shape[-1], dtype=c.dtype))
    c = c * keep
    return c[0] if single else c


def grid_shape(n: int, *, layers: int = 2) -> tuple[int, int, int]:
    """A factorization ``(x, y, layers)`` of N with x * y as square as possible (x <= y).

    ``grid_shape(312) == (12, 13, 2)``; a count not divisible by ``layers`` uses one layer.
    """
    if n < 1:
        raise ValueError(f"grid size must be a positive number of units; found {n}")
    if n % layers:
        layers = 1
    m = n // layers
    x = max(d for d in range(1, int(np.sqrt(m)) + 1) if m % d == 0)
    return x, m // x, layers


def grid_distances_paper(n: int, *, layers: int = 2) -> np.ndarray:
    """Euclidean distances between integer grid coordinates, as the study's code used (flaw 3).

    Units are placed in C order over ``grid_shape(n)``; returns ``(N, N)`` float64, mean ~6.6 for
    N = 312.
    """
    shape = grid_shape(n, layers=layers)
    coords = np.stack(np.unravel_index(np.arange(n), shape), axis=1).astype(np.float64)  # (N, 3)
    diff = coords[:, None, :] - coords[None, :, :]
    return np.sqrt((diff ** 2).sum(-1))


def grid_distances(n: int, *, layers: int = 2) -> np.ndarray:
    """Grid distances min-max normalized like the real ones (the corrected protocol), ``(N, N)``."""
    if n < 2:
        raise ValueError(f"grid distances need at least 2 units; found {n}")
    return minmax_normalized(grid_distances_paper(n, layers=layers))


def scrambled_distances_paper(positions_vox: np.ndarray) -> np.ndarray:
    """The study's "real" distances (flaw 4): coordinates taken from ``positions.reshape(3, -1)``.

    The study's code reshaped the ``(N, 3)`` voxel positions to ``(3, N)`` instead of
    transposing them, so unit ``i`` got the coordinates ``(flat[i], flat[N + i], flat[2N + i])``
    of the flattened array: distances that no longer follow the somata (on 6_6_2 they correlate
    with the true ones at r ~ 0.0, METHOD.md 4). Returned min-max normalized, ``(N, N)``. The
    scramble depends on the row order: the study used its release's order, a prior uses its own,
    so the matrix differs from the study's while being as uninformative.
    """
    pos = np.asarray(positions_vox, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(f"positions must be (N, 3) voxel coordinates; found shape {pos.shape}")
    coords = pos.reshape(3, -1).T  # the flaw: a reshape where a transpose was meant
    diff = coords[:, None, :] - coords[None, :, :]
    return minmax_normalized(np.sqrt((diff ** 2).sum(-1)))


def real_distances(distance_um: np.ndarray) -> np.ndarray:
    """Real soma distances (the artifact's ``distance_um``) min-max normalized, ``(N, N)``."""
    d = np.asarray(distance_um, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise ValueError(f"distance_um must be square (N, N); found shape {d.shape}")
    return minmax_normalized(d)


@dataclass
class Regularizer:
    """A penalty on the recurrent matrix; call it on ``(R, N, N)`` weights to get ``(R,)``."""

    kind: RegularizerKind
    """Which penalty: ``"L1"``, ``"WD"``, ``"WDC"`` or ``"C*"``."""
    strength: float = 0.3
    """lambda, the coefficient of the weight (and distance, communicability) term."""
    distance: np.ndarray | torch.Tensor | None = None
    """``(N, N)`` distances D or D* (required by every kind but ``"L1"``)."""
    empirical_communicability: np.ndarray | torch.Tensor | None = None
    """``(N, N)`` target communicability (required by ``"C*"``)."""
    emd_strength: float = 0.1
    """lambda_EMD, the coefficient of the sorted-communicability distance of ``"C*"``."""
    paper_l1: bool = False
    """Reproduce flaw 2: ``"L1"`` with coefficient 1 whatever ``strength`` is."""

    def __post_init__(self) -> None:
        if self.kind not in ("L1", "WD", "WDC", "C*"):
            raise ValueError(f"unknown regularizer {self.kind!r}; expected 'L1', 'WD', 'WDC' or "
                             "'C*'")
        if self.kind != "L1" and self.distance is None:
            raise ValueError(f"regularizer {self.kind!r} needs a distance matrix; pass distance=")
        if self.kind == "C*" and self.empirical_communicability is None:
            raise ValueError("regularizer 'C*' needs the empirical communicability; pass "
                             "empirical_communicability=")
        self._d = None if self.distance is None else torch.as_tensor(
            np.asarray(self.distance, dtype=np.float32))
        self._c_sorted = None
        if self.empirical_communicability is not None:
            c = torch.as_tensor(np.asarray(self.empirical_communicability, dtype=np.float32))
            self._c_sorted = torch.sort(c.flatten()).values  # (N*N,)

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        """Penalty of each run, ``(R,)``, for weights ``(R, N, N)`` [run, pre, post]."""
        n = w.shape[-1]
        for name, ref in (("distance", self._d), ("communicability", self._c_sorted)):
            if ref is not None and ref.numel() != n * n:
                raise ValueError(f"{name} has {ref.numel()} entries but the weights are "
                                 f"{n} x {n}; expected matching sizes")
        a = w.abs()
        if self.kind == "L1":
            coef = 1.0 if self.paper_l1 else self.strength
            return coef * a.sum(dim=(-2, -1))
        d = self._d.to(w.dtype)
        if self.kind == "WD":
            return self.strength * (a * d).sum(dim=(-2, -1))
        c = communicability(w)  # (R, N, N)
        if self.kind == "WDC":
            return self.strength * (a * d * c).sum(dim=(-2, -1))
        model_sorted = torch.sort(c.flatten(start_dim=-2), dim=-1).values  # (R, N*N)
        emd = (model_sorted - self._c_sorted.to(w.dtype)).abs().mean(dim=-1)  # (R,)
        return self.strength * (a * d).sum(dim=(-2, -1)) + self.emd_strength * emd
