"""Run one source into the store: extract -> validate -> Parquet raw layer + DuckDB, atomically."""

from __future__ import annotations

import os
from pathlib import Path

from tqdm.auto import tqdm

from schemas import STORE_TABLES

from .errors import EtlError
from .sources.blueprint import Mode, read_blueprint
from .sources.synthetic import SyntheticConfig, generate
from .store import Store
from .tables import Source, SourceTables

__all__ = ["extract", "run_etl"]


def extract(source: Source, path: str | os.PathLike | None = None, *, mode: Mode = "strict",
            seed: int = 0, fields: list[str] | None = None,
            synthetic: SyntheticConfig | None = None, progress: bool = False) -> SourceTables:
    """Extract canonical tables from ``source`` without storing them.

    Parameters
    ----------
    source
        ``"synthetic"`` (the embedded default; ``path`` unused) or ``"blueprint"`` (``path`` is the
        release's root).
    mode
        Blueprint only: ``"strict"`` aborts on a field that fails a check; ``"lenient"`` skips it.
    seed
        Synthetic only: the generator's seed (ignored when ``synthetic`` is given).
    fields
        Blueprint only: restrict to these fields.
    synthetic
        Synthetic only: the full generator configuration (default: full size, ``seed``).
    """
    if source == "synthetic":
        if path is not None:
            raise EtlError("source 'synthetic' takes no PATH (it generates its data)")
        return generate(synthetic or SyntheticConfig(seed=seed), progress=progress)
    if source == "blueprint":
        if path is None:
            raise EtlError("source 'blueprint' needs PATH, the release's root "
                           "(e.g. ../shared/data/cortical-blueprint)")
        return read_blueprint(Path(path), mode=mode, fields=fields, progress=progress)
    if source in ("cave", "files"):
        raise EtlError(f"source {source!r} is not available yet (tracked in the CAVE issue)")
    raise EtlError(f"unknown source {source!r}; expected synthetic or blueprint")


def run_etl(source: Source = "synthetic", path: str | os.PathLike | None = None, *,
            store: Store | str | os.PathLike | None = None, mode: Mode = "strict", seed: int = 0,
            fields: list[str] | None = None, synthetic: SyntheticConfig | None = None,
            progress: bool = False) -> dict:
    """Extract ``source``, validate it and load it into ``store`` as one snapshot.

    Returns the snapshot's row (``schemas/store/snapshots.json``) plus ``created`` (False when the
    same content was already stored) and ``store`` (the store directory).

    Examples
    --------
    >>> snap = run_etl("synthetic", store="/tmp/cxp-store")   # doctest: +SKIP
    >>> snap["snapshot_id"]                                    # doctest: +SKIP
    'synthetic-...'
    """
    store = store if isinstance(store, Store) else Store(store)
    extracted = extract(source, path, mode=mode, seed=seed, fields=fields, synthetic=synthetic,
                        progress=progress)
    present = [t for t in STORE_TABLES if t in extracted.tables]
    with tqdm(total=len(present), desc="store tables", unit="table", disable=not progress) as bar:
        def step(name: str) -> None:
            bar.set_postfix_str(name)
            bar.update(1)

        snapshot = store.load(extracted, on_table=step)
    return {**snapshot, "store": str(store.directory)}
