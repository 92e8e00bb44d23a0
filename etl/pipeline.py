"""Run one source into the store: extract -> validate -> Parquet raw layer + DuckDB, atomically."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tqdm.auto import tqdm

from connectome_priors.schemas import STORE_TABLES

from .errors import EtlError
from .sources.registry import CaveSource, FilesSource, SourceConfig, extract, source_config
from .store import Store
from .tables import Source, SourceTables

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
    if isinstance(config, FilesSource) and extracted.streamed:  # stored: its chunks are done with
        from .sources.files.source import STREAM_DIRNAME

        _remove_stream_work(store.directory / STREAM_DIRNAME, extracted)
    return {**snapshot, "store": str(store.directory)}


def _remove_stream_work(root: Path, extracted: SourceTables) -> None:
    """Remove the work folder (``root/<key>``) of this load's streamed tables, and ``root`` once
    empty; another load streaming into the same store at the same time keeps its checkpoints."""
    base = root.resolve()
    for rows in extracted.streamed.values():
        path = Path(rows.path).resolve()
        if path.is_relative_to(base) and path != base:
            shutil.rmtree(base / path.relative_to(base).parts[0], ignore_errors=True)
    try:
        root.rmdir()
    except OSError:  # absent, or another load's work is still there
        pass
