"""``cxp refresh``: keep a store at the newest CAVE materialization, safe to run from cron.

This is ETL orchestration (it runs :func:`~connectome_priors.etl.pipeline.run_etl`), so it lives
beside the pipeline, above the sources; the CAVE-specific parts (connecting, resolving the newest
version) stay in :mod:`connectome_priors.etl.sources.cave.client`.

Under an exclusive lock (``<store>/.cave-refresh.lock``; a second refresh is refused at once), ask
the server for its newest version; if the store already holds a ``cave`` snapshot of that version
for the datastack, stop (nothing written). Otherwise pull it as one new snapshot: the store's
load is atomic, so readers keep seeing the previous snapshot until the new one is committed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from connectome_priors.kernel.locks import exclusive

from .errors import CxpError
from .pipeline import run_etl
from .sources.cave.client import CaveConfig, connect
from .sources.registry import CaveSource
from .store import Store

__all__ = ["LOCK_NAME", "RefreshLockedError", "refresh", "refresh_lock", "stored_versions"]

LOCK_NAME = ".cave-refresh.lock"


class RefreshLockedError(CxpError):
    """Another refresh of the same store is running. ``path`` is the lock file."""

    def __init__(self, message: str, *, path: str) -> None:
        self.path = path
        super().__init__(message)


def refresh_lock(store_dir: str | os.PathLike):
    """Hold the store's refresh lock (non-blocking; :class:`RefreshLockedError` if taken)."""
    directory = Path(store_dir)
    path = directory / LOCK_NAME
    return exclusive(path, lambda holder: RefreshLockedError(
        f"another refresh of {directory} is running (pid {holder}, lock {path}); this one stops "
        "without changing anything", path=str(path)))


def stored_versions(store: Store, datastack: str) -> set[int]:
    """Materialization versions of ``datastack`` the store already holds as ``cave`` snapshots."""
    if not store.exists():
        return set()
    snaps = store.snapshots()
    rows = snaps[(snaps["source"] == "cave") & (snaps["datastack"] == datastack)]
    return {int(v) for v in rows["materialization_version"].dropna()}


def refresh(config: CaveConfig, *, store: Store | str | os.PathLike | None = None,
            progress: bool = False, on_pull: Callable[[int], None] | None = None) -> dict:
    """Bring ``store`` up to the newest materialization version of ``config.datastack``.

    Returns
    -------
    dict
        ``{"version": N, "pulled": False}`` when version N was already stored; otherwise the
        new snapshot's row (as :func:`etl.run_etl` returns it) plus ``version`` and
        ``pulled: True``.

    Raises
    ------
    RefreshLockedError
        When another refresh holds the store's lock.
    """
    store = store if isinstance(store, Store) else Store(store)
    with refresh_lock(store.directory):
        conn = connect(config)
        newest = conn.resolve_version("latest")
        if newest in stored_versions(store, config.datastack):
            return {"version": newest, "pulled": False, "store": str(store.directory)}
        if on_pull is not None:
            on_pull(newest)
        snap = run_etl(CaveSource(replace(config, version=newest), connection=conn), store=store,
                       progress=progress)
        return {**snap, "version": newest, "pulled": True}
