"""Verify a published artifact directory against its manifest, and (optionally) against a rebuild.

:func:`verify` checks the manifest against its schema and the build's rules
(:func:`~.manifest.check_manifest`), then every listed file's presence, size, ``.npy`` header and
sha256; :func:`verify_rebuild` builds the recipe again and compares every kind
(:func:`~.comparison.compare_builds`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from connectome_priors.kernel.files import sha256_file

from .comparison import FLOAT_ATOL, FLOAT_RTOL, KindComparison, compare_builds
from .errors import ArtifactIntegrityError, PriorsError
from .manifest import MANIFEST, NEURONS, check_manifest, nucleus_ids_digest, recipe

__all__ = ["check_hash", "read_manifest", "verify", "verify_rebuild"]


def verify(directory: str | os.PathLike, *, hashes: bool = True, rebuild: bool = False,
           store=None, rtol: float = FLOAT_RTOL, atol: float = FLOAT_ATOL) -> dict:
    """Check an artifact directory against its manifest; return the manifest.

    With ``hashes=False`` only presence and sizes are checked (what :meth:`Prior.open <.prior.Prior.open>` does up front;
    it checks each file's sha256 when that file is first read).

    The manifest itself is checked as the build wrote it (:func:`~.manifest.check_manifest`):
    each kind maps to its own file, the kinds and files hash to ``content_sha256``, and the recipe
    re-derives to the recorded version, which must also be the folder's name. With ``hashes``, the
    nucleus ids of ``neurons.parquet`` must hash to the recipe's ``nucleus_ids_sha256``.

    With ``rebuild=True`` the recipe is also built again from ``store`` (a :class:`Store`, its
    folder, or ``None`` for the configured store) and every kind compared with the published
    file (:func:`verify_rebuild`): integer kinds (``connectome``, ``modules_*`` labels) and the
    neuron table exactly, float kinds within ``rtol`` (default 1e-6) and ``atol`` (default 1e-9):
    ``|published - rebuilt| <= atol + rtol * |published|``, except ``precision`` (GraphicalLassoCV,
    an iterative fit that may stop unconverged): relative Frobenius difference <= 1e-2
    (:data:`~.comparison.NORM_TOLERANCES`). This catches what hashes cannot: a
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
            check_hash(path, entry["sha256"])
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
    import tempfile

    from connectome_priors.etl.store import Store  # only for rebuilds

    from .pipeline import rebuild  # the build machinery, only for rebuilds

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
    import numpy.lib.format as npy_format

    try:
        with open(path, "rb") as fh:
            major, _ = npy_format.read_magic(fh)
            read = npy_format.read_array_header_1_0 if major == 1 else npy_format.read_array_header_2_0
            shape, _, dtype = read(fh)
    except Exception as err:  # NumPy's header parser raises many kinds on bad input
        raise ArtifactIntegrityError(f"{path}: not a readable .npy ({err})", path=str(path),
                                     expected="a .npy file", found=str(err)) from err
    found = {"shape": list(shape), "dtype": str(dtype)}
    for field in ("shape", "dtype"):
        if field in entry and entry[field] != found[field]:
            raise ArtifactIntegrityError(
                f"{path}: {field} {found[field]} differs from the manifest's {entry[field]}",
                path=str(path), expected=str(entry[field]), found=str(found[field]))


def check_hash(path: Path, expected: str) -> None:
    """Raise :class:`ArtifactIntegrityError` unless ``path``'s sha256 is ``expected``."""
    digest = sha256_file(path)
    if digest != expected:
        raise ArtifactIntegrityError(f"{path}: sha256 {digest[:16]}... differs from the manifest's "
                                     f"{expected[:16]}...: the file was changed",
                                     path=str(path), expected=expected, found=digest)
