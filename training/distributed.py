"""Spread the cells of an experiment (task x variant) over a Dask cluster.

Each cell is one task x variant: :func:`training.cell.train_cell` on a worker, with the prior's
arrays scattered to every worker once. Workers train with one torch thread each (run one worker
per core): on a shared CPU, several OpenMP threads per process contend and slow each other down.
The caller writes results as cells complete (:func:`map_cells` yields them in completion order),
so a grid interrupted on a cluster resumes like a local one.

``scheduler``: ``"local"`` starts a ``LocalCluster`` (one single-threaded worker process per
core) for the duration of the call; an address (``"tcp://host:8786"``) connects to a running
scheduler (``dask scheduler`` + ``dask worker ADDRESS --nthreads 1 --no-nanny`` on each machine,
every one with this package installed; without ``--no-nanny`` a nanny sets glibc's
``MALLOC_TRIM_THRESHOLD_`` in its worker, which slows torch training ~1.6x, see
:func:`connectome_priors.kernel.dask.dask_client`); a ``distributed.Client`` is used as is.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import numpy as np

__all__ = ["map_cells", "client_for"]


@contextmanager
def client_for(scheduler):
    """A ``distributed.Client`` for ``scheduler`` (see the module docstring); closed on exit
    unless it was passed in. The clients come from :func:`connectome_priors.kernel.dask.dask_client`,
    the one place that starts or reaches clusters."""
    from connectome_priors.kernel.dask import DaskError, dask_client

    from .errors import TrainingError

    # trim_memory=False: Dask's malloc trimming makes every step's tensors fresh page-faulting
    # mmaps; training runs ~1.6x faster without it
    with ExitStack() as stack:
        try:
            client = stack.enter_context(dask_client(scheduler, n_workers=os.cpu_count() or 1,
                                                     trim_memory=False))
        except DaskError as err:  # only the connection: errors of the caller's work pass through
            raise TrainingError(f"--dask-scheduler: {err}") from err
        yield client


def _cell(task: str, variant: str, arrays: dict[str, np.ndarray], config):
    import torch

    from .cell import train_cell

    torch.set_num_threads(1)
    return train_cell(task, variant, arrays, config)


def map_cells(scheduler, cells: list[tuple[str, str]], arrays: dict[str, np.ndarray],
              config) -> Iterator[tuple[tuple[str, str], tuple]]:
    """Train ``cells`` on the cluster; yield ``((task, variant), train_cell result)`` as each
    finishes. A failing cell raises its error here (the finished ones were already yielded)."""
    if not cells:
        return
    from distributed import as_completed

    with client_for(scheduler) as client:
        shared = client.scatter(arrays, broadcast=True)
        futures = {client.submit(_cell, task, variant, shared, config, pure=False,
                                 key=f"cell-{task}-{variant}"): (task, variant)
                   for task, variant in cells}
        for future in as_completed(futures):
            yield futures[future], future.result()
