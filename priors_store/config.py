"""Where prior artifacts live, resolved once: argument > environment variable > default."""

from __future__ import annotations

import os
from pathlib import Path

from etl.config import default_store_dir

__all__ = ["ARTIFACTS_ENV", "artifact_root"]

#: Environment variable that overrides the default artifact root.
ARTIFACTS_ENV = "CXP_ARTIFACTS"


def artifact_root(root: str | os.PathLike | None = None, *,
                  store: str | os.PathLike | None = None) -> Path:
    """``root`` if given, else ``$CXP_ARTIFACTS``, else ``<store directory>/artifacts``.

    The store directory is ``store`` or the default store (``$CXP_STORE``, see :mod:`etl.config`).
    """
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(ARTIFACTS_ENV)
    if env:
        return Path(env).expanduser()
    base = Path(store).expanduser() if store is not None else default_store_dir()
    return base / "artifacts"
