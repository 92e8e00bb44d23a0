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
            synthetic: SyntheticConfig | None = None, progress: bool = False,
            events=None, cave=None, cave_connection=None, store_dir=None) -> SourceTables:
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
    events
        NWB only (``path``: one or more .nwb files or folders): the
        :class:`etl.sources.nwb.EventRule` (default: AR(1) deconvolution, peaks above 0.01).
    cave, cave_connection, store_dir
        CAVE only: the :class:`etl.sources.cave.client.CaveConfig` (server, datastack, version,
        ...), an open connection to reuse, and the store whose ``.cave-cache`` holds checkpoints.
        Source ``"files"`` (``path``: a folder of static CAVE table exports) uses ``cave``'s
        ``neurons`` selection and ``datastack`` too, and its ``version`` when it is a number (the
        version the export was made of; it overrides a ``v<N>`` folder name; ``"latest"`` means
        none given, as a folder of files has no newest version to resolve).
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
    if source == "nwb":
        from .sources.nwb import read_nwb  # noqa: PLC0415 (pynwb only when reading NWB)

        if not path:
            raise EtlError("source 'nwb' needs PATH..., NWB scan files of DANDI 000402 (or folders of "
                           "them; `cxp etl --source nwb --download 4-7` fetches them first)")
        return read_nwb(path, rule=events, progress=progress)
    if source == "cave":
        from .sources.cave.client import CaveConfig  # noqa: PLC0415 (caveclient only for CAVE)
        from .sources.cave.source import read_cave  # noqa: PLC0415

        return read_cave(cave or CaveConfig(), store_dir=store_dir, connection=cave_connection,
                         progress=progress)
    if source == "files":
        from .sources.files import read_files  # noqa: PLC0415

        if path is None:
            raise EtlError("source 'files' needs PATH, a directory of CAVE table exports "
                           "(e.g. nucleus_detection_v0_merged.csv.gz + _merged_header.csv)")
        version = getattr(cave, "version", None)
        return read_files(Path(path), neurons=getattr(cave, "neurons", "coregistered_excitatory"),
                          datastack=getattr(cave, "datastack", None),
                          materialization_version=version if isinstance(version, int) else None,
                          progress=progress)
    raise EtlError(f"unknown source {source!r}; expected synthetic, blueprint, cave, files or nwb")


def run_etl(source: Source = "synthetic", path: str | os.PathLike | None = None, *,
            store: Store | str | os.PathLike | None = None, mode: Mode = "strict", seed: int = 0,
            fields: list[str] | None = None, synthetic: SyntheticConfig | None = None,
            progress: bool = False, events=None, cave=None, cave_connection=None) -> dict:
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
                        progress=progress, events=events, cave=cave, cave_connection=cave_connection,
                        store_dir=store.directory)
    present = [t for t in STORE_TABLES if t in extracted.tables]
    with tqdm(total=len(present), desc="store tables", unit="table", disable=not progress) as bar:
        def step(name: str) -> None:
            bar.set_postfix_str(name)
            bar.update(1)

        snapshot = store.load(extracted, on_table=step)
    if source == "cave":  # stored: the pull's chunk checkpoints are no longer needed
        from .sources.cave.source import clear_checkpoints  # noqa: PLC0415

        clear_checkpoints(store.directory, cave, extracted.materialization_version)
    return {**snapshot, "store": str(store.directory)}
