"""Run one source into the store: extract -> validate -> Parquet raw layer + DuckDB, atomically."""

from __future__ import annotations

import os
import shutil

from tqdm.auto import tqdm

from connectome_priors.schemas import STORE_TABLES

from .errors import EtlError
from .sources.registry import CaveSource, FilesSource, SourceConfig, extract, source_config
from .store import Store
from .tables import Source

__all__ = ["extract", "run_etl"]


def run_etl(source: SourceConfig | Source = "synthetic", path: str | os.PathLike | None = None, *,
            store: Store | str | os.PathLike | None = None, progress: bool = False,
            **options) -> dict:
    """Extract ``source``, validate it and load it into ``store`` as one snapshot.

    ``source`` is a source config (:mod:`etl.sources.registry`: ``BlueprintSource(path,
    fields=...)``, ...) or a source name with ``path`` and that source's options as keywords
    (``run_etl("blueprint", path, fields=["6_6_2"])``; see
    :func:`~connectome_priors.etl.sources.registry.source_config`).

    Returns the snapshot's row (``schemas/store/snapshots.json``) plus ``created`` (False when the
    same content was already stored) and ``store`` (the store directory).

    Examples
    --------
    >>> snap = run_etl("synthetic", store="/tmp/cxp-store")   # doctest: +SKIP
    >>> snap["snapshot_id"]                                    # doctest: +SKIP
    'synthetic-...'
    """
    config = source_config(source, path, **options) if isinstance(source, str) else source
    if path is not None and not isinstance(source, str):
        raise EtlError("give PATH inside the source config, not beside it")
    store = store if isinstance(store, Store) else Store(store)
    extracted = extract(config, progress=progress, store_dir=store.directory)
    present = [t for t in STORE_TABLES if t in extracted.tables or t in extracted.streamed]
    with tqdm(total=len(present), desc="store tables", unit="table", disable=not progress) as bar:
        def step(name: str) -> None:
            bar.set_postfix_str(name)
            bar.update(1)

        snapshot = store.load(extracted, on_table=step)
    if isinstance(config, CaveSource):  # stored: the pull's chunk checkpoints are no longer needed
        from .sources.cave.source import clear_checkpoints

        clear_checkpoints(store.directory, config.config, extracted.materialization_version)
    if isinstance(config, FilesSource) and (config.stream or not config.synapses):  # stored: the chunks are done with
        from .sources.files.source import STREAM_DIRNAME

        shutil.rmtree(store.directory / STREAM_DIRNAME, ignore_errors=True)
    return {**snapshot, "store": str(store.directory)}
