"""What a remote publishes, read from its manifests; the index files derived from that.

**Ground truth.** A version ``NAME@VERSION`` is published when ``<base>/NAME/VERSION/manifest.json``
exists (written once, create-only) and is a valid manifest of exactly that name and version
(:func:`parse_manifest`). :func:`scan` lists them; nothing here reads a version from an index.

**Order.** ``latest`` is the published version whose manifest was *built* last: the manifest's
own ``created`` (UTC build time, part of the create-only, verified manifest; a missing or
unparsable time counts as the oldest), ties broken by the larger version id
(:data:`ORDER`). It is the same on every remote a version is pushed to and for every reader, and
an index entry cannot move it: entries are never read back to order versions.

**Index files** are conveniences for people and other tools, re-derived from the manifests on
every push of the name (:func:`name_index`; ``index/<name>.json``: every version's ``created``,
``manifest_sha256``, ``build``, neurons, snapshot and kinds, ``latest``, and the manifests
``refused`` with why) and listed in ``index.json`` (:func:`listing`). Both are written by
:func:`settle` (write, derive again, repeat until they agree; see :mod:`.remote`). An index that
is unreadable, of the wrong shape or types, over :data:`~.remote_fs.INDEX_LIMIT`, or whose
versions differ from the manifests there is treated as absent and rewritten.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .manifest import MANIFEST, check_manifest
from .names import NAME, VERSION_ID
from .errors import ArtifactIntegrityError
from .remote_fs import INDEX_LIMIT, MANIFEST_LIMIT, Remote, RemoteIndexError

__all__ = ["FORMAT", "INDEX", "INDEX_ATTEMPTS", "INDEX_DIR", "ORDER", "RESERVED",
           "Published", "build_id", "latest", "listing", "name_index", "parse_manifest",
           "read_json", "reindex", "scan", "settle"]

log = logging.getLogger(__name__)

#: The listing of every name and version at a base URL.
INDEX = "index.json"
#: Folder of the per-name indices at a base URL.
INDEX_DIR = "index"
#: Names an artifact may not have on a remote (they are the remote's own files).
RESERVED = frozenset({INDEX, INDEX_DIR})
#: Rounds of write-then-re-derive before a push gives up on settling an index.
INDEX_ATTEMPTS = 20
#: Format of the index files written here (1: entries were reused, ``latest`` by their ``created``).
FORMAT = 2
#: How ``latest`` is chosen (written into each per-name index).
ORDER = "newest manifest 'created' (build time), then the larger version id"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_OLDEST = datetime.min.replace(tzinfo=timezone.utc)
#: (sha256 of the bytes, name, version) of manifests that passed :func:`parse_manifest` (the
#: schema check costs ~20 ms; an index is derived several times per push).
_CHECKED: set[tuple[bytes, str, str]] = set()


def build_id(raw: bytes) -> str:
    """The staging prefix of a build: the first 16 hex digits of its manifest's sha256 (the
    manifest seals every file's sha256, so one prefix never holds two builds' files)."""
    return hashlib.sha256(raw).hexdigest()[:16]


def _json(raw: bytes | None, limit: int) -> Any:
    if raw is None or len(raw) > limit:
        return None
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return None


def read_json(remote: Remote, *parts: str, limit: int = INDEX_LIMIT) -> Any:
    """A key's JSON value; ``None`` when absent, over ``limit`` bytes, or not JSON."""
    return _json(remote.read(*parts, limit=limit), limit)


def parse_manifest(raw: bytes | None, *, url: str, name: str, version: str) -> dict:
    """The remote manifest ``raw`` of ``name@version``, checked before anything is downloaded.

    Raises
    ------
    ArtifactIntegrityError
        Over :data:`~.remote_fs.MANIFEST_LIMIT`, not JSON, not the artifact asked for, a file
        name that is not a plain name, or content that does not derive to its version (edited).
    """
    where = f"{url}/{name}/{version}/{MANIFEST}"
    key = (hashlib.sha256(raw).digest(), name, version) if raw is not None else None
    if key in _CHECKED:  # the same bytes passed every check below before (manifests never change)
        return json.loads(raw)
    if raw is not None and len(raw) > MANIFEST_LIMIT:
        raise ArtifactIntegrityError(f"{where}: larger than the {MANIFEST_LIMIT // 2**20} MiB a "
                                     "manifest may have; refused", path=where,
                                     expected=f"<= {MANIFEST_LIMIT} bytes", found="more")
    manifest = _json(raw, MANIFEST_LIMIT)
    if not isinstance(manifest, dict):
        raise ArtifactIntegrityError(f"{where}: not a JSON object (or nested too deeply); refused",
                                     path=where, expected="the JSON manifest the build wrote")
    try:
        found = (manifest["name"], manifest["version"])
        paths = [f["path"] for f in manifest["files"]]
    except (KeyError, TypeError) as err:
        raise ArtifactIntegrityError(f"{where}: not an artifact manifest ({err!r} missing); refused",
                                     path=where) from err
    if found != (name, version):
        raise ArtifactIntegrityError(f"{where}: describes {str(found[0])[:100]}@"
                                     f"{str(found[1])[:40]}, not {name}@{version}; refused",
                                     path=where, expected=f"{name}@{version}",
                                     found=f"{str(found[0])[:100]}@{str(found[1])[:40]}")
    bad = [p for p in paths if not isinstance(p, str) or p != Path(p).name or p in (".", "..")]
    if bad:
        raise ArtifactIntegrityError(f"{where}: lists file {str(bad[0])[:100]!r}, which is not a "
                                     "plain file name; refused", path=where, found=str(bad[0])[:100])
    try:
        check_manifest(manifest, path=where)  # schema, kinds -> files, content sealed, recipe
    except RecursionError as err:
        raise ArtifactIntegrityError(f"{where}: nested too deeply; refused", path=where) from err
    if len(_CHECKED) > 4096:
        _CHECKED.clear()
    _CHECKED.add(key)
    return manifest


def created(manifest: Mapping[str, Any]) -> datetime:
    """The manifest's build time (UTC); the oldest possible when missing or unparsable."""
    try:
        when = datetime.fromisoformat(str(manifest.get("created")))
    except ValueError:
        return _OLDEST
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Published:
    """One published version: its manifest's bytes and content."""

    version: str
    raw: bytes
    manifest: dict

    @property
    def build(self) -> str:
        """Staging prefix of its files (:func:`build_id`)."""
        return build_id(self.raw)


def latest(published: Mapping[str, Published]) -> str | None:
    """The latest of ``published`` (:data:`ORDER`), ``None`` when empty."""
    if not published:
        return None
    return max(published, key=lambda v: (created(published[v].manifest), v))


def scan(remote: Remote, name: str) -> tuple[dict[str, Published], dict[str, str]]:
    """The published versions of ``name`` (valid manifests), and the manifest keys refused there
    ({version folder: why}); one listing plus one read per manifest not read before."""
    keys, refused = {}, {}
    for rel, size in remote.listing(name).items():
        parts = rel.split("/")
        if len(parts) != 3 or parts[2] != MANIFEST:
            continue
        version = parts[1]
        if not VERSION_ID.match(version):
            refused[version[:40]] = "not a version id (16 hex digits)"
        elif size > MANIFEST_LIMIT:
            refused[version] = f"manifest of {size} bytes, over the {MANIFEST_LIMIT // 2**20} MiB limit"
        else:
            keys[version] = (rel, size)
    raws = remote.read_many(keys.values(), limit=MANIFEST_LIMIT)
    published = {}
    for version, (rel, _) in sorted(keys.items()):
        if rel not in raws:
            continue  # vanished since the listing
        try:
            manifest = parse_manifest(raws[rel], url=remote.url, name=name, version=version)
        except ArtifactIntegrityError as err:
            refused[version] = str(err).split(": ", 1)[-1][:300]
            continue
        published[version] = Published(version, raws[rel], manifest)
    return published, dict(sorted(refused.items()))


def _entry(p: Published) -> dict:
    m = p.manifest
    return {"created": m.get("created"), "manifest_sha256": hashlib.sha256(p.raw).hexdigest(),
            "build": p.build, "n_neurons": m["population"].get("n_neurons"),
            "snapshot_id": m["source_snapshot"].get("snapshot_id"), "kinds": sorted(m["kinds"])}


def name_index(remote: Remote, name: str, *, warn: bool = False) -> dict:
    """The per-name index derived from the manifests under ``<base>/<name>/``."""
    published, refused = scan(remote, name)
    if warn:
        for version, why in refused.items():
            log.warning("%s/%s/%s/%s: refused, left out of the index: %s", remote.url, name,
                        version, MANIFEST, why)
    return {"format": FORMAT, "name": name, "order": ORDER, "latest": latest(published),
            "versions": {v: _entry(p) for v, p in published.items()}, "refused": refused}


def _valid_name_index(index: Any, name: str, manifests: set[str]) -> bool:
    """Whether ``index`` has the shape :func:`name_index` writes, refuses nothing and lists exactly
    the versions in ``manifests`` (one that refuses some is re-derived: those few manifests are
    read again rather than an index believed about them)."""
    if not isinstance(index, dict) or index.get("format") != FORMAT or index.get("name") != name:
        return False
    versions = index.get("versions")
    if not isinstance(versions, dict) or set(versions) != manifests or index.get("refused"):
        return False
    for version, entry in versions.items():
        if not (isinstance(version, str) and VERSION_ID.match(version) and isinstance(entry, dict)
                and isinstance(entry.get("manifest_sha256"), str)
                and _HEX64.match(entry["manifest_sha256"])):
            return False
    return index.get("latest") in versions if versions else index.get("latest") is None


def _manifest_versions(remote: Remote, name: str) -> set[str]:
    return {rel.split("/")[1] for rel in remote.listing(name)
            if rel.count("/") == 2 and rel.endswith("/" + MANIFEST)
            and VERSION_ID.match(rel.split("/")[1])}


def listing(remote: Remote, *, repair: bool = True) -> dict:
    """The listing derived from the per-name indices; one that is absent, malformed or lists other
    versions than the manifests there is re-derived from the manifests (and, with ``repair``,
    written)."""
    names = {}
    for name in remote.names():
        if name in RESERVED or not NAME.match(name):
            continue
        index = read_json(remote, INDEX_DIR, f"{name}.json")
        manifests = _manifest_versions(remote, name)
        if not _valid_name_index(index, name, manifests):
            if not manifests:
                continue  # only an unpublished staging prefix
            derive = lambda name=name: name_index(remote, name)  # noqa: E731
            index = settle(remote, derive, INDEX_DIR, f"{name}.json")[1] if repair else derive()
        if index["versions"]:
            names[name] = {"latest": index["latest"], "versions": sorted(index["versions"])}
    return {"format": FORMAT, "names": names}


def settle(remote: Remote, derive: Callable[[], dict], *parts: str) -> tuple[bool, dict]:
    """Write ``derive()`` to ``parts`` until re-deriving after the write gives what was written.
    Returns whether anything was written, and the state written (or found)."""
    state = derive()
    if read_json(remote, *parts) == state:
        return False, state
    for _ in range(INDEX_ATTEMPTS):
        remote.write_index(json.dumps(state, indent=1, sort_keys=True).encode(), *parts)
        again = derive()
        if again == state:
            return True, state
        state = again
    raise RemoteIndexError(f"{remote.url}/{'/'.join(parts)} kept changing under concurrent pushes "
                           f"({INDEX_ATTEMPTS} rounds); the artifact itself is published. Push "
                           "again to repair the index", url=remote.url)


def reindex(remote: Remote, name: str | None = None) -> dict:
    """Re-derive the per-name index of ``name`` (every name when ``None``) and the listing from
    the manifests; return the listing."""
    names = [name] if name else [n for n in remote.names() if n not in RESERVED and NAME.match(n)]
    for n in names:
        if _manifest_versions(remote, n):
            settle(remote, lambda n=n: name_index(remote, n, warn=True), INDEX_DIR, f"{n}.json")
    return settle(remote, lambda: listing(remote), INDEX)[1]
