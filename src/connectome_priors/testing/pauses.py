"""Driving the pause points of :mod:`connectome_priors.kernel.pause` from a test.

A test starts the code under test with :func:`pause_env` in its environment, waits with
:func:`wait_reached` for the marker the code writes when it stops (an event, not a guessed sleep),
acts (kills the process, or checks what a reader sees meanwhile), and lets it go on with
:func:`release`. Every interleaving checked this way is exact, and a kill always lands at the
named point, however loaded the machine.

Examples
--------
>>> import tempfile
>>> env = pause_env("store:raw-written", tempfile.mkdtemp())
>>> env["CXP_PAUSE_AT"], env["CXP_PAUSE_ACTION"]
('store:raw-written', 'block')
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from connectome_priors.kernel import pause

__all__ = ["pause_env", "release", "wait_reached"]


def pause_env(point: str, folder: str | os.PathLike, *, action: str = "block",
              timeout_s: float = 120) -> dict[str, str]:
    """The environment variables that stop code at ``point`` (comma-separated points allowed).

    Parameters
    ----------
    point
        The pause point(s), e.g. ``"store:raw-written"``.
    folder
        Where the markers are written (created if missing).
    action
        ``block`` (wait for :func:`release` or a kill) or ``exit`` (end at once, as SIGKILL would).
    timeout_s
        How long a blocked process waits for its release before it exits with status 3.
    """
    Path(folder).mkdir(parents=True, exist_ok=True)
    return {pause.ENV_AT: point, pause.ENV_DIR: str(folder), pause.ENV_ACTION: action,
            pause.ENV_TIMEOUT: f"{timeout_s:g}"}


def wait_reached(point: str, folder: str | os.PathLike, *, alive: Callable[[], bool],
                 timeout_s: float = 120) -> int:
    """Wait until the code under test has stopped at ``point``; return the pid it recorded.

    Parameters
    ----------
    point, folder
        As given to :func:`pause_env`.
    alive
        Whether the code under test still runs (e.g. ``lambda: proc.poll() is None``): if it ends
        before it reaches ``point``, this fails at once instead of waiting out ``timeout_s``.
    timeout_s
        Upper bound of the wait, for a hung process.

    Raises
    ------
    AssertionError
        The code ended, or did not reach ``point`` within ``timeout_s``; the message says which.
    """
    reached = pause.marker(point, folder)
    deadline = time.monotonic() + timeout_s
    while not reached.exists():
        if not alive():
            if reached.exists():  # reached, then exited (action "exit")
                break
            raise AssertionError(f"the process under test ended before it reached pause point {point}")
        if time.monotonic() > deadline:
            raise AssertionError(f"the process under test did not reach pause point {point} within "
                                 f"{timeout_s:g} s (marker {reached})")
        time.sleep(0.005)
    return int(reached.read_text())


def release(point: str, folder: str | os.PathLike) -> None:
    """Let code stopped at ``point`` go on (it polls for this file every 5 ms)."""
    pause.marker(point, folder, suffix="go").touch()
