"""Write and publish one immutable artifact directory ``<root>/<name>/<version>/``.

**A version names a recipe, not bytes.** The version id is the first 16 hex digits of the sha256
over the canonical JSON of the artifact's recipe (:func:`recipe`): the population (how it was
chosen, plus the sha256 of its sorted nucleus ids), the source snapshot (its id, provenance and
content hash, and the activity snapshot's identity and content hash when spikes were joined from
one), every derivation parameter, and :data:`DERIVATION_VERSION`, a constant bumped by hand when
derivation code changes results. Floating-point results differ in their last bits between CPUs,
BLAS builds and thread counts; the recipe does not, so the same recipe has the same version on
every machine, and a version a paper cites can be rebuilt and checked elsewhere
(:func:`~.load.verify` with ``rebuild=True``, which compares with :func:`compare_builds`).

Each file's sha256 stays in the manifest (integrity: loaders check every file), and the manifest
seals what is not part of the recipe (kinds with their stats, the file list with sizes and
sha256) with ``content_sha256`` (:func:`content_digest`). The loader re-derives both
(:func:`check_manifest`), so an edited manifest (a kind mapped to another file, changed
provenance, parameters or stats, another version) is refused. ``created`` and ``code_version``
are not covered.

Files are written into a temporary folder next to the final one; on commit each is hashed, the
manifest is validated against ``schemas/artifact/manifest.schema.json`` and written, and the folder
is renamed into place. **Publishing a version that exists keeps the first build**: the new build is
compared with the published files (:func:`compare_builds`: integer kinds and the neuron table
exactly, float kinds within ``rtol`` :data:`FLOAT_RTOL`, ``atol`` :data:`FLOAT_ATOL`, ``precision``
within a relative Frobenius difference of 1e-2, :data:`NORM_TOLERANCES`); within
tolerance it returns the published manifest and writes nothing, otherwise it raises
:class:`ArtifactIntegrityError` naming the kind and the largest difference (derivation code
changed without bumping :data:`DERIVATION_VERSION`). The same holds when an identical build
publishes the version concurrently. ``<root>/<name>/latest`` (a one-line file) names the newest
version. Temporary folders that killed builds left behind (``.tmp-<host>-<pid>-<uuid>``) are
removed by the next build of the same name.

A write that fails (``ENOSPC``: the disk is full; ``EDQUOT``; any other ``OSError``) ends the build
with one :class:`PriorsError` naming the file and the reason; the temporary folder is removed, so
nothing partial is published (:func:`write_error`). Artifact names are checked before anything is
read or written (:func:`check_name`).

Manifests of ``manifest_version`` 1 (before recipe versions) still load: their version is checked
with the formula they were written with (:func:`content_version`, a hash of the files' content).
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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

__all__ = ["DERIVATION_VERSION", "FLOAT_ATOL", "FLOAT_RTOL", "MANIFEST", "MANIFEST_VERSION",
           "NORM_TOLERANCES",
           "ArtifactWriter", "KindComparison", "canonical_json", "check_manifest", "check_name",
           "compare_builds",
           "content_digest", "content_version", "manifest_schema", "nucleus_ids_digest", "recipe",
           "recipe_version", "sha256_file", "validate_manifest", "write_error"]

#: Version of the derivation code, part of every recipe. Bump it by hand (a new string) in the
#: change that makes any derivation (priors_store/derive, pipeline.py) give other results than
#: its float rounding: a build would otherwise publish other numbers under an existing version,
#: which the re-publish check refuses. Not the git commit: a commit changes without changing
#: results, and a version must be rebuildable from a release of the code.
DERIVATION_VERSION = "2"  # "2": the signed-connectome kinds (issue 24)

#: Tolerances of :func:`compare_builds` for float kinds: ``|a - b| <= FLOAT_ATOL + FLOAT_RTOL * |b|``
#: elementwise (NaN only where the other has NaN). Integer kinds, labels and the neuron table must
#: be equal. float32 rounds at ~6e-8 relative, so a last-bit difference passes.
FLOAT_RTOL = 1e-6
FLOAT_ATOL = 1e-9

#: Kinds compared by a relative Frobenius norm, ``||a - b||_F <= tol * ||a||_F``, instead of
#: elementwise: ``precision`` comes from GraphicalLassoCV, an iterative fit that often stops
#: unconverged (recorded in its stats), so last-bit differences of its input move its result by
#: ~3e-4 relative (measured: OpenBLAS Sandybridge vs SkylakeX kernels, field 6_6_2 of the test
#: store; max |difference| 0.011 on values up to 61).
NORM_TOLERANCES = {"precision": 1e-2}

#: The manifest format this code writes (1: version = hash of the files; 2: version = the recipe).
MANIFEST_VERSION = 2

MANIFEST = "manifest.json"
#: The neuron order of every artifact (a table, not a kind).
NEURONS = "neurons.parquet"
LATEST = "latest"
#: An artifact name (``\Z``, not ``$``: ``$`` also matches before a final newline).
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\Z")
#: The longest artifact name (a folder name; :data:`_NAME` allows no more).
MAX_NAME = 100


def shown(text: str, limit: int = 40) -> str:
    """``text`` for a one-line message: quoted, cut after ``limit`` characters with its length."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text)} characters)"


def check_name(name: str, *, what: str = "artifact name") -> str:
    """Return ``name`` if it can name an artifact folder, else raise :class:`PriorsError`.

    A name is 1 to :data:`MAX_NAME` letters, digits, ``_``, ``.``, ``-``, starting with a letter or
    digit: no ``/``, no glob characters (``*?[]``), no leading ``.``. Checked before anything is
    read or written.

    >>> check_name("field_6_6_2")
    'field_6_6_2'
    """
    if not isinstance(name, str) or not _NAME.match(name):
        why = (f"{len(name)} characters; at most {MAX_NAME}"
               if isinstance(name, str) and len(name) > MAX_NAME and _NAME.match(name[:MAX_NAME])
               else "use letters, digits, '_', '.', '-', starting with a letter or digit (no '/', "
                    f"no glob characters, at most {MAX_NAME} characters)")
        raise PriorsError(f"{what} {shown(str(name))} is not allowed: {why}")
    return name


def write_error(err: OSError, path: str | os.PathLike, what: str) -> PriorsError:
    """A :class:`PriorsError` for a failed write of ``path``: the reason (``No space left on
    device``), errno, and what to do; ``path`` and ``errno`` are attributes."""
    reason = err.strerror or str(err)
    hint = (" Free space on that file system and build again." if err.errno in
            (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else "")
    out = PriorsError(f"cannot write {path}: {reason} (errno {err.errno}) while {what}; nothing "
                      f"partial was published.{hint}")
    out.path, out.errno = str(path), err.errno
    return out


@functools.cache
def manifest_schema() -> dict:
    """The artifact manifest's JSON Schema (read once; treat it as read-only)."""
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



def canonical_json(value) -> str:
    """The canonical JSON text hashed into versions: sorted keys, no spaces, ASCII, and non-JSON
    values (numpy scalars) as strings."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def nucleus_ids_digest(nucleus_ids) -> str:
    """sha256 of a population's nucleus ids in canonical form: sorted ascending, decimal, joined
    by ``,`` (the order of the neurons follows from how the population was chosen).

    >>> nucleus_ids_digest([3, 1, 2]) == nucleus_ids_digest([1, 2, 3])
    True
    """
    ids = sorted(int(i) for i in nucleus_ids)
    return hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()


def recipe(manifest: dict) -> dict:
    """What a version names (``manifest_version`` 2): ``derivation_version``, ``population`` (how it
    was chosen, ``n_neurons``, ``nucleus_ids_sha256``), ``source_snapshot`` (id, provenance,
    content hash, and the joined activity snapshot's) and ``parameters``. All are exact values that
    do not depend on the machine, unlike the derived numbers."""
    return {"derivation_version": manifest["derivation_version"],
            "population": manifest["population"], "source_snapshot": manifest["source_snapshot"],
            "parameters": manifest["parameters"]}


def recipe_version(manifest: dict) -> str:
    """The version id of a recipe: the first 16 hex digits of the sha256 of
    :func:`canonical_json` of :func:`recipe`. ``manifest`` needs only the recipe's four entries."""
    return hashlib.sha256(canonical_json(recipe(manifest)).encode()).hexdigest()[:16]


def content_digest(manifest: dict) -> str:
    """``content_sha256`` of a manifest: the sha256 of :func:`canonical_json` of its ``kinds``
    (files, formats, descriptions, stats) and ``files`` (path, sha256, bytes, shape, dtype).

    Not part of the version (these hold machine-dependent numbers); it seals them, so an edited
    stat or file hash in the manifest is refused by :func:`check_manifest` alone.
    """
    return hashlib.sha256(canonical_json({"kinds": manifest["kinds"],
                                          "files": manifest["files"]}).encode()).hexdigest()


def content_version(manifest: dict) -> str:
    """The version id of a ``manifest_version`` 1 artifact (before recipe versions): the first 16
    hex digits of the sha256 over its population, source snapshot, parameters, kinds and every
    file's (path, sha256). Kept to check old manifests."""
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
    listed, that ``content_sha256`` is the hash of the kinds and files (:func:`content_digest`), and
    that the recipe (:func:`recipe`) derives to the recorded ``version`` (``manifest_version`` 1:
    the content, :func:`content_version`). With ``directory`` (a published ``<root>/<name>/<version>``; not a
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
    if manifest["manifest_version"] == 1:
        derived, covers = content_version(manifest), ("population, source_snapshot, parameters, "
                                                       "kinds, files' sha256 (manifest_version 1)")
    else:
        digest = content_digest(manifest)
        if digest != manifest["content_sha256"]:
            raise ArtifactIntegrityError(
                f"{path}: content_sha256 is {manifest['content_sha256'][:16]}..., but the manifest's "
                f"kinds and files (stats, sizes, sha256) hash to {digest[:16]}...: the manifest was "
                "edited after the build", path=path, expected=digest, found=manifest["content_sha256"])
        derived, covers = recipe_version(manifest), ("recipe: derivation_version, population, "
                                                     "source_snapshot, parameters")
    if derived != manifest["version"]:
        raise ArtifactIntegrityError(
            f"{path}: version is {manifest['version']!r}, but the manifest's {covers} derives to "
            f"{derived!r}: the manifest was edited after the build", path=path, expected=derived,
            found=manifest["version"])
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
            out.path, out.errno = str(pointer), err.errno
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


@dataclass(frozen=True)
class KindComparison:
    """How one kind (or the neuron table) of two builds of a recipe compares."""

    kind: str
    """Kind name, or ``neurons.parquet``."""
    file: str
    """Its file in the artifact folder."""
    rule: str
    """``exact`` (integer kinds, labels, the neuron table) or ``rtol ..., atol ...`` (floats)."""
    ok: bool
    """Within the rule."""
    identical: bool
    """Byte-identical files (same sha256)."""
    max_abs_diff: float
    """Largest |published - rebuilt| (inf where NaNs, shapes or dtypes differ; 0 for tables)."""
    n_outside: int = 0
    """Entries outside the tolerance."""
    note: str = ""
    """What differs when it is not a number (missing kind, shape, dtype, table rows)."""
    rel_norm_diff: float | None = None
    """``||a - b||_F / ||a||_F`` for kinds compared by norm (:data:`NORM_TOLERANCES`)."""

    def describe(self) -> str:
        """One line: kind, rule and the largest difference."""
        if self.note:
            return f"kind {self.kind} ({self.file}): {self.note}"
        state = "identical" if self.identical else f"max |difference| {self.max_abs_diff:.3g}"
        if self.rel_norm_diff is not None:
            state += f", relative Frobenius difference {self.rel_norm_diff:.3g}"
        extra = f", {self.n_outside} entries outside" if self.n_outside else ""
        return f"kind {self.kind} ({self.file}): {state} ({self.rule}{extra})"


def compare_builds(published: Path, rebuilt: Path, *, published_manifest: dict | None = None,
                   rebuilt_manifest: dict | None = None, rtol: float = FLOAT_RTOL,
                   atol: float = FLOAT_ATOL, block: int = 1024) -> list[KindComparison]:
    """Compare two builds of one recipe kind by kind; return one :class:`KindComparison` each.

    Integer and label kinds (``connectome``, ``modules_*``) and the neuron table must be equal;
    float kinds (dense or sparse) must satisfy ``|a - b| <= atol + rtol * |a|`` elementwise, with
    ``a`` the published value and NaN only where the other is NaN; kinds in
    :data:`NORM_TOLERANCES` (``precision``: 1e-2) ``||a - b||_F <= tol * ||a||_F`` instead.
    Byte-identical files pass without reading. Kinds present in only one build fail. Dense
    matrices are compared in row blocks of ``block`` rows (memory stays bounded for pooled
    populations). Stats are not compared: they summarize the compared numbers.

    >>> bad = [c for c in compare_builds(a_dir, b_dir) if not c.ok]  # doctest: +SKIP
    """
    pm = published_manifest or _read(published)
    rm = rebuilt_manifest or _read(rebuilt)
    sums = ({f["path"]: f["sha256"] for f in pm["files"]}, {f["path"]: f["sha256"] for f in rm["files"]})
    rule = f"rtol {rtol:g}, atol {atol:g}"
    out = []
    if NEURONS in sums[0] or NEURONS in sums[1]:
        same = sums[0].get(NEURONS) == sums[1].get(NEURONS)
        ok = same or (NEURONS in sums[0] and NEURONS in sums[1] and
                      pd.read_parquet(published / NEURONS).equals(pd.read_parquet(rebuilt / NEURONS)))
        out.append(KindComparison(NEURONS, NEURONS, "exact", ok, same, 0.0 if ok else float("inf"),
                                  note="" if ok else "the neuron tables differ"))
    for kind in sorted(set(pm["kinds"]) | set(rm["kinds"])):
        if kind not in pm["kinds"] or kind not in rm["kinds"]:
            where = "the rebuild" if kind not in rm["kinds"] else "the published build"
            out.append(KindComparison(kind, (pm["kinds"].get(kind) or rm["kinds"][kind])["file"],
                                      "exact", False, False, float("inf"), note=f"missing in {where}"))
            continue
        entry = pm["kinds"][kind]
        fname = entry["file"]
        if sums[0].get(fname) == sums[1].get(fname):
            out.append(KindComparison(kind, fname, "identical bytes", True, True, 0.0))
            continue
        if entry["format"] == "npz-sparse":
            a, b = sp.load_npz(published / fname).tocsr(), sp.load_npz(rebuilt / fname).tocsr()
            out.append(_compare_sparse(kind, fname, a, b, rtol, atol, rule))
        else:
            a = np.load(published / fname, mmap_mode="r", allow_pickle=False)
            b = np.load(rebuilt / fname, mmap_mode="r", allow_pickle=False)
            norm = NORM_TOLERANCES.get(kind)
            out.append(_compare_dense(kind, fname, a, b, rtol, atol,
                                      rule if norm is None else f"relative Frobenius <= {norm:g}",
                                      block, norm))
    return out


def _read(directory: Path) -> dict:
    return json.loads((directory / MANIFEST).read_text("utf-8"))


def _exact(dtype: np.dtype) -> bool:
    return not np.issubdtype(dtype, np.inexact)


def _compare_dense(kind, fname, a, b, rtol, atol, rule, block, norm=None) -> KindComparison:
    # a: published, b: rebuilt
    if a.shape != b.shape or a.dtype != b.dtype:
        return KindComparison(kind, fname, rule, False, False, float("inf"),
                              note=f"published {a.dtype}{list(a.shape)}, rebuilt {b.dtype}{list(b.shape)}")
    exact = _exact(a.dtype)
    worst, outside, sq_diff, sq_ref = 0.0, 0, 0.0, 0.0
    for start in range(0, max(len(a), 1), block):
        x = np.asarray(a[start:start + block])
        y = np.asarray(b[start:start + block])
        if exact:
            bad = x != y
            if bad.any():
                worst = max(worst, float(np.max(np.abs(x[bad].astype(np.float64) - y[bad]))))
                outside += int(bad.sum())
            continue
        x64, y64 = x.astype(np.float64), y.astype(np.float64)
        nan_x, nan_y = np.isnan(x64), np.isnan(y64)
        if (nan_x != nan_y).any():
            worst, outside = float("inf"), outside + int((nan_x != nan_y).sum())
        both = ~(nan_x | nan_y)
        diff = np.abs(x64[both] - y64[both])
        if diff.size:
            worst = max(worst, float(diff.max()))
            outside += int((diff > atol + rtol * np.abs(x64[both])).sum())
            sq_diff += float(np.sum(diff ** 2))
            sq_ref += float(np.sum(x64[both] ** 2))
    if norm is not None and not exact and worst != float("inf"):
        rel = (sq_diff ** 0.5) / (sq_ref ** 0.5) if sq_ref > 0 else (0.0 if sq_diff == 0 else float("inf"))
        return KindComparison(kind, fname, rule, rel <= norm, False, worst, rel_norm_diff=rel)
    return KindComparison(kind, fname, "exact" if exact else rule, outside == 0, False, worst, outside)


def _compare_sparse(kind, fname, a, b, rtol, atol, rule) -> KindComparison:
    if a.shape != b.shape or a.dtype != b.dtype:
        return KindComparison(kind, fname, rule, False, False, float("inf"),
                              note=f"published {a.dtype}{list(a.shape)}, rebuilt {b.dtype}{list(b.shape)}")
    exact = _exact(a.dtype)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    diff = abs(a64 - b64).tocsr()
    if np.isnan(diff.data).any():  # sparse kinds hold no NaN; if one does, it fails
        diff.data = np.nan_to_num(diff.data, nan=np.inf)
    worst = float(diff.max()) if diff.nnz else 0.0
    if exact:
        outside = int((diff.data != 0).sum())
    else:
        excess = (diff - rtol * abs(a64)).tocsr()
        outside = int((excess.data > atol).sum())
    return KindComparison(kind, fname, "exact" if exact else rule, outside == 0, False, worst, outside)


def _point_latest(folder: Path, version: str) -> None:
    atomic_write_text(folder / LATEST, version + "\n")
