"""Training speed: batched vs one-at-a-time runs side by side, the expm, and the full paper grid.

Three measurements, all on the same machine in one process:

1. ``side-by-side``: the same runs of a few task x variant cells trained (a) one at a time,
   (b) in cache-sized batches (the default, :func:`training.experiment.runs_per_batch`) and (c) all
   together; the modes alternate over ``--repeats`` so background load hits them alike. Prints
   seconds per run-epoch and the speed-ups.
2. ``expm``: one forward + backward of the communicability penalty's matrix exponential with
   ``torch.linalg.matrix_exp`` vs :func:`training.expm.expm`.
3. ``--grid DIR``: the full paper grid (3 tasks x 11 variants x 20 runs x 10 epochs) on the
   blueprint prior of 6_6_2, written to DIR and resumable (rerun to continue a killed grid); at
   the end prints its total fitting time. With ``--grid DIR --report-only`` it only reads DIR.

The prior is built from the shared blueprint data into a temporary store unless ``--store`` names
one that holds ``--prior``.

    .venv/bin/python bench/train_grid.py                       # 1 and 2 (~5 min on 2 cores)
    .venv/bin/python bench/train_grid.py --grid /tmp/paper     # + the full grid (hours)
    .venv/bin/python bench/train_grid.py --grid /tmp/paper --dask-scheduler local  # faster
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]


def build_prior(store: Path, name: str):
    from connectome_priors import priors_store
    from connectome_priors.etl.pipeline import run_etl
    from connectome_priors.priors_store.population import Population

    if not (store / "artifacts" / name).exists():
        data = ROOT.parent / "shared" / "data" / "cortical-blueprint"
        run_etl("blueprint", data, store=store, fields=["6_6_2"])
        priors_store.build(name, Population.of_fields("6_6_2"), store=store,
                           root=store / "artifacts")
    return priors_store.load(name, root=store / "artifacts")


def side_by_side(prior, cells, runs, epochs, repeats) -> pd.DataFrame:
    from connectome_priors.training.config import ExperimentConfig, FitConfig
    from connectome_priors.training.experiment import run_experiment, runs_per_batch

    n = len(prior)
    auto = runs_per_batch(ExperimentConfig(runs=runs), n)
    modes = {"one at a time": 1, f"batches of {auto} (default)": auto, f"all {runs} together": runs}
    rows = []
    for rep in range(repeats):
        for task, variant in cells:
            for mode, k in modes.items():
                cfg = ExperimentConfig(tasks=(task,), variants=(variant,), runs=runs,
                                       fit=FitConfig(epochs=epochs), protocol="paper",
                                       runs_per_batch=k, n_null=1)
                with tempfile.TemporaryDirectory() as out:
                    t = time.perf_counter()
                    run_experiment(prior, cfg, out_dir=out)
                    wall = time.perf_counter() - t
                rows.append({"task": task, "variant": variant, "mode": mode, "repeat": rep,
                             "s_per_run_epoch": wall / runs / epochs})
                print(f"  {task} {variant:7s} {mode:24s} {wall / runs / epochs:6.2f} s/run-epoch",
                      flush=True)
    return pd.DataFrame(rows)


def expm_speed(n: int, repeats: int = 10) -> tuple[float, float]:
    from connectome_priors.training.expm import expm

    w = (torch.rand(1, n, n, generator=torch.Generator().manual_seed(0)) * 0.01).requires_grad_()
    times = {}
    for name, fn in (("matrix_exp", torch.linalg.matrix_exp), ("expm", expm)):
        fn(w).sum().backward()  # warm-up
        t = time.perf_counter()
        for _ in range(repeats):
            (fn(w.abs() / w.abs().sum(-1, keepdim=True).sqrt()) * w).sum().backward()
        times[name] = (time.perf_counter() - t) / repeats
    return times["matrix_exp"], times["expm"]


def grid(prior, out: Path, report_only: bool, scheduler: str | None) -> None:
    from connectome_priors.training.config import ExperimentConfig
    from connectome_priors.training.experiment import run_experiment

    cfg = ExperimentConfig(protocol="paper")  # 3 tasks x 11 variants x 20 runs x 10 epochs
    if not report_only:
        t = time.perf_counter()
        run_experiment(prior, cfg, out_dir=out, progress=True, scheduler=scheduler)
        print(f"grid call: {time.perf_counter() - t:.0f} s wall (cells finished earlier are "
              "reused, not re-timed)")
    # finished cells (a grid still running or interrupted has no runs.parquet yet)
    runs = pd.concat([pd.read_parquet(f) for f in sorted(out.glob("cells/*/*.runs.parquet"))])
    cell = runs.groupby(["task", "variant"])["fit_seconds"].sum()
    print(f"paper grid: {len(runs)} runs in {len(cell)} of 33 cells; fitting "
          f"{cell.sum():.0f} s = {cell.sum() / 3600:.2f} h (sum over finished cells)")
    print(cell.unstack("task").round(0).to_string())
    missing = [f"{t} {v}" for t in cfg.tasks for v in cfg.variants if (t, v) not in cell.index]
    if missing:
        print(f"not finished ({len(missing)}): {', '.join(missing)}")
    table = runs.groupby(["task", "variant"])[["train_accuracy", "test_accuracy"]].mean()
    print(table.round(3).to_string())
    for metric in ("train_accuracy", "test_accuracy"):
        print(f"published pattern on {metric} (bio-initialized above W, WD, WDC; Mann-Whitney, "
              "Holm over all pairs of the task):")
        print(pattern_check(runs, metric).to_string(index=False))


#: The study's claim (docs/method.md#published-results): these variants clearly above those, on every task.
ABOVE = ("W*D*C", "W*D*C*", "W*DC*", "W!D*C", "W!D*C*")
BELOW = ("W", "WD", "WDC")


def pattern_check(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per task and (above, below) pair present in ``runs``: the mean difference of ``metric``
    and its Holm-adjusted two-sided p; ``holds`` when the difference is positive and p < 0.05."""
    from connectome_priors.training.stats import compare

    res = compare(runs[~runs["diverged"].astype(bool)], metric)["tasks"]
    rows = []
    for task, t in res.items():
        p = {frozenset((q["a"], q["b"])): q["p_holm"] for q in t["pairwise"]}
        means = runs[runs["task"] == task].groupby("variant")[metric].mean()
        for a in ABOVE:
            for b in BELOW:
                key = frozenset((a, b))
                if key in p and p[key] is not None:
                    diff = means[a] - means[b]
                    rows.append({"task": task, "above": a, "below": b, "diff": round(diff, 3),
                                 "p_holm": f"{p[key]:.1e}", "holds": diff > 0 and p[key] < 0.05})
    return pd.DataFrame(rows, columns=["task", "above", "below", "diff", "p_holm", "holds"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=None, help="store holding --prior")
    ap.add_argument("--prior", default="study_6_6_2")
    ap.add_argument("--runs", type=int, default=10, help="runs per cell, side by side")
    ap.add_argument("--epochs", type=int, default=1, help="epochs per run, side by side")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--cells", default="T2:W,T2:W*D*C", help="task:variant list, side by side")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--grid", type=Path, default=None, help="also run the full paper grid here")
    ap.add_argument("--report-only", action="store_true", help="with --grid: only read it")
    ap.add_argument("--dask-scheduler", default=None,
                    help="with --grid: 'local' (one single-threaded worker per core; ~1.35x the "
                         "throughput of one process on 2 threads) or a scheduler address")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        prior = build_prior(args.store or Path(tmp) / "store", args.prior)
        n = len(prior)
        print(f"prior {prior.name}@{prior.version}: N = {n}; torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads")
        if args.grid is not None and args.report_only:
            grid(prior, args.grid, True, None)
            return 0
        old, new = expm_speed(n)
        print(f"expm forward+backward at N={n}: torch.linalg.matrix_exp {old * 1e3:.1f} ms, "
              f"connectome_priors.training.expm {new * 1e3:.1f} ms ({old / new:.1f}x)")
        cells = [tuple(c.split(":")) for c in args.cells.split(",")]
        print(f"side by side: {args.runs} runs x {args.epochs} epoch(s), paper protocol, "
              "5,120 training trials")
        df = side_by_side(prior, cells, args.runs, args.epochs, args.repeats)
        table = df.groupby(["task", "variant", "mode"], sort=False)["s_per_run_epoch"].median()
        table = table.unstack("mode")
        one = table.columns[0]
        for col in table.columns[1:]:
            table[f"speed-up {col.split(' (')[0]}"] = table[one] / table[col]
        print(table.round(2).to_string())
        if args.grid is not None:
            grid(prior, args.grid, False, args.dask_scheduler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
