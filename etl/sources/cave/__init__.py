"""The ``cave`` source: MICrONS tables pulled live from a CAVE materialization server through the
unmodified ``caveclient`` (chunked, capped-result aware, retried, checkpointed).

Modules: :mod:`.transform` (CAVE tables -> canonical tables, pure), :mod:`.client` (token,
timeouts, retries, error mapping, newest version), :mod:`.chunks` (chunked queries and their
checkpoints), :mod:`.source` (the pull), :mod:`.profiled` (another datastack through its
profile), :mod:`.cli` (the source's command-line options). ``cxp refresh`` (keep a store at the newest version) runs the ETL pipeline, so it lives above the
sources in :mod:`connectome_priors.etl.refresh`; the local stand-in CAVE server for tests,
benchmarks and offline demos is :mod:`connectome_priors.testing.cave_standin`.
"""

from .transform import canonical_tables

__all__ = ["canonical_tables"]
