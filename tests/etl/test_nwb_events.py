"""The event rule of the ``nwb`` source recovers known events from calcium traces, exactly."""

from __future__ import annotations

import numpy as np
import pytest

from connectome_priors.etl.sources.nwb.events import (EventRule, ar1_decay, deconvolve_ar1, deconvolve_oasis, detect_peaks,
                                    events_from_block)

RATE = 6.3009


def calcium(frames_per_roi, n_frames, *, g, amplitude=1.0, baseline=100.0, noise=0.0, seed=0):
    """(frames, rois) fluorescence of AR(1) calcium with events at the given frames."""
    s = np.zeros((n_frames, len(frames_per_roi)))
    for j, frames in enumerate(frames_per_roi):
        s[frames, j] = amplitude
    c = np.zeros_like(s)
    for t in range(n_frames):
        c[t] = (g * c[t - 1] if t else 0.0) + s[t]
    f = baseline * (1.0 + c)
    if noise:
        f += np.random.default_rng(seed).normal(0.0, noise * baseline, size=f.shape)
    return f


def separated_frames(rng, n_frames, k):
    """k event frames at least 2 apart (events in adjacent frames merge, by the rule)."""
    frames = np.sort(rng.choice(np.arange(0, n_frames, 2), size=k, replace=False))
    return frames


def test_ar1_decay_matches_the_time_constant():
    assert ar1_decay(10.0, 1.0) == pytest.approx(np.exp(-0.1))
    assert ar1_decay(RATE, 2.0) > ar1_decay(RATE, 1.0)


def test_known_events_are_recovered_at_their_exact_frames():
    rng = np.random.default_rng(3)
    n = 500
    g = ar1_decay(RATE, 1.0)
    truth = [separated_frames(rng, n, k) for k in (1, 5, 17, 40)]
    truth.append(np.array([0, 2, n - 1]))      # events at the first and the last frame
    truth.append(np.array([], dtype=np.int64))  # a silent ROI
    traces = calcium(truth, n, g=g)
    found = detect_peaks(deconvolve_ar1(traces, g=g), threshold=0.01)
    assert len(found) == len(truth)
    for got, want in zip(found, truth):
        np.testing.assert_array_equal(got, want)


def test_event_times_are_the_frame_timestamps():
    g = ar1_decay(RATE, 1.0)
    traces = calcium([np.array([3, 10]), np.array([7])], 40, g=g)
    stamps = 12.5 + np.arange(40) / RATE
    trains = events_from_block(traces.astype(np.float32), stamps, EventRule(), frame_rate_hz=RATE)
    assert [t.tolist() for t in trains] == [[stamps[3], stamps[10]], [stamps[7]]]


def test_threshold_is_a_parameter_of_the_rule():
    g = ar1_decay(RATE, 1.0)
    traces = calcium([np.array([5, 20, 35])], 60, g=g, amplitude=0.005)  # below 0.01
    stamps = np.arange(60) / RATE
    assert len(events_from_block(traces, stamps, EventRule(), frame_rate_hz=RATE)[0]) == 0
    low = events_from_block(traces, stamps, EventRule(threshold=0.001), frame_rate_hz=RATE)[0]
    np.testing.assert_allclose(low, stamps[[5, 20, 35]])


def test_noise_floor_keeps_events_and_drops_noise_peaks():
    rng = np.random.default_rng(11)
    n = 800
    g = ar1_decay(RATE, 1.0)
    truth = [separated_frames(rng, n, 12) for _ in range(4)]
    traces = calcium(truth, n, g=g, noise=0.02, seed=5)
    stamps = np.arange(n) / RATE
    plain = events_from_block(traces, stamps, EventRule(method="ar1"), frame_rate_hz=RATE)
    assert all(len(t) > 3 * 12 for t in plain)  # the bare inverse with 0.01 alone fires on noise
    floored = events_from_block(traces, stamps, EventRule(method="ar1", noise_sigmas=5.0), frame_rate_hz=RATE)
    for got, want in zip(floored, truth):
        np.testing.assert_allclose(got, stamps[want])


def test_oasis_recovers_hand_made_spikes_exactly():
    """A hand-made trace: spikes at frames 5, 30, 31 (adjacent: they merge into one event at 30) and
    80. (OASIS's L1 penalty absorbs a spike in the very last frame, one sample of evidence: unlike
    the bare inverse it does not report one.)"""
    n = 120
    g = ar1_decay(RATE, 1.0)
    spikes = np.zeros(n)
    spikes[[5, 30, 31, 80]] = [1.0, 0.6, 0.4, 2.0]
    c = np.zeros(n)
    for t in range(n):
        c[t] = (g * c[t - 1] if t else 0.0) + spikes[t]
    s = deconvolve_oasis(100.0 * (1.0 + c), frame_rate_hz=RATE, tau_s=1.0)
    assert s.shape == (n, 1) and (s >= 0).all()
    np.testing.assert_array_equal(detect_peaks(s)[0], [5, 30, 80])
    assert s[80, 0] > s[5, 0] > s[30, 0] > 0.1  # amplitudes keep their order
    trains = events_from_block(100.0 * (1.0 + c), np.arange(n) / RATE, EventRule(), frame_rate_hz=RATE)
    np.testing.assert_allclose(trains[0], np.array([5, 30, 80]) / RATE)


def test_oasis_keeps_events_in_noise_without_a_floor():
    rng = np.random.default_rng(11)
    n = 800
    g = ar1_decay(RATE, 1.0)
    truth = [separated_frames(rng, n, 12) for _ in range(4)]
    truth.append(np.array([], dtype=np.int64))  # a silent, noisy ROI
    traces = calcium(truth, n, g=g, noise=0.02, seed=5)
    stamps = np.arange(n) / RATE
    found = events_from_block(traces, stamps, EventRule(threshold=0.1), frame_rate_hz=RATE)
    for got, want in zip(found, truth):
        np.testing.assert_allclose(got, stamps[want])


def test_the_rule_records_the_deconvolution_used():
    oasis = EventRule().describe()
    assert oasis["rule"] == "oasis-deconvolution-peaks-v1" and oasis["method"] == "oasis"
    assert oasis["deconvolution"].startswith("oasis-deconv 0.") and "tau_d = tau_s" in oasis["deconvolution"]
    bare = EventRule(method="ar1").describe()
    assert bare["rule"] == "ar1-deconvolution-peaks-v1" and "closed-form" in bare["deconvolution"]
    with pytest.raises(ValueError, match="'oasis' or 'ar1'"):
        EventRule(method="foopsi")


def test_a_constant_trace_has_no_events():
    assert deconvolve_oasis(np.full((50, 2), 100.0), frame_rate_hz=RATE, tau_s=1.0).max() == 0.0


def test_deconvolved_input_skips_deconvolution():
    act = np.zeros((30, 1))
    act[[4, 5, 6, 20], 0] = [0.2, 0.5, 0.1, 0.03]   # one broad peak and one small one
    trains = events_from_block(act, np.arange(30.0), EventRule(input="deconvolved"), frame_rate_hz=1.0)
    assert trains[0].tolist() == [5.0, 20.0]


def test_plateau_counts_once_at_its_first_frame():
    act = np.array([[0.0], [0.3], [0.3], [0.3], [0.0]])
    assert detect_peaks(act)[0].tolist() == [1]


def test_invalid_rule_is_refused():
    with pytest.raises(ValueError, match="tau_s > 0"):
        EventRule(tau_s=0)
    with pytest.raises(ValueError, match="'fluorescence' or 'deconvolved'"):
        EventRule(input="spikes")
    assert EventRule().describe()["threshold"] == 0.01
