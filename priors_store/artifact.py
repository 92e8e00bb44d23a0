"""Write and publish one immutable artifact directory ``<root>/<name>/<version>/``.

Files are written into a temporary folder next to the final one; on commit each is hashed, the
version id is derived from the content (population, snapshot, parameters and every file's sha256),
the manifest is validated against ``schemas/artifact/manifest.schema.json`` and written, and the
folder is renamed into place. Publishing the same content again is a no-op that returns the
existing version, also when an identical build publishes it concurrently. ``<root>/<name>/latest``
(a one-line file) names the newest version. Temporary folders that killed builds left behind
(``.tmp-<host>-<pid>-<uuid>``) are removed by the next build of the same name.

The loader re-derives the version from the manifest (:func:`check_manifest`), so an edited
manifest (a kind mapped to another file, changed provenance or parameters, another version) is
refused. ``created`` and ``code_version`` are not part of the version and are not covered.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import socket
import time
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

__all__ = ["MANIFEST", "ArtifactWriter", "check_manifest", "content_version", "manifest_schema",
           "sha256_file", "validate_manifest"]

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



def content_version(manifest: dict) -> str:
    """The version id an artifact's content derives to: the first 16 hex digits of the sha256 over
    its population, source snapshot, parameters, kinds and every file's (path, sha256).

    ``manifest`` needs only those five entries; :meth:`ArtifactWriter.commit` and the loader's
    checks compute the version through this one function.
    """
    identity = json.dumps({"population": manifest["population"], "snapshot": manifest["source_snapshot"],
                           "parameters": manifest["parameters"], "kinds": manifest["kinds"],
                           "files": [(f["path"], f["sha256"]) for f in manifest["files"]]},
                          sort_keys=True, default=str)
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


#: The file a kind of each format is written to (see :meth:`ArtifactWriter.array` and friends).
KIND_SUFFIX = {"npy": ".npy", "labels": ".npy", "npz-sparse": ".npz"}


def check_manifest(manifest: dict, *, path: str = MANIFEST, directory: Path | None = None) -> None:
    """Refuse a manifest that differs from what the build wrote, naming the field.

    Checks the schema, that every file name is a plain name inside the artifact, that each kind
    maps to the file the build writes for it (``<kind>.npy`` / ``<kind>.npz``) and that file is
    listed, and that the content (population, snapshot, parameters, kinds, files' sha256) derives
    to the recorded ``version``. With ``directory`` (a published ``<root>/<name>/<version>``; not a
    staging folder starting with '.') its folder names must equal ``name`` and ``version`` too.

    Raises
    ------
    ArtifactIntegrityError
        With ``path``, ``expected`` and ``found`` of the first difference.
    """
    validate_manifest(manifest, path=path)
    listed = set()
    for i, entry in enumerate(manifest["files"]):
        name = entry["path"]
        if name.startswith(".") or name == MANIFEST:
            raise ArtifactIntegrityError(f"{path}: files[{i}].path is {name!r}; expected a plain file "
                                         "name inside the artifact folder", path=path,
                                         expected="a file name such as distance_um.npy", found=name)
        if name in listed:
            raise ArtifactIntegrityError(f"{path}: files[{i}].path {name!r} is listed twice",
                                         path=path, expected="each file listed once", found=name)
        listed.add(name)
    for kind, entry in manifest["kinds"].items():
        expected = f"{kind}{KIND_SUFFIX[entry['format']]}"
        if entry["file"] != expected:
            raise ArtifactIntegrityError(
                f"{path}: kinds.{kind}.file is {entry['file']!r}; the build writes kind {kind!r} "
                f"({entry['format']}) to {expected!r}: the manifest was edited",
                path=path, expected=expected, found=entry["file"])
        if expected not in listed:
            raise ArtifactIntegrityError(f"{path}: kinds.{kind}.file {expected!r} is not in files",
                                         path=path, expected=f"{expected} listed in files",
                                         found="not listed")
    derived = content_version(manifest)
    if derived != manifest["version"]:
        raise ArtifactIntegrityError(
            f"{path}: version is {manifest['version']!r}, but the manifest's content (population, "
            f"source_snapshot, parameters, kinds, files' sha256) derives to {derived!r}: the manifest "
            "was edited after the build", path=path, expected=derived, found=manifest["version"])
    if directory is not None and not directory.name.startswith("."):
        for field, want in (("version", directory.name), ("name", directory.parent.name)):
            if manifest[field] != want:
                raise ArtifactIntegrityError(
                    f"{path}: {field} is {manifest[field]!r}, but the artifact lives in "
                    f"{directory.parent.name}/{directory.name}/: expected {want!r}",
                    path=path, expected=want, found=manifest[field])


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
        self.tmp = self.root / name / f"{_TMP}{_HOST}-{os.getpid()}-{uuid.uuid4().hex}"
        self.kinds: dict[str, dict] = {}
        self._extra_files: list[str] = []

    def __enter__(self) -> ArtifactWriter:
        remove_stale_temporaries(self.root / self.name)
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
        version = content_version({"population": population, "source_snapshot": source_snapshot,
                                   "parameters": parameters, "kinds": self.kinds, "files": files})
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
        text = json.dumps(manifest, indent=2, sort_keys=True, default=str)
        if content_version(json.loads(text)) != version:  # the loader re-derives it from this text
            raise PriorsError(f"{self.name}: the manifest does not survive JSON unchanged (a "
                              "parameter or stat with non-string keys or another non-JSON value?); "
                              "its version could not be checked when loaded")
        (self.tmp / MANIFEST).write_text(text)
        final = self.root / self.name / version
        if not final.exists():
            try:
                _rename(self.tmp, final)
            except OSError as err:
                # an identical build published the same version between the check and the rename
                if err.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not final.is_dir():
                    raise PriorsError(f"cannot publish {self.name}@{version} at {final}: "
                                      f"{err.strerror or err}") from err
        if self.tmp.exists():  # same content already published (maybe by a concurrent build): keep it
            manifest = _published_manifest(final, manifest)
        _point_latest(self.root / self.name, version)
        return manifest


#: Temporary folders of builds in progress: ``<root>/<name>/.tmp-<host>-<pid>-<uuid>/``.
_TMP = ".tmp-"
_HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:40] or "host"

#: A temporary folder untouched this long is removed even when its owner cannot be checked
#: (another host, or a name without owner from an older version), s.
STALE_AFTER_S = 3600.0


def remove_stale_temporaries(folder: Path, *, stale_after_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove the temporary folders that killed builds left in ``folder``; return them.

    A folder of a build on this host whose process is gone is removed at once; any other (another
    host's, or one named without its owner) once it has not changed for ``stale_after_s`` seconds.
    Builds in progress keep theirs.
    """
    removed = []
    if not folder.is_dir():
        return removed
    now = time.time()
    for tmp in folder.glob(f"{_TMP}*"):
        try:
            age = now - tmp.stat().st_mtime
        except OSError:
            continue
        parts = tmp.name[len(_TMP):].split("-")
        mine = len(parts) == 3 and parts[0] == _HOST and parts[1].isdigit()
        if (not _alive(int(parts[1]))) if mine else age > stale_after_s:
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _rename(src: Path, dst: Path) -> None:
    os.replace(src, dst)


def _published_manifest(final: Path, ours: dict) -> dict:
    """The manifest of the already published ``final``, checked to hold what we built."""
    mpath = final / MANIFEST
    try:
        theirs = json.loads(mpath.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ArtifactIntegrityError(f"{mpath}: the published artifact of this version has no "
                                     f"readable manifest ({err}); remove {final} and build again",
                                     path=str(mpath)) from err
    check_manifest(theirs, path=str(mpath))
    mine = [(f["path"], f["sha256"]) for f in ours["files"]]
    found = [(f["path"], f["sha256"]) for f in theirs["files"]]
    if found != mine:
        raise ArtifactIntegrityError(f"{mpath}: the published artifact of version {ours['version']} "
                                     "lists other files or sha256 than this build wrote",
                                     path=str(mpath), expected=str(mine), found=str(found))
    return theirs


def _point_latest(folder: Path, version: str) -> None:
    atomic_write_text(folder / LATEST, version + "\n")
