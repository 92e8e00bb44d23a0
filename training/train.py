"""``fit``: train a batch of independent RNNs on one task and record honest metrics.

The corrected protocol (docs/method.md#flaw-1): the reported accuracy is held-out *test*
accuracy without input noise; per-epoch records keep training accuracy (with noise, as the study
reported it) apart from validation accuracy and task loss (no noise, no penalty).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .config import FitConfig
from .connectome import DaleMask
from .model import BatchedRNN, ModelConfig
from .regularizers import Regularizer
from .tasks import TASKS, TaskName, make_task

__all__ = ["evaluate", "FitConfig", "FitResult", "Splits", "make_splits", "fit"]


@dataclass(frozen=True)
class Splits:
    """Train, validation and test trials: ``(x, y)`` pairs of ``(n, time, n_in)``, ``(n,)``."""

    train: tuple[torch.Tensor, torch.Tensor]
    """Training trials."""
    val: tuple[torch.Tensor, torch.Tensor]
    """Validation trials."""
    test: tuple[torch.Tensor, torch.Tensor]
    """Held-out test trials."""


@dataclass
class FitResult:
    """What :func:`fit` returns."""

    model: BatchedRNN
    """The trained models (diverged runs keep their last finite weights)."""
    records: pd.DataFrame
    """One row per run and epoch: run, epoch, train_accuracy, val_accuracy, val_loss,
    penalty, diverged."""
    test_accuracy: np.ndarray
    """``(R,)`` held-out test accuracy without noise."""
    test_loss: np.ndarray
    """``(R,)`` held-out test cross-entropy without noise or penalty (inf where not finite)."""
    epochs_to_criterion: list[int | None]
    """First epoch (1-based) whose validation accuracy reaches the criterion, per run."""
    diverged: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    """``(R,)`` whether a run hit a non-finite loss or weight (it was then frozen)."""


def make_splits(task: TaskName, config: FitConfig) -> Splits:
    """Generate the three splits of ``task`` from ``config.data_seed`` (independent streams)."""
    seeds = np.random.SeedSequence(config.data_seed).generate_state(3)
    return Splits(train=make_task(task, config.n_train, seed=int(seeds[0])),
                  val=make_task(task, config.n_val, seed=int(seeds[1])),
                  test=make_task(task, config.n_test, seed=int(seeds[2])))


def fit(task: TaskName, recurrent: torch.Tensor, *, seeds: Sequence[int],
        regularizer: Regularizer | None = None, config: FitConfig = FitConfig(),
        splits: Splits | None = None, constraint: DaleMask | None = None) -> FitResult:
    """Train R independent RNNs together (Adam, cross-entropy on the final state + penalty).

    Parameters
    ----------
    task
        ``"T1"``, ``"T2"`` or ``"T3"``.
    recurrent
        ``(R, N, N)`` initial recurrent weights [run, pre, post] (see :mod:`training.initializers`).
    seeds
        One seed per run: input/readout initialization, trial order and input noise. Run ``r`` of
        a batch trains exactly like a single-run fit with ``seeds[r]`` and ``recurrent[r:r+1]``.
    regularizer
        Penalty on the effective recurrent matrix; ``None`` for none.
    config
        Training settings.
    splits
        Pre-generated trials; default ``make_splits(task, config)``.
    constraint
        The connectome's support and Dale signs (``(R, N, N)``/``(R, N)``), kept throughout:
        applied in the forward pass and projected onto the parameter after every update, so the
        raw weights keep it too (like the positive-only clip).

    Returns
    -------
    FitResult

    Examples
    --------
    >>> from connectome_priors.training.initializers import orthogonal
    >>> cfg = FitConfig(epochs=1, n_train=64, n_val=32, n_test=32, batch_size=32)
    >>> res = fit("T2", orthogonal(8, runs=2, seed=0), seeds=[0, 1], config=cfg)
    >>> res.test_accuracy.shape
    (2,)
    """
    spec = TASKS[task] if task in TASKS else None
    splits = splits if splits is not None else make_splits(task, config)
    r, n = recurrent.shape[0], recurrent.shape[-1]
    seeds = [int(s) for s in seeds]
    mcfg = ModelConfig(n_units=n, n_in=spec.n_in if spec else splits.train[0].shape[-1],
                       n_classes=spec.n_classes if spec else int(splits.train[1].max()) + 1,
                       runs=r, positive_only=config.positive_only)
    start = recurrent.clamp(min=0.0) if config.positive_only else recurrent
    if constraint is not None:
        start = constraint.project(start)
    model = BatchedRNN(mcfg, start, seeds=seeds, constraint=constraint)
    gens = [torch.Generator().manual_seed(int(np.random.SeedSequence([s, 1]).generate_state(1)[0]))
            for s in seeds]
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    params = list(model.parameters())
    x_tr, y_tr = splits.train
    n_tr = x_tr.shape[0]
    diverged = torch.zeros(r, dtype=torch.bool)
    rows = []
    hits = [None] * r
    for epoch in range(1, config.epochs + 1):
        orders = torch.stack([torch.randperm(n_tr, generator=g) for g in gens])  # (R, n_train)
        correct = torch.zeros(r)
        for start_i in range(0, n_tr, config.batch_size):
            idx = orders[:, start_i:start_i + config.batch_size]  # (R, batch)
            noise = torch.stack([torch.randn(idx.shape[1], *x_tr.shape[1:], generator=g)
                                 for g in gens])  # (R, batch, time, n_in)
            xb = x_tr[idx] + config.input_noise * noise  # (R, batch, time, n_in)
            yb = y_tr[idx]  # (R, batch)
            logits = model(xb)  # (R, batch, n_classes)
            task_loss = F.cross_entropy(logits.flatten(0, 1), yb.flatten(),
                                        reduction="none").view(r, -1).mean(dim=1)  # (R,)
            penalty = (regularizer(model.effective_recurrent()) if regularizer is not None
                       else torch.zeros(r))
            loss = task_loss + penalty  # (R,)
            finite = torch.isfinite(loss) & ~diverged
            before = [p.detach().clone() for p in params]
            opt.zero_grad(set_to_none=True)
            torch.where(finite, loss, torch.zeros_like(loss)).sum().backward()
            opt.step()
            with torch.no_grad():
                if config.positive_only:
                    model.W.clamp_(min=0.0)
                if constraint is not None:
                    model.W.copy_(constraint.project(model.W))
                ok = finite.clone()
                for p in params:
                    ok &= torch.isfinite(p).flatten(1).all(dim=1)
                diverged |= ~ok
                if diverged.any():
                    for p, old in zip(params, before):
                        p[diverged] = old[diverged]
                hit = (logits.argmax(-1) == yb) & torch.isfinite(logits).all(-1)
                correct += hit.sum(dim=1).float()
        val_acc, val_loss = evaluate(model, *splits.val, config.eval_batch)
        with torch.no_grad():
            pen = (regularizer(model.effective_recurrent()) if regularizer is not None
                   else torch.zeros(r))
        for i in range(r):
            if hits[i] is None and val_acc[i] >= config.criterion:
                hits[i] = epoch
            rows.append({"run": i, "epoch": epoch, "train_accuracy": float(correct[i] / n_tr),
                         "val_accuracy": float(val_acc[i]), "val_loss": float(val_loss[i]),
                         "penalty": _finite_or_inf(float(pen[i])),
                         "diverged": bool(diverged[i])})
    test_acc, test_loss = evaluate(model, *splits.test, config.eval_batch)
    return FitResult(model=model, records=pd.DataFrame(rows), test_accuracy=test_acc,
                     test_loss=test_loss,
                     epochs_to_criterion=hits, diverged=diverged.numpy().copy())


def evaluate(model: BatchedRNN, x: torch.Tensor, y: torch.Tensor,
              chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy and mean cross-entropy per run, without noise; non-finite losses become inf."""
    r = model.config.runs
    correct, loss = torch.zeros(r, dtype=torch.float64), torch.zeros(r, dtype=torch.float64)
    with torch.no_grad():
        for i in range(0, x.shape[0], chunk):
            logits = model(x[i:i + chunk])  # (R, chunk, n_classes)
            yb = y[i:i + chunk]
            ok = torch.isfinite(logits).all(-1)  # (R, chunk)
            correct += ((logits.argmax(-1) == yb) & ok).sum(dim=1).double()
            ce = F.cross_entropy(logits.flatten(0, 1), yb.repeat(r),
                                 reduction="none").view(r, -1).double()  # (R, chunk)
            loss += torch.where(ok & torch.isfinite(ce), ce, torch.full_like(ce, math.inf)).sum(1)
    return (correct / x.shape[0]).numpy(), (loss / x.shape[0]).numpy()


def _finite_or_inf(value: float) -> float:
    return value if math.isfinite(value) else math.inf
