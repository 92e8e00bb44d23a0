"""``run_experiment``: every task x variant of a prior, runs batched, with metrics per run.

For each task and variant the initial weights and the penalty come from the prior
(:func:`~training.variants.build_variant`); all runs of a variant train together as one batched
model (:func:`~training.train.fit`); organization metrics are computed per run on the *effective*
recurrent matrix. Seeds are explicit and recorded: trials use ``data_seed`` (the same trials for
every variant of a task), run ``r`` uses ``run_seed(seed, r)`` for its input/readout init, trial
order and noise (shared across variants and tasks: common random numbers), and the initial
recurrent matrices use ``init_seed`` (shared across variants, so ``W!`` permutes the same draws as
``W*``).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .metrics import organization
from .tasks import TASKS
from .train import FitConfig, evaluate, fit, make_splits
from .variants import VARIANTS, Protocol, build_variant, parse_variant

__all__ = ["ExperimentConfig", "run_experiment", "run_seed", "RUN_COLUMNS", "write_parquet",
           "config_dict"]

#: Columns of ``runs.parquet``, in order.
RUN_COLUMNS: tuple[str, ...] = (
    "task", "variant", "run", "seed", "protocol", "test_accuracy", "train_accuracy",
    "val_accuracy", "task_loss", "epochs_to_criterion", "diverged", "modularity_q",
    "small_world_sigma", "assortativity", "entropy", "init_seed", "data_seed", "n_units",
    "fit_seconds")


@dataclass(frozen=True)
class ExperimentConfig:
    """What to train: tasks x variants x runs under one protocol (defaults: the study's grid)."""

    tasks: tuple[str, ...] = ("T1", "T2", "T3")
    """Task names (``T1``, ``T2``, ``T3``)."""
    variants: tuple[str, ...] = VARIANTS
    """Canonical variant names, e.g. ``("W*D*C", "W")``."""
    runs: int = 20
    """Runs per variant (trained together as one batched model)."""
    protocol: Protocol = "corrected"
    """``"corrected"`` (default) or ``"paper"`` (the study's distances and L1, METHOD.md 4)."""
    epochs: int = 10
    """Passes over the training split."""
    n_train: int = 5120
    """Training trials."""
    n_val: int = 2560
    """Validation trials."""
    n_test: int = 2560
    """Held-out test trials."""
    seed: int = 0
    """Master seed; every other seed derives from it and is recorded per run."""
    positive_only: bool = False
    """The positive-only arm: recurrent weights clipped at >= 0 after every update."""
    batch_size: int = 128
    """Trials per update."""
    lr: float = 1e-3
    """Adam learning rate."""
    n_null: int = 20
    """Density-matched null graphs per small-world sigma."""

    def __post_init__(self) -> None:
        for t in self.tasks:
            if t not in TASKS:
                from .errors import UnknownTaskError  # noqa: PLC0415

                raise UnknownTaskError(f"unknown task {t!r}; expected one of {', '.join(TASKS)}",
                                       name=str(t), known=tuple(TASKS))
        for v in self.variants:
            parse_variant(v)
        if self.protocol not in ("corrected", "paper"):
            raise ValueError(f"unknown protocol {self.protocol!r}; expected 'corrected' or 'paper'")
        if self.runs < 1 or self.epochs < 1:
            raise ValueError(f"runs and epochs must be >= 1; found runs={self.runs}, "
                             f"epochs={self.epochs}")


def run_seed(seed: int, run: int) -> int:
    """Seed of run ``run`` under master ``seed`` (independent streams via SeedSequence)."""
    return int(np.random.SeedSequence([int(seed), 1, int(run)]).generate_state(1)[0])


def _derived(seed: int, tag: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(tag)]).generate_state(1)[0])


def run_experiment(prior, config: ExperimentConfig, *, out_dir: str | os.PathLike,
                   progress: bool = False) -> pd.DataFrame:
    """Train every task x variant of ``config`` on ``prior``; write ``runs``/``curves`` parquet.

    Parameters
    ----------
    prior
        A loaded prior (:func:`priors_store.load`) holding ``w_bio_modulation``, ``distance_um``
        and ``communicability``.
    config
        What to train.
    out_dir
        Folder that receives ``runs.parquet`` (one row per run, columns :data:`RUN_COLUMNS`) and
        ``curves.parquet`` (one row per run and epoch); created if missing.
    progress
        Show a progress bar over task x variant.

    Returns
    -------
    pandas.DataFrame
        The runs table.

    Examples
    --------
    >>> cfg = ExperimentConfig(tasks=("T2",), variants=("W",), runs=2, epochs=1,
    ...                        n_train=128, n_val=64, n_test=64)
    >>> runs = run_experiment(prior, cfg, out_dir="out")  # doctest: +SKIP
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    arrays = {"w_bio_modulation": np.asarray(prior["w_bio_modulation"], dtype=np.float64),
              "distance_um": np.asarray(prior["distance_um"], dtype=np.float64),
              "communicability_empirical": np.asarray(prior["communicability"], dtype=np.float64)}
    n = arrays["distance_um"].shape[0]
    data_seed, init_seed = _derived(config.seed, 2), _derived(config.seed, 3)
    seeds = [run_seed(config.seed, r) for r in range(config.runs)]
    fcfg = FitConfig(epochs=config.epochs, lr=config.lr, batch_size=config.batch_size,
                     n_train=config.n_train, n_val=config.n_val, n_test=config.n_test,
                     positive_only=config.positive_only, data_seed=data_seed)
    rows, curves = [], []
    bar = tqdm(total=len(config.tasks) * len(config.variants), desc="train", unit="variant",
               disable=not progress)
    with bar:
        for task in config.tasks:
            splits = make_splits(task, fcfg)
            for variant in config.variants:
                bar.set_postfix_str(f"{task} {variant}")
                t0 = time.perf_counter()
                w0, reg = build_variant(variant, **arrays, runs=config.runs, seed=init_seed,
                                        protocol=config.protocol)
                res = fit(task, w0, seeds=seeds, regularizer=reg, config=fcfg, splits=splits)
                _, test_loss = evaluate(res.model, *splits.test, fcfg.eval_batch)
                elapsed = time.perf_counter() - t0
                last = res.records[res.records["epoch"] == config.epochs].set_index("run")
                w_eff = res.model.effective_recurrent().detach()  # (R, N, N) [run, pre, post]
                for r in range(config.runs):
                    diverged = bool(res.diverged[r])
                    metrics = _metrics(w_eff[r], diverged=diverged, n_null=config.n_null,
                                       seed=seeds[r])
                    etc = res.epochs_to_criterion[r]
                    rows.append({
                        "task": task, "variant": variant, "run": r, "seed": seeds[r],
                        "protocol": config.protocol,
                        "test_accuracy": float(res.test_accuracy[r]),
                        "train_accuracy": float(last.loc[r, "train_accuracy"]),
                        "val_accuracy": float(last.loc[r, "val_accuracy"]),
                        "task_loss": float(test_loss[r]),
                        "epochs_to_criterion": etc,
                        "diverged": diverged, **metrics,
                        "init_seed": init_seed, "data_seed": data_seed, "n_units": n,
                        "fit_seconds": elapsed / config.runs})
                rec = res.records.assign(task=task, variant=variant, protocol=config.protocol,
                                         seed=[seeds[r] for r in res.records["run"]])
                curves.append(rec)
                bar.update()
    runs = pd.DataFrame(rows, columns=list(RUN_COLUMNS))
    runs["epochs_to_criterion"] = runs["epochs_to_criterion"].astype("Int64")
    runs["diverged"] = runs["diverged"].astype(bool)
    curve_df = pd.concat(curves, ignore_index=True)
    curve_df = curve_df[["task", "variant", "run", "seed", "protocol", "epoch", "train_accuracy",
                         "val_accuracy", "val_loss", "penalty", "diverged"]]
    write_parquet(runs, out / "runs.parquet")
    write_parquet(curve_df, out / "curves.parquet")
    return runs


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
        from .metrics import assortativity, binarize, modularity, weight_entropy  # noqa: PLC0415

        adj = binarize(w)
        return {**nan, "modularity_q": modularity(adj), "assortativity": assortativity(adj),
                "entropy": weight_entropy(w)}
    return {"modularity_q": m["modularity"], "small_world_sigma": m["small_world_sigma"],
            "assortativity": m["assortativity"], "entropy": m["entropy"]}


def write_parquet(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``df`` to ``path`` through a temporary file in the same folder, then rename."""
    return _atomic(Path(path), lambda tmp: df.to_parquet(tmp, index=False))


def _atomic(path: Path, write) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def config_dict(config: ExperimentConfig) -> dict:
    """JSON-ready view of a config."""
    d = asdict(config)
    d["tasks"], d["variants"] = list(config.tasks), list(config.variants)
    return d
