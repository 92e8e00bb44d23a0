"""Load, verify and list published prior artifacts.

``load`` checks the manifest against its schema and every listed file's size and sha256 before it
returns anything; matrices are then memory-mapped (copy-on-write), so opening a 15k x 15k matrix
costs no copy. ``Prior.select`` re-indexes every kind consistently for a sub-population.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .artifact import _NAME, LATEST, MANIFEST, check_manifest, sha256_file
from .config import artifact_root
from .errors import ArtifactIntegrityError, ArtifactNotFoundError, PriorsError

__all__ = ["Prior", "load", "verify", "read_manifest", "list_artifacts", "resolve_version",
           "parse_ref"]

_VERSION = re.compile(r"^[0-9a-f]{1,16}$")

As = Literal["numpy", "sparse", "torch"]


def parse_ref(ref: str) -> tuple[str, str]:
    """Split ``NAME[@VERSION]`` into (name, version); version defaults to ``latest``."""
    name, _, version = ref.partition("@")
    return name, version or LATEST


def resolve_version(name: str, version: str = LATEST, *, root: str | os.PathLike | None = None) -> Path:
    """Directory of artifact ``name`` at ``version`` (``latest`` or a version id or unique prefix)."""
    if not _NAME.match(name) or not (version == LATEST or _VERSION.match(version)):
        bad = ("name", name) if not _NAME.match(name) else ("version", version)
        raise PriorsError(f"artifact {bad[0]} {bad[1]!r} is not allowed: a name is letters, digits, "
                          "'_', '.', '-' (no '/', not starting with '.'), a version hex digits; "
                          f"refs read only inside the artifact root {artifact_root(root)}")
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
        if not _VERSION.match(version):
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


def verify(directory: str | os.PathLike, *, hashes: bool = True) -> dict:
    """Check an artifact directory against its manifest; return the manifest.

    With ``hashes=False`` only presence and sizes are checked (what :func:`load` does up front;
    it checks each file's sha256 when that file is first read).

    The manifest itself is checked as the build wrote it (:func:`~.artifact.check_manifest`):
    each kind maps to its own file, and the content re-derives to the recorded version, which
    must also be the folder's name.

    Raises
    ------
    ArtifactIntegrityError
        Naming the first file that is missing, unlisted, of another size, shape, dtype or sha256,
        or the manifest field that differs from what the build wrote.
    """
    directory = Path(directory)
    manifest = read_manifest(directory)
    listed = {f["path"]: f for f in manifest["files"]}
    present = {p.name for p in directory.iterdir()} - {MANIFEST}
    extras = sorted(present - set(listed))
    if extras:
        path = directory / extras[0]
        raise ArtifactIntegrityError(f"{path}: not listed in the manifest", path=str(path))
    for name, entry in listed.items():
        path = directory / name
        if not path.is_file():
            raise ArtifactIntegrityError(f"{path}: listed in the manifest but missing", path=str(path))
        size = path.stat().st_size
        if size != entry["bytes"]:
            raise ArtifactIntegrityError(f"{path}: {size} bytes; manifest says {entry['bytes']}",
                                         path=str(path), expected=str(entry["bytes"]), found=str(size))
        if "shape" in entry or "dtype" in entry:
            _check_npy_header(path, entry)
        if hashes:
            _check_hash(path, entry["sha256"])
    return manifest


def read_manifest(directory: str | os.PathLike) -> dict:
    """``directory``'s manifest, checked (schema, kinds -> files, version re-derived), not its files."""
    directory = Path(directory)
    mpath = directory / MANIFEST
    if not mpath.is_file():
        raise ArtifactIntegrityError(f"{mpath}: missing; {directory} is not a complete artifact",
                                     path=str(mpath))
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ArtifactIntegrityError(f"{mpath}: not valid UTF-8 JSON ({err})", path=str(mpath),
                                     expected="the JSON manifest the build wrote",
                                     found=str(err)) from err
    check_manifest(manifest, path=str(mpath), directory=directory)
    return manifest


def _check_npy_header(path: Path, entry: dict) -> None:
    import numpy.lib.format as npy_format  # noqa: PLC0415

    try:
        with open(path, "rb") as fh:
            major, _ = npy_format.read_magic(fh)
            read = npy_format.read_array_header_1_0 if major == 1 else npy_format.read_array_header_2_0
            shape, _, dtype = read(fh)
    except Exception as err:  # noqa: BLE001 - NumPy's header parser raises many kinds on bad input
        raise ArtifactIntegrityError(f"{path}: not a readable .npy ({err})", path=str(path),
                                     expected="a .npy file", found=str(err)) from err
    found = {"shape": list(shape), "dtype": str(dtype)}
    for field in ("shape", "dtype"):
        if field in entry and entry[field] != found[field]:
            raise ArtifactIntegrityError(
                f"{path}: {field} {found[field]} differs from the manifest's {entry[field]}",
                path=str(path), expected=str(entry[field]), found=str(found[field]))


def _check_hash(path: Path, expected: str) -> None:
    digest = sha256_file(path)
    if digest != expected:
        raise ArtifactIntegrityError(f"{path}: sha256 {digest[:16]}... differs from the manifest's "
                                     f"{expected[:16]}...: the file was changed",
                                     path=str(path), expected=expected, found=digest)


class Prior:
    """A loaded prior artifact: its neuron order and every kind, indexed consistently.

    Matrices are [pre, post] (rows presynaptic) like the connectome.
    """

    def __init__(self, directory: Path, manifest: dict, index: np.ndarray | None = None,
                 verified: set[str] | None = None) -> None:
        self.directory = directory
        self.manifest = manifest
        self._index = index
        self._verified = verified if verified is not None else set()
        table = pd.read_parquet(self._file("neurons.parquet"))
        self.neurons: pd.DataFrame = (table if index is None
                                      else table.iloc[index].reset_index(drop=True))
        """The neuron order: row i of every matrix is neuron i of this table."""

    @property
    def name(self) -> str:
        """Artifact name."""
        return self.manifest["name"]

    @property
    def version(self) -> str:
        """Content-derived version id."""
        return self.manifest["version"]

    @property
    def kinds(self) -> list[str]:
        """Names of the kinds this artifact holds."""
        return sorted(self.manifest["kinds"])

    def __len__(self) -> int:
        return len(self.neurons)

    def __contains__(self, kind: str) -> bool:
        return kind in self.manifest["kinds"]

    def __repr__(self) -> str:
        return f"Prior({self.name}@{self.version}, {len(self)} neurons, kinds={self.kinds})"

    def _file(self, filename: str) -> Path:
        """Path of one of the artifact's files, its sha256 checked on first use."""
        path = self.directory / filename
        if filename not in self._verified:
            sums = {f["path"]: f["sha256"] for f in self.manifest["files"]}
            if filename not in sums:
                raise ArtifactIntegrityError(f"{path}: not listed in the manifest", path=str(path))
            _check_hash(path, sums[filename])
            self._verified.add(filename)
        return path

    def _entry(self, kind: str) -> dict:
        try:
            return self.manifest["kinds"][kind]
        except KeyError:
            raise KeyError(f"artifact {self.name}@{self.version} has no kind {kind!r}; "
                           f"it has {self.kinds}") from None

    def get(self, kind: str, *, as_: As | None = None):
        """Return ``kind`` as numpy (memory-mapped), scipy.sparse CSR or a torch tensor.

        Default: numpy for dense and label kinds, sparse for sparse kinds.
        """
        entry = self._entry(kind)
        path = self._file(entry["file"])
        if entry["format"] == "npz-sparse":
            value = sp.load_npz(path).tocsr()
            if self._index is not None:
                value = value[self._index][:, self._index]
            if as_ in (None, "sparse"):
                return value
            dense = value.toarray()
        else:
            # copy-on-write map: no copy, no write to the file, writable for torch.from_numpy
            dense = np.load(path, mmap_mode="c", allow_pickle=False)
            if self._index is not None:
                dense = dense[np.ix_(self._index, self._index)] if dense.ndim == 2 else dense[self._index]
            if as_ == "sparse":
                return sp.csr_matrix(dense)
        if as_ == "torch":
            import torch  # noqa: PLC0415 (optional consumer; keeps numpy users free of torch import cost)

            return torch.from_numpy(dense)
        return dense

    __getitem__ = get

    def stats(self, kind: str) -> dict:
        """Summary numbers recorded for ``kind`` at build time (e.g. modularity Q)."""
        return dict(self._entry(kind).get("stats", {}))

    def select(self, nucleus_ids: Sequence[int]) -> Prior:
        """The sub-population ``nucleus_ids`` (in that order), every kind re-indexed alike."""
        table = pd.read_parquet(self._file("neurons.parquet"))
        base = self._index if self._index is not None else np.arange(len(table))
        position = pd.Series(np.arange(len(base)), index=table.nucleus_id.to_numpy()[base])
        wanted = pd.Index(np.asarray(nucleus_ids, dtype=np.int64))
        missing = wanted.difference(position.index)
        if len(missing):
            raise KeyError(f"{len(missing)} nucleus id(s) are not in {self.name}@{self.version}, "
                           f"e.g. {missing[:5].tolist()}")
        return Prior(self.directory, self.manifest, base[position.loc[wanted].to_numpy()],
                     self._verified)


def load(name: str, version: str = LATEST, *, root: str | os.PathLike | None = None,
         storage_options: dict | None = None) -> Prior:
    """Load artifact ``name`` at ``version`` (``latest``, a version id or a unique prefix).

    ``name`` may be a URL ``BASE/NAME[@VERSION]`` (``s3://...``, ``file://...``; fsspec
    ``storage_options``): it is downloaded into the local cache once and verified first
    (:mod:`.remote`).

    The manifest is validated and every file's presence and size checked at once; each file's
    sha256 is checked the first time its data is read, before it is returned. A tampered or
    incomplete artifact is refused with the failing file named.

    Examples
    --------
    >>> prior = load("field_6_6_2")                     # doctest: +SKIP
    >>> prior["distance_um"].shape                       # doctest: +SKIP
    (312, 312)
    """
    if "://" in name:  # a remote artifact: fetched into the cache and verified (remote.py)
        from .remote import load_url  # noqa: PLC0415 (fsspec only for remote artifacts)

        return load_url(name, version, storage_options=storage_options)
    directory = resolve_version(name, version, root=root)
    return Prior(directory, verify(directory, hashes=False))


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
