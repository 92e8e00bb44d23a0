"""Tests of training/stats.py with hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from connectome_priors.training.stats import compare, holm, summarize


def test_holm_hand_computed():
    # sorted 0.01, 0.03, 0.04 -> 3*0.01, 2*0.03, max(0.06, 1*0.04): input order restored
    assert holm([0.01, 0.04, 0.03]).tolist() == pytest.approx([0.03, 0.06, 0.06])
    # capped at 1; NaN stays NaN and does not count in m
    out = holm([0.5, math.nan, 0.2])
    assert out[0] == pytest.approx(0.5) and math.isnan(out[1]) and out[2] == pytest.approx(0.4)
    assert holm([0.9, 0.8]).tolist() == pytest.approx([1.0, 1.0])
    assert holm([]).size == 0


def _runs(groups: dict[str, list[float]], task: str = "T2") -> pd.DataFrame:
    return pd.DataFrame([{"task": task, "variant": v, "run": i, "diverged": False,
                          "test_accuracy": x}
                         for v, xs in groups.items() for i, x in enumerate(xs)])


def test_summarize_mean_sd_ci_hand_computed():
    runs = _runs({"A": [0.5, 0.6, 0.7], "B": [0.9, 0.9, 0.9]})
    runs.loc[len(runs)] = {"task": "T2", "variant": "B", "run": 3, "diverged": True,
                           "test_accuracy": 0.1}
    s = summarize(runs).set_index("variant")
    assert s.loc["A", "test_accuracy_mean"] == pytest.approx(0.6)
    assert s.loc["A", "test_accuracy_sd"] == pytest.approx(0.1)
    # t(0.975, 2) = 4.302653; half width 4.302653 * 0.1 / sqrt(3)
    half = 4.302653 * 0.1 / math.sqrt(3)
    assert s.loc["A", "test_accuracy_ci_low"] == pytest.approx(0.6 - half, abs=1e-6)
    assert s.loc["A", "test_accuracy_ci_high"] == pytest.approx(0.6 + half, abs=1e-6)
    # the diverged run is counted but left out of the mean
    assert s.loc["B", "n_runs"] == 4 and s.loc["B", "n_diverged"] == 1
    assert s.loc["B", "test_accuracy_mean"] == pytest.approx(0.9)
    assert s.loc["B", "test_accuracy_sd"] == pytest.approx(0.0)
    assert list(s.index) == ["A", "B"]


def test_compare_separated_groups_give_small_p():
    runs = _runs({"A": [1, 2, 3, 4, 5], "B": [6, 7, 8, 9, 10], "C": [11, 12, 13, 14, 15]})
    res = compare(runs)["tasks"]["T2"]
    # exact two-sided Mann-Whitney p for complete separation of 5 vs 5: 2 / C(10, 5) = 2/252
    pairs = {(q["a"], q["b"]): q for q in res["pairwise"]}
    assert pairs[("A", "B")]["p"] == pytest.approx(2 / 252)
    assert pairs[("A", "B")]["U"] == 0.0 and pairs[("A", "C")]["U"] == 0.0
    assert pairs[("A", "B")]["p_holm"] == pytest.approx(3 * 2 / 252)
    # Kruskal-Wallis H for three separated groups of 5 (no ties): 12/(15*16) * sum R^2/n - 3*16
    ranks = [15, 40, 65]
    h = 12 / (15 * 16) * sum(r * r / 5 for r in ranks) - 3 * 16
    assert res["kruskal"]["H"] == pytest.approx(h) and res["kruskal"]["p"] < 0.01
    assert res["kruskal"]["groups"] == 3


def test_compare_overlapping_groups_and_degenerate_cases():
    rng = np.random.default_rng(0)
    same = _runs({"A": rng.normal(size=10).tolist(), "B": rng.normal(size=10).tolist()})
    assert compare(same)["tasks"]["T2"]["kruskal"]["p"] > 0.05
    const = _runs({"A": [0.5] * 3, "B": [0.5] * 3})
    res = compare(const)["tasks"]["T2"]
    assert res["kruskal"]["H"] is None and res["kruskal"]["p"] is None
    assert res["pairwise"][0]["p"] == pytest.approx(1.0)
    one = _runs({"A": [0.1, 0.2]})
    res = compare(one)["tasks"]["T2"]
    assert res["kruskal"]["p"] is None and res["pairwise"] == []
