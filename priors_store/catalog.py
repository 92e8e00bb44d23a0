"""The local artifact root: the artifacts and versions it holds, and the folder a reference names.

The root is ``<root>/<name>/<version>/`` with a ``<root>/<name>/latest`` pointer file
(:mod:`.writer`); references are checked (:func:`~.names.check_ref`) before anything is read.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .config import artifact_root
from .errors import ArtifactIntegrityError, ArtifactNotFoundError
from .names import LATEST, VERSION_PREFIX, check_ref
from .verification import read_manifest

__all__ = ["list_artifacts", "resolve_version"]


def resolve_version(name: str, version: str = LATEST, *, root: str | os.PathLike | None = None) -> Path:
    """Directory of artifact ``name`` at ``version`` (``latest`` or a version id or unique prefix)."""
    check_ref(name, version, root=artifact_root(root))
    base = artifact_root(root) / name
    if not base.is_dir():
        known = sorted(p.name for p in artifact_root(root).glob("*") if p.is_dir()) \
            if artifact_root(root).is_dir() else []
        raise ArtifactNotFoundError(f"no artifact named {name!r} under {artifact_root(root)}; "
                                    f"known: {known or 'none'} (build one with `cxp priors build`)",
                                    name=name)
    if version == LATEST:
        pointer = base / LATEST
        if not pointer.is_file():
            raise ArtifactNotFoundError(f"artifact {name!r} has no '{LATEST}' pointer in {base}",
                                        name=name, version=version)
        version = pointer.read_text(errors="replace").strip()
        if not VERSION_PREFIX.match(version):
            raise ArtifactIntegrityError(f"{pointer}: holds {version[:40]!r}; expected a version id "
                                         "(16 hex digits)", path=str(pointer),
                                         expected="16 hex digits", found=version[:40])
    matches = [p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")
               and p.name.startswith(version)]
    if len(matches) != 1:
        versions = sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
        raise ArtifactNotFoundError(f"artifact {name!r} has {'no' if not matches else 'several'} "
                                    f"version(s) matching {version!r}; versions: {versions}",
                                    name=name, version=version)
    return matches[0]


def list_artifacts(root: str | os.PathLike | None = None, *,
                   invalid: list[ArtifactIntegrityError] | None = None) -> pd.DataFrame:
    """One row per published version: name, version, latest flag, created, population, neurons, kinds.

    A version folder whose manifest is missing, unreadable or edited raises
    :class:`ArtifactIntegrityError`; pass a list as ``invalid`` to collect those errors there and
    list the rest.
    """
    base = artifact_root(root)
    rows = []
    if base.is_dir():
        for folder in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
            pointer = folder / LATEST
            latest = pointer.read_text(errors="replace").strip() if pointer.is_file() else None
            for vdir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
                try:
                    m = read_manifest(vdir)
                except ArtifactIntegrityError as err:
                    if invalid is None:
                        raise
                    invalid.append(err)
                    continue
                rows.append({"name": folder.name, "version": vdir.name, "latest": vdir.name == latest,
                             "created": m.get("created"), "population": m["population"]["kind"],
                             "neurons": m["population"]["n_neurons"],
                             "snapshot": m["source_snapshot"]["snapshot_id"],
                             "kinds": ",".join(sorted(m["kinds"]))})
    return pd.DataFrame(rows, columns=["name", "version", "latest", "created", "population",
                                       "neurons", "snapshot", "kinds"])
