"""Write and publish one immutable artifact directory ``<root>/<name>/<version>/``.

Files are written into a temporary folder next to the final one; on commit each is hashed, the
manifest (:mod:`.manifest`) is validated against ``schemas/artifact/manifest.schema.json`` and
written, and the folder is renamed into place. **Publishing a version that exists keeps the first
build**: the new build is compared with the published files (:func:`~.comparison.compare_builds`:
integer kinds and the neuron table exactly, float kinds within ``rtol``
:data:`~.comparison.FLOAT_RTOL`, ``atol`` :data:`~.comparison.FLOAT_ATOL`, ``precision`` within a
relative Frobenius difference of 1e-2, :data:`~.comparison.NORM_TOLERANCES`); within tolerance it
returns the published manifest and writes nothing, otherwise it raises
:class:`ArtifactIntegrityError` naming the kind and the largest difference (derivation code
changed without bumping :data:`~.manifest.DERIVATION_VERSION`). The same holds when an identical
build publishes the version concurrently. ``<root>/<name>/latest`` (a one-line file) names the
newest version. Temporary folders that killed builds left behind (``.tmp-<host>-<pid>-<uuid>``)
are removed by the next build of the same name.

A write that fails (``ENOSPC``: the disk is full; ``EDQUOT``; any other ``OSError``) ends the build
with one :class:`PriorsError` naming the file and the reason; the temporary folder is removed, so
nothing partial is published (:func:`write_error`). Artifact names are checked before anything is
read or written (:func:`~.names.check_name`).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from connectome_priors.kernel.files import atomic_write_text, sha256_file
from connectome_priors.kernel.version import code_version

from .comparison import compare_builds
from .errors import ArtifactIntegrityError, PriorsError
from .manifest import (DERIVATION_VERSION, MANIFEST, MANIFEST_VERSION, NEURONS, check_manifest,
                       content_digest, nucleus_ids_digest, recipe_version, validate_manifest)
from .names import LATEST, check_name

__all__ = ["STALE_AFTER_S", "ArtifactWriter", "remove_stale_temporaries", "write_error"]


def write_error(err: OSError, path: str | os.PathLike, what: str) -> PriorsError:
    """A :class:`PriorsError` for a failed write of ``path``: the reason (``No space left on
    device``), errno, and what to do; ``path`` and ``errno`` are attributes."""
    reason = err.strerror or str(err)
    hint = (" Free space on that file system and build again." if err.errno in
            (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else "")
    out = PriorsError(f"cannot write {path}: {reason} (errno {err.errno}) while {what}; nothing "
                      f"partial was published.{hint}")
    vars(out).update(path=str(path), errno=err.errno)  # facts as attributes, as on other errors
    return out


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
        check_name(name)
        self.root = Path(root)
        self.name = name
        self.tmp = self.root / name / f"{_TMP}{_HOST}-{os.getpid()}-{uuid.uuid4().hex}"
        self.kinds: dict[str, dict] = {}
        self._extra_files: list[str] = []

    def __enter__(self) -> ArtifactWriter:
        remove_stale_temporaries(self.root / self.name)
        with self._writing(self.tmp):
            self.tmp.mkdir(parents=True)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        if isinstance(exc, OSError):  # a file the caller wrote at path(): disk full, ...
            raise write_error(exc, exc.filename or self.tmp,
                              f"building artifact {self.name}") from exc

    @contextmanager
    def _writing(self, target: Path) -> Iterator[None]:
        """Turn an ``OSError`` (``ENOSPC``, ...) while writing ``target`` into one that names it."""
        try:
            yield
        except OSError as err:
            raise write_error(err, target, f"building artifact {self.name}") from err

    def path(self, filename: str) -> Path:
        """Where to write ``filename`` inside the pending artifact."""
        return self.tmp / filename

    def memmap(self, filename: str, shape: tuple[int, ...], dtype) -> np.memmap:
        """A writable ``.npy`` memory map at :meth:`path`, its disk blocks reserved first: a full
        disk raises ``ENOSPC`` here (as :class:`PriorsError` naming the file) instead of killing
        the process with SIGBUS when a page of a sparse file cannot be written later."""
        target = self.path(filename)
        with self._writing(target):
            out = np.lib.format.open_memmap(target, mode="w+", dtype=dtype, shape=shape)
            if hasattr(os, "posix_fallocate"):
                fd = os.open(target, os.O_RDWR)
                try:
                    os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
                except OSError as err:
                    if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # e.g. some tmpfs/NFS
                        del out
                        raise OSError(err.errno, err.strerror, str(target)) from err
                finally:
                    os.close(fd)
        return out

    def array(self, kind: str, value: np.ndarray | None = None, **meta) -> Path:
        """Add a dense matrix kind as ``<kind>.npy`` (pass ``value``, or write the file yourself
        at :meth:`path` first, e.g. block by block through ``np.lib.format.open_memmap``)."""
        target = self.path(f"{kind}.npy")
        if value is not None:
            with self._writing(target):
                np.save(target, np.ascontiguousarray(value), allow_pickle=False)
        self.kinds[kind] = {"file": target.name, "format": "npy", **meta}
        return target

    def sparse(self, kind: str, value: sp.spmatrix | sp.sparray, **meta) -> Path:
        """Add a sparse matrix kind as ``<kind>.npz`` (scipy CSR, no pickles)."""
        target = self.path(f"{kind}.npz")
        with self._writing(target):
            sp.save_npz(target, sp.csr_matrix(value), compressed=True)
        self.kinds[kind] = {"file": target.name, "format": "npz-sparse", **meta}
        return target

    def labels(self, kind: str, value: np.ndarray, **meta) -> Path:
        """Add a per-neuron label kind (e.g. module ids) as ``<kind>.npy`` int64."""
        target = self.path(f"{kind}.npy")
        with self._writing(target):
            np.save(target, np.asarray(value, dtype=np.int64), allow_pickle=False)
        self.kinds[kind] = {"file": target.name, "format": "labels", **meta}
        return target

    def table(self, filename: str, frame: pd.DataFrame) -> Path:
        """Add a Parquet table that is not a kind (the neuron order: ``neurons.parquet``)."""
        target = self.path(filename)
        with self._writing(target):
            frame.to_parquet(target, index=False)
        self._extra_files.append(filename)
        return target

    def commit(self, *, population: dict, source_snapshot: dict, parameters: dict,
               derivation_version: str = DERIVATION_VERSION) -> dict:
        """Hash every file, derive the version from the recipe, write the manifest and publish;
        return the manifest.

        ``population`` gets ``nucleus_ids_sha256`` (:func:`nucleus_ids_digest`) from the
        ``neurons.parquet`` table when it has none. When the version is already published, the
        files are compared with the published ones (:func:`compare_builds`) and the published
        manifest is returned: the first build is kept.

        Raises
        ------
        ArtifactIntegrityError
            The version is published with other kinds, or with numbers beyond the tolerances.
        """
        files = []
        for path in sorted(self.tmp.iterdir()):
            entry = {"path": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size}
            if path.suffix == ".npy":
                arr = np.load(path, mmap_mode="r", allow_pickle=False)
                entry.update(shape=list(arr.shape), dtype=str(arr.dtype))
                del arr
            files.append(entry)
        if "nucleus_ids_sha256" not in population and NEURONS in self._extra_files:
            ids = pd.read_parquet(self.path(NEURONS), columns=["nucleus_id"]).nucleus_id
            population = {**population, "nucleus_ids_sha256": nucleus_ids_digest(ids)}
        draft = {
            "manifest_version": MANIFEST_VERSION,
            "name": self.name,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "code_version": code_version(),
            "derivation_version": derivation_version,
            "population": population,
            "source_snapshot": source_snapshot,
            "parameters": parameters,
            "kinds": self.kinds,
            "files": files,
        }
        try:  # hash what the loader will read: the manifest as JSON gives it back
            manifest = json.loads(json.dumps(draft, sort_keys=True, default=str))
        except (TypeError, ValueError) as err:
            raise PriorsError(f"{self.name}: the manifest cannot be written as JSON ({err}): a "
                              "parameter or stat with mixed-type keys or another non-JSON value?"
                              ) from err
        version = recipe_version(manifest)
        manifest.update(version=version, content_sha256=content_digest(manifest))
        validate_manifest(manifest)
        with self._writing(self.tmp / MANIFEST):
            (self.tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        final = self.root / self.name / version
        if not final.exists():
            try:
                _rename(self.tmp, final)
            except OSError as err:
                # an identical build published the same version between the check and the rename
                if err.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not final.is_dir():
                    raise PriorsError(f"cannot publish {self.name}@{version} at {final}: "
                                      f"{err.strerror or err}") from err
        if self.tmp.exists():  # the recipe is already published (maybe by a concurrent build)
            manifest = _published_manifest(final, self.tmp, manifest)
        try:
            _point_latest(self.root / self.name, version)
        except OSError as err:  # the version is complete and published; only the pointer is old
            pointer = self.root / self.name / LATEST
            out = PriorsError(f"published {self.name}@{version} at {final}, but cannot write "
                              f"{pointer}: {err.strerror or err} (errno {err.errno}); it still "
                              f"names the previous version. Free space and build again (the "
                              f"published files are kept, and the pointer is then written)")
            vars(out).update(path=str(pointer), errno=err.errno)
            raise out from err
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
    removed: list[Path] = []
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


def _published_manifest(final: Path, ours_dir: Path, ours: dict) -> dict:
    """The manifest of the already published ``final``, checked to hold what we built in
    ``ours_dir`` (same kinds; numbers within the tolerances of :func:`compare_builds`)."""
    mpath = final / MANIFEST
    try:
        theirs = json.loads(mpath.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ArtifactIntegrityError(f"{mpath}: the published artifact of this version has no "
                                     f"readable manifest ({err}); remove {final} and build again",
                                     path=str(mpath)) from err
    check_manifest(theirs, path=str(mpath))
    bad = [c for c in compare_builds(final, ours_dir, published_manifest=theirs,
                                                  rebuilt_manifest=ours) if not c.ok]
    if bad:
        raise ArtifactIntegrityError(
            f"{final}: {ours['name']}@{ours['version']} is published, and this build of the same "
            f"recipe differs from it: {bad[0].describe()}. The published build is kept. Results "
            f"beyond the tolerances for one recipe mean the derivation code changed without a new "
            f"DERIVATION_VERSION (now {ours['derivation_version']!r}): bump it",
            path=str(final / bad[0].file), expected="the published values", found=bad[0].describe())
    return theirs


def _point_latest(folder: Path, version: str) -> None:
    atomic_write_text(folder / LATEST, version + "\n")
