"""Named pause points: where crash and concurrency tests stop the code under test.

Code that must survive being killed (a push, a pull, a store load) calls :func:`pause` at named
points, e.g. ``pause("push:after-file:2")``, ``pause("store:raw-written")``; tests drive them with
:mod:`connectome_priors.testing.pauses`. Unless the environment variable ``CXP_PAUSE_AT`` names that point
this is a no-op (one dictionary lookup). When it does, the process

1. writes the marker file ``<CXP_PAUSE_DIR>/<point>.reached`` holding its pid (``CXP_PAUSE_DIR``
   defaults to the current folder), then
2. by ``CXP_PAUSE_ACTION``: ``block`` (the default) waits until ``<point>.go`` appears beside the
   marker (the test kills the process meanwhile, or releases it by creating that file), giving up
   with exit status 3 after ``CXP_PAUSE_TIMEOUT`` seconds (default 120); ``exit`` ends the process
   at once with ``os._exit(137)``, as SIGKILL would: nothing flushed, no ``finally`` run.

``CXP_PAUSE_AT`` may list several points separated by commas. A test waits for the marker (an
event, not a guessed sleep) and then acts, so the interleaving it checks is exact.

Examples
--------
>>> pause("push:before-manifest")      # nothing happens unless CXP_PAUSE_AT names it
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

__all__ = ["ENV_AT", "ENV_ACTION", "ENV_DIR", "ENV_TIMEOUT", "marker", "pause"]

#: Points to stop at, comma-separated.
ENV_AT = "CXP_PAUSE_AT"
#: ``block`` (default) or ``exit``.
ENV_ACTION = "CXP_PAUSE_ACTION"
#: Folder of the marker files (default: the current folder).
ENV_DIR = "CXP_PAUSE_DIR"
#: Seconds a blocked process waits for its release before it exits with status 3.
ENV_TIMEOUT = "CXP_PAUSE_TIMEOUT"
#: Exit status of ``exit`` (as a SIGKILL'd process reports to a shell).
EXIT_STATUS = 137


def marker(point: str, directory: str | os.PathLike | None = None, *, suffix: str = "reached") -> Path:
    """The marker file of ``point`` (``suffix`` ``reached`` or ``go``) in ``directory``."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", point)
    return Path(directory if directory is not None else os.environ.get(ENV_DIR, ".")) / f"{safe}.{suffix}"


def pause(point: str) -> None:
    """Stop here if ``CXP_PAUSE_AT`` names ``point`` (see the module docstring); else return."""
    wanted = os.environ.get(ENV_AT)
    if not wanted or point not in {p.strip() for p in wanted.split(",")}:
        return
    reached = marker(point)
    tmp = reached.with_name(reached.name + ".tmp")
    tmp.write_text(str(os.getpid()))
    os.replace(tmp, reached)  # the test never sees a half-written marker
    if os.environ.get(ENV_ACTION, "block") == "exit":
        os._exit(EXIT_STATUS)
    go = marker(point, suffix="go")
    deadline = time.monotonic() + float(os.environ.get(ENV_TIMEOUT, "120"))
    while not go.exists():
        if time.monotonic() > deadline:
            os._exit(3)
        time.sleep(0.005)
