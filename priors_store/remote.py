"""Priors that travel: push artifacts to, and pull them from, any fsspec URL (``file://``,
``s3://``, ...), with a verified local cache.

Remote layout under a base URL (e.g. ``s3://bucket/priors``)::

    <base>/<name>/<version>/<file>...      the artifact's files, exactly as published locally
    <base>/<name>/<version>/manifest.json  uploaded LAST: a version exists once its manifest does
    <base>/index/<name>.json               per-name index: every version, its metadata, ``latest``
    <base>/index.json                      listing: every name with its versions and ``latest``
    <base>/.tmp/                           temporary keys of atomic index/manifest writes

**Recipe addressing.** A version id is a hash of the artifact's recipe (population, snapshot,
parameters, derivation code version; artifact.py), so a version that already has its manifest on
the remote is never uploaded again and never overwritten: pushing it twice uploads nothing. A
valid remote manifest of the same version whose files have other sha256 is another machine's
build of the same recipe (float results differ in their last bits): the remote build is kept and
a warning logged; a remote manifest that is not valid for the version is refused as a conflict.
A version without its manifest (an interrupted push) is invisible and simply uploaded again.

**Index, and concurrent pushes.** Object stores have no atomic rename and no locks, so neither
index is edited read-modify-write (two pushers would lose each other's entry). Both are *derived*
from the ground truth instead, and re-derived until stable:

1. the per-name index ``index/<name>.json`` is computed from the versions whose manifest exists
   under ``<base>/<name>/``; the listing ``index.json`` from every ``index/*.json``;
2. a writer computes the index, writes it (to a temporary key, then moved onto the final key:
   an atomic rename on ``file://``, a server-side copy on S3, whose objects are never seen
   half-written), computes it again, and repeats while the two differ.

Whoever writes last has re-derived the index *after* its write, so every version whose manifest
(and every name whose per-name index) was written before that moment is in it: two pushes of
different names, or of different versions of one name, both end up listed. This needs only
read-after-write and list-after-write consistency (S3 has had both since 2020; local files trivially).
Pushes of *different* names never write the same per-name index at all. If the index does not
settle within :data:`INDEX_ATTEMPTS` rounds (a storm of pushes), the version is still published
and the push raises :class:`RemoteIndexError`; pushing again repairs the index. Readers resolve
``latest`` from ``index/<name>.json`` and fall back to listing the manifests when it is absent.
``latest`` is the version with the newest manifest ``created`` time (ties: the larger id), a
choice every pusher computes alike.

**Pulling and the cache.** ``pull``/``load(URL)`` download into
``<cache setting>/priors/<scheme>[@<endpoint>]/<host>/<path>/<name>/<version>/`` (the ``cache``
setting: ``$CXP_CACHE``, else ``~/.cache/connectome-priors``). The manifest comes first; its
name and version must be the ones asked for, its version must equal the hash of its own
recipe and ``content_sha256`` that of its kinds and files (so an edited manifest is refused), then every listed file is fetched into a temporary
sibling folder, which is checked with :func:`~.load.verify` (sizes and sha256 of every file) and
only then renamed into place. A tampered, truncated or missing remote file is refused with
:class:`~.errors.ArtifactIntegrityError` naming it, and nothing is cached.

**Offline.** A pinned version (``NAME@VERSION``, a full id or a prefix of a cached one) that is
cached is loaded without any remote call. ``NAME`` / ``NAME@latest`` asks the remote's index; when
the remote cannot be reached it falls back, with a logged warning, to the ``latest`` last seen
from that remote (``<cache>/.../<name>/LATEST``), and raises :class:`RemoteUnavailableError`
when there is none.

**Credentials** come from fsspec and the backend's own configuration (for S3: ``AWS_*``
environment variables, ``~/.aws`` profiles, instance roles; fsspec's config files and
``FSSPEC_S3_*`` variables). ``storage_options`` are passed to fsspec as they are and are never
written to a file or a log; logged URLs have any ``user:password@`` removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from connectome_priors.kernel.errors import TransientError
from connectome_priors.kernel.files import atomic_write_text, temp_sibling
from connectome_priors.kernel.settings import resolve

from .artifact import LATEST, MANIFEST, check_manifest
from .errors import ArtifactIntegrityError, ArtifactNotFoundError, PriorsError
from .load import Prior, parse_ref, resolve_version, verify

__all__ = ["INDEX", "INDEX_ATTEMPTS", "PullResult", "PushResult", "RemoteError", "RemoteIndexError",
           "RemoteUnavailableError", "cache_dir", "is_url", "load_url", "pull", "push", "reindex",
           "split_url"]

log = logging.getLogger(__name__)

#: The listing of every name and version at a base URL.
INDEX = "index.json"
#: Folder of the per-name indices at a base URL.
INDEX_DIR = "index"
#: Folder of temporary keys at a base URL.
TMP_DIR = ".tmp"
#: Rounds of write-then-re-derive before a push gives up on settling an index.
INDEX_ATTEMPTS = 20
_FORMAT = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class RemoteError(PriorsError):
    """A remote artifact location could not be used (unknown protocol, missing package, conflict)."""

    def __init__(self, message: str, *, url: str) -> None:
        self.url = url
        super().__init__(message)


class RemoteUnavailableError(RemoteError, TransientError):
    """The remote could not be reached (connection refused, timeout); worth retrying later."""


class RemoteIndexError(RemoteError, TransientError):
    """The version was published but the remote index did not settle; push again to repair it."""


@dataclass(frozen=True)
class PushResult:
    """What one push did."""

    url: str
    """Remote folder of the version (credentials removed)."""
    name: str
    version: str
    uploaded: tuple[str, ...]
    """Files uploaded (manifest included); empty when the version was already there."""
    bytes: int
    """Bytes uploaded."""
    index_written: bool
    """Whether an index had to be (re)written."""


@dataclass(frozen=True)
class PullResult:
    """What one pull did."""

    url: str
    name: str
    version: str
    directory: Path
    """The verified copy in the local cache."""
    downloaded: bool
    """False when the version was already cached (no file transferred)."""


# --------------------------------------------------------------------------------------- URLs


def is_url(ref: str) -> bool:
    """Whether ``ref`` names a remote location (``scheme://...``) rather than a local artifact."""
    return "://" in str(ref)


def _public(url: str) -> str:
    """``url`` without any ``user:password@`` (for messages and logs)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()


def split_url(url: str, version: str | None = None) -> tuple[str, str, str]:
    """Split ``BASE/NAME[@VERSION]`` into (base, name, version); ``version`` (if not ``latest``)
    must agree with one given in the URL."""
    base, _, ref = url.rstrip("/").rpartition("/")
    name, given = parse_ref(ref)
    if "@" not in ref:
        given = version or LATEST
    elif version not in (None, LATEST, given):
        raise RemoteError(f"{_public(url)} pins version {given!r} but version {version!r} was "
                          "also asked for; give one of them", url=_public(url))
    if not base or "://" not in url or not _NAME.match(name):
        raise RemoteError(f"{_public(url)!r} is not BASE_URL/NAME[@VERSION] (e.g. "
                          "s3://bucket/priors/field_6_6_2@25349cb7)", url=_public(url))
    return base, name, given


def cache_dir(base: str, *, cache: str | os.PathLike | None = None,
              storage_options: Mapping[str, Any] | None = None) -> Path:
    """Local cache folder of the remote ``base``:
    ``<cache>/priors/<scheme>[@<endpoint>]/<host>/<path>``."""
    parts = urlsplit(base)
    scheme = parts.scheme or "file"
    endpoint = _endpoint(storage_options)
    if endpoint:
        scheme += "@" + urlsplit(endpoint).netloc.rsplit("@", 1)[-1]
    host = parts.netloc.rsplit("@", 1)[-1]
    pieces = [_safe(p) for p in [scheme, host, *parts.path.split("/")] if p not in ("", ".", "..")]
    return resolve("cache", cache) / "priors" / Path(*pieces)


def _endpoint(options: Mapping[str, Any] | None) -> str | None:
    options = options or {}
    client = options.get("client_kwargs") or {}
    return options.get("endpoint_url") or client.get("endpoint_url")


def _safe(piece: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@-]", "_", piece)


def _filesystem(base: str, storage_options: Mapping[str, Any] | None):
    """(fsspec filesystem, base path) of ``base``; no remote call is made here."""
    try:
        import fsspec  # noqa: PLC0415 (only for remote artifacts)
    except ImportError as err:
        raise RemoteError("remote artifacts need fsspec: pip install fsspec (and s3fs for s3://: "
                          "pip install 'connectome-priors[s3]')", url=_public(base)) from err
    try:
        fs, path = fsspec.core.url_to_fs(base, **dict(storage_options or {}))
    except ImportError as err:
        raise RemoteError(f"{_public(base)}: the package for this protocol is not installed "
                          f"({err}); for s3:// install 'connectome-priors[s3]'",
                          url=_public(base)) from err
    except ValueError as err:
        raise RemoteError(f"{_public(base)}: {err}", url=_public(base)) from err
    return fs, path.rstrip("/")


def _is_local(fs) -> bool:
    from fsspec.implementations.local import LocalFileSystem  # noqa: PLC0415

    return isinstance(fs, LocalFileSystem)


def _unreachable(err: BaseException) -> bool:
    """Whether ``err`` says the remote could not be reached (as opposed to missing or refused)."""
    if isinstance(err, (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError,
                        NotADirectoryError)):
        return False
    if isinstance(err, (ConnectionError, TimeoutError)):
        return True
    return any("Connection" in c.__name__ or "Timeout" in c.__name__ for c in type(err).__mro__)


class _Remote:
    """One base URL: reads and writes of its keys, with unreachable-remote errors translated."""

    def __init__(self, base: str, storage_options: Mapping[str, Any] | None) -> None:
        self.url = _public(base.rstrip("/"))
        self.fs, self.root = _filesystem(base, storage_options)

    def key(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 (translated when it means "unreachable")
            if _unreachable(err):
                raise RemoteUnavailableError(f"cannot reach {self.url} ({what}): {err}. Check the "
                                             "URL, the endpoint and the network; a pinned, cached "
                                             "version loads offline", url=self.url) from err
            raise

    def read(self, *parts: str) -> bytes | None:
        """A key's bytes, ``None`` when it does not exist."""
        try:
            return self.call(f"read {'/'.join(parts)}", self.fs.cat_file, self.key(*parts))
        except FileNotFoundError:
            return None

    def exists(self, *parts: str) -> bool:
        return self.call(f"look up {'/'.join(parts)}", self.fs.exists, self.key(*parts))

    def glob(self, *parts: str) -> list[str]:
        """Keys matching a pattern (listings refreshed: never from fsspec's listing cache)."""
        self.fs.invalidate_cache()
        found = self.call(f"list {'/'.join(parts)}", self.fs.glob, self.key(*parts))
        return sorted(str(p)[len(self.root) + 1:] for p in found)

    def _parent(self, key: str) -> None:
        if _is_local(self.fs):  # object stores have no folders; never create buckets
            self.fs.makedirs(key.rsplit("/", 1)[0], exist_ok=True)

    def put_file(self, local: Path, *parts: str) -> None:
        key = self.key(*parts)
        self._parent(key)
        self.call(f"upload {'/'.join(parts)}", self.fs.put_file, str(local), key)

    def put_atomic(self, data: bytes, *parts: str) -> None:
        """Write ``data`` to a temporary key, then move it onto the final key: readers see the old
        object or the whole new one, never a part."""
        key = self.key(*parts)
        tmp = self.key(TMP_DIR, f"{uuid.uuid4().hex}-{parts[-1]}")
        self._parent(tmp)
        self._parent(key)
        self.call(f"write {'/'.join(parts)}", self.fs.pipe_file, tmp, data)
        try:
            self.call(f"write {'/'.join(parts)}", self.fs.mv, tmp, key)
        finally:
            if _is_local(self.fs) and Path(tmp).exists():
                Path(tmp).unlink()

    def get_file(self, local: Path, *parts: str) -> None:
        self.call(f"download {'/'.join(parts)}", self.fs.get_file, self.key(*parts), str(local))


# ---------------------------------------------------------------------------------- manifests


def _check_manifest(manifest: Any, *, url: str, name: str, version: str) -> None:
    """Refuse a remote manifest before downloading anything: not the artifact asked for, a file
    name that is not a plain name, or content that does not derive to its version (edited)."""
    where = f"{url}/{name}/{version}/{MANIFEST}"
    try:
        found = (manifest["name"], manifest["version"])
        paths = [f["path"] for f in manifest["files"]]
    except (KeyError, TypeError) as err:
        raise ArtifactIntegrityError(f"{where}: not an artifact manifest ({err!r} missing); refused",
                                     path=where) from err
    if found != (name, version):
        raise ArtifactIntegrityError(f"{where}: describes {found[0]}@{found[1]}, not "
                                     f"{name}@{version}; refused", path=where,
                                     expected=f"{name}@{version}", found=f"{found[0]}@{found[1]}")
    bad = [p for p in paths if not isinstance(p, str) or p != Path(p).name or p in (".", "..")]
    if bad:
        raise ArtifactIntegrityError(f"{where}: lists file {bad[0]!r}, which is not a plain file "
                                     "name; refused", path=where, found=str(bad[0]))
    check_manifest(manifest, path=where)  # schema, kinds -> files, content sealed, recipe -> version


def _summary(manifest: Mapping[str, Any], raw: bytes) -> dict:
    """A version's entry in the per-name index."""
    return {"created": manifest.get("created"), "manifest_sha256": hashlib.sha256(raw).hexdigest(),
            "n_neurons": manifest["population"].get("n_neurons"),
            "snapshot_id": manifest["source_snapshot"].get("snapshot_id"),
            "kinds": sorted(manifest["kinds"])}


def _latest(versions: Mapping[str, Mapping[str, Any]]) -> str | None:
    if not versions:
        return None
    return max(versions, key=lambda v: (str(versions[v].get("created") or ""), v))


# -------------------------------------------------------------------------------------- index


def _json(raw: bytes | None) -> dict | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _name_index(remote: _Remote, name: str) -> dict:
    """The per-name index derived from the ground truth: the versions whose manifest exists."""
    versions = [k.split("/")[1] for k in remote.glob(name, "*", MANIFEST)]
    known = (_json(remote.read(INDEX_DIR, f"{name}.json")) or {}).get("versions") or {}
    entries = {}
    for version in versions:
        if isinstance(known.get(version), dict):
            entries[version] = known[version]
            continue
        raw = remote.read(name, version, MANIFEST)
        manifest = _json(raw)
        if manifest is None:  # vanished or unreadable: leave it out (load would refuse it)
            continue
        try:
            entries[version] = _summary(manifest, raw)
        except (KeyError, TypeError, AttributeError):
            continue
    return {"format": _FORMAT, "name": name, "latest": _latest(entries), "versions": entries}


def _listing(remote: _Remote) -> dict:
    """The listing derived from every per-name index."""
    names = {}
    for key in remote.glob(INDEX_DIR, "*.json"):
        index = _json(remote.read(key))
        if index is None or not isinstance(index.get("versions"), dict):
            continue
        name = key.rsplit("/", 1)[1][:-len(".json")]
        names[name] = {"latest": index.get("latest"), "versions": sorted(index["versions"])}
    return {"format": _FORMAT, "names": dict(sorted(names.items()))}


def _settle(remote: _Remote, derive, *parts: str) -> bool:
    """Write ``derive()`` to ``parts`` until re-deriving after the write gives what was written.
    Returns whether anything was written."""
    state = derive()
    if _json(remote.read(*parts)) == state:
        return False
    for _ in range(INDEX_ATTEMPTS):
        remote.put_atomic(json.dumps(state, indent=1, sort_keys=True).encode(), *parts)
        again = derive()
        if again == state:
            return True
        state = again
    raise RemoteIndexError(f"{remote.url}/{'/'.join(parts)} kept changing under concurrent pushes "
                           f"({INDEX_ATTEMPTS} rounds); the artifact itself is published. Push "
                           "again to repair the index", url=remote.url)


def _listed(remote: _Remote, name: str, version: str) -> bool:
    """Whether both indices already list ``name@version``."""
    per_name = _json(remote.read(INDEX_DIR, f"{name}.json")) or {}
    listing = (_json(remote.read(INDEX)) or {}).get("names") or {}
    return (version in (per_name.get("versions") or {})
            and version in (listing.get(name) or {}).get("versions", [])
            and listing[name].get("latest") == per_name.get("latest"))


def reindex(url: str, name: str | None = None, *,
            storage_options: Mapping[str, Any] | None = None) -> dict:
    """Re-derive the per-name index of ``name`` (every name when ``None``) and the listing at
    ``url`` from the manifests there; return the listing."""
    remote = _Remote(url, storage_options)
    names = [name] if name else sorted({k.split("/")[0] for k in remote.glob("*", "*", MANIFEST)})
    for n in names:
        _settle(remote, lambda n=n: _name_index(remote, n), INDEX_DIR, f"{n}.json")
    _settle(remote, lambda: _listing(remote), INDEX)
    return _listing(remote)


# ---------------------------------------------------------------------------------------- push


def push(ref: str, url: str, *, root: str | os.PathLike | None = None,
         storage_options: Mapping[str, Any] | None = None) -> PushResult:
    """Upload local artifact ``NAME[@VERSION]`` to the base ``url`` (files first, manifest last)
    and list it in the remote index.

    The local copy is verified (every sha256) first. A version already on the remote is neither
    uploaded nor overwritten (also when it is another machine's build of the same recipe).

    Raises
    ------
    ArtifactIntegrityError
        The local artifact does not match its manifest.
    RemoteError
        The remote holds an invalid manifest for this version, or cannot be used.
    RemoteUnavailableError
        The remote could not be reached.
    """
    name, version = parse_ref(ref)
    directory = resolve_version(name, version, root=root)
    manifest = verify(directory)
    name, version = manifest["name"], manifest["version"]
    remote = _Remote(url, storage_options)
    where = f"{remote.url}/{name}/{version}"
    raw = remote.read(name, version, MANIFEST)
    uploaded: list[str] = []
    size = 0
    if raw is not None:
        theirs = _json(raw) or {}
        try:
            _check_manifest(theirs, url=remote.url, name=name, version=version)
        except ArtifactIntegrityError as err:
            raise RemoteError(f"{where}/{MANIFEST} exists but is not a valid manifest of {name}@"
                              f"{version} ({err}); a remote version is never overwritten. Check it "
                              f"with `cxp priors pull {where.rsplit('/', 1)[0]}@{version}`",
                              url=where) from err
        ours = sorted((f["path"], f["sha256"]) for f in manifest["files"])
        if sorted((f["path"], f["sha256"]) for f in theirs["files"]) != ours:
            # the same recipe, built on another machine (float results differ in the last bits)
            log.warning("%s: already there from another build of the same recipe (other file "
                        "hashes); the remote build is kept, nothing uploaded. `cxp priors verify "
                        "--rebuild` compares a build with its recipe", where)
        if _listed(remote, name, version):
            log.info("%s: already there, nothing uploaded", where)
            return PushResult(where, name, version, (), 0, False)
    else:
        for entry in manifest["files"]:
            remote.put_file(directory / entry["path"], name, version, entry["path"])
            uploaded.append(entry["path"])
            size += entry["bytes"]
        data = (directory / MANIFEST).read_bytes()
        remote.put_atomic(data, name, version, MANIFEST)  # last: the version is now visible
        uploaded.append(MANIFEST)
        size += len(data)
        log.info("%s: uploaded %d files, %d bytes", where, len(uploaded), size)
    wrote = _settle(remote, lambda: _name_index(remote, name), INDEX_DIR, f"{name}.json")
    wrote = _settle(remote, lambda: _listing(remote), INDEX) or wrote
    return PushResult(where, name, version, tuple(uploaded), size, wrote)


# ---------------------------------------------------------------------------------------- pull


def _cached_versions(folder: Path, prefix: str) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and p.name.startswith(prefix) and (p / MANIFEST).is_file())


def _resolve_remote(remote: _Remote, name: str, version: str) -> str:
    """The full version id ``version`` (``latest``, an id or a prefix) means at the remote."""
    if version == LATEST:
        index = _json(remote.read(INDEX_DIR, f"{name}.json"))
        latest = (index or {}).get("latest") or _name_index(remote, name)["latest"]
        if not latest:
            raise ArtifactNotFoundError(f"no artifact named {name!r} at {remote.url} (push one "
                                        "with `cxp priors push`)", name=name, version=version)
        return latest
    if re.fullmatch(r"[0-9a-f]{16}", version):
        return version
    matches = [k.split("/")[1] for k in remote.glob(name, f"{version}*", MANIFEST)]
    if len(matches) != 1:
        raise ArtifactNotFoundError(f"artifact {name!r} at {remote.url} has "
                                    f"{'no' if not matches else 'several'} version(s) matching "
                                    f"{version!r}: {matches}", name=name, version=version)
    return matches[0]


def pull(url: str, version: str | None = None, *, cache: str | os.PathLike | None = None,
         storage_options: Mapping[str, Any] | None = None) -> PullResult:
    """Fetch ``BASE/NAME[@VERSION]`` into the local cache (once) and return where it lies.

    A pinned version that is cached makes no remote call. Downloads are verified against the
    manifest (and the manifest against its version) before they are renamed into the cache.

    Raises
    ------
    ArtifactIntegrityError
        A remote file or the manifest is missing, changed or truncated (the file is named).
    ArtifactNotFoundError
        No such name or version at the remote.
    RemoteUnavailableError
        The remote could not be reached and nothing usable is cached.
    """
    base, name, version = split_url(url, version)
    folder = cache_dir(base, cache=cache, storage_options=storage_options) / name
    public = _public(base.rstrip("/"))
    if version != LATEST:
        cached = _cached_versions(folder, version)
        if len(cached) == 1:
            return PullResult(f"{public}/{name}", name, cached[0].name, cached[0], False)
    remote = _Remote(base, storage_options)
    try:
        full = _resolve_remote(remote, name, version)
    except RemoteUnavailableError as err:
        pointer = folder / LATEST
        if version != LATEST or not pointer.is_file():
            raise
        full = pointer.read_text().strip()
        log.warning("%s; using %s@%s, the latest seen there before (from the cache)", err, name, full)
    target = folder / full
    downloaded = False
    if not (target / MANIFEST).is_file():
        _download(remote, name, full, target)
        downloaded = True
    if version == LATEST:
        atomic_write_text(folder / LATEST, full + "\n")
    return PullResult(f"{public}/{name}", name, full, target, downloaded)


def _download(remote: _Remote, name: str, version: str, target: Path) -> None:
    """Download ``name@version`` into a temporary sibling of ``target``, verify, rename."""
    where = f"{remote.url}/{name}/{version}"
    raw = remote.read(name, version, MANIFEST)
    if raw is None:
        raise ArtifactNotFoundError(f"{where}/{MANIFEST} does not exist: no such version (or its "
                                    "push has not finished)", name=name, version=version)
    manifest = _json(raw)
    if manifest is None:
        raise ArtifactIntegrityError(f"{where}/{MANIFEST}: not valid JSON; refused",
                                     path=f"{where}/{MANIFEST}")
    _check_manifest(manifest, url=remote.url, name=name, version=version)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(target)
    tmp.mkdir()
    try:
        (tmp / MANIFEST).write_bytes(raw)
        for entry in manifest["files"]:
            try:
                remote.get_file(tmp / entry["path"], name, version, entry["path"])
            except FileNotFoundError as err:
                raise ArtifactIntegrityError(f"{where}/{entry['path']}: listed in the manifest "
                                             "but missing on the remote; refused",
                                             path=f"{where}/{entry['path']}") from err
        try:
            verify(tmp)
        except ArtifactIntegrityError as err:
            remote_path = f"{where}/{Path(err.path).name}"
            raise ArtifactIntegrityError(
                f"{remote_path}: {str(err).split(': ', 1)[-1]}; refused, nothing was cached",
                path=remote_path, expected=err.expected, found=err.found) from err
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / MANIFEST).is_file():  # not a concurrent pull that finished first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_url(url: str, version: str | None = None, *, cache: str | os.PathLike | None = None,
             storage_options: Mapping[str, Any] | None = None) -> Prior:
    """:func:`~.load.load` for a URL ``BASE/NAME[@VERSION]``: :func:`pull`, then open the verified
    cached copy (files are re-hashed when first read, as for local artifacts)."""
    result = pull(url, version, cache=cache, storage_options=storage_options)
    manifest = verify(result.directory, hashes=False)
    if (manifest["name"], manifest["version"]) != (result.name, result.version):
        path = str(result.directory / MANIFEST)
        raise ArtifactIntegrityError(f"{path}: describes {manifest['name']}@{manifest['version']}, "
                                     f"not {result.name}@{result.version}; remove the cached copy",
                                     path=path)
    return Prior(result.directory, manifest)
