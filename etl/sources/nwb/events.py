"""Event (spike) times from calcium traces: the documented, parameterized rule of the ``nwb`` source.

The study detected peaks of *deconvolved* traces above 0.01 and used the frame times of those peaks
as event times. DANDI 000402 publishes fluorescence, not deconvolved activity, so the rule first
deconvolves each trace, then detects peaks:

1. baseline ``F0`` = the ``baseline_percentile``-th percentile of the ROI's whole trace;
   ``dff = (F - F0) / |F0|`` (``F - F0`` where ``|F0|`` is tiny);
2. first-order autoregressive (AR(1)) non-negative deconvolution: with decay per frame
   ``g = exp(-1 / (frame_rate * tau_s))``, ``s[t] = max(0, dff[t] - g * dff[t-1])`` (``s[0] = max(0,
   dff[0])``). For a noise-free AR(1) calcium trace ``c[t] = g c[t-1] + s[t]`` this recovers ``s``
   exactly; it is the closed-form (unregularized) special case of the OASIS / constrained-foopsi model;
3. a peak is a frame whose value exceeds ``threshold`` (and, if set, ``noise_sigmas`` x the robust
   SD of the unclipped ``dff[t] - g * dff[t-1]``), is larger than the frame before and not smaller than the frame after (edges count
   as lower neighbours; of a plateau the first frame is the peak). Events in adjacent frames merge.
4. the event time is the frame's timestamp (s).

Why not a deconvolution library: OASIS and CaImAn do not install cleanly with this project's
pinned stack, and the closed-form AR(1) inverse is exact on the model and easy to audit. With
``input="deconvolved"`` steps 1-2 are skipped (the series already holds deconvolved activity).

Traces are processed as (time, ROI) blocks; nothing here holds more than one block.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

__all__ = ["EventRule", "TraceInput", "ar1_decay", "deconvolve_ar1", "detect_peaks", "events_from_block",
           "robust_sd"]

TraceInput = Literal["fluorescence", "deconvolved"]


@dataclass(frozen=True)
class EventRule:
    """Parameters of the event rule (recorded in the snapshot's parameters)."""

    threshold: float = 0.01
    """A peak must exceed this value of the deconvolved trace (the study's 0.01)."""
    input: TraceInput = "fluorescence"
    """'fluorescence': deconvolve first (steps 1-2); 'deconvolved': the series is already deconvolved."""
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

    def describe(self) -> dict:
        """JSON-ready parameters, including the rule's name."""
        return {"rule": "ar1-deconvolution-peaks-v1", **asdict(self)}


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
    f = np.asarray(traces, dtype=np.float64)
    if f.ndim == 1:
        f = f[:, None]
    f0 = np.percentile(f, baseline_percentile, axis=0) if len(f) else np.zeros(f.shape[1])
    scale = np.where(np.abs(f0) > 1e-12, np.abs(f0), 1.0)
    dff = (f - f0) / scale  # (frames, rois)
    s = np.empty_like(dff)
    s[:1] = dff[:1]
    s[1:] = dff[1:] - g * dff[:-1]
    if clip:
        np.maximum(s, 0.0, out=s)
    return s


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
                      *, frame_rate_hz: float) -> list[np.ndarray]:
    """Apply ``rule`` to a (frames, rois) block; return event times (s) per ROI, ascending."""
    if rule.input == "fluorescence":
        raw = deconvolve_ar1(traces, g=ar1_decay(frame_rate_hz, rule.tau_s),
                             baseline_percentile=rule.baseline_percentile, clip=False)
    else:
        raw = np.asarray(traces, dtype=np.float64)
    # noise from the unclipped residual: symmetric around 0, so its MAD is not biased by clipping
    floor = None if rule.noise_sigmas is None else rule.noise_sigmas * robust_sd(raw)
    activity = np.maximum(raw, 0.0) if rule.input == "fluorescence" else raw
    frames = detect_peaks(activity, threshold=rule.threshold, min_height=floor)
    return [np.asarray(timestamps[f], dtype=np.float64) for f in frames]
