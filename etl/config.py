"""Where the neuron store lives: the kernel's ``store`` setting (argument > ``$CXP_STORE`` > config
file > default)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from connectome_priors.kernel.settings import SettingsError, env_name, resolve

__all__ = ["LOCK_TIMEOUT_ENV", "STORE_ENV", "StoreConfig", "default_store_dir"]

#: Environment variable that overrides the default store directory.
STORE_ENV = env_name("store")
#: Environment variable: how long a writer waits for another writer of the same store, in seconds.
LOCK_TIMEOUT_ENV = env_name("store_lock_timeout")
_LOCK_TIMEOUT_S = 300.0


def default_store_dir() -> Path:
    """``$CXP_STORE`` if set, else the config file's ``store``, else
    ``$XDG_DATA_HOME/connectome-priors/store`` (``~/.local/share/connectome-priors/store``)."""
    return resolve("store")


@dataclass(frozen=True)
class StoreConfig:
    """Location of a neuron store."""

    directory: Path
    """Store directory: holds the catalog ``store.duckdb`` and the Parquet raw layer
    ``raw/<snapshot_id>/``."""
    lock_timeout_s: float = _LOCK_TIMEOUT_S
    """How long a writer waits for another writer of the same store before failing (seconds)."""

    @classmethod
    def resolve(cls, directory: str | os.PathLike | None = None, *,
                lock_timeout_s: float | None = None) -> StoreConfig:
        """Use ``directory`` if given, else :func:`default_store_dir`; ``lock_timeout_s`` if given,
        else the ``store_lock_timeout`` setting (``$CXP_STORE_LOCK_TIMEOUT``, the config file),
        else 300 s."""
        if lock_timeout_s is None:
            text = resolve("store_lock_timeout").strip()
            try:
                lock_timeout_s = float(text)
            except ValueError:
                raise SettingsError(f"${LOCK_TIMEOUT_ENV} (or the config file's store_lock_timeout) "
                                    f"must be a number of seconds; found {text!r}") from None
        return cls(resolve("store", directory), float(lock_timeout_s))

    @property
    def database(self) -> Path:
        """The catalog: a small DuckDB file (snapshots table, views), replaced whole at each commit."""
        return self.directory / "store.duckdb"

    @property
    def lock(self) -> Path:
        """The file writers hold an ``flock`` on."""
        return self.directory / ".store-write.lock"

    @property
    def raw(self) -> Path:
        """Root of the Parquet raw layer."""
        return self.directory / "raw"
