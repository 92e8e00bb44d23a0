"""What to train: :class:`FitConfig` (one fit) inside :class:`ExperimentConfig` (a grid).

Plain dataclasses without torch (names are checked by the torch-free :mod:`training.grammar`),
so the command line takes its defaults from them without importing the training code. Every field of an experiment's config except the cell choice
(``tasks``, ``variants``) and ``runs_per_batch`` (speed only) keys its finished cells
(:func:`connectome_priors.training.experiment.fingerprint`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import UnknownTaskError
from .grammar import CONTROLS, TASK_NAMES, VARIANTS, Protocol, parse_variant

__all__ = ["CONTROLS", "ExperimentConfig", "FitConfig", "Protocol", "VARIANTS"]


@dataclass(frozen=True)
class FitConfig:
    """Training settings of one fit (defaults: the study's protocol)."""

    epochs: int = 10
    """Passes over the training split."""
    lr: float = 1e-3
    """Adam learning rate."""
    batch_size: int = 128
    """Trials per update."""
    input_noise: float = 0.05
    """Standard deviation of the Gaussian noise added to training inputs (not to evaluation)."""
    n_train: int = 5120
    """Training trials."""
    n_val: int = 2560
    """Validation trials (per-epoch curves, epochs-to-criterion)."""
    n_test: int = 2560
    """Held-out test trials (the reported accuracy)."""
    criterion: float = 0.9
    """Validation accuracy that counts as learned, for epochs-to-criterion."""
    positive_only: bool = False
    """The positive-only arm: recurrent weights clipped at >= 0 after every update."""
    data_seed: int = 0
    """Seed of the task trials (all runs see the same trials, each in its own order). In an
    experiment it is derived from :attr:`ExperimentConfig.seed`; leave it at 0 there."""
    eval_batch: int = 1024
    """Trials per forward pass when evaluating (memory only; results do not depend on it)."""


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
    """``"corrected"`` (default) or ``"paper"`` (the study's distances and L1, docs/method.md#flaws)."""
    seed: int = 0
    """Master seed; every other seed (trials, runs, initial weights) derives from it."""
    n_null: int = 20
    """Density-matched null graphs per small-world sigma."""
    runs_per_batch: int | None = None
    """Runs trained together as one batched model; ``None``: automatic (``runs_per_batch``).
    Results do not depend on it beyond float rounding (each run trains as it would alone)."""
    fit: FitConfig = field(default_factory=FitConfig)
    """Training settings of every fit (epochs, learning rate, trials, noise, criterion, ...)."""

    def __post_init__(self) -> None:
        for t in self.tasks:
            if t not in TASK_NAMES:
                raise UnknownTaskError(f"unknown task {t!r}; expected one of "
                                       f"{', '.join(TASK_NAMES)}", name=str(t), known=TASK_NAMES)
        for v in self.variants:
            parse_variant(v)
        if self.protocol not in ("corrected", "paper"):
            raise ValueError(f"unknown protocol {self.protocol!r}; expected 'corrected' or 'paper'")
        if self.runs < 1 or self.fit.epochs < 1:
            raise ValueError(f"runs and epochs must be >= 1; found runs={self.runs}, "
                             f"epochs={self.fit.epochs}")
        if self.fit.data_seed != 0:
            raise ValueError(f"fit.data_seed is derived from seed in an experiment; found "
                             f"data_seed={self.fit.data_seed}: set seed instead")
