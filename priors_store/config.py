"""Where prior artifacts live: the kernel's ``artifacts`` setting, defaulting beside the store."""

from __future__ import annotations

import os
from pathlib import Path

from connectome_priors.kernel.settings import env_name, resolve

__all__ = ["ARTIFACTS_ENV", "artifact_root"]

#: Environment variable that overrides the default artifact root.
ARTIFACTS_ENV = env_name("artifacts")


def artifact_root(root: str | os.PathLike | None = None, *,
                  store: str | os.PathLike | None = None) -> Path:
    """``root`` if given, else ``$CXP_ARTIFACTS``, else the config file's ``artifacts``, else
    ``<store directory>/artifacts`` (``store``, or the ``store`` setting, see
    :mod:`connectome_priors.kernel.settings`)."""
    return resolve("artifacts", root, default=lambda: resolve("store", store) / "artifacts")
