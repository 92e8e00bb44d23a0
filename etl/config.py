"""Where the neuron store lives: the kernel's ``store`` setting (argument > ``$CXP_STORE`` > config
file > default)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from connectome_priors.kernel.settings import env_name, resolve

__all__ = ["STORE_ENV", "StoreConfig", "default_store_dir"]

#: Environment variable that overrides the default store directory.
STORE_ENV = env_name("store")


def default_store_dir() -> Path:
    """``$CXP_STORE`` if set, else the config file's ``store``, else
    ``$XDG_DATA_HOME/connectome-priors/store`` (``~/.local/share/connectome-priors/store``)."""
    return resolve("store")


@dataclass(frozen=True)
class StoreConfig:
    """Location of a neuron store."""

    directory: Path
    """Store directory: holds ``store.duckdb`` and the Parquet raw layer ``raw/<snapshot_id>/``."""

    @classmethod
    def resolve(cls, directory: str | os.PathLike | None = None) -> StoreConfig:
        """Use ``directory`` if given, else :func:`default_store_dir`."""
        return cls(resolve("store", directory))

    @property
    def database(self) -> Path:
        """The DuckDB file."""
        return self.directory / "store.duckdb"

    @property
    def raw(self) -> Path:
        """Root of the Parquet raw layer."""
        return self.directory / "raw"
