"""Test oracles: slow, literal implementations of a definition that fast library code must equal.

They live here, not in the library, so they are no part of the public API and the code they check
never calls them. Tests and benchmarks (``bench/sttc_speed.py``) import them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from connectome_priors.priors_store.derive.functional import default_t_end

__all__ = ["sttc_pairwise_loop"]


def sttc_pairwise_loop(spikes: Sequence[np.ndarray], *, dt: float = 0.1,
                       t_end: float | None = None,
                       pairs: Sequence[tuple[int, int]] | None = None) -> np.ndarray:
    """Reference STTC: a straightforward loop over pairs, following the definition term by term.

    For each pair the tiling fractions are the merged length of the clipped tiles, and each spike
    of A is compared with every spike of B (``|t_a - t_b| <= dt``). Slow (quadratic in spikes per
    pair); meant for tests and benchmarks of
    :func:`~connectome_priors.priors_store.derive.functional.sttc`, which it must equal. It shares
    no code with it (only :func:`default_t_end`, the study's recording end).

    Parameters
    ----------
    spikes
        N 1-D arrays of spike times, s.
    dt
        Coincidence window half-width, s.
    t_end
        End of the recording, s; default the latest spike + 0.1 s.
    pairs
        ``(a, b)`` index pairs to compute; default every pair ``a < b``.

    Returns
    -------
    numpy.ndarray
        ``(N, N)`` float64 with the computed pairs filled symmetrically, 1 on the diagonal of
        units with spikes, NaN elsewhere (pairs not asked for, silent units).

    Examples
    --------
    >>> a, b = np.array([1.0, 3.0]), np.array([1.05, 5.0])
    >>> round(float(sttc_pairwise_loop([a, b], t_end=6.0)[0, 1]), 6)
    0.448276
    """
    trains = [np.sort(np.asarray(train, dtype=np.float64)) for train in spikes]
    if not dt > 0:
        raise ValueError(f"dt must be a positive number of seconds; found {dt}")
    t_end = default_t_end(trains) if t_end is None else float(t_end)
    n_units = len(trains)
    if pairs is None:
        pairs = [(a, b) for a in range(n_units) for b in range(a + 1, n_units)]
    out = np.full((n_units, n_units), np.nan)
    for a in range(n_units):
        if trains[a].size:
            out[a, a] = 1.0
    for a, b in pairs:
        if not (0 <= a < n_units and 0 <= b < n_units):
            raise ValueError(f"pair ({a}, {b}) is out of range; expected indices in "
                             f"[0, {n_units})")
        ta, tb = trains[a], trains[b]
        if ta.size == 0 or tb.size == 0:
            continue
        t_a, t_b = _tiled_fraction(ta, dt, t_end), _tiled_fraction(tb, dt, t_end)
        p_a, p_b = _proportion_near(ta, tb, dt), _proportion_near(tb, ta, dt)
        value = 0.5 * (_sttc_term(p_a, t_b) + _sttc_term(p_b, t_a))
        out[a, b] = out[b, a] = value
    return out


def _tiled_fraction(train: np.ndarray, dt: float, t_end: float) -> float:
    """Merge the tiles [t - dt, t + dt] clipped to [0, t_end] one by one; return length / t_end."""
    total = 0.0
    cur_lo, cur_hi = max(0.0, train[0] - dt), min(t_end, train[0] + dt)
    for t in train[1:]:
        lo, hi = max(0.0, t - dt), min(t_end, t + dt)
        if lo <= cur_hi:
            cur_hi = max(cur_hi, hi)
        else:
            total += cur_hi - cur_lo
            cur_lo, cur_hi = lo, hi
    total += cur_hi - cur_lo
    return total / t_end


def _proportion_near(ta: np.ndarray, tb: np.ndarray, dt: float) -> float:
    """Fraction of spikes of A with some spike of B at ``|t_a - t_b| <= dt`` (brute force)."""
    near = 0
    block = max(1, 2_000_000 // max(tb.size, 1))
    for s in range(0, ta.size, block):
        near += int(np.any(np.abs(ta[s:s + block, None] - tb[None, :]) <= dt, axis=1).sum())
    return near / ta.size


def _sttc_term(p: float, t: float) -> float:
    den = 1.0 - p * t
    return 1.0 if den == 0 else (p - t) / den
