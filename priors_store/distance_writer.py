"""The distance kinds of an artifact, ``distance_um`` and ``distance_minmax``, written row block by
row block: the one block computation and the one writer both build engines use.

A block is computed by :func:`distance_rows` (float64 distances, own diagonal zeroed, returned as
float32 rows with the float64 sum and maximum); the local engine runs it here in order
(:func:`local_blocks`), the dask engine runs the same function as a task on each worker
(:mod:`.distributed`). :func:`write_distance` writes the blocks in whatever order they arrive and
adds their sums in block order, so the files, the recorded stats and therefore the artifact's
version are byte-identical whichever engine built them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from .derive.distance import distance_um
from .errors import PriorsError
from .writer import ArtifactWriter

__all__ = ["Block", "distance_rows", "local_blocks", "write_distance"]

#: One row block: (first row, float32 rows ``(rows, N)``, float64 sum of its distances, maximum).
Block = tuple[int, np.ndarray, float, float]


def distance_rows(positions_um: np.ndarray, start: int, stop: int) -> Block:
    """Rows ``start:stop`` of the distance matrix of ``positions_um`` (``(N, 3)``, um).

    The float64 rounding of :func:`~.derive.distance_um` follows the memory layout of
    ``positions_um`` (see :func:`~.distributed.same_layout`), so every engine passes the layout
    the population gives.

    >>> start, rows, total, hi = distance_rows(np.array([[0.0, 0, 0], [3, 4, 0]]), 0, 2)
    >>> rows.tolist(), total, hi
    ([[0.0, 5.0], [5.0, 0.0]], 10.0, 5.0)
    """
    rows = distance_um(positions_um[start:stop], positions_um)  # (stop - start, N) float64
    own = np.arange(len(rows))
    rows[own, start + own] = 0.0
    return start, rows.astype(np.float32), float(rows.sum(dtype=np.float64)), float(rows.max())


def local_blocks(positions_um: np.ndarray, block: int) -> Iterator[Block]:
    """The row blocks of ``block`` rows computed in this process, in order."""
    n = len(positions_um)
    for start in range(0, n, block):
        yield distance_rows(positions_um, start, min(start + block, n))


def write_distance(positions_um: np.ndarray, writer: ArtifactWriter, *, block: int = 1024,
                   blocks: Iterable[Block] | None = None) -> None:
    """Write ``distance_um`` and ``distance_minmax`` (float32) block by block.

    ``distance_minmax`` is :func:`~.derive.minmax_normalized` of the distances: the diagonal zeros
    set the minimum, so it is ``distance_um / max(distance_um)``. ``blocks`` (default:
    :func:`local_blocks`) yields ``(start, rows, sum, max)`` per row block of ``block`` rows in any
    order (the dask engine, :mod:`.distributed`); the sums are added in block order, so the
    recorded mean does not depend on the completion order.

    Both files are created with :meth:`ArtifactWriter.memmap`, which reserves their disk blocks
    first: a full disk is a :class:`PriorsError` naming the file (nothing published), never a
    SIGBUS when a page of the map is written later.

    Raises
    ------
    PriorsError
        ``blocks`` did not give exactly one block per ``block`` rows.
    """
    n = len(positions_um)
    dist = writer.memmap("distance_um.npy", (n, n), np.float32)  # (n, n), blocks reserved
    hi, sums = 0.0, {}
    for start, rows, rows_sum, rows_max in (local_blocks(positions_um, block) if blocks is None
                                            else blocks):
        dist[start:start + len(rows)] = rows
        sums[start], hi = rows_sum, max(hi, rows_max)
    if sorted(sums) != list(range(0, n, block)):
        raise PriorsError(f"distance_um.npy: got row blocks starting at {sorted(sums)[:5]}...; "
                          f"expected one per {block} rows of {n}")
    total = 0.0
    for start in range(0, n, block):
        total += sums[start]
    dist.flush()
    norm = writer.memmap("distance_minmax.npy", (n, n), np.float32)  # (n, n)
    for start in range(0, n, block):
        norm[start:start + block] = dist[start:start + block] / (hi if hi > 0 else 1.0)
    norm.flush()
    del dist, norm
    mean = total / (n * (n - 1)) if n > 1 else 0.0
    writer.array("distance_um", unit="um", orientation="symmetric",
                 description="Euclidean soma distance", stats={"mean_um": mean, "max_um": hi})
    writer.array("distance_minmax", unit="1", orientation="symmetric",
                 description="distance_um / max(distance_um) (the study's min-max form)",
                 stats={"max_um": hi})
