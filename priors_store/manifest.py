"""The manifest of an artifact directory ``<root>/<name>/<version>/``: what a version names and how
a manifest is checked.

**A version names a recipe, not bytes.** The version id is the first 16 hex digits of the sha256
over the canonical JSON of the artifact's recipe (:func:`recipe`): the population (how it was
chosen, plus the sha256 of its sorted nucleus ids), the source snapshot (its id, provenance and
content hash, and the activity snapshot's identity and content hash when spikes were joined from
one), every derivation parameter, and :data:`DERIVATION_VERSION`, a constant bumped by hand when
derivation code changes results. Floating-point results differ in their last bits between CPUs,
BLAS builds and thread counts; the recipe does not, so the same recipe has the same version on
every machine, and a version a paper cites can be rebuilt and checked elsewhere
(:func:`~.verification.verify` with ``rebuild=True``, which compares with
:func:`~.comparison.compare_builds`).

Each file's sha256 stays in the manifest (integrity: loaders check every file), and the manifest
seals what is not part of the recipe (kinds with their stats, the file list with sizes and
sha256) with ``content_sha256`` (:func:`content_digest`). The loader re-derives both
(:func:`check_manifest`), so an edited manifest (a kind mapped to another file, changed
provenance, parameters or stats, another version) is refused. ``created`` and ``code_version``
are not covered.

Manifests of ``manifest_version`` 1 (before recipe versions) still load: their version is checked
with the formula they were written with (:func:`content_version`, a hash of the files' content).
"""

from __future__ import annotations

import functools
import hashlib
import json
from importlib import resources
from pathlib import Path

import jsonschema

from .errors import ArtifactIntegrityError

__all__ = ["DERIVATION_VERSION", "KIND_SUFFIX", "MANIFEST", "MANIFEST_VERSION", "NEURONS",
           "canonical_json", "check_manifest", "content_digest", "content_version",
           "manifest_schema", "nucleus_ids_digest", "recipe", "recipe_version", "validate_manifest"]

#: Version of the derivation code, part of every recipe. Bump it by hand (a new string) in the
#: change that makes any derivation (priors_store/derive, pipeline.py) give other results than
#: its float rounding: a build would otherwise publish other numbers under an existing version,
#: which the re-publish check refuses. Not the git commit: a commit changes without changing
#: results, and a version must be rebuildable from a release of the code.
DERIVATION_VERSION = "2"  # "2": the signed-connectome kinds (issue 24)

#: The manifest format this code writes (1: version = hash of the files; 2: version = the recipe).
MANIFEST_VERSION = 2

MANIFEST = "manifest.json"
#: The neuron order of every artifact (a table, not a kind).
NEURONS = "neurons.parquet"


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
