"""One cell of an experiment: the runs of one task x variant, trained from a prior's arrays.

:func:`train_cell` is pure computation (no files): :func:`training.experiment.run_experiment`
runs it in-process, :mod:`training.distributed` on Dask workers. Seeds are explicit: trials use
``data_seed`` (derived from the master seed: the same trials for every variant of a task), run
``r`` uses :func:`run_seed` for its input/readout init, trial order and noise (shared across
variants and tasks: common random numbers), and the initial recurrent matrices use one
``init_seed`` (shared across variants, so ``W!`` permutes the same draws as ``W*``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from typing import cast

import numpy as np
import pandas as pd
import torch

from .config import ExperimentConfig, FitConfig
from .errors import UnknownTaskError
from .grammar import TASK_NAMES
from .metrics import organization
from .model import BatchedRNN, ModelConfig
from .tasks import TaskName
from .train import Splits, fit, make_splits
from .variants import build_constraint, build_variant

__all__ = ["RUN_COLUMNS", "fit_config", "run_seed", "runs_per_batch", "train_cell"]

#: Columns of ``runs.parquet``, in order.
RUN_COLUMNS: tuple[str, ...] = (
    "task", "variant", "run", "seed", "protocol", "test_accuracy", "train_accuracy",
    "val_accuracy", "task_loss", "epochs_to_criterion", "diverged", "modularity_q",
    "small_world_sigma", "assortativity", "entropy", "init_seed", "data_seed", "n_units",
    "fit_seconds", "dale_violations")


def run_seed(seed: int, run: int) -> int:
    """Seed of run ``run`` under master ``seed`` (independent streams via SeedSequence)."""
    return int(np.random.SeedSequence([int(seed), 1, int(run)]).generate_state(1)[0])


def _derived(seed: int, tag: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(tag)]).generate_state(1)[0])

def _n_units(arrays: dict[str, np.ndarray]) -> int:
    if arrays.get("positions_vox") is not None:
        return len(arrays["positions_vox"])
    return next(np.shape(a)[0] for a in arrays.values() if a is not None)

def runs_per_batch(config: ExperimentConfig, n_units: int) -> int:
    """Runs trained together: ``config.runs_per_batch``, else as many as keep the batch's
    recurrent weights within 2 MiB (5 at N = 312, all 20 at N <= 160; see bench/train_grid.py)."""
    if config.runs_per_batch:
        return max(1, min(config.runs, config.runs_per_batch))
    return max(1, min(config.runs, (2 << 20) // (4 * n_units * n_units)))


def fit_config(config: ExperimentConfig) -> FitConfig:
    """The fit settings of every cell of ``config``: ``config.fit`` with the derived
    ``data_seed``."""
    return replace(config.fit, data_seed=_derived(config.seed, 2))


def train_cell(task: str, variant: str, arrays: dict[str, np.ndarray],
               config: ExperimentConfig, *,
               splits: Splits | None = None) -> tuple[pd.DataFrame, pd.DataFrame, BatchedRNN]:
    """Train the runs of one task x variant, :func:`runs_per_batch` at a time.

    ``arrays``: :func:`training.experiment.prior_arrays` (keyword arguments of
    :func:`~training.variants.build_variant`; ``positions_vox`` or any array sets N).
    Returns the runs rows (:data:`RUN_COLUMNS`), the per-epoch curves and one batched model
    holding every run's trained weights. Pure computation (no files): the unit of work that
    :func:`training.experiment.run_experiment` runs in-process or on a Dask cluster.
    """
    if task not in TASK_NAMES:
        raise UnknownTaskError(f"unknown task {task!r}; expected one of {', '.join(TASK_NAMES)}",
                               name=str(task), known=TASK_NAMES)
    name = cast(TaskName, task)
    fcfg = fit_config(config)
    splits = splits if splits is not None else make_splits(name, fcfg)
    n = _n_units(arrays)
    init_seed = _derived(config.seed, 3)
    seeds = [run_seed(config.seed, r) for r in range(config.runs)]
    w0, reg = build_variant(variant, w_bio_modulation=arrays.get("w_bio_modulation"),
                            distance_um=arrays.get("distance_um"),
                            communicability_empirical=arrays.get("communicability_empirical"),
                            positions_vox=arrays.get("positions_vox"), runs=config.runs,
                            seed=init_seed, protocol=config.protocol, n_units=n,
                            connectome_signed=arrays.get("connectome_signed"),
                            cell_sign=arrays.get("cell_sign"))
    constraint = build_constraint(variant, connectome_signed=arrays.get("connectome_signed"),
                                  cell_sign=arrays.get("cell_sign"), runs=config.runs,
                                  seed=init_seed)
    step = runs_per_batch(config, n)
    rows, curves, states = [], [], []
    for lo in range(0, config.runs, step):
        hi = min(config.runs, lo + step)
        t0 = time.perf_counter()
        part = constraint.runs(lo, hi) if constraint is not None else None
        res = fit(name, w0[lo:hi], seeds=seeds[lo:hi], regularizer=reg, config=fcfg,
                  splits=splits, constraint=part)
        per_run = (time.perf_counter() - t0) / (hi - lo)
        last = res.records[res.records["epoch"] == config.fit.epochs].set_index("run")
        w_eff = res.model.effective_recurrent().detach()  # (R, N, N) [run, pre, post]
        broken = part.violations(w_eff).tolist() if part is not None else [np.nan] * (hi - lo)
        for i in range(hi - lo):
            r = lo + i
            diverged = bool(res.diverged[i])
            metrics = _metrics(w_eff[i], diverged=diverged, n_null=config.n_null, seed=seeds[r])
            rows.append({
                "task": task, "variant": variant, "run": r, "seed": seeds[r],
                "protocol": config.protocol, "test_accuracy": float(res.test_accuracy[i]),
                "train_accuracy": float(last.loc[i, "train_accuracy"]),
                "val_accuracy": float(last.loc[i, "val_accuracy"]),
                "task_loss": float(res.test_loss[i]), "epochs_to_criterion": res.epochs_to_criterion[i],
                "diverged": diverged, **metrics, "init_seed": init_seed,
                "data_seed": fcfg.data_seed, "n_units": n, "fit_seconds": per_run,
                "dale_violations": broken[i]})
        rec = res.records.assign(run=res.records["run"] + lo)
        curves.append(rec.assign(task=task, variant=variant, protocol=config.protocol,
                                 seed=[seeds[r] for r in rec["run"]]))
        states.append(res.model.state_dict())
    merged = BatchedRNN(ModelConfig(**{**asdict(res.model.config), "runs": config.runs}),
                        w0, seeds=seeds, constraint=constraint)
    merged.load_state_dict({k: torch.cat([s[k] for s in states]) for k in states[0]})
    runs = pd.DataFrame(rows, columns=list(RUN_COLUMNS))
    runs["epochs_to_criterion"] = runs["epochs_to_criterion"].astype("Int64")
    curve_df = pd.concat(curves, ignore_index=True)[
        ["task", "variant", "run", "seed", "protocol", "epoch", "train_accuracy",
         "val_accuracy", "val_loss", "penalty", "diverged"]]
    return runs, curve_df, merged


def _metrics(w: torch.Tensor, *, diverged: bool, n_null: int, seed: int) -> dict[str, float]:
    """Organization metrics of one run (NaN for a diverged run or an undefined metric)."""
    nan = {"modularity_q": np.nan, "small_world_sigma": np.nan, "assortativity": np.nan,
           "entropy": np.nan}
    w = torch.as_tensor(w)
    if diverged or not torch.isfinite(w).all():
        return nan
    try:
        m = organization(w, n_null=n_null, seed=seed % (2**32))
    except ValueError:
        # e.g. sigma undefined on a too-sparse graph: keep what is defined
        from .metrics import assortativity, binarize, modularity, weight_entropy

        adj = binarize(w)
        return {**nan, "modularity_q": modularity(adj), "assortativity": assortativity(adj),
                "entropy": weight_entropy(w)}
    return {"modularity_q": m["modularity"], "small_world_sigma": m["small_world_sigma"],
            "assortativity": m["assortativity"], "entropy": m["entropy"]}
