"""A non-blocking ``flock`` on a file, holding the holder's pid (for schedulers that must not run
twice at once: ``cxp refresh``, ``cxp priors rebuild``). Released when the holder exits or is
killed, so it is never left stale."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["exclusive"]


@contextmanager
def exclusive(path: str | os.PathLike, taken: Callable[[str], Exception]) -> Iterator[Path]:
    """Hold the lock at ``path`` (its folder is created), or raise ``taken(holder_pid)`` at once
    when another process holds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            raise taken(os.pread(fd, 64, 0).decode(errors="replace").strip() or "?") from err
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield path
    finally:
        os.close(fd)
