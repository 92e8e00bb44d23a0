"""Initial recurrent matrices, stacked over runs: ``(R, N, N)`` float32 torch, [run, pre, post].

``orthogonal`` is the study's ``W``; ``bio`` its ``W*``; ``permuted`` its ``W!``. The corrected
protocol adds three controls for the diagonal dominance of ``W*`` (docs/method.md#flaw-6):
``diagonal_only``, ``off_diagonal_only`` and ``random_positive_matched``. :func:`bio_family`
chains them as the variants do (one implementation for :func:`training.variants.build_variant` and
the drop-in :func:`training.components.bio_init_`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

__all__ = ["BioInit", "orthogonal", "bio", "permuted", "diagonal_only", "off_diagonal_only",
           "random_positive_matched", "spectral_radius", "bio_family"]

#: The W* family: ``"bio"`` (W*), ``"permuted"`` (W!) and the controls of flaw 6.
BioInit = Literal["bio", "permuted", "diagonal_only", "off_diagonal_only",
                  "random_positive_matched"]


def spectral_radius(w: np.ndarray | torch.Tensor) -> np.ndarray | float:
    """Largest absolute eigenvalue of ``(N, N)`` or of each of ``(R, N, N)`` matrices (float64)."""
    arr = np.asarray(w.detach().cpu() if isinstance(w, torch.Tensor) else w, dtype=np.float64)
    rho = np.abs(np.linalg.eigvals(arr)).max(axis=-1)
    return float(rho) if arr.ndim == 2 else rho


def orthogonal(n: int, *, runs: int, seed: int) -> torch.Tensor:
    """Random orthogonal matrices (Haar measure), one per run.

    Parameters
    ----------
    n
        Units N.
    runs
        Runs R.
    seed
        Seed of the torch generator.

    Returns
    -------
    torch.Tensor
        ``(R, N, N)`` float32 orthogonal matrices.

    Examples
    --------
    >>> q = orthogonal(3, runs=2, seed=0)[0]
    >>> bool(torch.allclose(q @ q.T, torch.eye(3), atol=1e-6))
    True
    """
    gen = torch.Generator().manual_seed(int(seed))
    a = torch.randn(runs, n, n, generator=gen, dtype=torch.float64)  # (R, N, N)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]
    return q.to(torch.float32)


def bio(w_bio_modulation: np.ndarray, *, runs: int, seed: int, mean: float = 0.1,
        floor: float = 0.01, radius: float | None = 0.95,
        dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The study's biological initialization ``W*``, a fresh lognormal draw per run.

    ``M = lognormal(mu=-0.5, sigma=0.5) * w_bio_modulation``, scaled so that its mean over all
    entries is ``mean``, non-zero entries below ``floor`` raised to ``floor``, then scaled to the
    spectral radius ``radius``.

    Parameters
    ----------
    w_bio_modulation
        ``(N, N)`` non-negative modulation (the artifact ``w_bio_modulation``), [pre, post].
    runs
        Runs R.
    seed
        Seed of the numpy generator of the lognormal factors.
    mean
        Target mean of all entries before flooring.
    floor
        Smallest value of a non-zero entry before the radius scaling.
    radius
        Target spectral radius; ``None`` skips that final scaling.
    dtype
        Torch dtype of the result (the draw is computed in float64).

    Returns
    -------
    torch.Tensor
        ``(R, N, N)`` in ``dtype`` (float32 by default), [run, pre, post].

    Raises
    ------
    ValueError
        If the modulation is not square, not finite, negative somewhere, or all zero.

    Examples
    --------
    >>> w = bio(np.ones((3, 3)), runs=1, seed=0)
    >>> round(float(spectral_radius(w[0])), 6)
    0.95
    """
    wb = np.asarray(w_bio_modulation, dtype=np.float64)
    if wb.ndim != 2 or wb.shape[0] != wb.shape[1]:
        raise ValueError(f"w_bio_modulation must be square (N, N); found shape {wb.shape}")
    if not np.all(np.isfinite(wb)) or (wb < 0).any() or not (wb > 0).any():
        raise ValueError("w_bio_modulation must be finite, non-negative and not all zero")
    rng = np.random.default_rng(seed)
    out = np.empty((runs, *wb.shape))  # (R, N, N)
    for r in range(runs):
        m = rng.lognormal(mean=-0.5, sigma=0.5, size=wb.shape) * wb
        m *= mean / m.mean()
        m[(m != 0) & (m < floor)] = floor
        if radius is not None:
            m *= radius / spectral_radius(m)
        out[r] = m
    return torch.from_numpy(out).to(dtype)


def permuted(w: torch.Tensor, *, seed: int) -> torch.Tensor:
    """``W!``: each run's matrix with rows and columns permuted together (a node relabelling).

    Parameters
    ----------
    w
        ``(R, N, N)`` matrices.
    seed
        Seed of the torch generator; each run gets its own permutation.

    Returns
    -------
    torch.Tensor
        ``(R, N, N)`` with ``out[r] = w[r][p_r][:, p_r]``: same spectrum, same weights.
    """
    _check_stack(w)
    gen = torch.Generator().manual_seed(int(seed))
    out = torch.empty_like(w)
    for r in range(w.shape[0]):
        p = torch.randperm(w.shape[1], generator=gen)
        out[r] = w[r][p][:, p]
    return out


def diagonal_only(w: torch.Tensor, *, radius: float | None = 0.95) -> torch.Tensor:
    """Control: only the diagonal of each run's matrix (an IRNN-like init), rescaled to ``radius``.

    Returns ``(R, N, N)``; ``radius=None`` keeps the values as they are.
    """
    _check_stack(w)
    out = torch.diag_embed(torch.diagonal(w, dim1=-2, dim2=-1))
    return _rescale(out, radius)


def off_diagonal_only(w: torch.Tensor, *, radius: float | None = 0.95) -> torch.Tensor:
    """Control: each run's matrix with its diagonal zeroed, rescaled to ``radius``.

    Returns ``(R, N, N)``; ``radius=None`` keeps the values as they are.
    """
    _check_stack(w)
    out = w - torch.diag_embed(torch.diagonal(w, dim1=-2, dim2=-1))
    return _rescale(out, radius)


def random_positive_matched(w: torch.Tensor, *, seed: int) -> torch.Tensor:
    """Control: each run's non-zero values scattered at random positions, same spectral radius.

    Keeps the value distribution and the density of ``w[r]`` (diagonal included), destroys its
    structure (the diagonal dominance of ``W*`` among it), then rescales to ``w[r]``'s spectral
    radius.

    Parameters
    ----------
    w
        ``(R, N, N)`` non-negative reference matrices (typically ``bio(...)``).
    seed
        Seed of the torch generator.

    Returns
    -------
    torch.Tensor
        ``(R, N, N)`` non-negative, spectral radius equal to the reference's, run by run.
    """
    _check_stack(w)
    if (w < 0).any():
        raise ValueError("random_positive_matched expects non-negative reference matrices")
    gen = torch.Generator().manual_seed(int(seed))
    n = w.shape[1]
    out = torch.zeros_like(w)
    for r in range(w.shape[0]):
        values = w[r].flatten()
        values = values[values > 0]
        where = torch.randperm(n * n, generator=gen)[: values.numel()]
        out[r].view(-1)[where] = values
        rho_ref, rho = spectral_radius(w[r]), spectral_radius(out[r])
        if rho > 0:
            out[r] *= rho_ref / rho
    return out


def bio_family(w_bio_modulation: np.ndarray, init: BioInit = "bio", *, runs: int, seed: int,
               mean: float = 0.1, floor: float = 0.01, radius: float | None = 0.95,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A member of the W* family, as the variants build it: :func:`bio` draws, then a transform.

    ``"bio"`` is W*; ``"permuted"`` W! (:func:`permuted` with seed ``seed + 1``);
    ``"diagonal_only"`` and ``"off_diagonal_only"`` rescale to ``radius``;
    ``"random_positive_matched"`` scatters the values (seed ``seed + 2``) at W*'s radius.

    Parameters
    ----------
    w_bio_modulation
        ``(N, N)`` non-negative modulation [pre, post].
    init
        Member of the family.
    runs, seed, mean, floor, radius
        As in :func:`bio` (``radius`` is also the target of the diagonal controls).
    dtype
        Torch dtype in which the draws are made and transformed.

    Returns
    -------
    torch.Tensor
        ``(R, N, N)`` [run, pre, post].

    Raises
    ------
    ValueError
        For an unknown ``init`` or an invalid modulation.

    Examples
    --------
    >>> w = bio_family(np.ones((3, 3)), "diagonal_only", runs=1, seed=0)
    >>> bool(torch.all(w[0] == torch.diag(torch.diagonal(w[0]))))
    True
    """
    if init not in ("bio", "permuted", "diagonal_only", "off_diagonal_only",
                    "random_positive_matched"):
        raise ValueError(f"unknown bio initialization {init!r}; expected 'bio', 'permuted', "
                         "'diagonal_only', 'off_diagonal_only' or 'random_positive_matched'")
    w = bio(w_bio_modulation, runs=runs, seed=seed, mean=mean, floor=floor, radius=radius,
            dtype=dtype)
    if init == "permuted":
        return permuted(w, seed=seed + 1)
    if init == "diagonal_only":
        return diagonal_only(w, radius=radius)
    if init == "off_diagonal_only":
        return off_diagonal_only(w, radius=radius)
    if init == "random_positive_matched":
        return random_positive_matched(w, seed=seed + 2)
    return w


def _rescale(w: torch.Tensor, radius: float | None) -> torch.Tensor:
    if radius is None:
        return w
    rho = torch.as_tensor(spectral_radius(w), dtype=w.dtype)  # (R,)
    if (rho == 0).any():
        raise ValueError("a run's matrix has spectral radius 0, so it cannot be rescaled")
    return w * (radius / rho)[:, None, None]


def _check_stack(w: torch.Tensor) -> None:
    if w.dim() != 3 or w.shape[1] != w.shape[2]:
        raise ValueError(f"expected a stack of square matrices (R, N, N); found shape "
                         f"{tuple(w.shape)}")
