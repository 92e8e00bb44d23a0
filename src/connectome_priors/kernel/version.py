"""The code version recorded in every snapshot, artifact and checkpoint.

``connectome-priors <version>+g<commit>[.dirty]``, from the first of:

1. the package's **own** git checkout, read live (a development tree, editable install): the
   folder above ``src/connectome_priors/`` must be the top of a git work tree whose
   ``pyproject.toml`` names ``connectome-priors``. A checkout of another project that merely
   encloses the package (a virtualenv or a copied tree inside someone else's repository) is not
   ours and is never read;
2. ``src/connectome_priors/_version.py`` (``connectome_priors/_version.py`` when installed), written by setuptools_scm when the package was built or
   installed (``pip install .``, ``pip install -e .``): the commit and dirty state of the tree it
   was built from;
3. otherwise ``connectome-priors unknown``: the code cannot say which commit it is (also in its
   own checkout when git cannot be run there: a version file may be older than the checkout).

The commit is 12 hex digits when read live, as long as setuptools_scm abbreviates it (7 or more)
from the version file; ``.dirty`` marks uncommitted changes to tracked files.

Examples
--------
>>> code_version()                      # doctest: +SKIP
'connectome-priors 0.1.dev104+g3f2a1b0c9d8e.dirty'
"""

from __future__ import annotations

import os
import subprocess
import tomllib
from functools import cache
from importlib import import_module, metadata
from pathlib import Path

__all__ = ["UNKNOWN", "code_version"]

#: What :func:`code_version` returns when no commit can be attributed to this code.
UNKNOWN = "connectome-priors unknown"

_DIST = "connectome-priors"
#: The folder holding ``connectome_priors/`` (``src/`` of a checkout, or site-packages) and the
#: checkout's root (the folder above ``src/``; else that folder itself).
_PARENT = Path(__file__).resolve().parent.parent.parent
_ROOT = _PARENT.parent if _PARENT.name == "src" else _PARENT


@cache
def code_version() -> str:
    """``connectome-priors <version>+g<commit>[.dirty]`` (see the module docstring), else
    :data:`UNKNOWN`; never the commit of a repository that only encloses the installed package."""
    live = _own_checkout(_ROOT)
    if live is _UNREADABLE:  # our checkout, but git cannot say its commit: a version file
        return UNKNOWN       # written at `pip install -e .` may name an older one
    if live is not None:
        commit, dirty = live
        return _format(_base_version(), commit, dirty)
    recorded = _version_file()
    if recorded is not None and recorded.get("commit"):
        return _format(_public(str(recorded.get("version") or "")) or _base_version(),
                       str(recorded["commit"]), bool(recorded.get("dirty")))
    return UNKNOWN


def _format(version: str, commit: str, dirty: bool) -> str:
    commit = commit[1:] if commit.startswith("g") else commit
    return f"{_DIST} {version}+g{commit[:12]}{'.dirty' if dirty else ''}"


def _public(version: str) -> str:
    """A PEP 440 version without its local part (``0.1.dev3+g1a2b.d2026`` -> ``0.1.dev3``)."""
    return version.split("+", 1)[0]


def _base_version() -> str:
    recorded = _version_file()
    if recorded is not None and recorded.get("version"):
        return _public(str(recorded["version"]))
    try:
        return _public(metadata.version(_DIST))
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _version_file() -> dict | None:
    """``connectome_priors/_version.py``'s ``version``, ``commit`` and ``dirty``, if it exists."""
    try:
        module = import_module("connectome_priors._version")
    except ImportError:
        return None
    return {key: getattr(module, key, None) for key in ("version", "commit", "dirty")}


_UNREADABLE = ("", False)


def _own_checkout(root: Path) -> tuple[str, bool] | None:
    """(commit, dirty) of ``root`` when it is the top of a git work tree of this project; None
    when it is not; :data:`_UNREADABLE` when it has its own ``.git`` but git cannot read it."""
    try:
        project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    if project.get("project", {}).get("name") != _DIST:
        return None
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}  # no GIT_DIR redirects

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              timeout=5, check=True, env=env).stdout.strip()

    try:
        top = git("rev-parse", "--show-toplevel")
        if not top or Path(top).resolve() != root:
            return None
        commit = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return _UNREADABLE if (root / ".git").exists() else None
    return (commit, bool(dirty)) if commit else _UNREADABLE
