"""``kernel.retry``: transient failures are retried with doubling waits; terminal ones are not."""

from __future__ import annotations

import pytest

from connectome_priors.kernel.errors import CxpError, TransientError
from connectome_priors.kernel.retry import Backoff, retry


def _flaky(failures, exc):
    calls = []

    def fn():
        calls.append(1)
        if len(calls) <= failures:
            raise exc
        return "ok"
    return fn, calls


def test_transient_failures_are_retried_with_doubling_waits():
    waits = []
    fn, calls = _flaky(3, TransientError("503"))
    assert retry(fn, backoff=Backoff(4, 0.5, 1.5), what="x", sleep=waits.append) == "ok"
    assert len(calls) == 4 and waits == [0.5, 1.0, 1.5]


def test_gives_up_after_the_retries_saying_how_often_it_tried():
    fn, calls = _flaky(10, TransientError("503"))
    with pytest.raises(TransientError, match=r"503 \(gave up after 3 attempts\)"):
        retry(fn, backoff=Backoff(2, 0.0), what="x", sleep=lambda s: None)
    assert len(calls) == 3


def test_terminal_and_foreign_errors_raise_at_once():
    fn, calls = _flaky(1, CxpError("404"))
    with pytest.raises(CxpError, match="404"):
        retry(fn, backoff=Backoff(5, 0.0), what="x", sleep=lambda s: None)
    fn, calls = _flaky(1, KeyError("bug"))
    with pytest.raises(KeyError):
        retry(fn, backoff=Backoff(5, 0.0), what="x", sleep=lambda s: None)
    assert len(calls) == 1
    fn, calls = _flaky(1, OSError("reset"))  # classify maps foreign errors to ours
    assert retry(fn, backoff=Backoff(1, 0.0), what="x", sleep=lambda s: None,
                 classify=lambda e: TransientError(str(e))) == "ok"
