"""Training tests run torch on one thread: on a shared 2-core machine, two OpenMP threads
contending with other processes made tiny RNN steps ~100x slower."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def w_bio() -> np.ndarray:
    """A random symmetric non-negative modulation of N = 24 with a unit-ish diagonal."""
    rng = np.random.default_rng(7)
    a = rng.random((24, 24)) ** 3
    a = (a + a.T) / 2
    np.fill_diagonal(a, 1.0)
    return a
