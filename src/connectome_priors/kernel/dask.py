"""``dask_client``: the one place that starts or connects to a Dask cluster.

One meaning of the ``scheduler`` argument everywhere (synapse aggregation, pooled prior builds,
the training grid):

- ``None``: not given; the ``dask_scheduler`` setting is used (``$CXP_DASK_SCHEDULER`` or the
  config file, :mod:`.settings`); when that is unset too, there is no cluster
  (:func:`resolve_scheduler` returns ``None``; a stage that needs one then uses ``"local"``);
- ``"local"``: a fresh ``LocalCluster`` of single-threaded worker processes, closed on exit;
- an address such as ``"tcp://host:8786"``: that cluster, connected with a bounded wait;
- a ``distributed.Client``: used as it is.
"""

from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext
from typing import Any

from .errors import CxpError
from .settings import resolve

__all__ = ["CONNECT_TIMEOUT", "LOCAL", "MALLOC_TRIM_ENV", "DaskError", "dask_client",
           "resolve_scheduler"]

#: The scheduler value that starts a local cluster.
LOCAL = "local"
#: How long to wait for a given scheduler before giving up.
CONNECT_TIMEOUT = "10s"
#: The glibc variable Dask's nanny sets in its workers (65536) so that freed memory is returned to
#: the OS at once. Setting it also fixes glibc's mmap threshold, so every tensor over 128 KiB is a
#: fresh mmap with page faults: PyTorch training then runs ~1.6x slower (bench/train_grid.py).
MALLOC_TRIM_ENV = "MALLOC_TRIM_THRESHOLD_"


class DaskError(CxpError):
    """A Dask cluster could not be reached, or its address is malformed."""


def resolve_scheduler(scheduler: Any = None) -> Any:
    """``scheduler`` if given, else the ``dask_scheduler`` setting; ``None`` when neither is set."""
    if scheduler is not None and not isinstance(scheduler, str):
        return scheduler  # a Client
    return resolve("dask_scheduler", scheduler or None)


@contextmanager
def dask_client(scheduler: Any = LOCAL, *, n_workers: int = 2, memory_limit: str = "2GiB",
                trim_memory: bool = True):
    """A ``distributed.Client``: the given one, one connected to an address, or one on a fresh
    ``LocalCluster`` of ``n_workers`` single-threaded processes with ``memory_limit`` each for
    ``"local"`` (closed on exit). ``None`` is resolved by :func:`resolve_scheduler` and means
    ``"local"`` when no setting names a cluster.

    ``trim_memory=False`` starts the local workers without Dask's :data:`MALLOC_TRIM_ENV` (glibc's
    own allocation behaviour), for allocation-heavy compute such as training; the default keeps
    Dask's setting, which keeps worker memory reports honest for data work. Workers of a cluster
    given by address keep whatever environment they were started with.

    Raises
    ------
    DaskError
        ``scheduler`` is not an address, or does not answer within :data:`CONNECT_TIMEOUT`.
    """
    from distributed import Client, LocalCluster  # dask only when asked for

    scheduler = resolve_scheduler(scheduler) or LOCAL
    if isinstance(scheduler, Client):
        yield scheduler
        return
    if scheduler != LOCAL:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT)
        except ValueError as err:  # distributed's address parser
            raise DaskError(f"{scheduler!r} is not a Dask scheduler address ({err}); expected one "
                            "such as tcp://127.0.0.1:8786, or 'local' for a local cluster") from err
        except (OSError, TimeoutError) as err:
            raise DaskError(f"cannot reach the Dask scheduler at {scheduler}: {err}. Start one with "
                            "`dask scheduler` (and workers with `dask worker ADDRESS`)") from err
        with client:
            yield client
        return
    with nullcontext() if trim_memory else _without_malloc_trim():  # only while workers spawn
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                               memory_limit=memory_limit, dashboard_address=":0")
    with cluster, Client(cluster) as client:
        yield client


@contextmanager
def _without_malloc_trim():
    """Dask config and process environment without :data:`MALLOC_TRIM_ENV`, restored on exit
    (a nanny exports its pre-spawn variables into this process, where spawned workers inherit
    them; glibc reads the variable only at start-up, so this process itself is unaffected)."""
    import dask

    saved = os.environ.pop(MALLOC_TRIM_ENV, None)
    try:
        with dask.config.set({f"distributed.nanny.pre-spawn-environ.{MALLOC_TRIM_ENV}": None}):
            yield
    finally:
        os.environ.pop(MALLOC_TRIM_ENV, None)
        if saved is not None:
            os.environ[MALLOC_TRIM_ENV] = saved
