"""Write and publish one immutable artifact directory ``<root>/<name>/<version>/``.

Files are written into a temporary folder next to the final one; on commit each is hashed, the
version id is derived from the content (population, snapshot, parameters and every file's sha256),
the manifest is validated against ``schemas/artifact/manifest.schema.json`` and written, and the
folder is renamed into place. Publishing the same content again is a no-op that returns the
existing version. ``<root>/<name>/latest`` (a one-line file) names the newest version.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import scipy.sparse as sp

from connectome_priors.kernel.version import code_version

from connectome_priors.kernel.files import atomic_write_text, sha256_file

from .errors import ArtifactIntegrityError, PriorsError

__all__ = ["MANIFEST", "ArtifactWriter", "manifest_schema", "sha256_file", "validate_manifest"]

MANIFEST = "manifest.json"
LATEST = "latest"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def manifest_schema() -> dict:
    """The artifact manifest's JSON Schema."""
    text = resources.files("connectome_priors.schemas").joinpath("artifact", "manifest.schema.json").read_text("utf-8")
    return json.loads(text)


def validate_manifest(manifest: dict, *, path: str = MANIFEST) -> None:
    """Raise :class:`ArtifactIntegrityError` if ``manifest`` breaks the manifest schema."""
    try:
        jsonschema.validate(manifest, manifest_schema())
    except jsonschema.ValidationError as err:
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        raise ArtifactIntegrityError(f"{path}: manifest field {where}: {err.message}", path=path,
                                     expected="a manifest valid against manifest.schema.json",
                                     found=err.message) from err



class ArtifactWriter:
    """Collect an artifact's files in a temporary folder, then publish them atomically.

    Use as a context manager; leaving the block without :meth:`commit` (an exception) removes the
    temporary folder, so nothing half-written is ever visible.

    Examples
    --------
    >>> with ArtifactWriter("/tmp/priors", "demo") as w:        # doctest: +SKIP
    ...     w.array("distance_um", np.zeros((3, 3), np.float32), description="soma distance")
    ...     manifest = w.commit(population={...}, source_snapshot={...}, parameters={})
    """

    def __init__(self, root: str | os.PathLike, name: str) -> None:
        if not _NAME.match(name):
            raise PriorsError(f"artifact name {name!r} is not allowed; use letters, digits, '_', '.', "
                              "'-' (at most 100 characters, starting with a letter or digit)")
        self.root = Path(root)
        self.name = name
        self.tmp = self.root / name / f".tmp-{uuid.uuid4().hex}"
        self.kinds: dict[str, dict] = {}
        self._extra_files: list[str] = []

    def __enter__(self) -> ArtifactWriter:
        self.tmp.mkdir(parents=True)
        return self

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def path(self, filename: str) -> Path:
        """Where to write ``filename`` inside the pending artifact."""
        return self.tmp / filename

    def array(self, kind: str, value: np.ndarray | None = None, **meta) -> Path:
        """Add a dense matrix kind as ``<kind>.npy`` (pass ``value``, or write the file yourself
        at :meth:`path` first, e.g. block by block through ``np.lib.format.open_memmap``)."""
        target = self.path(f"{kind}.npy")
        if value is not None:
            np.save(target, np.ascontiguousarray(value), allow_pickle=False)
        self.kinds[kind] = {"file": target.name, "format": "npy", **meta}
        return target

    def sparse(self, kind: str, value: sp.spmatrix | sp.sparray, **meta) -> Path:
        """Add a sparse matrix kind as ``<kind>.npz`` (scipy CSR, no pickles)."""
        target = self.path(f"{kind}.npz")
        sp.save_npz(target, sp.csr_matrix(value), compressed=True)
        self.kinds[kind] = {"file": target.name, "format": "npz-sparse", **meta}
        return target

    def labels(self, kind: str, value: np.ndarray, **meta) -> Path:
        """Add a per-neuron label kind (e.g. module ids) as ``<kind>.npy`` int64."""
        target = self.path(f"{kind}.npy")
        np.save(target, np.asarray(value, dtype=np.int64), allow_pickle=False)
        self.kinds[kind] = {"file": target.name, "format": "labels", **meta}
        return target

    def table(self, filename: str, frame: pd.DataFrame) -> Path:
        """Add a Parquet table that is not a kind (the neuron order: ``neurons.parquet``)."""
        target = self.path(filename)
        frame.to_parquet(target, index=False)
        self._extra_files.append(filename)
        return target

    def commit(self, *, population: dict, source_snapshot: dict, parameters: dict) -> dict:
        """Hash every file, derive the version, write the manifest and publish; return the manifest."""
        files = []
        for path in sorted(self.tmp.iterdir()):
            entry = {"path": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size}
            if path.suffix == ".npy":
                arr = np.load(path, mmap_mode="r", allow_pickle=False)
                entry.update(shape=list(arr.shape), dtype=str(arr.dtype))
                del arr
            files.append(entry)
        identity = json.dumps({"population": population, "snapshot": source_snapshot,
                               "parameters": parameters, "kinds": self.kinds,
                               "files": [(f["path"], f["sha256"]) for f in files]},
                              sort_keys=True, default=str)
        version = hashlib.sha256(identity.encode()).hexdigest()[:16]
        manifest = {
            "manifest_version": 1,
            "name": self.name,
            "version": version,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "code_version": code_version(),
            "population": population,
            "source_snapshot": source_snapshot,
            "parameters": parameters,
            "kinds": self.kinds,
            "files": files,
        }
        validate_manifest(manifest)
        (self.tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
        final = self.root / self.name / version
        if final.exists():  # same content already published: keep the original, untouched
            manifest = json.loads((final / MANIFEST).read_text())
        else:
            os.replace(self.tmp, final)
        _point_latest(self.root / self.name, version)
        return manifest


def _point_latest(folder: Path, version: str) -> None:
    atomic_write_text(folder / LATEST, version + "\n")
