"""Event (spike) times from calcium traces: the documented, parameterized rule of the ``nwb`` source.

The study detected peaks of *deconvolved* traces above 0.01 and used the frame times of those peaks
as event times. The MICrONS release on DANDI (000402) publishes fluorescence only: its converter
writes ``Fluorescence/RoiResponseSeries<field>`` and no deconvolved series (the pipeline's own
``Activity`` traces, noise-constrained deconvolution of Pnevmatikakis et al. 2016, are not in the
files). Where a file does hold deconvolved activity the reader uses it and skips steps 1-2.
Otherwise each trace is deconvolved here, then peaks are detected:

1. baseline ``F0`` = the ``baseline_percentile``-th percentile of the ROI's whole trace;
   ``dff = (F - F0) / |F0|`` (``F - F0`` where ``|F0|`` is tiny);
2. non-negative deconvolution with an AR(1) calcium model of decay time ``tau_s``:

   - ``method="oasis"`` (default): OASIS (Friedrich, Zhou & Paninski 2017, package ``oasis-deconv``),
     the fast solver of the same noise-constrained, L1-penalized problem the MICrONS pipeline solved
     with CaImAn's ``constrained_foopsi``; the noise level and the baseline are estimated per trace,
     the decay is fixed by ``tau_s``. A spike in the first frame is indistinguishable from the
     initial calcium level and one in the last frame has a single sample of evidence: OASIS
     reports neither;
   - ``method="ar1"``: the closed-form, unregularized AR(1) inverse ``s[t] = max(0, dff[t] - g
     dff[t-1])``, ``g = exp(-1 / (frame_rate * tau_s))`` (exact on noise-free AR(1) traces; kept for
     audits and comparisons);
3. a peak is a frame whose value exceeds ``threshold`` (and, if set, ``noise_sigmas`` x the robust
   SD of the unclipped ``dff[t] - g * dff[t-1]``), is larger than the frame before and not smaller
   than the frame after (edges count as lower neighbours; of a plateau the first frame is the
   peak). Events in adjacent frames merge.
4. the event time is the frame's timestamp (s).

With ``input="deconvolved"`` steps 1-2 are skipped (the series already holds deconvolved activity).
Traces are processed as (time, ROI) blocks; nothing here holds more than one block.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

__all__ = ["EventRule", "TraceInput", "Deconvolution", "ar1_decay", "deconvolve_ar1", "deconvolve_oasis",
           "detect_peaks", "events_from_block", "robust_sd"]

TraceInput = Literal["fluorescence", "deconvolved"]
Deconvolution = Literal["oasis", "ar1"]


@dataclass(frozen=True)
class EventRule:
    """Parameters of the event rule (recorded in the snapshot's parameters)."""

    threshold: float = 0.01
    """A peak must exceed this value of the deconvolved trace (the study's 0.01)."""
    input: TraceInput = "fluorescence"
    """'fluorescence': deconvolve first (steps 1-2); 'deconvolved': the series is already deconvolved."""
    method: Deconvolution = "oasis"
    """Deconvolution of fluorescence: 'oasis' (OASIS, noise-constrained) or 'ar1' (closed-form inverse)."""
    tau_s: float = 1.0
    """Calcium decay time constant (s) of the AR(1) model (GCaMP6s-like)."""
    baseline_percentile: float = 8.0
    """Percentile of each ROI's trace taken as its baseline F0."""
    noise_sigmas: float | None = None
    """If set, peaks must also exceed this many robust SDs (1.4826 x MAD) of the unclipped
    deconvolved trace (not in the study's rule; for noisy traces)."""
    block_rois: int = 256
    """ROIs read and processed per block (bounds memory: frames x block_rois x 8 bytes)."""

    def __post_init__(self) -> None:
        if self.threshold < 0 or self.tau_s <= 0 or not 0 <= self.baseline_percentile <= 100 \
                or self.block_rois < 1 or (self.noise_sigmas is not None and self.noise_sigmas < 0):
            raise ValueError(f"invalid event rule {self}: need threshold >= 0, tau_s > 0, "
                             "0 <= baseline_percentile <= 100, block_rois >= 1, noise_sigmas >= 0")
        if self.input not in ("fluorescence", "deconvolved"):
            raise ValueError(f"EventRule.input must be 'fluorescence' or 'deconvolved'; got {self.input!r}")
        if self.method not in ("oasis", "ar1"):
            raise ValueError(f"EventRule.method must be 'oasis' or 'ar1'; got {self.method!r}")

    def describe(self) -> dict:
        """JSON-ready parameters, including the rule's name and the deconvolution used."""
        out = {"rule": f"{self.method}-deconvolution-peaks-v1", **asdict(self)}
        if self.method == "oasis":
            out["deconvolution"] = f"oasis-deconv {_oasis_version()} (oasis.functions.deconvolve, AR(1), " \
                                   "tau_d = tau_s, L1 penalty, noise and baseline estimated per trace)"
        else:
            out["deconvolution"] = "closed-form AR(1) inverse (no regularization)"
        return out


def _oasis_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("oasis-deconv")
    except PackageNotFoundError:
        return "unknown"


def ar1_decay(frame_rate_hz: float, tau_s: float) -> float:
    """Per-frame decay ``g = exp(-1 / (frame_rate_hz * tau_s))`` of the AR(1) calcium model."""
    return float(np.exp(-1.0 / (frame_rate_hz * tau_s)))


def deconvolve_ar1(traces: np.ndarray, *, g: float, baseline_percentile: float = 8.0,
                   clip: bool = True) -> np.ndarray:
    """Non-negative AR(1) deconvolution of fluorescence traces.

    Parameters
    ----------
    traces
        (frames, rois) fluorescence.
    g
        Per-frame calcium decay (see :func:`ar1_decay`).
    baseline_percentile
        Percentile of each column taken as its baseline F0.
    clip
        Clip at 0 (the non-negativity of the model); False returns the raw residual (noise estimates).

    Returns
    -------
    numpy.ndarray
        (frames, rois) float64 inferred activity (``>= 0`` when ``clip``).

    Examples
    --------
    >>> c = np.array([[0.0], [1.0], [0.5], [0.25]])       # one event at frame 1, g = 0.5
    >>> deconvolve_ar1(1.0 + c, g=0.5, baseline_percentile=0).ravel().tolist()
    [0.0, 1.0, 0.0, 0.0]
    """
    dff = delta_f(traces, baseline_percentile=baseline_percentile)  # (frames, rois)
    s = np.empty_like(dff)
    s[:1] = dff[:1]
    s[1:] = dff[1:] - g * dff[:-1]
    if clip:
        np.maximum(s, 0.0, out=s)
    return s


def delta_f(traces: np.ndarray, *, baseline_percentile: float = 8.0) -> np.ndarray:
    """(frames, rois) ``(F - F0) / |F0|`` with ``F0`` each column's ``baseline_percentile``-th percentile."""
    f = np.asarray(traces, dtype=np.float64)
    if f.ndim == 1:
        f = f[:, None]
    f0 = np.percentile(f, baseline_percentile, axis=0) if len(f) else np.zeros(f.shape[1])
    scale = np.where(np.abs(f0) > 1e-12, np.abs(f0), 1.0)
    return (f - f0) / scale


def deconvolve_oasis(traces: np.ndarray, *, frame_rate_hz: float, tau_s: float,
                     baseline_percentile: float = 8.0) -> np.ndarray:
    """Noise-constrained non-negative AR(1) deconvolution of fluorescence traces with OASIS.

    Each column's ``dF/F`` (see :func:`delta_f`) goes through ``oasis.functions.deconvolve`` with
    the decay fixed by ``tau_s``, an L1 sparsity penalty, and noise level and baseline estimated
    from the trace.

    Parameters
    ----------
    traces
        (frames, rois) fluorescence.
    frame_rate_hz
        Frames per second of the traces.
    tau_s
        Calcium decay time constant (s).
    baseline_percentile
        Percentile of each column taken as its baseline F0.

    Returns
    -------
    numpy.ndarray
        (frames, rois) float64 inferred activity, ``>= 0``.

    Examples
    --------
    >>> g = ar1_decay(10.0, 1.0)
    >>> c = np.zeros(60); c[10] = 1.0
    >>> for t in range(11, 60): c[t] = g * c[t - 1]
    >>> s = deconvolve_oasis(100 * (1 + c), frame_rate_hz=10.0, tau_s=1.0)
    >>> np.flatnonzero(s[:, 0] > 0.01).tolist()
    [10]
    """
    from oasis.functions import deconvolve  # only where fluorescence is deconvolved

    dff = delta_f(traces, baseline_percentile=baseline_percentile)
    out = np.zeros_like(dff)
    for j in range(dff.shape[1]):
        y = np.ascontiguousarray(dff[:, j])
        if len(y) < 3 or not np.any(y != y[0]):  # nothing to deconvolve (and OASIS needs variance)
            continue
        with warnings.catch_warnings():  # short traces: OASIS's noise estimate shortens its window
            warnings.filterwarnings("ignore", message="nperseg", category=UserWarning)
            out[:, j] = deconvolve(y, tau_d=tau_s, framerate=frame_rate_hz, penalty=1)[1]
    return np.maximum(out, 0.0)


def robust_sd(values: np.ndarray) -> np.ndarray:
    """Per-column robust standard deviation, 1.4826 x the median absolute deviation."""
    v = np.asarray(values, dtype=np.float64)
    return 1.4826 * np.median(np.abs(v - np.median(v, axis=0)), axis=0)


def detect_peaks(activity: np.ndarray, *, threshold: float = 0.01,
                 min_height: np.ndarray | None = None) -> list[np.ndarray]:
    """Frames of the peaks of each column of ``activity`` (frames, rois), ascending per column.

    A peak exceeds ``threshold`` (and the column's ``min_height`` where given), is larger than the
    frame before and not smaller than the frame after; outside the trace counts as lower.

    Examples
    --------
    >>> detect_peaks(np.array([[0.0], [0.5], [0.2], [0.005], [0.02], [0.0], [0.3]]))[0].tolist()
    [1, 4, 6]
    """
    a = np.asarray(activity, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    n = len(a)
    if n == 0:
        return [np.zeros(0, np.int64) for _ in range(a.shape[1])]
    low = np.full((1, a.shape[1]), -np.inf)
    prev = np.vstack([low, a[:-1]])
    nxt = np.vstack([a[1:], low])
    level = np.full(a.shape[1], float(threshold))
    if min_height is not None:
        level = np.maximum(level, np.asarray(min_height, dtype=np.float64))
    mask = (a > level) & (a > prev) & (a >= nxt)
    rows, cols = np.nonzero(mask.T)  # column-major: per ROI, frames ascending
    splits = np.searchsorted(rows, np.arange(1, a.shape[1]))
    return [c.astype(np.int64) for c in np.split(cols, splits)]


def events_from_block(traces: np.ndarray, timestamps: np.ndarray, rule: EventRule,
                      *, frame_rate_hz: float, deconvolved: bool = False) -> list[np.ndarray]:
    """Apply ``rule`` to a (frames, rois) block; return event times (s) per ROI, ascending.

    ``deconvolved=True`` (the file's own deconvolved series) skips deconvolution whatever
    ``rule.input`` says."""
    if rule.input == "fluorescence" and not deconvolved:
        raw = deconvolve_ar1(traces, g=ar1_decay(frame_rate_hz, rule.tau_s),
                             baseline_percentile=rule.baseline_percentile, clip=False)
        # noise from the unclipped residual: symmetric around 0, so its MAD is not biased by clipping
        floor = None if rule.noise_sigmas is None else rule.noise_sigmas * robust_sd(raw)
        if rule.method == "oasis":
            activity = deconvolve_oasis(traces, frame_rate_hz=frame_rate_hz, tau_s=rule.tau_s,
                                        baseline_percentile=rule.baseline_percentile)
        else:
            activity = np.maximum(raw, 0.0)
    else:
        activity = np.asarray(traces, dtype=np.float64)
        if activity.ndim == 1:
            activity = activity[:, None]
        floor = None if rule.noise_sigmas is None else rule.noise_sigmas * robust_sd(activity)
    frames = detect_peaks(activity, threshold=rule.threshold, min_height=floor)
    return [np.asarray(timestamps[f], dtype=np.float64) for f in frames]
