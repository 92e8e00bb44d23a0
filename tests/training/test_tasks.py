"""Tests of training/tasks.py."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from scipy.stats import norm

from connectome_priors.training.errors import UnknownTaskError
from connectome_priors.training.tasks import T1_PROBLEMS, T3_COHERENCES, TASKS, make_task


@pytest.mark.parametrize("name", ["T1", "T2", "T3"])
def test_shapes_dtypes_and_seeding(name):
    x, y = make_task(name, 50, seed=3)
    spec = TASKS[name]
    assert x.shape == (50, spec.n_steps, spec.n_in) and x.dtype == torch.float32
    assert y.shape == (50,) and y.dtype == torch.int64
    assert set(y.tolist()) <= set(range(spec.n_classes))
    x2, y2 = make_task(name, 50, seed=3)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    x3, y3 = make_task(name, 50, seed=4)
    assert not (torch.equal(x, x3) and torch.equal(y, y3))


def test_unknown_task_and_bad_n():
    with pytest.raises(UnknownTaskError, match="unknown task 'T4'"):
        make_task("T4", 3, seed=0)
    with pytest.raises(ValueError, match="positive integer"):
        make_task("T2", 0, seed=0)


def test_t1_layout():
    x, y = make_task("T1", 200, seed=0)
    goal = x[:, :20, :4]
    assert torch.all(goal.sum(-1) == 1) and torch.all(x[:, :20, 4:] == 0)
    assert torch.all(x[:, 20:30] == 0)
    choice = x[:, 30:, 4:]
    assert torch.all(choice.sum(-1) == 2) and torch.all(x[:, 30:, :4] == 0)
    # the answer is always one of the offered directions
    assert torch.all(choice[torch.arange(200), 0, y] == 1)


def test_t1_goal_and_choices_determine_answer():
    seen = {}
    for goal, pair, answer in T1_PROBLEMS:
        key = (goal, frozenset(pair))
        assert seen.setdefault(key, answer) == answer


def test_t1_choices_alone_score_0625():
    # Bayes-optimal answer from the pair alone, exactly, over the uniform problem table
    by_pair: dict[frozenset, list[int]] = {}
    for _, pair, answer in T1_PROBLEMS:
        by_pair.setdefault(frozenset(pair), []).append(answer)
    best = sum(max(a.count(k) for k in set(a)) for a in by_pair.values())
    assert best / len(T1_PROBLEMS) == 0.625
    # and empirically on generated trials: the majority answer per offered pair
    x, y = make_task("T1", 8000, seed=1)
    pair = x[:, -1, 4:].numpy().astype(int) @ np.array([1, 2, 4, 8])
    acc = 0
    for p in np.unique(pair):
        counts = np.bincount(y.numpy()[pair == p], minlength=4)
        acc += counts.max()
    assert acc / 8000 == pytest.approx(0.625, abs=0.015)


def test_t2_layout():
    x, y = make_task("T2", 100, seed=0)
    assert torch.all(x[:, :35, 0] == 1) and torch.all(x[:, 35:] == 0)
    stim = x[:, 5:25, 1:]
    assert torch.all(stim[:, :, 1] == (y == 1)[:, None].float())
    assert torch.all(stim[:, :, 0] == (y == 0)[:, None].float())
    assert torch.all(x[:, :5, 1:] == 0) and torch.all(x[:, 25:, 1:] == 0)
    assert 30 < int(y.sum()) < 70


def test_t3_evidence_and_ideal_observer():
    n = 20000
    x, y = make_task("T3", n, seed=2)
    assert torch.all(x[:, :, 0] == 1)
    assert torch.all(x[:, 0, 1:] == 0) and torch.all(x[:, 31:, 1:] == 0)
    ev = x[:, 1:31, 1:].double()  # (n, 30, 2)
    diff = ev[..., 1] - ev[..., 0]  # favours class 1
    # the per-step means are 0.5 +/- coh/200 and the noise sd 0.1
    signed = torch.where(y == 1, 1.0, -1.0).double()
    mean_coh = float((diff.mean(1) * signed).mean() * 100)  # E[coh] in percent
    assert mean_coh == pytest.approx(np.mean(T3_COHERENCES), abs=0.2)
    assert float(ev.std(dim=1).mean()) == pytest.approx(0.1, abs=0.005)
    assert float(ev.sum(-1).mean()) == pytest.approx(1.0, abs=0.01)
    ideal = ((diff.sum(1) > 0).long() == y).double().mean().item()
    analytic = np.mean([norm.cdf(30 * c / 100 / (0.1 * np.sqrt(2 * 30)))
                        for c in T3_COHERENCES])
    assert analytic == pytest.approx(0.90, abs=0.01)
    assert ideal == pytest.approx(analytic, abs=0.01)
