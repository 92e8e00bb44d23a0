"""Where the neuron store lives, resolved once: argument > environment variable > default."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["STORE_ENV", "StoreConfig", "default_store_dir"]

#: Environment variable that overrides the default store directory.
STORE_ENV = "CXP_STORE"


def default_store_dir() -> Path:
    """``$CXP_STORE`` if set, else ``$XDG_DATA_HOME/connectome-priors/store``
    (``~/.local/share/connectome-priors/store``)."""
    env = os.environ.get(STORE_ENV)
    if env:
        return Path(env).expanduser()
    data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data_home / "connectome-priors" / "store"


@dataclass(frozen=True)
class StoreConfig:
    """Location of a neuron store."""

    directory: Path
    """Store directory: holds ``store.duckdb`` and the Parquet raw layer ``raw/<snapshot_id>/``."""

    @classmethod
    def resolve(cls, directory: str | os.PathLike | None = None) -> StoreConfig:
        """Use ``directory`` if given, else :func:`default_store_dir`."""
        return cls(Path(directory).expanduser() if directory is not None else default_store_dir())

    @property
    def database(self) -> Path:
        """The DuckDB file."""
        return self.directory / "store.duckdb"

    @property
    def raw(self) -> Path:
        """Root of the Parquet raw layer."""
        return self.directory / "raw"
