"""The ``cave`` source: MICrONS tables pulled live from a CAVE materialization server through the
unmodified ``caveclient`` (chunked, capped-result aware, retried, checkpointed), and ``cxp refresh``.

Modules: :mod:`.transform` (CAVE tables -> canonical tables, pure), :mod:`.client` (token,
timeouts, retries, error mapping), :mod:`.chunks` (chunked queries and their checkpoints),
:mod:`.source` (the pull), :mod:`.refresh` (newest version, lock), :mod:`.standin` (a local
stand-in CAVE server for tests, benchmarks and offline demos).
"""

from .transform import canonical_tables

__all__ = ["canonical_tables"]
