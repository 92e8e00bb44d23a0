"""The ``dask`` engine of a prior build: distance row blocks computed on a Dask cluster.

A build's heavy step for a pooled population is the ``N x N`` distance matrix (14,708 neurons:
0.81 GiB as float32, twice with ``distance_minmax``). With ``engine="dask"`` each row block
(``DeriveParams.distance_block`` rows) is one task: it receives the soma positions (``N x 3``
float64 in the same memory layout, shipped once per worker as a task result, ~0.35 MB for 15k
cells), computes its rows
with the same code as the local engine (:func:`~.distance_writer.distance_rows`: float64, own
diagonal zeroed) and returns only the float32 block plus its float64 sum and maximum. The driver
writes each block into the memory-mapped ``distance_um.npy`` as it arrives; at most
``max_in_flight`` blocks are outstanding, so neither a worker nor the driver ever holds the full
matrix. The float32 values, the per-block sums (added in block order by the driver) and the
maximum are exactly those of the local engine, so the files, the manifest and therefore the
artifact version are identical whichever engine built it.

What stays in the driver, and why:

- ``distance_minmax`` is ``distance_um / max``: it needs the global maximum, so it is a second
  streaming pass over the memory-mapped file (one block at a time, no arithmetic beyond a
  division; shipping 0.8 GiB to workers and back would cost more than it saves).
- The connectome (and the modules of the wiring graph) is built from the store's
  ``connections`` rows of the population: ~175k pairs for the pooled synthetic default
  (~4 MB), read by one DuckDB query and turned into a CSR matrix in milliseconds. Splitting it
  into per-partition pieces would add a round trip per piece for no memory or time gain; the
  step that is heavy at full-volume scale (raw synapses to ``connections``) already runs on
  Dask (:mod:`etl.aggregate`).

The engine is an execution choice, not a parameter of the result: it does not enter the
artifact's version and is not recorded in the manifest (whose schema has no execution section).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
from tqdm.auto import tqdm

from .distance_writer import Block, distance_rows, write_distance
from .errors import PriorsError
from .writer import ArtifactWriter

__all__ = ["BuildEngine", "ENGINES", "check_engine", "distance_blocks", "same_layout",
           "write_distance_dask"]

#: Execution engines of a prior build: ``"local"`` (this process) or ``"dask"`` (a cluster).
BuildEngine = Literal["local", "dask"]
ENGINES: tuple[str, ...] = ("local", "dask")


def check_engine(engine: str, scheduler: Any = None) -> None:
    """Raise :class:`PriorsError` for an unknown engine, or a scheduler given to the local engine."""
    if engine not in ENGINES:
        raise PriorsError(f"unknown build engine {engine!r}; expected one of {', '.join(ENGINES)}")
    if engine == "local" and scheduler is not None:
        raise PriorsError(f"a Dask scheduler ({scheduler!r}) was given but engine is 'local'; "
                          "pass engine='dask' (--engine dask) to use it, or leave it out")


def _identity(value):
    return value


def same_layout(positions_um: np.ndarray) -> np.ndarray:
    """float64 positions in the memory layout (row- or column-major) of ``positions_um``.

    The float64 rounding of :func:`~.derive.distance_um` depends on the layout (it follows the
    input's strides), and pickling keeps only C- or F-contiguous layouts, so a worker must get
    the layout the local engine computes on: ``ResolvedPopulation.positions_um`` is column-major.
    """
    pos = np.asarray(positions_um, dtype=np.float64)
    if pos.ndim == 2 and pos.strides[0] < pos.strides[1]:
        return np.asfortranarray(pos)
    return np.ascontiguousarray(pos)


def distance_blocks(client, positions_um: np.ndarray, *, block: int = 1024,
                    max_in_flight: int | None = None,
                    progress: bool = False) -> Iterator[Block]:
    """Compute the distance matrix's row blocks on a Dask cluster, yielding them as they finish.

    Parameters
    ----------
    client
        A ``distributed.Client``.
    positions_um
        ``(N, 3)`` soma positions, um.
    block
        Rows per block (the same as the local engine's, so the per-block sums agree exactly).
    max_in_flight
        Most blocks submitted but not yet consumed (default: two per worker thread, at least 2);
        bounds what finished blocks can pile up on the workers while the driver writes.
    progress
        Show a tqdm bar of blocks.

    Yields
    ------
    tuple
        ``(start, rows, total, hi)``: the first row index, the ``(rows, N)`` float32 block, the
        float64 sum and the maximum of the block's float64 distances. In completion order.
    """
    from distributed import wait  # only with the dask engine

    n = len(positions_um)
    starts = list(range(0, n, block))
    if max_in_flight is None:
        threads = sum(client.nthreads().values()) or 1
        max_in_flight = max(2, 2 * threads)
    # a task, not scattered data: a worker restarted for memory can recompute it
    pos_f = client.submit(_identity, same_layout(positions_um), pure=False)
    pending: set = set()
    todo = iter(starts)
    with tqdm(total=len(starts), desc="distance blocks", unit="block", disable=not progress) as bar:
        try:
            while True:
                for start in todo:
                    pending.add(client.submit(distance_rows, pos_f, start, min(start + block, n),
                                              pure=False))
                    if len(pending) >= max_in_flight:
                        break
                if not pending:
                    break
                done, pending = wait(pending, return_when="FIRST_COMPLETED")
                for fut in done:
                    result = fut.result()
                    fut.release()
                    bar.update()
                    yield result
        finally:
            for fut in pending:
                fut.cancel()
            pos_f.release()


def write_distance_dask(positions_um: np.ndarray, writer: ArtifactWriter, *, block: int = 1024,
                        scheduler: Any = None, n_workers: int = 2, memory_limit: str = "2GiB",
                        progress: bool = False) -> None:
    """:func:`~.distance_writer.write_distance` with the row blocks computed on Dask.

    Parameters
    ----------
    positions_um
        ``(N, 3)`` soma positions, um.
    writer
        The artifact being written.
    block
        Rows per block.
    scheduler
        ``None`` or ``"local"``: a fresh ``LocalCluster`` of ``n_workers`` single-threaded worker
        processes with ``memory_limit`` each (closed afterwards); a ``"tcp://HOST:PORT"`` address
        or a ``distributed.Client``: that cluster (its workers need this package installed).

    Examples
    --------
    >>> write_distance_dask(pos, writer, scheduler="tcp://10.0.0.5:8786")  # doctest: +SKIP
    """
    from connectome_priors.kernel.dask import dask_client  # only with the dask engine

    with dask_client(scheduler, n_workers=n_workers, memory_limit=memory_limit) as client:
        write_distance(positions_um, writer, block=block,
                       blocks=distance_blocks(client, positions_um, block=block, progress=progress))
