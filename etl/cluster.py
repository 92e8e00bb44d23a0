"""``dask_client``: the one place that starts or connects to a Dask cluster.

Used by every stage that can scale out (synapse aggregation, pooled prior builds, the training
grid), so they share one behaviour: a given ``Client`` is reused, an address is connected to with
a bounded wait and a clear error, and no address starts a ``LocalCluster`` of single-threaded
worker processes that is closed on exit.
"""

from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext

from .errors import EtlError

__all__ = ["CONNECT_TIMEOUT", "MALLOC_TRIM_ENV", "SCHEDULER_ENV", "dask_client"]

#: Environment variable naming a scheduler address for every ``--dask-scheduler`` default.
SCHEDULER_ENV = "CXP_DASK_SCHEDULER"
#: How long to wait for a given scheduler before giving up.
CONNECT_TIMEOUT = "10s"
#: The glibc variable Dask's nanny sets in its workers (65536) so that freed memory is returned to
#: the OS at once. Setting it also fixes glibc's mmap threshold, so every tensor over 128 KiB is a
#: fresh mmap with page faults: PyTorch training then runs ~1.6x slower (bench/train_grid.py).
MALLOC_TRIM_ENV = "MALLOC_TRIM_THRESHOLD_"


@contextmanager
def dask_client(scheduler=None, *, n_workers: int = 2, memory_limit: str = "2GiB",
                trim_memory: bool = True):
    """A ``distributed.Client``: the given one, one connected to ``scheduler`` (an address such as
    ``tcp://host:8786``), or one on a fresh ``LocalCluster`` of ``n_workers`` single-threaded
    processes with ``memory_limit`` each (closed on exit).

    ``trim_memory=False`` starts the local workers without Dask's :data:`MALLOC_TRIM_ENV` (glibc's
    own allocation behaviour), for allocation-heavy compute such as training; the default keeps
    Dask's setting, which keeps worker memory reports honest for data work. Workers of a cluster
    given by address keep whatever environment they were started with.

    Raises
    ------
    EtlError
        ``scheduler`` is not an address, or does not answer within :data:`CONNECT_TIMEOUT`.
    """
    from distributed import Client, LocalCluster  # noqa: PLC0415 (dask only when asked for)

    if isinstance(scheduler, Client):
        yield scheduler
        return
    if scheduler:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT)
        except ValueError as err:  # distributed's address parser
            raise EtlError(f"{scheduler!r} is not a Dask scheduler address ({err}); expected one "
                           "such as tcp://127.0.0.1:8786") from err
        except (OSError, TimeoutError) as err:
            raise EtlError(f"cannot reach the Dask scheduler at {scheduler}: {err}. Start one with "
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
    import dask  # noqa: PLC0415

    saved = os.environ.pop(MALLOC_TRIM_ENV, None)
    try:
        with dask.config.set({f"distributed.nanny.pre-spawn-environ.{MALLOC_TRIM_ENV}": None}):
            yield
    finally:
        os.environ.pop(MALLOC_TRIM_ENV, None)
        if saved is not None:
            os.environ[MALLOC_TRIM_ENV] = saved
