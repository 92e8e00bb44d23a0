"""The three final-step classification tasks of the study (docs/method.md#tasks), as generators.

Every generator is vectorized and seeded, and returns ``x`` ``(batch, time, n_in)`` float32 and
``y`` ``(batch,)`` int64 torch tensors. Input noise (sigma 0.05) is *not* added here: the training
loop adds it.

- ``T1`` one-choice inference (the first choice of Achterberg et al.'s maze task): a goal is shown
  on one of 4 goal channels for 20 steps, then 10 steps of delay, then 2 of 4 direction channels
  (left, up, right, down) for 20 steps; the answer is the direction of the first step towards the
  goal. The 8 problems (goal, offered pair, answer) of the original task are drawn uniformly; they
  are chosen so that the goal and the pair determine the answer, while the pair alone determines it
  only for 2 of 5 pairs: answering from the choices alone scores 5/8 = 0.625.
- ``T2`` Go/NoGo: fixation channel on for fixation (5), stimulus (20) and delay (10); one of 2
  stimulus channels on during the stimulus; 5 decision steps with every input off. Class 1 = go.
- ``T3`` perceptual decision making (dt 100 ms): fixation (1), stimulus (30), delay (10). The
  fixation channel is on throughout; during the stimulus the two evidence channels carry
  ``0.5 +/- coh/200`` plus Gaussian noise of sd 0.1, the larger mean on the correct channel;
  coherence uniform in {0, 6.4, 12.8, 25.6, 51.2} %. The ideal observer scores about 0.90.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from .errors import UnknownTaskError

__all__ = ["TaskName", "TaskSpec", "TASKS", "make_task", "one_choice_inference", "go_nogo",
           "perceptual_decision", "T1_PROBLEMS", "T3_COHERENCES"]

TaskName = Literal["T1", "T2", "T3"]

#: T1's problems as (goal channel, offered directions, answer); directions 0 left, 1 up,
#: 2 right, 3 down (input channels 4 + direction). From the maze task's first choices.
T1_PROBLEMS: tuple[tuple[int, tuple[int, int], int], ...] = (
    (1, (1, 0), 1), (1, (2, 3), 2), (3, (0, 3), 3), (2, (2, 3), 3),
    (2, (1, 0), 0), (0, (1, 2), 1), (3, (0, 2), 2), (0, (0, 2), 0),
)

#: T3's coherences in percent.
T3_COHERENCES: tuple[float, ...] = (0.0, 6.4, 12.8, 25.6, 51.2)


@dataclass(frozen=True)
class TaskSpec:
    """Shape facts of one task."""

    name: str
    """Canonical task name (``"T1"``, ``"T2"``, ``"T3"``)."""
    n_in: int
    """Number of input channels."""
    n_classes: int
    """Number of answer classes (read out at the final step)."""
    n_steps: int
    """Trial length in time steps."""
    chance: float
    """Accuracy of always answering the most frequent class."""


TASKS: dict[str, TaskSpec] = {
    "T1": TaskSpec("T1", 8, 4, 50, 0.25),
    "T2": TaskSpec("T2", 3, 2, 40, 0.5),
    "T3": TaskSpec("T3", 3, 2, 41, 0.5),
}


def one_choice_inference(n: int, *, seed: int, goal_steps: int = 20, delay_steps: int = 10,
                         choice_steps: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """Trials of T1, the one-choice inference task.

    Parameters
    ----------
    n
        Number of trials.
    seed
        Seed of the numpy generator that draws the problems.
    goal_steps, delay_steps, choice_steps
        Period lengths in time steps.

    Returns
    -------
    tuple of torch.Tensor
        ``x`` ``(n, goal+delay+choice, 8)`` float32 (channels 0-3 goal, 4-7 directions) and
        ``y`` ``(n,)`` int64 direction in 0..3.

    Examples
    --------
    >>> x, y = one_choice_inference(4, seed=0)
    >>> tuple(x.shape), tuple(y.shape)
    ((4, 50, 8), (4,))
    """
    _check_n(n)
    rng = np.random.default_rng(seed)
    problem = rng.integers(0, len(T1_PROBLEMS), size=n)
    goals = np.array([p[0] for p in T1_PROBLEMS])[problem]  # (n,)
    pairs = np.array([p[1] for p in T1_PROBLEMS])[problem]  # (n, 2)
    answers = np.array([p[2] for p in T1_PROBLEMS])[problem]  # (n,)
    t = goal_steps + delay_steps + choice_steps
    x = np.zeros((n, t, 8), dtype=np.float32)  # (batch, time, n_in)
    rows = np.arange(n)
    goal_onehot = np.eye(4, dtype=np.float32)[goals]  # (n, 4)
    x[:, :goal_steps, :4] = goal_onehot[:, None, :]
    choice_hot = np.zeros((n, 4), dtype=np.float32)  # (n, 4)
    choice_hot[rows, pairs[:, 0]] = 1.0
    choice_hot[rows, pairs[:, 1]] = 1.0
    x[:, goal_steps + delay_steps:, 4:] = choice_hot[:, None, :]
    return torch.from_numpy(x), torch.from_numpy(answers.astype(np.int64))


def go_nogo(n: int, *, seed: int, fixation_steps: int = 5, stimulus_steps: int = 20,
            delay_steps: int = 10, decision_steps: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Trials of T2, Go/NoGo.

    Parameters
    ----------
    n
        Number of trials.
    seed
        Seed of the numpy generator that draws go (1) or no-go (0) with probability 1/2.
    fixation_steps, stimulus_steps, delay_steps, decision_steps
        Period lengths in time steps.

    Returns
    -------
    tuple of torch.Tensor
        ``x`` ``(n, time, 3)`` float32 (channel 0 fixation, 1 no-go stimulus, 2 go stimulus) and
        ``y`` ``(n,)`` int64 (1 go, 0 no-go).

    Examples
    --------
    >>> x, y = go_nogo(2, seed=0)
    >>> tuple(x.shape)
    (2, 40, 3)
    """
    _check_n(n)
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)  # (n,)
    t = fixation_steps + stimulus_steps + delay_steps + decision_steps
    x = np.zeros((n, t, 3), dtype=np.float32)  # (batch, time, n_in)
    x[:, : t - decision_steps, 0] = 1.0
    on = slice(fixation_steps, fixation_steps + stimulus_steps)
    x[:, on, 1] = (y == 0)[:, None]
    x[:, on, 2] = (y == 1)[:, None]
    return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))


def perceptual_decision(n: int, *, seed: int, fixation_steps: int = 1, stimulus_steps: int = 30,
                        delay_steps: int = 10, coherences: tuple[float, ...] = T3_COHERENCES,
                        noise_sd: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Trials of T3, perceptual decision making (random-dot-like evidence, dt 100 ms).

    Parameters
    ----------
    n
        Number of trials.
    seed
        Seed of the numpy generator (answer, coherence and evidence noise).
    fixation_steps, stimulus_steps, delay_steps
        Period lengths in time steps of 100 ms.
    coherences
        Coherences in percent, drawn uniformly per trial.
    noise_sd
        Standard deviation of the per-step Gaussian noise on each evidence channel.

    Returns
    -------
    tuple of torch.Tensor
        ``x`` ``(n, time, 3)`` float32 (channel 0 fixation, 1 and 2 evidence for class 0 and 1)
        and ``y`` ``(n,)`` int64.

    Examples
    --------
    >>> x, y = perceptual_decision(2, seed=0)
    >>> tuple(x.shape)
    (2, 41, 3)
    """
    _check_n(n)
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)  # (n,)
    coh = rng.choice(np.asarray(coherences, dtype=np.float64), size=n)  # (n,) percent
    t = fixation_steps + stimulus_steps + delay_steps
    x = np.zeros((n, t, 3), dtype=np.float32)  # (batch, time, n_in)
    x[:, :, 0] = 1.0
    sign = np.where(y == 1, 1.0, -1.0)  # +1 favours channel 2
    mean = np.stack([0.5 - sign * coh / 200, 0.5 + sign * coh / 200], axis=1)  # (n, 2)
    noise = rng.normal(0.0, noise_sd, size=(n, stimulus_steps, 2))  # (n, stimulus, 2)
    x[:, fixation_steps:fixation_steps + stimulus_steps, 1:] = mean[:, None, :] + noise
    return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))


_GENERATORS = {"T1": one_choice_inference, "T2": go_nogo, "T3": perceptual_decision}


def make_task(name: TaskName, n: int, *, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Trials of a task by name, with the study's period lengths.

    Parameters
    ----------
    name
        ``"T1"``, ``"T2"`` or ``"T3"``.
    n
        Number of trials.
    seed
        Seed of the task's generator.

    Returns
    -------
    tuple of torch.Tensor
        ``x`` ``(n, time, n_in)`` float32 and ``y`` ``(n,)`` int64.

    Raises
    ------
    UnknownTaskError
        If ``name`` is not a known task.

    Examples
    --------
    >>> x, y = make_task("T2", 8, seed=1)
    >>> x.shape[-1] == TASKS["T2"].n_in
    True
    """
    if name not in _GENERATORS:
        raise UnknownTaskError(f"unknown task {name!r}; expected one of {sorted(_GENERATORS)}",
                               name=str(name), known=tuple(sorted(_GENERATORS)))
    return _GENERATORS[name](n, seed=seed)


def _check_n(n: int) -> None:
    if int(n) != n or n < 1:
        raise ValueError(f"number of trials must be a positive integer; found {n!r}")
