"""The code version recorded in every snapshot and artifact."""

from __future__ import annotations

import subprocess
from functools import cache
from importlib import metadata
from pathlib import Path

__all__ = ["code_version"]


@cache
def code_version() -> str:
    """``connectome-priors <version>`` plus ``+g<commit>[.dirty]`` when run from a git checkout."""
    try:
        version = metadata.version("connectome-priors")
    except metadata.PackageNotFoundError:
        version = "0+unknown"
    root = Path(__file__).resolve().parent.parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                                capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"connectome-priors {version}"
    return f"connectome-priors {version}+g{commit}{'.dirty' if dirty else ''}"
