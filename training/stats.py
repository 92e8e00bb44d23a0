"""Summaries and tests of a runs table (docs/method.md#statistics: Kruskal-Wallis, Mann-Whitney + Holm).

Diverged runs are left out of accuracy and metric summaries (their count is reported); NaN values
of a metric (undefined for that run) are dropped per metric.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as st

__all__ = ["SUMMARY_METRICS", "holm", "summarize", "compare"]

#: Metrics summarized per task x variant.
SUMMARY_METRICS: tuple[str, ...] = ("test_accuracy", "train_accuracy", "val_accuracy", "task_loss",
                                    "modularity_q", "small_world_sigma", "assortativity", "entropy")


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values, in the input order.

    Sorted ascending, the i-th (0-based) of m p-values becomes ``min(1, (m - i) * p)``, made
    non-decreasing by a running maximum. NaN p-values stay NaN and do not count in m.

    Examples
    --------
    >>> holm([0.01, 0.04, 0.03]).round(3).tolist()
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for i, idx in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[idx]))
        out[idx] = running
    return out


def _ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    n = len(values)
    if n < 2:
        return (math.nan, math.nan)
    mean, sem = float(np.mean(values)), float(np.std(values, ddof=1) / math.sqrt(n))
    half = float(st.t.ppf(0.5 + level / 2, n - 1)) * sem
    return (mean - half, mean + half)


def _ordered(runs: pd.DataFrame) -> list[tuple[str, str]]:
    """(task, variant) pairs in first-appearance order."""
    return list(dict.fromkeys(zip(runs["task"], runs["variant"])))


def summarize(runs: pd.DataFrame, *, metrics: Sequence[str] = SUMMARY_METRICS,
              level: float = 0.95) -> pd.DataFrame:
    """Mean, sd and t-based confidence interval of each metric per task x variant.

    Parameters
    ----------
    runs
        A runs table (:func:`training.experiment.run_experiment`).
    metrics
        Columns to summarize (missing ones are skipped).
    level
        Confidence level of the interval (0.95: a 95% CI).

    Returns
    -------
    pandas.DataFrame
        One row per task x variant (in the table's order): ``task, variant, n_runs, n_diverged``
        and for each metric ``<metric>_mean, _sd, _ci_low, _ci_high, _n``.

    Examples
    --------
    >>> runs = pd.DataFrame({"task": ["T2"] * 3, "variant": ["W"] * 3, "diverged": False,
    ...                      "test_accuracy": [0.5, 0.6, 0.7]})
    >>> float(summarize(runs)["test_accuracy_mean"].iloc[0])
    0.6
    """
    rows = []
    for task, variant in _ordered(runs):
        g = runs[(runs["task"] == task) & (runs["variant"] == variant)]
        div = g["diverged"].astype(bool) if "diverged" in g else pd.Series(False, index=g.index)
        row = {"task": task, "variant": variant, "n_runs": len(g), "n_diverged": int(div.sum())}
        ok = g[~div]
        for m in metrics:
            if m not in g:
                continue
            v = pd.to_numeric(ok[m], errors="coerce").to_numpy(dtype=np.float64)
            v = v[np.isfinite(v)]
            lo, hi = _ci(v, level)
            row.update({f"{m}_mean": float(np.mean(v)) if len(v) else math.nan,
                        f"{m}_sd": float(np.std(v, ddof=1)) if len(v) > 1 else math.nan,
                        f"{m}_ci_low": lo, f"{m}_ci_high": hi, f"{m}_n": len(v)})
        rows.append(row)
    return pd.DataFrame(rows)


def compare(runs: pd.DataFrame, metric: str = "test_accuracy") -> dict:
    """Kruskal-Wallis across variants and pairwise two-sided Mann-Whitney U (Holm) per task.

    Diverged runs and NaN values are left out. A test that cannot run (fewer than two groups,
    an empty group, or all values identical) gets ``None`` statistics and p-values.

    Returns
    -------
    dict
        ``{"metric": metric, "tasks": {task: {"kruskal": {"H", "p", "groups"},
        "pairwise": [{"a", "b", "n_a", "n_b", "U", "p", "p_holm"}, ...]}}}``; JSON-ready
        (NaN written as ``None``).

    Examples
    --------
    >>> runs = pd.DataFrame({"task": "T2", "variant": ["A"] * 5 + ["B"] * 5, "diverged": False,
    ...                      "test_accuracy": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]})
    >>> round(compare(runs)["tasks"]["T2"]["pairwise"][0]["p"], 4)
    0.0079
    """
    out: dict = {"metric": metric, "tasks": {}}
    keep = runs[~runs["diverged"].astype(bool)] if "diverged" in runs else runs
    for task in dict.fromkeys(runs["task"]):
        t = keep[keep["task"] == task]
        groups = {}
        for variant in dict.fromkeys(runs.loc[runs["task"] == task, "variant"]):
            v = pd.to_numeric(t.loc[t["variant"] == variant, metric], errors="coerce")
            groups[variant] = v[np.isfinite(v)].to_numpy(dtype=np.float64)
        names = list(groups)
        usable = [g for g in groups.values() if len(g)]
        h = p = math.nan
        if (len(usable) >= 2 and len(usable) == len(names)
                and np.ptp(np.concatenate(usable)) > 0):  # all identical: H undefined
            h, p = (float(x) for x in st.kruskal(*usable))
        pairs = []
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                u = pv = math.nan
                if len(groups[a]) and len(groups[b]):
                    res = st.mannwhitneyu(groups[a], groups[b], alternative="two-sided")
                    u, pv = float(res.statistic), float(res.pvalue)
                pairs.append({"a": a, "b": b, "n_a": len(groups[a]), "n_b": len(groups[b]),
                              "U": u, "p": pv})
        for pair, adj in zip(pairs, holm([q["p"] for q in pairs])):
            pair["p_holm"] = float(adj)
        out["tasks"][task] = {"kruskal": {"H": h, "p": p, "groups": len(usable)},
                              "pairwise": pairs}
    return _json_ready(out)


def _json_ready(obj):
    if isinstance(obj, dict):
        return {k: _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
