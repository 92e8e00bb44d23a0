"""Raw synapses -> ``connections`` at scale, on a DuckDB (one machine) or Dask (cluster) engine.

Both engines apply the same rules and return identical tables (same rows, counts and sums):
see :func:`synapses_to_connections`.
"""

from __future__ import annotations

from .core import AggregateEngine, synapses_to_connections
from .inputs import SynapseFiles, resolve_files
from .mapping import RootMap, root_map

__all__ = ["AggregateEngine", "RootMap", "SynapseFiles", "resolve_files", "root_map",
           "synapses_to_connections"]
