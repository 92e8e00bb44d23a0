"""``retry``: call a function again after transient failures, with exponential backoff.

One design for every network call (the CAVE client, DANDI downloads): a failure is transient when
``classify`` maps it to a :class:`~connectome_priors.kernel.errors.TransientError` (timeouts,
dropped connections, HTTP 5xx/429); anything else ends the call at once. After the last attempt the
transient error is raised, its message saying how many attempts were made.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from .errors import CxpError, TransientError

__all__ = ["Backoff", "retry"]

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """How often and how patiently to retry."""

    retries: int = 4
    """Retries after the first attempt."""
    first_s: float = 1.0
    """First wait, seconds; doubled after each retry."""
    max_s: float = 60.0
    """Longest wait, seconds."""


def _identity(err: BaseException) -> CxpError | None:
    return err if isinstance(err, CxpError) else None


def retry(fn: Callable[[], T], *, backoff: Backoff, what: str,
          classify: Callable[[BaseException], CxpError | None] = _identity,
          sleep: Callable[[float], None] = time.sleep) -> T:
    """``fn()``, retried on transient failures.

    Parameters
    ----------
    classify
        Maps an exception of ``fn`` to our error (``None``: not ours, re-raised as it is).
        Transient ones (:class:`TransientError`) are retried; other errors raise at once.
    what
        What is being done, for the retry log lines.
    """
    delay = backoff.first_s
    for attempt in range(backoff.retries + 1):
        try:
            return fn()
        except Exception as err:  # classified below; others re-raised
            mapped = classify(err)
            if mapped is None:
                raise
            if not isinstance(mapped, TransientError):
                if mapped is err:
                    raise
                raise mapped from err
            if attempt == backoff.retries:
                mapped.args = (f"{mapped} (gave up after {attempt + 1} attempts)",)
                if mapped is err:
                    raise
                raise mapped from err
            log.warning("%s: %s; retry %d/%d in %.1f s", what, mapped, attempt + 1,
                        backoff.retries, delay)
            sleep(delay)
            delay = min(delay * 2, backoff.max_s)
    raise AssertionError("unreachable")
