"""Priors that travel: push artifacts to, and pull them from, any fsspec URL (``file://``,
``s3://``, ...), with a checked local cache.

Remote layout under a base URL (e.g. ``s3://bucket/priors``)::

    <base>/<name>/<version>/manifest.json         written ONCE, create-only: publishes the version
    <base>/<name>/<version>/<build>/<file>...     the files of the build that manifest describes
    <base>/index/<name>.json                      per-name index (derived; remote_index.py)
    <base>/index.json                             listing of every name (derived)

``<build>`` is the first 16 hex digits of the sha256 of the manifest's bytes (which seal every
file's sha256). Remotes written before builds had prefixes hold the files beside the manifest
(``<base>/<name>/<version>/<file>``); they are read as they are.

**Append-only.** An object that exists is never overwritten: files and manifests are written
create-only (S3 ``If-None-Match: *``; ``file://``: a temporary hard-linked onto the final name;
:mod:`.remote_fs`). A push stages its files under its build's prefix and publishes them with one
create-only write of ``<version>/manifest.json``. So

- a pusher killed at any point leaves at most an unpublished staging prefix (and hidden
  temporaries): the version is published completely or not at all; a later push of the same
  build resumes (objects already there are checked: sha256, not trusted by name);
- two pushes of one version at once (two builds of a recipe) end with exactly one published build:
  the first manifest written wins; the other push finds the manifest there, checks the winner's
  files are all present with their sizes (their sha256 are checked by every pull), logs that the
  remote build is kept, and removes its own staging prefix;
- a version already published is never uploaded again: pushing it twice uploads nothing; one whose
  manifest is not valid for it, or whose files are missing, is refused with :class:`RemoteError`
  (never repaired by overwriting: remove it by hand).

**Index.** ``index/<name>.json`` and ``index.json`` are derived from the manifests, never trusted:
a pull of ``latest`` lists the published manifests itself and takes the newest *build* (the
manifest's own ``created``, ties by the larger version id; :data:`.remote_index.ORDER`), skipping
(with a warning) manifests that are refused. Each push re-derives its name's index from the
manifests and rewrites the listing until re-deriving after the write agrees with what was written
(so concurrent pushes of different names or versions are all listed); an index of the wrong shape,
of wrong-typed JSON, over 16 MiB, or listing other versions than the manifests is repaired.
:func:`reindex` re-derives every name.

**Pulling and the cache.** ``pull``/``load(URL)`` download into
``<cache setting>/priors/<scheme>[@<endpoint>]/<host>/<path>/<name>/<version>/``. The manifest
comes first (at most 4 MiB); its name and version must be the ones asked for, its version the hash
of its own recipe and ``content_sha256`` that of its kinds and files. Every file is fetched into a
temporary sibling folder (its listed size checked first), the folder is checked with
:func:`~.verification.verify` (sizes and sha256 of every file) and only then renamed into place. A cached
copy is checked the same way before it is used (:mod:`.cache`); a damaged one (a file changed,
truncated, missing or added, a symbolic link anywhere in it) is repaired, re-using the files that
are still right. When the remote is asked (``latest``, ``cxp priors pull``, a damaged copy) the
cached manifest must be byte-identical to the published one; a complete cached copy of *another*
build of the version is refused (a published version never changes: one of the two was altered).

**Offline.** ``load(URL@VERSION)`` of a pinned version (a full id or a prefix of a cached one)
whose cached copy checks out makes no remote call. ``NAME`` / ``NAME@latest`` asks the remote;
when it cannot be reached, the ``latest`` last seen there (``<cache>/.../<name>/latest``) is used
with a logged warning, and :class:`RemoteUnavailableError` raised when there is none (or its copy
is damaged).

**A full disk** (``ENOSPC``, ``EDQUOT``) is one line naming the file and "No space left on device".
Pulling: a :class:`.cache.CacheError` naming the cached file that could not be written; the
temporary folder is removed, so nothing partial is cached, and a copy cached before (another
version, the ``latest`` pointer, a damaged copy being repaired) is left as it was. Pushing to
``file://``: a :class:`RemoteError` naming the remote file; a version is published only by its
manifest, so nothing is published, and the next push reuses what was staged. When the remote's
index cannot be written after publishing, the error says the version is published complete.

**Credentials** come from fsspec and the backend's own configuration (for S3: ``AWS_*``
environment variables, ``~/.aws`` profiles, instance roles). URLs carrying ``user:password@`` are
refused without being echoed; ``storage_options`` are passed to fsspec as they are and never
written to a file or a log.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectome_priors.kernel.files import atomic_write_text, temp_sibling
from connectome_priors.kernel.pause import pause

from .cache import CacheError, cache_dir, cached_versions, check, guard, install, read_latest, \
    reusable, sweep
from .catalog import resolve_version
from .errors import ArtifactIntegrityError, ArtifactNotFoundError
from .manifest import MANIFEST
from .names import LATEST, NAME, VERSION_ID, VERSION_PREFIX, parse_ref
from .prior import Prior
from .remote_fs import DISK_FULL, MANIFEST_LIMIT, Remote, RemoteError, RemoteIndexError, \
    RemoteUnavailableError, is_url, public_url, reason, refuse_credentials
from .remote_index import INDEX, INDEX_ATTEMPTS, INDEX_DIR, RESERVED, build_id, latest, \
    listing, name_index, parse_manifest, scan, settle
from .remote_index import reindex as _reindex
from .verification import verify

__all__ = ["INDEX", "INDEX_ATTEMPTS", "CacheError", "PullResult", "PushResult", "RemoteError",
           "RemoteIndexError", "RemoteUnavailableError", "cache_dir", "is_url", "load_url", "pull",
           "push", "reindex", "split_url"]

log = logging.getLogger(__name__)

_public = public_url  # the name earlier code and tests use


@dataclass(frozen=True)
class PushResult:
    """What one push did."""

    url: str
    """Remote folder of the version (credentials removed)."""
    name: str
    version: str
    uploaded: tuple[str, ...]
    """Files uploaded (manifest included); empty when this push published nothing."""
    bytes: int
    """Bytes uploaded."""
    index_written: bool
    """Whether an index had to be (re)written."""
    published: bool = True
    """Whether this push published the version (``False``: it was there, or another push of the
    same version published first)."""
    same_build: bool = True
    """Whether the published build has this build's files (same sha256); ``False``: another build
    of the same recipe is kept."""


@dataclass(frozen=True)
class PullResult:
    """What one pull did."""

    url: str
    name: str
    version: str
    directory: Path
    """The verified copy in the local cache."""
    downloaded: bool
    """False when the cached copy was used (no file transferred)."""
    repaired: tuple[str, ...] = ()
    """What was wrong with the cached copy that this pull replaced (``<file>: <what>``)."""


# --------------------------------------------------------------------------------------- URLs


def split_url(url: str, version: str | None = None) -> tuple[str, str, str]:
    """Split ``BASE/NAME[@VERSION]`` into (base, name, version); ``version`` (if not ``latest``)
    must agree with one given in the URL.

    Raises
    ------
    RemoteError
        Credentials in the URL, a name that is not 1-100 letters, digits, '_', '.', '-' (or is
        ``index``/``index.json``), a version that is not ``latest`` or 1-16 hex digits.
    """
    refuse_credentials(url)
    public = public_url(url)
    shown = public if len(public) <= 200 else public[:197] + "..."
    base, _, ref = url.rstrip("/").rpartition("/")
    name, given = parse_ref(ref)
    if "@" not in ref:
        given = version or LATEST
    elif version not in (None, LATEST, given):
        raise RemoteError(f"{shown} pins version {given[:40]!r} but version {version[:40]!r} was "
                          "also asked for; give one of them", url=public)
    if not base or "://" not in url or not NAME.match(name) or name in RESERVED:
        raise RemoteError(f"{shown!r} is not BASE_URL/NAME[@VERSION] (e.g. "
                          "s3://bucket/priors/field_6_6_2@25349cb7): NAME is 1-100 letters, "
                          "digits, '_', '.', '-', not starting with '.', and not 'index' or "
                          "'index.json'", url=public)
    if given != LATEST and not VERSION_PREFIX.match(given):
        raise RemoteError(f"{shown}: version {given[:40]!r} is not a version id: give 'latest' "
                          "or 1-16 hex digits (a prefix of a version)", url=public)
    return base, name, given


def _locate(present: Mapping[str, int], name: str, version: str, build: str, path: str) -> str | None:
    """The key of a published build's file: under its build prefix, or (remotes written before
    build prefixes) beside the manifest; ``None`` when neither exists."""
    for rel in (f"{name}/{version}/{build}/{path}", f"{name}/{version}/{path}"):
        if rel in present:
            return rel
    return None


# ---------------------------------------------------------------------------------------- push


def push(ref: str, url: str, *, root: str | os.PathLike | None = None,
         storage_options: Mapping[str, Any] | None = None) -> PushResult:
    """Upload local artifact ``NAME[@VERSION]`` to the base ``url`` (staged, then published by one
    create-only manifest write) and list it in the remote index.

    The local copy is verified (every sha256) first. A version already on the remote is neither
    uploaded nor overwritten (also when it is another machine's build of the same recipe, or when
    another push of it publishes first while this one runs).

    Raises
    ------
    ArtifactIntegrityError
        The local artifact does not match its manifest.
    RemoteError
        The remote holds an invalid manifest or missing files for this version (never repaired by
        overwriting), the name is reserved (``index``, ``index.json``), or the remote cannot be
        used (permission denied, missing bucket, credentials in the URL, a full disk: ``path``
        and ``errno`` set, nothing published).
    RemoteUnavailableError
        The remote could not be reached.

    Examples
    --------
    >>> push("study_5_6_8", "s3://lab-bucket/priors")          # doctest: +SKIP
    """
    refuse_credentials(url)
    name, version = parse_ref(ref)
    if name in RESERVED:
        raise RemoteError(f"an artifact named {name!r} cannot be pushed: {sorted(RESERVED)} are the "
                          "remote's own index files; rename it", url=public_url(url))
    directory = resolve_version(name, version, root=root)
    manifest = verify(directory)
    name, version = manifest["name"], manifest["version"]
    raw = (directory / MANIFEST).read_bytes()
    remote = Remote(url, storage_options)
    where = f"{remote.url}/{name}/{version}"
    build = build_id(raw)
    theirs = remote.read(name, version, MANIFEST, limit=MANIFEST_LIMIT)
    pause("push:start")
    uploaded: list[str] = []
    size, published, staged = 0, False, False
    if theirs is None:
        with _space(f"pushing {name}@{version}; nothing was published (what is "
                    f"staged under {where}/{build}/ stays unpublished and is reused by the next "
                    "push). Free space on the remote's file system and push again"):
            uploaded, size, staged = _stage(remote, directory, manifest, name, version, build)
            pause("push:before-manifest")
            created = remote.create_bytes(raw, name, version, MANIFEST,
                                          pause_at="push:mid-manifest")
        if created:
            published = True
            uploaded.append(MANIFEST)
            size += len(raw)
            log.info("%s: published, %d files uploaded, %d bytes", where, len(uploaded), size)
            pause("push:after-manifest")
        else:  # another push of this version published first
            theirs = remote.read(name, version, MANIFEST, limit=MANIFEST_LIMIT)
            if theirs is None:
                raise RemoteError(f"{where}/{MANIFEST}: appeared and vanished while this push ran "
                                  "(a published manifest is never removed by pushes); push again",
                                  url=where)
    same = True
    if not published:
        same = _check_published(remote, theirs, raw, manifest, where)
        if staged and build_id(theirs) != build:
            remote.remove(name, version, build)  # this push's unpublished staging prefix
        uploaded, size = [], 0
    warned: list[bool] = []

    def derive() -> dict:
        index = name_index(remote, name, warn=not warned)
        warned.append(True)
        return index

    state = "published" if published else "found"
    with _space(f"indexing {name}@{version}, which is {state} complete at {where}; the index is "
                "derived from the manifests (pulls do not need it). Free space on the remote's "
                "file system and push again: nothing is uploaded again, the index is rewritten"):
        wrote = settle(remote, derive, INDEX_DIR, f"{name}.json")[0]
        pause("push:after-index")
        wrote = settle(remote, lambda: listing(remote), INDEX)[0] or wrote
    return PushResult(where, name, version, tuple(uploaded), size, wrote, published, same)


@contextmanager
def _space(doing: str) -> Iterator[None]:
    """Re-raise a full remote disk (:meth:`.Remote.full`) with what the push was ``doing`` and what
    that leaves: one line, ``path`` and ``errno`` kept."""
    try:
        yield
    except RemoteError as err:
        if err.errno not in DISK_FULL:
            raise
        raise RemoteError(f"{err} while {doing}", url=err.url, path=err.path,
                          errno=err.errno) from err


def _stage(remote: Remote, directory: Path, manifest: dict, name: str, version: str,
           build: str) -> tuple[list[str], int, bool]:
    """Write the build's files under ``<name>/<version>/<build>/``, create-only; objects already
    there (a killed push of this build, or one running now) are checked, not trusted.
    Returns (files uploaded, bytes, whether anything is staged)."""
    present = remote.listing(name, version, build)
    uploaded, size = [], 0
    for i, entry in enumerate(manifest["files"], 1):
        parts = (name, version, build, entry["path"])
        rel = "/".join(parts)
        local = directory / entry["path"]
        if rel not in present and remote.create_file(local, *parts, pause_at=f"push:mid-file:{i}"):
            uploaded.append(entry["path"])
            size += entry["bytes"]
        else:
            _check_staged(remote, rel, entry, local, parts, present.get(rel))
        pause(f"push:after-file:{i}")
    return uploaded, size, bool(uploaded or present)


def _check_staged(remote: Remote, rel: str, entry: dict, local: Path, parts: tuple[str, ...],
                  size: int | None) -> None:
    """An object already at a staging key must hold the file's bytes; one that does not (not
    written by a push of this build) is replaced while the version is unpublished."""
    if (size is None or size == entry["bytes"]) and remote.sha256(rel) == entry["sha256"]:
        return
    log.warning("%s/%s: holds other bytes than %s (sha256 %s...); replacing this unpublished "
                "staging object", remote.url, rel, entry["path"], entry["sha256"][:16])
    remote.remove(*parts)
    if not remote.create_file(local, *parts) and remote.sha256(rel) != entry["sha256"]:
        raise RemoteError(f"{remote.url}/{rel}: keeps holding other bytes than {entry['path']}; "
                          "something else writes there. Nothing was published", url=remote.url)


def _check_published(remote: Remote, theirs: bytes, raw: bytes, manifest: dict, where: str) -> bool:
    """Check the version already published at ``where``: a valid manifest of it whose files are
    all there with their sizes. Returns whether it is this build (same files)."""
    name, version = manifest["name"], manifest["version"]
    try:
        their = parse_manifest(theirs, url=remote.url, name=name, version=version)
    except ArtifactIntegrityError as err:
        raise RemoteError(f"{where}/{MANIFEST} exists but is not a valid manifest of {name}@"
                          f"{version} ({str(err).split(': ', 1)[-1]}); a remote version is never "
                          f"overwritten. Check it with `cxp priors pull {where.rsplit('/', 1)[0]}@"
                          f"{version}`, and remove {where}/ by hand if it is broken", url=where) from err
    present = remote.listing(name, version)
    build = build_id(theirs)
    for entry in their["files"]:
        rel = _locate(present, name, version, build, entry["path"])
        if rel is None or present[rel] != entry["bytes"]:
            state = "missing" if rel is None else f"{present[rel]} bytes, not {entry['bytes']}"
            raise RemoteError(f"{where} is published but its file {entry['path']} is {state} on the "
                              "remote; a published version is never overwritten. It was changed "
                              f"outside `cxp priors push`: remove {where}/ by hand, then push again",
                              url=where)
    ours = sorted((f["path"], f["sha256"]) for f in manifest["files"])
    same = sorted((f["path"], f["sha256"]) for f in their["files"]) == ours
    if not same:  # the same recipe, built elsewhere (float results differ in the last bits)
        log.warning("%s: already there from another build of the same recipe (other file hashes); "
                    "the remote build is kept, nothing of this one is published. `cxp priors "
                    "verify --rebuild` compares a build with its recipe", where)
    elif theirs == raw:
        log.info("%s: already there, nothing uploaded", where)
    return same


def reindex(url: str, name: str | None = None, *,
            storage_options: Mapping[str, Any] | None = None) -> dict:
    """Re-derive the per-name index of ``name`` (every name when ``None``) and the listing at
    ``url`` from the manifests there; return the listing."""
    return _reindex(Remote(url, storage_options), name)


# ---------------------------------------------------------------------------------------- pull


def pull(url: str, version: str | None = None, *, cache: str | os.PathLike | None = None,
         storage_options: Mapping[str, Any] | None = None, check_remote: bool = True) -> PullResult:
    """Fetch ``BASE/NAME[@VERSION]`` into the local cache, or check the cached copy, and return
    where it lies.

    The cached copy is always checked (sizes, sha256, no links) and repaired when damaged. With
    ``check_remote`` (the default; ``cxp priors pull``) the remote is asked for the published
    manifest, which the cached one must equal; without it (``load(URL@VERSION)``) a pinned version
    whose cached copy checks out makes no remote call.

    Raises
    ------
    ArtifactIntegrityError
        A remote file or the manifest is missing, changed or truncated (the file is named), or the
        cached copy is a complete copy of another build of the version.
    ArtifactNotFoundError
        No such name or version at the remote.
    RemoteError
        The URL or version is malformed or carries credentials; the remote cannot be used.
    RemoteUnavailableError
        The remote could not be reached and nothing usable is cached.
    CacheError
        The cache holds a symbolic link above the version, or cannot be written (a full disk:
        ``path`` and ``errno`` set; nothing partial cached, a copy cached before kept).

    Examples
    --------
    >>> pull("s3://lab-bucket/priors/study_5_6_8").directory    # doctest: +SKIP
    """
    base, name, version = split_url(url, version)
    folder = cache_dir(base, cache=cache, storage_options=storage_options) / name
    try:
        return _pull(base, name, version, folder, cache, storage_options, check_remote)
    except OSError as err:  # the local cache: remote errors arrive as RemoteError
        if err.errno in DISK_FULL:
            raise CacheError(f"cannot write {err.filename or folder}: {reason(err)} (errno "
                             f"{err.errno}) while pulling {name}@{version} into the cache; nothing "
                             "partial was cached (a copy cached before is kept as it was). Free "
                             "space on that file system (or set the cache elsewhere: --cache DIR, "
                             "$CXP_CACHE) and pull again", path=str(err.filename or folder),
                             errno=err.errno) from err
        raise CacheError(f"cannot use the cache at {folder}: {err.strerror or err}"
                         f"{f' ({err.filename})' if err.filename else ''}",
                         path=str(err.filename or folder)) from err


def _pull(base: str, name: str, version: str, folder: Path, cache, storage_options,
          check_remote: bool) -> PullResult:
    public = f"{public_url(base.rstrip('/'))}/{name}"
    guard(folder, cache=cache)
    sweep(folder)
    if version != LATEST and not check_remote:
        cached = cached_versions(folder, version)
        if len(cached) == 1 and check(cached[0]).state == "ok":
            return PullResult(public, name, cached[0].name, cached[0], False)
    remote = Remote(base, storage_options)
    try:
        full, raw, manifest = _resolve_remote(remote, name, version)
    except RemoteUnavailableError as err:
        return _offline(err, folder, name, version, public)
    target = folder / full
    copy = check(target)
    if copy.state == "ok" and copy.manifest == raw:
        result = PullResult(public, name, full, target, False)
    elif copy.state == "ok":
        path = str(target / MANIFEST)
        raise ArtifactIntegrityError(
            f"{target}: a complete copy of another build of {name}@{full} than {public} publishes "
            "(other manifest); a published version never changes, so one of them was altered. "
            f"Remove {target} to take the remote's", path=path, expected="the published manifest",
            found="another manifest")
    else:
        if copy.state == "damaged":
            log.warning("%s: the cached copy is damaged (%s); repairing it from %s", target,
                        "; ".join(copy.problems[:3]), public)
        _download(remote, name, full, raw, manifest, target, reuse=copy.state == "damaged")
        result = PullResult(public, name, full, target, True, copy.problems)
    if version == LATEST:
        pointer = folder / LATEST
        try:
            atomic_write_text(pointer, full + "\n")
        except OSError as err:  # the copy is complete and checked; only the offline pointer is old
            if err.errno not in DISK_FULL:
                raise
            raise CacheError(f"pulled {name}@{full} into {target} (complete, verified), but cannot "
                             f"write {pointer}: {reason(err)} (errno {err.errno}); it still names "
                             "the version seen before (used only offline). Free space and pull "
                             "again (nothing is downloaded again)", path=str(pointer),
                             errno=err.errno) from err
    return result


def _offline(err: RemoteUnavailableError, folder: Path, name: str, version: str,
             public: str) -> PullResult:
    if version == LATEST:
        full = read_latest(folder)
    else:
        cached = cached_versions(folder, version)
        full = cached[0].name if len(cached) == 1 else None
    if full is None:
        raise err
    copy = check(folder / full)
    if copy.state != "ok":
        raise RemoteUnavailableError(f"{err}; the cached copy of {name}@{full} cannot be used "
                                     f"offline ({'; '.join(copy.problems[:2]) or 'absent'})",
                                     url=err.url) from err
    log.warning("%s; using %s@%s, %s", err, name, full,
                "the latest seen there before (from the cache)" if version == LATEST
                else "the cached copy, checked against its own manifest")
    return PullResult(public, name, full, folder / full, False)


def _resolve_remote(remote: Remote, name: str, version: str) -> tuple[str, bytes, dict]:
    """(full version id, published manifest bytes, manifest) that ``version`` (``latest``, an id
    or a prefix) means at the remote, read from the manifests there (never from an index)."""
    if version == LATEST:
        published, refused = scan(remote, name)
        for v, why in refused.items():
            log.warning("%s/%s/%s/%s: skipped, %s", remote.url, name, v, MANIFEST, why)
        full = latest(published)
        if full is None:
            raise ArtifactNotFoundError(f"no artifact named {name!r} at {remote.url}"
                                        f"{f' ({len(refused)} refused manifest(s))' if refused else ''}"
                                        " (push one with `cxp priors push`)", name=name,
                                        version=version)
        return full, published[full].raw, published[full].manifest
    full = version
    if not VERSION_ID.match(version):
        matches = sorted({rel.split("/")[1] for rel in remote.listing(name)
                          if rel.count("/") == 2 and rel.endswith("/" + MANIFEST)
                          and VERSION_ID.match(rel.split("/")[1])
                          and rel.split("/")[1].startswith(version)})
        if len(matches) != 1:
            raise ArtifactNotFoundError(f"artifact {name!r} at {remote.url} has "
                                        f"{'no' if not matches else 'several'} version(s) matching "
                                        f"{version!r}: {matches[:10]}", name=name, version=version)
        full = matches[0]
    raw = remote.read(name, full, MANIFEST, limit=MANIFEST_LIMIT)
    if raw is None:
        raise ArtifactNotFoundError(f"{remote.url}/{name}/{full}/{MANIFEST} does not exist: no such "
                                    "version (or its push has not finished)", name=name, version=full)
    return full, raw, parse_manifest(raw, url=remote.url, name=name, version=full)


def _download(remote: Remote, name: str, version: str, raw: bytes, manifest: dict, target: Path,
              *, reuse: bool) -> list[str]:
    """Fetch ``name@version`` into a temporary sibling of ``target`` (re-using the files of a
    damaged copy there that are still right), verify it, then put it in place. Returns the files
    downloaded."""
    where = f"{remote.url}/{name}/{version}"
    present = remote.listing(name, version)
    build = build_id(raw)
    target.parent.mkdir(parents=True, exist_ok=True)
    reuse = reuse and target.is_dir() and not target.is_symlink()
    tmp = temp_sibling(target)
    tmp.mkdir()
    fetched = []
    try:
        with _naming(target / MANIFEST):
            (tmp / MANIFEST).write_bytes(raw)
        for i, entry in enumerate(manifest["files"], 1):
            path = entry["path"]
            if reuse and reusable(target / path, entry):
                with _naming(target / path):
                    shutil.copyfile(target / path, tmp / path)
                continue
            rel = _locate(present, name, version, build, path)
            if rel is None:
                raise ArtifactIntegrityError(f"{where}/{path}: listed in the manifest but missing on "
                                             "the remote; refused, nothing was cached",
                                             path=f"{where}/{path}")
            if present[rel] != entry["bytes"]:
                raise ArtifactIntegrityError(
                    f"{where}/{path}: {present[rel]} bytes on the remote; the manifest says "
                    f"{entry['bytes']}; refused, nothing was cached", path=f"{where}/{path}",
                    expected=str(entry["bytes"]), found=str(present[rel]))
            with _naming(target / path):
                remote.get_file(rel, tmp / path)
            fetched.append(path)
            pause(f"pull:after-file:{i}")
        try:
            verify(tmp)
        except ArtifactIntegrityError as err:
            remote_path = f"{where}/{Path(err.path).name}"
            raise ArtifactIntegrityError(
                f"{remote_path}: {str(err).split(': ', 1)[-1]}; refused, nothing was cached",
                path=remote_path, expected=err.expected, found=err.found) from err
        with _naming(target):
            install(tmp, target)
    finally:
        if os.path.lexists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return fetched


@contextmanager
def _naming(path: Path) -> Iterator[None]:
    """A full disk while writing a file of the copy that will be ``path`` names ``path`` (a write
    reports no name, and ``shutil.copyfile`` names its source)."""
    try:
        yield
    except OSError as err:
        if err.errno in DISK_FULL:
            raise OSError(err.errno, reason(err), str(path)) from err
        raise


def load_url(url: str, version: str | None = None, *, cache: str | os.PathLike | None = None,
             storage_options: Mapping[str, Any] | None = None) -> Prior:
    """:func:`~.reader.load` for a URL ``BASE/NAME[@VERSION]``: :func:`pull` (a pinned version
    whose cached copy checks out loads offline), then open the cached copy as a local artifact is
    opened (:meth:`Prior.open <.prior.Prior.open>`; its manifest must name the cache folders
    ``NAME/VERSION`` it lies in)."""
    result = pull(url, version, cache=cache, storage_options=storage_options, check_remote=False)
    return Prior.open(result.directory)
