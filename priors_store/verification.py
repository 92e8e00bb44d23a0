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

from .artifact import (_NAME, FLOAT_ATOL, FLOAT_RTOL, LATEST, MANIFEST, MAX_NAME, NEURONS,
                       KindComparison, check_manifest, compare_builds, nucleus_ids_digest, recipe,
                       sha256_file, shown)
from .config import artifact_root
from .errors import ArtifactIntegrityError, ArtifactNotFoundError, PriorsError

__all__ = ["Prior", "load", "verify", "verify_rebuild", "read_manifest", "list_artifacts",
           "resolve_version", "parse_ref", "check_ref"]

_VERSION = re.compile(r"^[0-9a-f]{1,16}\Z")  # \Z: "$" would also match before a final newline

As = Literal["numpy", "sparse", "torch"]


def parse_ref(ref: str) -> tuple[str, str]:
    """Split ``NAME[@VERSION]`` into (name, version); version defaults to ``latest``."""
    name, _, version = ref.partition("@")
    return name, version or LATEST


def check_ref(name: str, version: str = LATEST, *, root: str | os.PathLike | None = None) -> None:
    """Refuse a name or version that is no plain artifact folder name (``/``, ``..``, glob
    characters, more than 100 characters, a version not 1 to 16 hex digits) before anything is
    read. ``root`` only names the artifact root in the message."""
    if not _NAME.match(name) or not (version == LATEST or _VERSION.match(version)):
        bad = ("name", name) if not _NAME.match(name) else ("version", version)
        raise PriorsError(f"artifact {bad[0]} {shown(bad[1])} is not allowed: a name is at most "
                          f"{MAX_NAME} letters, digits, '_', '.', '-' (no '/', no glob characters, "
                          "not starting with '.'), a version 1 to 16 hex digits; refs read only "
                          f"inside the artifact root"
                          + (f" {artifact_root(root)}" if root is not None else ""))


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


def verify(directory: str | os.PathLike, *, hashes: bool = True, rebuild: bool = False,
           store=None, rtol: float = FLOAT_RTOL, atol: float = FLOAT_ATOL) -> dict:
    """Check an artifact directory against its manifest; return the manifest.

    With ``hashes=False`` only presence and sizes are checked (what :func:`load` does up front;
    it checks each file's sha256 when that file is first read).

    The manifest itself is checked as the build wrote it (:func:`~.artifact.check_manifest`):
    each kind maps to its own file, the kinds and files hash to ``content_sha256``, and the recipe
    re-derives to the recorded version, which must also be the folder's name. With ``hashes``, the
    nucleus ids of ``neurons.parquet`` must hash to the recipe's ``nucleus_ids_sha256``.

    With ``rebuild=True`` the recipe is also built again from ``store`` (a :class:`Store`, its
    folder, or ``None`` for the configured store) and every kind compared with the published
    file (:func:`verify_rebuild`): integer kinds (``connectome``, ``modules_*`` labels) and the
    neuron table exactly, float kinds within ``rtol`` (default 1e-6) and ``atol`` (default 1e-9):
    ``|published - rebuilt| <= atol + rtol * |published|``, except ``precision`` (GraphicalLassoCV,
    an iterative fit that may stop unconverged): relative Frobenius difference <= 1e-2
    (:data:`~.artifact.NORM_TOLERANCES`). This catches what hashes cannot: a
    file replaced by another recipe's build with its sha256 written into the manifest.

    Raises
    ------
    ArtifactIntegrityError
        Naming the first file that is missing, unlisted, of another size, shape, dtype or sha256,
        the manifest field that differs from what the build wrote, or (``rebuild``) the first kind
        whose rebuild differs beyond the tolerances, with its largest difference.

    Examples
    --------
    >>> verify(resolve_version("study_5_6_8", "25349cb7"), rebuild=True)  # doctest: +SKIP
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
    if hashes:
        _check_nucleus_ids(directory, manifest)
    if rebuild:
        verify_rebuild(directory, store=store, rtol=rtol, atol=atol, manifest=manifest)
    return manifest


def verify_rebuild(directory: str | os.PathLike, *, store=None, rtol: float = FLOAT_RTOL,
                   atol: float = FLOAT_ATOL, manifest: dict | None = None) -> list[KindComparison]:
    """Build the artifact's recipe again from ``store`` in a temporary folder and compare every
    kind with the published files; return the comparisons (all within the tolerances).

    Tolerances: integer kinds (``connectome``, ``modules_wiring``, ``modules_functional``) and
    ``neurons.parquet`` exactly; float kinds ``|published - rebuilt| <= atol + rtol * |published|``
    elementwise, ``rtol`` 1e-6 and ``atol`` 1e-9 by default, NaN only where the other is NaN;
    ``precision`` ``||published - rebuilt||_F <= 1e-2 * ||published||_F``. The
    store must hold the recipe's snapshot (same content hash); the rebuild's recipe must equal the
    published one (an ``activity_snapshot='auto'`` recipe resolves to the same snapshot only while
    no newer one was added). The files' sha256 are not checked here (:func:`verify` does).

    Raises
    ------
    ArtifactIntegrityError
        The first kind outside its tolerance (named, with the largest difference), or a recipe
        field the rebuild resolves differently.
    PriorsError
        The store lacks the snapshot, or this code cannot build the recipe (another derivation
        version).
    """
    import tempfile  # noqa: PLC0415

    from connectome_priors.etl.store import Store  # noqa: PLC0415 (only for rebuilds)

    from .pipeline import rebuild  # noqa: PLC0415 (the build machinery, only for rebuilds)

    directory = Path(directory)
    manifest = manifest or read_manifest(directory)
    store = store if isinstance(store, Store) else Store(store)
    ref = f"{manifest['name']}@{manifest['version']}"
    snap = manifest["source_snapshot"]
    known = store.snapshots()
    row = known[known.snapshot_id == snap["snapshot_id"]]
    if row.empty or str(row.iloc[0]["content_hash"]) != snap["content_hash"]:
        found = "absent" if row.empty else f"content hash {str(row.iloc[0]['content_hash'])[:16]}..."
        raise PriorsError(f"cannot rebuild {ref}: its recipe reads snapshot {snap['snapshot_id']} "
                          f"(content hash {snap['content_hash'][:16]}...), which is {found} in the "
                          f"store at {store.directory}; load that snapshot (`cxp etl`) or pass --store")
    with tempfile.TemporaryDirectory(prefix="cxp-rebuild-") as tmp:
        theirs = rebuild(manifest, store=store, root=tmp)
        ours = recipe({"derivation_version": "", **manifest})
        again = recipe({"derivation_version": "", **theirs})
        if manifest["manifest_version"] == 1:  # no nucleus ids and derivation version recorded
            again["population"].pop("nucleus_ids_sha256", None)
            ours["derivation_version"] = again["derivation_version"] = ""
        for field in ("derivation_version", "population", "source_snapshot", "parameters"):
            if ours[field] != again[field]:
                path = str(directory / MANIFEST)
                raise ArtifactIntegrityError(
                    f"{path}: the rebuild of {ref} resolves {field} to {json.dumps(again[field])}, "
                    f"the published recipe records {json.dumps(ours[field])}: the store does not "
                    "give the same recipe", path=path, expected=json.dumps(ours[field]),
                    found=json.dumps(again[field]))
        rebuilt = Path(tmp) / theirs["name"] / theirs["version"]
        result = compare_builds(directory, rebuilt, published_manifest=manifest,
                                rebuilt_manifest=theirs, rtol=rtol, atol=atol)
    bad = [c for c in result if not c.ok]
    if bad:
        path = str(directory / bad[0].file)
        raise ArtifactIntegrityError(
            f"{path}: differs from a rebuild of {ref}'s recipe: {bad[0].describe()}"
            + (f"; also {', '.join(c.kind for c in bad[1:])}" if len(bad) > 1 else "")
            + ". The file is not what this recipe derives (another build's, or edited)",
            path=path, expected="the rebuilt values within tolerance", found=bad[0].describe())
    return result


def _check_nucleus_ids(directory: Path, manifest: dict) -> None:
    """The neuron table's nucleus ids must be the recipe's (``population.nucleus_ids_sha256``)."""
    want = manifest["population"].get("nucleus_ids_sha256")
    if want is None or NEURONS not in {f["path"] for f in manifest["files"]}:
        return
    path = directory / NEURONS
    found = nucleus_ids_digest(pd.read_parquet(path, columns=["nucleus_id"]).nucleus_id)
    if found != want:
        raise ArtifactIntegrityError(f"{path}: its nucleus ids hash to {found[:16]}..., the recipe's "
                                     f"population.nucleus_ids_sha256 is {want[:16]}...: the neuron "
                                     "table is not the recipe's population", path=str(path),
                                     expected=want, found=found)


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
        """Version id (of the recipe; manifest_version 1: of the content)."""
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
