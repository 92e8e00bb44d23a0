"""Functional matrices from spike trains: binned counts, Pearson correlation, STTC, precision.

Conventions (verified against the study's released arrays, docs/method.md#verified-facts):

- ``spikes`` is a sequence of N 1-D arrays of spike times in seconds (unsorted input is sorted; an
  empty array is a *silent* unit). Times must be finite and non-negative.
- The recording window is ``[0, t_end]``; by default ``t_end`` = the latest spike time over the
  field + 0.1 s.
- Counts use bin edges ``np.arange(0, t_end, bin_s)`` (``np.histogram`` semantics: the last bin is
  closed, spikes after the last edge are not counted).
- Correlation is ``np.corrcoef`` of the counts (matches ``corr_matrix.npy`` to ~1e-15).
- STTC follows Cutts & Eglen (2014) with coincidence ``|t_a - t_b| <= dt`` (matches
  ``sttc_matrix.npy`` to ~3e-13 on its lower triangle, the rounding of the tiling fractions; the
  release leaves the upper triangle 0, here the matrix is symmetric with a unit diagonal).
- Precision is sklearn's ``GraphicalLassoCV`` (defaults) on the raw, unstandardized counts,
  matching ``precision_matrix.npy`` approximately: max |difference| / max |entry| is below 4e-6
  on 11 of the 14 released fields with spikes and below 3.3e-4 on all (sklearn 1.9.1); the CV
  search and solver are not bit-reproducible across versions.

Units whose binned counts are constant (silent units in particular) have no defined correlation or
precision: their rows and columns are NaN, diagonal included. Silent units likewise get NaN STTC
rows and columns (STTC is undefined without spikes); a unit with spikes always gets a unit
STTC diagonal.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["binned_counts", "correlation", "sttc", "precision",
           "default_t_end", "T_END_PAD_S"]

#: Padding added to the latest spike time to form the default recording end, s.
T_END_PAD_S = 0.1


# --------------------------------------------------------------------------- input handling

def _as_trains(spikes: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Validate and sort the spike trains; return float64 copies."""
    if isinstance(spikes, np.ndarray) and spikes.dtype != object:
        raise ValueError("spikes must be a sequence of N 1-D arrays of spike times (s), one per "
                         f"unit; found a plain {spikes.ndim}-D {spikes.dtype} array")
    trains = []
    for i, train in enumerate(spikes):
        arr = np.asarray(train, dtype=np.float64)
        if arr.ndim != 1:
            raise ValueError(f"spikes[{i}] must be a 1-D array of spike times (s); "
                             f"found shape {arr.shape}")
        if arr.size and not np.all(np.isfinite(arr)):
            raise ValueError(f"spikes[{i}] holds non-finite spike times; expected finite "
                             "times in seconds")
        if arr.size and arr.min() < 0:
            raise ValueError(f"spikes[{i}] has a negative spike time ({arr.min():g} s); "
                             "expected times >= 0 s (the recording window starts at 0)")
        trains.append(np.sort(arr))
    if not trains:
        raise ValueError("spikes is empty; expected N >= 1 spike trains")
    return trains


def default_t_end(spikes: Sequence[np.ndarray]) -> float:
    """The study's recording end: the latest spike time over all units + 0.1 s.

    Parameters
    ----------
    spikes
        N 1-D arrays of spike times, s.

    Returns
    -------
    float
        ``max spike time + T_END_PAD_S``, s.

    Examples
    --------
    >>> default_t_end([np.array([0.5, 2.0]), np.array([1.0])])
    2.1
    """
    trains = _as_trains(spikes)
    return _default_t_end(trains)


def _default_t_end(trains: list[np.ndarray]) -> float:
    lasts = [t[-1] for t in trains if t.size]
    if not lasts:
        raise ValueError("every unit is silent (no spikes at all); cannot derive t_end, and no "
                         "functional matrix is defined")
    return float(max(lasts)) + T_END_PAD_S


def _resolve_t_end(trains: list[np.ndarray], t_end: float | None) -> float:
    if t_end is None:
        return _default_t_end(trains)
    t_end = float(t_end)
    if not np.isfinite(t_end) or t_end <= 0:
        raise ValueError(f"t_end must be a positive number of seconds; found {t_end}")
    latest = max((t[-1] for t in trains if t.size), default=-np.inf)
    if latest > t_end:
        raise ValueError(f"t_end = {t_end} s is before the latest spike ({latest} s); expected "
                         "t_end >= every spike time (or leave it None for latest + 0.1 s)")
    return t_end


def _check_positive(name: str, value: float) -> float:
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds; found {value}")
    return value


# --------------------------------------------------------------------------- binned counts

def binned_counts(spikes: Sequence[np.ndarray], *, bin_s: float = 0.2,
                  t_end: float | None = None) -> np.ndarray:
    """Spike counts per unit in bins of ``bin_s`` seconds.

    Parameters
    ----------
    spikes
        N 1-D arrays of spike times, s.
    bin_s
        Bin width, s.
    t_end
        End of the recording, s; default the latest spike + 0.1 s. The bin edges are
        ``np.arange(0, t_end, bin_s)`` (the study's convention: spikes after the last edge,
        at most ``bin_s`` before ``t_end``, are not counted).

    Returns
    -------
    numpy.ndarray
        ``(N, n_bins)`` int64 counts, one row per unit.

    Examples
    --------
    >>> binned_counts([np.array([0.05, 0.1, 0.5]), np.array([])], t_end=0.65)
    array([[2, 0, 1],
           [0, 0, 0]])
    """
    trains = _as_trains(spikes)
    bin_s = _check_positive("bin_s", bin_s)
    t_end = _resolve_t_end(trains, t_end)
    return _binned(trains, bin_s, t_end)


def _binned(trains: list[np.ndarray], bin_s: float, t_end: float) -> np.ndarray:
    edges = np.arange(0, t_end, bin_s)
    if edges.size < 2:
        raise ValueError(f"t_end = {t_end} s holds no full bin of {bin_s} s; expected "
                         "t_end > bin_s")
    n_bins = edges.size - 1
    sizes = [t.size for t in trains]
    times = np.concatenate(trains) if sum(sizes) else np.zeros(0)
    unit = np.repeat(np.arange(len(trains)), sizes)
    # np.histogram's rule, exactly: bin k holds edges[k] <= t < edges[k + 1], the last bin is
    # closed on the right, times past the last edge are dropped.
    bin_idx = np.searchsorted(edges, times, side="right") - 1
    bin_idx[times == edges[-1]] = n_bins - 1
    keep = (bin_idx >= 0) & (bin_idx < n_bins)
    flat = np.bincount(unit[keep] * n_bins + bin_idx[keep], minlength=len(trains) * n_bins)
    return flat.reshape(len(trains), n_bins).astype(np.int64)


# --------------------------------------------------------------------------- correlation

def correlation(spikes: Sequence[np.ndarray], *, bin_s: float = 0.2,
                t_end: float | None = None) -> np.ndarray:
    """Pearson correlation of binned spike counts (the study's ``corr_matrix``).

    Parameters
    ----------
    spikes
        N 1-D arrays of spike times, s.
    bin_s
        Bin width, s.
    t_end
        End of the recording, s; default the latest spike + 0.1 s.

    Returns
    -------
    numpy.ndarray
        ``(N, N)`` float64, exactly symmetric (``np.corrcoef`` of the counts, averaged with its
        transpose: at most 1 ulp from it), in [-1, 1], unit diagonal. Units with constant
        counts (silent units in particular) have NaN rows and columns, diagonal included.

    Examples
    --------
    >>> c = correlation([np.array([0.1, 0.5, 0.9]), np.array([0.1, 0.5, 1.3])], t_end=1.6)
    >>> c.shape, bool(np.allclose(np.diag(c), 1))
    ((2, 2), True)
    """
    counts = binned_counts(spikes, bin_s=bin_s, t_end=t_end)
    _need_two_bins(counts, "correlation")
    return _correlation_of_counts(counts)


def _need_two_bins(counts: np.ndarray, what: str) -> None:
    if counts.shape[1] < 2:
        raise ValueError(f"{what} needs at least 2 bins; found {counts.shape[1]} (increase t_end "
                         "or decrease bin_s)")


def _correlation_of_counts(counts: np.ndarray) -> np.ndarray:
    constant = counts.min(axis=1) == counts.max(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.atleast_2d(np.corrcoef(counts))
    # np.corrcoef divides by the row then the column standard deviation, which can leave the
    # two triangles 1 ulp apart; average them so the matrix is exactly symmetric.
    corr = 0.5 * (corr + corr.T)
    corr[constant, :] = np.nan
    corr[:, constant] = np.nan
    return corr


# --------------------------------------------------------------------------- STTC

def _coverage(trains: list[np.ndarray], dt: float, t_end: float) -> np.ndarray:
    """Fraction of [0, t_end] within ``dt`` of a spike, per unit (T_A of Cutts & Eglen)."""
    n = np.array([t.size for t in trains])
    out = np.full(len(trains), np.nan)
    active = n > 0
    if not active.any():
        return out
    times = np.concatenate([trains[i] for i in np.flatnonzero(active)])
    unit = np.repeat(np.arange(int(active.sum())), n[active])
    # Union length of the tiles [t - dt, t + dt]: 2 dt per spike, minus the overlap of tiles of
    # consecutive spikes, minus the parts that stick out of [0, t_end].
    gaps = np.diff(times)
    same = unit[1:] == unit[:-1]
    overlap = np.where(same, np.maximum(0.0, 2 * dt - gaps), 0.0)
    lost = np.bincount(unit[1:], weights=overlap, minlength=int(active.sum()))
    first = np.array([trains[i][0] for i in np.flatnonzero(active)])
    last = np.array([trains[i][-1] for i in np.flatnonzero(active)])
    covered = (2 * dt * n[active] - lost - np.maximum(0.0, dt - first)
               - np.maximum(0.0, last + dt - t_end))
    out[active] = covered / t_end
    return out


def _sttc_from_terms(pa: np.ndarray, tb: np.ndarray) -> np.ndarray:
    """``(P_A - T_B) / (1 - P_A T_B)``, with the 0/0 case (P_A = T_B = 1) taken as 1."""
    num = pa - tb
    den = 1.0 - pa * tb
    with np.errstate(invalid="ignore", divide="ignore"):
        term = num / den
    return np.where(den == 0, 1.0, term)


def _window_bounds(times: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``[lo, hi)`` per spike: the spikes j with ``abs(times[i] - times[j]) <= dt``.

    ``searchsorted`` on ``times -/+ dt`` can be off by one where rounding bites; the set is
    contiguous (float subtraction is monotone), so the bounds are nudged until exact.
    """
    m = times.size
    idx = np.arange(m)
    lo = np.searchsorted(times, times - dt, side="left")
    hi = np.searchsorted(times, times + dt, side="right")
    while True:  # widen lo while the spike before it still coincides
        grow = (lo > 0) & (np.abs(times - times[np.maximum(lo - 1, 0)]) <= dt)
        if not grow.any():
            break
        lo[grow] -= 1
    while True:  # narrow lo while it does not coincide
        shrink = (lo < idx) & (np.abs(times - times[np.minimum(lo, m - 1)]) > dt)
        if not shrink.any():
            break
        lo[shrink] += 1
    while True:
        grow = (hi < m) & (np.abs(times[np.minimum(hi, m - 1)] - times) <= dt)
        if not grow.any():
            break
        hi[grow] += 1
    while True:
        shrink = (hi > idx + 1) & (np.abs(times[np.maximum(hi - 1, 0)] - times) > dt)
        if not shrink.any():
            break
        hi[shrink] -= 1
    return lo, hi


def _coincidence_counts(trains: list[np.ndarray], dt: float) -> np.ndarray:
    """``counts[a, b]`` = number of spikes of a with at least one spike of b within ``dt``.

    Two exact methods, picked by their estimated cost (the diagonal is not meaningful):

    - when every distinct spike time is more than ``dt`` from the next one (spike times on an
      imaging frame grid coarser than ``dt``, as in every released field), coincidence means
      "same instant" and the counts are co-occurrences: bit-packed popcounts
      (:func:`_cooccurrence_counts`), cost ~ N^2 x instants / 64;
    - otherwise a sweep over coincident spike pairs (:func:`_window_pair_counts`), cost ~ the
      number of coincident pairs.
    """
    n_units = len(trains)
    sizes = np.array([t.size for t in trains])
    m = int(sizes.sum())
    if m == 0:
        return np.zeros((n_units, n_units), dtype=np.int64)
    itype = np.int32 if max(m, n_units * n_units) < 2**31 - 1 else np.int64
    times_by_unit = np.concatenate(trains)
    unit_by_unit = np.repeat(np.arange(n_units, dtype=itype), sizes)
    order = np.argsort(times_by_unit, kind="stable")
    times = times_by_unit[order]
    unit = unit_by_unit[order]

    new_instant = np.empty(m, dtype=bool)
    new_instant[0] = True
    new_instant[1:] = times[1:] != times[:-1]
    instants = times[new_instant]
    if np.all(instants[1:] - instants[:-1] > dt):
        group_sizes = np.diff(np.append(np.flatnonzero(new_instant), m))
        pair_cost = 40.0 * float((group_sizes * (group_sizes - 1) // 2).sum())
        words = (instants.size + 63) // 64
        bit_cost = float(n_units) ** 2 * words
        if bit_cost <= pair_cost and n_units * words * 64 <= 500_000_000:
            return _cooccurrence_counts(unit, new_instant, n_units)

    # previous spike of the same unit, as a position in time order (-1 for a unit's first spike)
    position = np.empty(m, dtype=itype)
    position[order] = np.arange(m, dtype=itype)
    prev = np.full(m, -1, dtype=itype)
    same = unit_by_unit[1:] == unit_by_unit[:-1]
    prev[position[1:][same]] = position[:-1][same]
    lo, hi = _window_bounds(times, dt)
    return _window_pair_counts(unit, prev, lo.astype(itype), hi.astype(itype), n_units)


def _window_pair_counts(unit: np.ndarray, prev: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                        n_units: int) -> np.ndarray:
    """Coincidence counts by a sweep over coincident spike pairs (spikes in time order).

    The spikes within ``dt`` of spike i form the contiguous range ``[lo_i, hi_i)``. A spike j in
    that range counts for the pair (unit(i), unit(j)) only if it is the *first* spike of its unit
    in the range, i.e. its unit's previous spike ``prev[j]`` lies before ``lo_i``; so each
    (spike, unit) pair counts once. Each coincident pair i < j is visited once, at offset
    ``k = j - i``, and serves both directions (j in the window of i, i in the window of j).
    """
    m = unit.size
    idx = np.arange(m, dtype=lo.dtype)
    reach = hi - idx  # spikes i + k with 0 <= k < reach[i] are within dt of i
    n_keys = n_units * n_units
    counts = np.zeros(n_keys, dtype=np.int64)
    sel = idx
    k = 1
    while True:
        sel = sel[reach[sel] > k]  # spikes that have a partner at offset k
        if sel.size == 0:
            break
        j = sel + k
        ui, uj = unit[sel], unit[j]
        j_first = prev[j] < lo[sel]  # j is its unit's first spike within dt of i
        i_first = prev[sel] < lo[j]  # i is its unit's first spike within dt of j
        counts += np.bincount((ui * n_units + uj)[j_first], minlength=n_keys)
        counts += np.bincount((uj * n_units + ui)[i_first], minlength=n_keys)
        k += 1
    return counts.reshape(n_units, n_units)


def _cooccurrence_counts(unit: np.ndarray, new_instant: np.ndarray, n_units: int) -> np.ndarray:
    """Coincidence counts when coincident means "at the same instant" (spikes in time order).

    ``counts[a, b] = sum over instants of (spikes of a there) x (b spikes there)``, as popcounts
    of bit-packed presence rows. A unit with r spikes at one instant (rare) contributes through r
    bit planes.
    """
    m = unit.size
    group = np.cumsum(new_instant) - 1  # instant index of each spike
    n_instants = int(group[-1]) + 1
    # rank of each spike among the same unit's spikes at the same instant (0 for the first)
    key = group.astype(np.int64) * n_units + unit
    order = np.argsort(key, kind="stable")
    key_sorted = key[order]
    starts = np.ones(m, dtype=bool)
    starts[1:] = key_sorted[1:] != key_sorted[:-1]
    run_start = np.maximum.accumulate(np.where(starts, np.arange(m), 0))
    rank = np.empty(m, dtype=np.int64)
    rank[order] = np.arange(m) - run_start

    width = ((n_instants + 63) // 64) * 64

    def plane(sel: np.ndarray) -> np.ndarray:
        bits = np.zeros((n_units, width), dtype=bool)
        bits[unit[sel], group[sel]] = True
        return np.packbits(bits, axis=1, bitorder="little").view(np.uint64)

    presence = plane(rank == 0)
    words = presence.shape[1]
    counts = np.zeros((n_units, n_units), dtype=np.int64)
    block = max(1, 4_000_000 // max(1, n_units * words))
    for r in range(int(rank.max()) + 1):
        plane_r = presence if r == 0 else plane(rank == r)
        for a0 in range(0, n_units, block):
            both = plane_r[a0:a0 + block, None, :] & presence[None, :, :]
            counts[a0:a0 + block] += _popcount(both).sum(axis=2, dtype=np.int64)
    return counts


_BYTE_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _popcount(words: np.ndarray) -> np.ndarray:
    """Set bits per uint64 element (``np.bitwise_count`` where NumPy >= 2 has it)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words)
    as_bytes = _BYTE_POPCOUNT[words.view(np.uint8)]
    return as_bytes.reshape(*words.shape, 8).sum(axis=-1, dtype=np.uint8)


def sttc(spikes: Sequence[np.ndarray], *, dt: float = 0.1,
         t_end: float | None = None) -> np.ndarray:
    """Spike time tiling coefficient of every pair of units (Cutts & Eglen 2014), exact.

    ``STTC = (P_A - T_B) / (1 - P_A T_B) / 2 + (P_B - T_A) / (1 - P_B T_A) / 2`` where ``T_A`` is
    the fraction of ``[0, t_end]`` within ``dt`` of a spike of A and ``P_A`` the fraction of A's
    spikes with a spike of B at ``|t_a - t_b| <= dt``. A term whose denominator is 0
    (``P_A = T_B = 1``) is taken as 1.

    Vectorized, no loop over pairs: spike times on a frame grid coarser than ``dt`` (every
    released field) are counted as bit-packed co-occurrences; other spike times by one sweep over
    the coincident spike pairs in time order. About 0.15 s for the released 193-unit field
    (0.5 M spikes) and 0.4 s for 312 units at 1 Hz on the frame grid; continuous-time trains
    cost more (about 2.5 s for 312 Poisson units at 1 Hz over 6000 s, 1.9 M spikes).

    Parameters
    ----------
    spikes
        N 1-D arrays of spike times, s.
    dt
        Coincidence window half-width, s.
    t_end
        End of the recording, s (the window is ``[0, t_end]``); default the latest spike + 0.1 s.

    Returns
    -------
    numpy.ndarray
        ``(N, N)`` float64, symmetric, in [-1, 1], unit diagonal. Silent units have NaN rows and
        columns, diagonal included. (The study's ``sttc_matrix.npy`` holds the same values in
        its lower triangle and diagonal, zeros above.)

    Examples
    --------
    >>> a, b = np.array([1.0, 3.0]), np.array([1.05, 5.0])
    >>> s = sttc([a, b], dt=0.1, t_end=6.0)
    >>> round(float(s[0, 1]), 6)
    0.448276
    """
    trains = _as_trains(spikes)
    dt = _check_positive("dt", dt)
    t_end = _resolve_t_end(trains, t_end)
    n_units = len(trains)
    sizes = np.array([t.size for t in trains], dtype=np.float64)
    cover = _coverage(trains, dt, t_end)
    counts = _coincidence_counts(trains, dt)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = counts / sizes[:, None]  # p[a, b] = P_A of the pair (a, b); NaN rows for silent a
    half = _sttc_from_terms(p, cover[None, :])  # (P_A - T_B) / (1 - P_A T_B)
    out = 0.5 * (half + half.T)
    silent = sizes == 0
    out[np.diag_indices(n_units)] = 1.0
    out[silent, :] = np.nan
    out[:, silent] = np.nan
    return out


# --------------------------------------------------------------------------- precision

def precision(spikes: Sequence[np.ndarray], *, bin_s: float = 0.2, t_end: float | None = None,
              seed: int = 0, standardize: bool = False, cv: int = 5, shuffle_folds: bool = False,
              max_iter: int = 100) -> np.ndarray:
    """Sparse inverse covariance (precision) of binned counts by cross-validated graphical lasso.

    sklearn ``GraphicalLassoCV`` with its defaults on the raw counts (bins x units), which is what
    the study did: it matches ``precision_matrix.npy`` to about 1e-5 relative on most released
    fields (never bit for bit: the CV search and solver are version dependent).

    Parameters
    ----------
    spikes
        N 1-D arrays of spike times, s.
    bin_s
        Bin width, s.
    t_end
        End of the recording, s; default the latest spike + 0.1 s.
    seed
        Seed of the fold shuffle; only used with ``shuffle_folds=True`` (the default contiguous
        K-fold split is deterministic).
    standardize
        Z-score each unit's counts first (the result is then the precision of the correlation
        matrix); the study did not.
    cv
        Number of cross-validation folds.
    shuffle_folds
        Shuffle bins before splitting into folds (the study's folds are contiguous in time).
    max_iter
        Maximum solver iterations per fit.

    Returns
    -------
    numpy.ndarray
        ``(N, N)`` float64 symmetric precision matrix, in units of 1 / count^2 (1 if
        standardized). Units with constant counts (silent units in particular) are left out of
        the fit; their rows and columns are NaN.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> trains = [np.sort(rng.uniform(0, 200, 400)) for _ in range(4)]
    >>> precision(trains).shape
    (4, 4)
    """
    from sklearn.covariance import GraphicalLassoCV  # heavy import, used here only
    from sklearn.model_selection import KFold
    from threadpoolctl import threadpool_limits

    counts = binned_counts(spikes, bin_s=bin_s, t_end=t_end).astype(np.float64)
    _need_two_bins(counts, "precision")
    variable = counts.min(axis=1) != counts.max(axis=1)
    if variable.sum() < 2:
        raise ValueError(f"precision needs at least 2 units with varying counts; found "
                         f"{int(variable.sum())} of {counts.shape[0]}")
    data = counts[variable].T  # (n_bins, n_variable)
    if standardize:
        data = (data - data.mean(axis=0)) / data.std(axis=0)
    folds = KFold(n_splits=cv, shuffle=True, random_state=seed) if shuffle_folds else cv
    # The coordinate descent makes many tiny BLAS calls: one BLAS thread is ~25% faster than
    # several, and leaves the other core to a parallel worker (measured on 2 cores).
    with threadpool_limits(1):
        model = GraphicalLassoCV(cv=folds, max_iter=max_iter).fit(data)
    out = np.full((counts.shape[0], counts.shape[0]), np.nan)
    out[np.ix_(variable, variable)] = model.precision_
    return out
