"""``write_report``: summary.csv, stats.json, report.md, report.html and PNG plots of an experiment.

The report names the prior artifact (``name@version``) and its snapshot provenance, and says
SYNTHETIC prominently when the snapshot was generated. For the ``paper`` protocol on a blueprint
6_6_2 prior it puts the study's published table beside ours.
"""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from connectome_priors.kernel.version import code_version

from connectome_priors.kernel.files import atomic_path

from .grammar import FUNCTIONAL_KINDS, VARIANTS, default_variants, required_kinds

__all__ = ["PUBLISHED_6_6_2", "write_report"]

#: The study's published "accuracy" (last-epoch training accuracy with noise; flaw 1), field
#: 6_6_2, mean of 20 runs: {variant: {task: value}} (docs/method.md#published-results).
PUBLISHED_6_6_2: dict[str, dict[str, float]] = {
    v: dict(zip(("T1", "T2", "T3"), acc)) for v, acc in {
        "W*D*C": (0.917, 0.948, 0.865), "WD*C": (0.628, 0.939, 0.812),
        "WDC": (0.624, 0.511, 0.500), "WD*": (0.787, 0.512, 0.500),
        "WD": (0.628, 0.511, 0.499), "W": (0.625, 0.511, 0.500),
        "W*D*C*": (0.985, 0.951, 0.880), "WD*C*": (0.758, 0.511, 0.499),
        "W*DC*": (0.963, 0.927, 0.862), "W!D*C": (0.950, 0.951, 0.866),
        "W!D*C*": (0.963, 0.951, 0.847)}.items()}
assert tuple(PUBLISHED_6_6_2) == VARIANTS

_METRICS = ("modularity_q", "small_world_sigma", "assortativity", "entropy")


def _fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if isinstance(x, (float, np.floating)):
        return f"{x:.{digits}g}" if abs(x) < 1e-3 and x != 0 else f"{x:.{digits}f}"
    return str(x)


def _is_paper_field(manifest: dict, config: dict) -> bool:
    snap = manifest.get("source_snapshot", {})
    pop = manifest.get("population", {})
    return (config.get("protocol") == "paper" and snap.get("source") == "blueprint"
            and pop.get("kind") == "fields" and list(pop.get("fields") or []) == ["6_6_2"])


def write_report(out_dir: str | os.PathLike, runs: pd.DataFrame, summary: pd.DataFrame,
                 stats: dict, prior_manifest: dict, config) -> Path:
    """Write ``summary.csv``, ``stats.json``, ``report.md``, ``report.html`` and PNG plots.

    Parameters
    ----------
    out_dir
        Output folder (also where ``curves.parquet`` is read from for learning curves).
    runs, summary
        The runs table and :func:`training.stats.summarize` of it.
    stats
        ``{metric: training.stats.compare(runs, metric)}``.
    prior_manifest
        The prior's manifest (``prior.manifest``).
    config
        The :class:`~training.experiment.ExperimentConfig` (or its dict).

    Returns
    -------
    pathlib.Path
        Path of ``report.md``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = config if isinstance(config, dict) else _config_dict(config)
    _write(out / "summary.csv", lambda tmp: summary.to_csv(tmp, index=False))
    _write(out / "stats.json",
            lambda tmp: Path(tmp).write_text(json.dumps(stats, indent=2, default=str) + "\n"))
    curves_path = out / "curves.parquet"
    curves = pd.read_parquet(curves_path) if curves_path.is_file() else None
    images = _plots(out, runs, summary, curves)
    if _is_paper_field(prior_manifest, cfg):
        images.append(_published_plot(out, summary))
    blocks = _blocks(runs, summary, stats, prior_manifest, cfg, images)
    _write(out / "report.md", lambda tmp: Path(tmp).write_text(_markdown(blocks)))
    _write(out / "report.html", lambda tmp: Path(tmp).write_text(_html(blocks)))
    return out / "report.md"


def _config_dict(config) -> dict:
    from .experiment import config_dict

    return config_dict(config)


# --- content as blocks: ("h", level, text) | ("p", text) | ("strong", text) | ("table", df)
#     | ("img", path, alt) | ("pre", text) ----------------------------------------------------

def _blocks(runs, summary, stats, manifest, cfg, images) -> list[tuple]:
    snap = manifest.get("source_snapshot", {})
    synthetic = bool(snap.get("synthetic")) or snap.get("source") == "synthetic"
    ref = f"{manifest.get('name')}@{manifest.get('version')}"
    b: list[tuple] = [("h", 1, f"Training report: {ref}")]
    if synthetic:
        b.append(("strong", "SYNTHETIC DATA: this prior derives from a generated (synthetic) "
                            "snapshot, not measured MICrONS data. Do not read these numbers as "
                            "results about the brain."))
    b.append(("h", 2, "Prior and provenance"))
    pop = manifest.get("population", {})
    prov = pd.DataFrame([
        ("artifact", ref), ("neurons", pop.get("n_neurons")),
        ("population", json.dumps({k: v for k, v in pop.items() if k != "n_neurons"})),
        ("snapshot id", snap.get("snapshot_id")), ("source", snap.get("source")),
        ("synthetic", "YES (SYNTHETIC)" if synthetic else "no"),
        ("materialization version", snap.get("materialization_version")),
        ("content hash", snap.get("content_hash")),
        ("prior built by", manifest.get("code_version")),
        ("report written by", code_version()),
    ], columns=["field", "value"])
    b.append(("table", prov))
    b.extend(_kinds_blocks(manifest, cfg))
    b.append(("h", 2, "Configuration"))
    b.append(("pre", json.dumps(cfg, default=str)))
    b.append(("p", "Reported accuracy is held-out test accuracy without input noise; "
                   "train accuracy is the last epoch's, with noise (what the study reported). "
                   "task_loss is the test cross-entropy without the penalty. Diverged runs are "
                   "excluded from means and tests."))
    b.append(("h", 2, "Results per task and variant (mean ± sd, 95% CI)"))
    cols = [("test_accuracy", "test acc"), ("train_accuracy", "train acc"),
            ("modularity_q", "Q"), ("small_world_sigma", "sigma"),
            ("assortativity", "assort."), ("entropy", "entropy")]
    rows = []
    for _, s in summary.iterrows():
        row = {"task": s["task"], "variant": s["variant"], "runs": int(s["n_runs"]),
               "diverged": int(s["n_diverged"])}
        for c, label in cols:
            if f"{c}_mean" in s:
                row[label] = (f"{_fmt(s[f'{c}_mean'])} ± {_fmt(s[f'{c}_sd'])} "
                              f"[{_fmt(s[f'{c}_ci_low'])}, {_fmt(s[f'{c}_ci_high'])}]")
        rows.append(row)
    b.append(("table", pd.DataFrame(rows)))
    if _is_paper_field(manifest, cfg):
        b.append(("h", 2, "Published table (study, field 6_6_2) beside ours"))
        b.append(("p", "The study's 'accuracy' is the last-epoch training accuracy with noise "
                       "(flaw 1); compare it with our train accuracy, and see our test accuracy. "
                       "The paper protocol keeps the study's L1 coefficient 1 (flaw 2), raw "
                       "integer grid distances (flaw 3) and D* from scrambled coordinates "
                       "(flaw 4); its W* and C* come from our aligned prior (flaw 5 fixed: the "
                       "C* penalty compares sorted values, which node order does not change)."))
        comp = []
        for _, s in summary.iterrows():
            pub = PUBLISHED_6_6_2.get(s["variant"], {}).get(s["task"])
            comp.append({"task": s["task"], "variant": s["variant"], "published": _fmt(pub),
                         "ours (train acc)": _fmt(s.get("train_accuracy_mean")),
                         "ours (test acc)": _fmt(s.get("test_accuracy_mean"))})
        b.append(("table", pd.DataFrame(comp)))
    b.append(("h", 2, "Statistics (Kruskal-Wallis; pairwise Mann-Whitney U, Holm)"))
    for metric, res in stats.items():
        b.append(("h", 3, metric))
        rows = []
        for task, t in res.get("tasks", {}).items():
            kw = t["kruskal"]
            rows.append({"task": task, "H": _fmt(kw["H"]), "p": _fmt(kw["p"]),
                         "groups": kw["groups"],
                         "pairs with p_holm < 0.05": ", ".join(
                             f"{q['a']} vs {q['b']}" for q in t["pairwise"]
                             if q["p_holm"] is not None and q["p_holm"] < 0.05) or "none"})
        b.append(("table", pd.DataFrame(rows)))
    b.append(("h", 2, "Figures"))
    for path, alt in images:
        b.append(("img", path, alt))
    b.append(("p", "Files: runs.parquet (one row per run), curves.parquet (per epoch), "
                   "summary.csv, stats.json."))
    return b


def _kinds_blocks(manifest: dict, cfg: dict) -> list[tuple]:
    """The prior's kinds and, when it lacks kinds that variants read (a structure-only prior:
    no functional kind, so no ``w_bio_modulation``), which variants could not be trained."""
    from .experiment import why_absent

    if "kinds" not in manifest:
        return []
    kinds = sorted(manifest["kinds"])
    b: list[tuple] = [("p", f"Kinds of the prior: {', '.join(kinds) or 'none'}.")]
    protocol = cfg.get("protocol", "corrected")
    read = set().union(*(required_kinds(v, protocol=protocol) for v in default_variants(protocol)))
    absent = sorted(read - set(kinds))
    if not absent:
        return b
    why = why_absent(absent, manifest)
    cannot = [v for v in default_variants(protocol)
              if required_kinds(v, protocol=protocol) - set(kinds)]
    structure_only = not set(FUNCTIONAL_KINDS) & set(kinds)
    b.append(("strong", f"This prior lacks {', '.join(absent)}."
                        + (f" {why}." if why else "") + f" Variants that read "
                        f"{' or '.join(absent)} cannot run on it and were not trained: "
                        f"{', '.join(cannot)}."
                        + (" It is a structure-only prior (no functional kind): no comparison "
                           "with functional data is made; the organization metrics here are of "
                           "the trained weights alone and read no prior kind."
                           if structure_only else "")))
    return b


def _md_table(df: pd.DataFrame) -> str:
    def cell(x):
        return _fmt(x).replace("|", "\\|").replace("\n", " ")
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(cell(x) for x in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body])


def _markdown(blocks) -> str:
    parts = []
    for blk in blocks:
        kind = blk[0]
        if kind == "h":
            parts.append("#" * blk[1] + " " + blk[2])
        elif kind == "p":
            parts.append(blk[1])
        elif kind == "strong":
            parts.append(f"> **{blk[1]}**")
        elif kind == "table":
            parts.append(_md_table(blk[1]))
        elif kind == "pre":
            parts.append("```\n" + blk[1] + "\n```")
        elif kind == "img":
            parts.append(f"![{blk[2]}]({blk[1]})")
    return "\n\n".join(parts) + "\n"


def _html(blocks) -> str:
    e = html.escape
    parts = []
    for blk in blocks:
        kind = blk[0]
        if kind == "h":
            parts.append(f"<h{blk[1]}>{e(blk[2])}</h{blk[1]}>")
        elif kind == "p":
            parts.append(f"<p>{e(blk[1])}</p>")
        elif kind == "strong":
            parts.append(f'<p class="warn"><strong>{e(blk[1])}</strong></p>')
        elif kind == "table":
            df = blk[1].map(_fmt) if hasattr(blk[1], "map") else blk[1]
            parts.append(df.to_html(index=False, escape=True, border=0))
        elif kind == "pre":
            parts.append(f"<pre>{e(blk[1])}</pre>")
        elif kind == "img":
            parts.append(f'<figure><img src="{e(blk[1])}" alt="{e(blk[2])}">'
                         f"<figcaption>{e(blk[2])}</figcaption></figure>")
    title = next((b[2] for b in blocks if b[0] == "h"), "Training report")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
             "table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #ddd}"
             ".warn{background:#fdd;border:2px solid #c00;padding:8px}img{max-width:100%}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{e(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")


# --- plots ----------------------------------------------------------------------------------

def _pyplot():
    import matplotlib  # only when a report is written

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _plots(out: Path, runs, summary, curves) -> list[tuple[str, str]]:
    plt = _pyplot()
    images = []
    tasks = list(dict.fromkeys(summary["task"]))

    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        s = summary[summary["task"] == task]
        x = np.arange(len(s))
        mean = s["test_accuracy_mean"].to_numpy(float)
        lo = np.nan_to_num(mean - s["test_accuracy_ci_low"].to_numpy(float))
        hi = np.nan_to_num(s["test_accuracy_ci_high"].to_numpy(float) - mean)
        ax.bar(x, mean, yerr=[lo, hi], capsize=3, color="tab:blue", alpha=0.8)
        ax.set_xticks(x, s["variant"], rotation=60, fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_title(f"{task}: test accuracy (95% CI)")
    images.append(_savefig(fig, out / "accuracy.png", plt, "Test accuracy per variant, 95% CI"))

    if curves is not None and len(curves):
        fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.8), squeeze=False)
        for ax, task in zip(axes[0], tasks):
            c = curves[(curves["task"] == task) & ~curves["diverged"].astype(bool)]
            for variant, g in c.groupby("variant", sort=False):
                m = g.groupby("epoch")["val_accuracy"].mean()
                ax.plot(m.index, m.to_numpy(), marker="o", ms=3, label=variant)
            ax.set_xlabel("epoch")
            ax.set_ylabel("validation accuracy")
            ax.set_title(f"{task}: learning curves (mean of runs)")
            ax.legend(fontsize=7)
        images.append(_savefig(fig, out / "curves.png", plt,
                               "Validation accuracy per epoch, mean over runs"))

    fig, axes = plt.subplots(1, len(_METRICS), figsize=(4.5 * len(_METRICS), 3.8), squeeze=False)
    ok = runs[~runs["diverged"].astype(bool)]
    labels = list(dict.fromkeys(ok["task"] + " " + ok["variant"]))
    for ax, metric in zip(axes[0], _METRICS):
        data = []
        for label in labels:
            task, variant = label.split(" ", 1)
            v = ok.loc[(ok["task"] == task) & (ok["variant"] == variant), metric]
            v = pd.to_numeric(v, errors="coerce").dropna().to_numpy(float)
            data.append(v if len(v) else np.array([np.nan]))
        if labels:
            ax.boxplot(data)
            ax.set_xticks(np.arange(1, len(labels) + 1), labels, rotation=60, fontsize=7)
        ax.set_title(metric)
    images.append(_savefig(fig, out / "metrics.png", plt,
                           "Organization metrics per task and variant (non-diverged runs)"))
    return images


def _published_plot(out: Path, summary: pd.DataFrame) -> tuple[str, str]:
    """Per task, the study's published "accuracy" beside our train (noisy, as published) and
    test accuracy, variant by variant (variants without a published value get no grey bar)."""
    plt = _pyplot()
    rank = {v: i for i, v in enumerate(VARIANTS)}  # canonical order; controls after
    tasks = list(dict.fromkeys(summary["task"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.0 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        s = summary[summary["task"] == task].sort_values(
            "variant", key=lambda col: col.map(lambda v: rank.get(v, len(rank))), kind="stable")
        x = np.arange(len(s))
        pub = np.array([PUBLISHED_6_6_2.get(v, {}).get(task, np.nan) for v in s["variant"]])
        ax.bar(x - 0.27, pub, 0.27, color="0.6", label="published")
        ax.bar(x, s["train_accuracy_mean"].to_numpy(float), 0.27, color="tab:orange",
               label="ours, train (noisy)")
        ax.bar(x + 0.27, s["test_accuracy_mean"].to_numpy(float), 0.27, color="tab:blue",
               label="ours, test")
        ax.set_xticks(x, s["variant"], rotation=60, fontsize=8)
        ax.set_ylim(0, 1.2)
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.axhline(0.5, color="k", lw=0.5, ls=":")
        ax.set_title(f"{task}: published vs ours (mean of runs)")
        ax.legend(fontsize=7, loc="upper center", ncol=3)
    return _savefig(fig, out / "published.png", plt,
                    "The study's published accuracy beside ours, per task and variant")


def _savefig(fig, path: Path, plt, alt: str) -> tuple[str, str]:
    fig.tight_layout()
    _write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)
    return path.name, alt


def _write(path: Path, write) -> None:
    """``write(tmp)`` to a temporary sibling of ``path``, then rename it into place."""
    with atomic_path(path) as tmp:
        write(tmp)
