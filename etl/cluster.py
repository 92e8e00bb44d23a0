"""``dask_client``: the one place that starts or connects to a Dask cluster.

Used by every stage that can scale out (synapse aggregation, pooled prior builds, the training
grid), so they share one behaviour: a given ``Client`` is reused, an address is connected to with
a bounded wait and a clear error, and no address starts a ``LocalCluster`` of single-threaded
worker processes that is closed on exit.
"""

from __future__ import annotations

from contextlib import contextmanager

from .errors import EtlError

__all__ = ["CONNECT_TIMEOUT", "dask_client"]

#: How long to wait for a given scheduler before giving up.
CONNECT_TIMEOUT = "10s"


@contextmanager
def dask_client(scheduler=None, *, n_workers: int = 2, memory_limit: str = "2GiB"):
    """A ``distributed.Client``: the given one, one connected to ``scheduler`` (an address such as
    ``tcp://host:8786``), or one on a fresh ``LocalCluster`` of ``n_workers`` single-threaded
    processes with ``memory_limit`` each (closed on exit).

    Raises
    ------
    EtlError
        The address does not answer within :data:`CONNECT_TIMEOUT`.
    """
    from distributed import Client, LocalCluster  # noqa: PLC0415 (dask only when asked for)

    if isinstance(scheduler, Client):
        yield scheduler
        return
    if scheduler:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as err:
            raise EtlError(f"cannot reach the Dask scheduler at {scheduler}: {err}. Start one with "
                           "`dask scheduler` (and workers with `dask worker ADDRESS`), or leave "
                           "--dask-scheduler out for a local cluster") from err
        with client:
            yield client
        return
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                      memory_limit=memory_limit, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        yield client
