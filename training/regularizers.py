"""Penalties on the recurrent matrix, batched over runs (docs/method.md#regularizers).

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
``D*`` are the study's scrambled coordinates (flaw 4, :func:`scrambled_distances_paper`);
:func:`penalty_distances` picks one of them for a variant's distance kind and protocol.

One implementation: the penalty forms are the functions :func:`l1_penalty`,
:func:`distance_penalty`, :func:`wiring_communicability_penalty` and
:func:`communicability_match_penalty` (on ``(N, N)`` or ``(R, N, N)`` weights [pre, post]).
:class:`Regularizer` (our batched training) and the drop-in ``nn.Module`` penalties of
:mod:`training.components` (any model, e.g. ``torch.nn.RNN``) both call them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from connectome_priors.priors_store.derive.distance import minmax_normalized

from .expm import expm
from .grammar import DistanceKind, Protocol, RegularizerKind

__all__ = ["RegularizerKind", "DistanceKind", "Regularizer", "communicability", "grid_shape",
           "grid_distances", "grid_distances_paper", "real_distances",
           "scrambled_distances_paper", "penalty_distances", "sorted_communicability",
           "distance_terms", "wiring_communicability_terms", "l1_penalty", "distance_penalty",
           "wiring_communicability_penalty", "communicability_match_penalty"]


def communicability(w: torch.Tensor) -> torch.Tensor:
    """Differentiable weighted communicability ``expm(S^-1/2 |W| S^-1/2)``, zero diagonal.

    Matches ``priors_store.derive.communication`` (strength = row sums of ``|W|``, the
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
    with the true ones at r ~ 0.0, docs/method.md#flaw-4). Returned min-max normalized, ``(N, N)``. The
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


def penalty_distances(kind: DistanceKind, *, distance_um: np.ndarray | None,
                      protocol: Protocol = "corrected",
                      positions_vox: np.ndarray | None = None,
                      n_units: int | None = None) -> np.ndarray:
    """The distance matrix a penalty uses, ``(N, N)`` float64, for a distance kind and protocol.

    Parameters
    ----------
    kind
        ``"real"`` (``D*``) or ``"grid"`` (``D``).
    distance_um
        ``(N, N)`` soma distances in um (the artifact's ``distance_um``); its size sets N. Only
        ``"corrected"``'s ``D*`` reads its values: ``None`` is allowed elsewhere when ``n_units``
        (or, for ``"paper"``'s ``D*``, ``positions_vox``) gives N.
    protocol
        ``"corrected"``: ``D*`` = min-max normalized soma distances (:func:`real_distances`),
        ``D`` = min-max normalized grid distances. ``"paper"``: ``D*`` from the study's scrambled
        coordinates (flaw 4), ``D`` raw integer grid distances (flaw 3).
    positions_vox
        ``(N, 3)`` soma positions in voxels in the prior's order; required by ``"paper"``'s ``D*``.
    n_units
        N of the grid distances ``D``, where ``distance_um`` is ``None``.

    Returns
    -------
    numpy.ndarray
        ``(N, N)`` float64, symmetric.

    Raises
    ------
    ValueError
        For an unknown kind or protocol, ``"paper"``'s ``D*`` without ``positions_vox``, or an
        array needed (``distance_um``, or N for ``D``) that is ``None``.

    Examples
    --------
    >>> d = np.array([[0.0, 100.0], [100.0, 0.0]])
    >>> penalty_distances("real", distance_um=d).tolist()
    [[0.0, 1.0], [1.0, 0.0]]
    """
    if protocol not in ("corrected", "paper"):
        raise ValueError(f"unknown protocol {protocol!r}; expected 'corrected' or 'paper'")
    if kind == "real":
        if protocol == "corrected":
            if distance_um is None:
                raise ValueError("the corrected protocol's D* is the prior's distance_um, "
                                 "min-max normalized; pass distance_um (found None)")
            return real_distances(distance_um)
        if positions_vox is None:
            raise ValueError("the paper protocol's D* reproduces the study's scrambled coordinates "
                             "(flaw 4) and needs positions_vox; pass the (N, 3) voxel positions")
        return scrambled_distances_paper(positions_vox)
    if kind == "grid":
        if distance_um is None and n_units is None:
            raise ValueError("grid distances D need N: pass distance_um or n_units (both None)")
        n = int(n_units) if distance_um is None else np.shape(distance_um)[0]
        return grid_distances(n) if protocol == "corrected" else grid_distances_paper(n)
    raise ValueError(f"unknown distance kind {kind!r}; expected 'real' (D*) or 'grid' (D)")


def sorted_communicability(empirical: np.ndarray | torch.Tensor) -> torch.Tensor:
    """The sorted entries of a target communicability, ``(N*N,)`` float64, as ``"C*"`` uses them."""
    c = torch.as_tensor(np.asarray(empirical, dtype=np.float64))
    return torch.sort(c.flatten()).values  # (N*N,)


def distance_terms(w: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
    """Per-entry ``|W| * D``, same shape as ``w`` (``(N, N)`` or ``(R, N, N)``)."""
    return w.abs() * distance


def wiring_communicability_terms(w: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
    """Per-entry ``|W| * D * C(|W|)`` for weights [pre, post], same shape as ``w``."""
    a = w.abs()
    c = communicability(w)
    return a * distance * c


def l1_penalty(w: torch.Tensor, *, strength: float) -> torch.Tensor:
    """``strength * sum |W|``: scalar for ``(N, N)``, ``(R,)`` for a stack."""
    return strength * w.abs().sum(dim=(-2, -1))


def distance_penalty(w: torch.Tensor, distance: torch.Tensor, *, strength: float) -> torch.Tensor:
    """The ``"WD"`` form ``strength * sum |W| * D``; scalar, or ``(R,)`` for ``(R, N, N)``."""
    return strength * distance_terms(w, distance).sum(dim=(-2, -1))


def wiring_communicability_penalty(w: torch.Tensor, distance: torch.Tensor, *,
                                   strength: float) -> torch.Tensor:
    """The ``"WDC"`` form ``strength * sum |W| * D * C(|W|)`` (with ``D*``: the study's WD*C).

    ``w`` is [pre, post] (communicability normalizes by out-strengths, the row sums); scalar for
    ``(N, N)``, ``(R,)`` for ``(R, N, N)``.
    """
    return strength * wiring_communicability_terms(w, distance).sum(dim=(-2, -1))


def communicability_match_penalty(w: torch.Tensor, distance: torch.Tensor,
                                  target_sorted: torch.Tensor, *, strength: float,
                                  emd_strength: float) -> torch.Tensor:
    """The ``"C*"`` form ``strength * sum |W| * D + emd_strength * mean |sort(C(|W|)) - target|``.

    ``target_sorted`` is :func:`sorted_communicability` of the empirical matrix (``(N*N,)``);
    ``w`` is [pre, post]; scalar for ``(N, N)``, ``(R,)`` for ``(R, N, N)``.
    """
    a = w.abs()
    c = communicability(w)  # same shape as w
    model_sorted = torch.sort(c.flatten(start_dim=-2), dim=-1).values  # (..., N*N)
    emd = (model_sorted - target_sorted).abs().mean(dim=-1)  # (...,)
    return strength * (a * distance).sum(dim=(-2, -1)) + emd_strength * emd


def as_reference(ref: torch.Tensor, like: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
    """``ref`` in ``like``'s dtype and device (cast once per dtype and device given a cache)."""
    if ref.dtype == like.dtype and ref.device == like.device:
        return ref
    key = (like.dtype, like.device)
    if cache is not None and key in cache:
        return cache[key]
    out = ref.to(device=like.device, dtype=like.dtype)
    if cache is not None:
        cache[key] = out
    return out


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
        # kept in float64 and cast to the weights' dtype on use: a float32 cast of the float64
        # reference rounds exactly as a direct float32 conversion, so float32 runs are unchanged
        self._d = None if self.distance is None else torch.as_tensor(
            np.asarray(self.distance, dtype=np.float64))
        self._c_sorted = (None if self.empirical_communicability is None
                          else sorted_communicability(self.empirical_communicability))
        self._cast: dict = {}

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        """Penalty of each run, ``(R,)``, for weights ``(R, N, N)`` [run, pre, post]."""
        n = w.shape[-1]
        for name, ref in (("distance", self._d), ("communicability", self._c_sorted)):
            if ref is not None and ref.numel() != n * n:
                raise ValueError(f"{name} has {ref.numel()} entries but the weights are "
                                 f"{n} x {n}; expected matching sizes")
        if self.kind == "L1":
            return l1_penalty(w, strength=1.0 if self.paper_l1 else self.strength)
        d = as_reference(self._d, w, self._cast.setdefault("d", {}))
        if self.kind == "WD":
            return distance_penalty(w, d, strength=self.strength)
        if self.kind == "WDC":
            return wiring_communicability_penalty(w, d, strength=self.strength)
        target = as_reference(self._c_sorted, w, self._cast.setdefault("c", {}))
        return communicability_match_penalty(w, d, target, strength=self.strength,
                                             emd_strength=self.emd_strength)
