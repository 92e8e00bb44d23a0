"""The local cache of pulled priors: where a version lies, and whether that copy can be used.

Layout: ``<cache setting>/priors/<scheme>[@<endpoint>]/<host>/<path>/<name>/<version>/`` plus
``<name>/latest`` (the latest version last seen at that remote, for offline use).

**Checked, not trusted.** A cached copy is used only after :func:`check` finds it complete: the
version folder and every entry in it are real files and folders (no symbolic link: a link could
lead anywhere outside the cache), nothing unlisted, and every file's size and sha256 match the
manifest, which itself must be valid for the folder (:func:`~.verification.verify`). A copy that fails is
repaired by the puller (:mod:`.remote`), re-using the files that are still right. No folder
between the cache root and a version may be a symbolic link (:func:`guard`); the root itself may.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from connectome_priors.kernel.files import sha256_file, temp_sibling
from connectome_priors.kernel.settings import resolve

from .errors import ArtifactIntegrityError, PriorsError
from .manifest import MANIFEST
from .names import LATEST, VERSION_ID
from .verification import verify

__all__ = ["CacheError", "CachedCopy", "cache_dir", "cache_root", "check", "guard", "install",
           "read_latest", "reusable", "sweep"]

#: Temporaries of pulls untouched this long are removed by the next pull of that name, s.
STALE_AFTER_S = 3600.0


class CacheError(PriorsError):
    """The local cache cannot be used (a symbolic link inside it, no permission, disk full);
    ``path`` names what, ``errno`` the reason of a failed write (else ``None``)."""

    def __init__(self, message: str, *, path: str, errno: int | None = None) -> None:
        self.path = path
        self.errno = errno
        super().__init__(message)


def cache_root(cache: str | os.PathLike | None = None) -> Path:
    """``<cache setting>/priors``."""
    return resolve("cache", cache) / "priors"


def _endpoint(options: Mapping[str, Any] | None) -> str | None:
    options = options or {}
    client = options.get("client_kwargs") or {}
    endpoint = options.get("endpoint_url") or (client.get("endpoint_url")
                                               if isinstance(client, Mapping) else None)
    return endpoint if isinstance(endpoint, str) else None


def _safe(piece: str) -> str:
    piece = re.sub(r"[^A-Za-z0-9._@-]", "_", piece)
    if len(piece) > 100:  # file systems allow 255 bytes a name
        piece = f"{piece[:80]}-{hashlib.sha256(piece.encode()).hexdigest()[:16]}"
    return piece


def cache_dir(base: str, *, cache: str | os.PathLike | None = None,
              storage_options: Mapping[str, Any] | None = None) -> Path:
    """Local cache folder of the remote ``base``:
    ``<cache>/priors/<scheme>[@<endpoint>]/<host>/<path>`` (no credentials; long pieces hashed)."""
    parts = urlsplit(base)
    scheme = parts.scheme or "file"
    endpoint = _endpoint(storage_options)
    if endpoint:
        scheme += "@" + urlsplit(endpoint).netloc.rsplit("@", 1)[-1]
    host = parts.netloc.rsplit("@", 1)[-1]
    pieces = [_safe(p) for p in [scheme, host, *parts.path.split("/")] if p not in ("", ".", "..")]
    return cache_root(cache) / Path(*pieces)


def guard(folder: Path, *, cache: str | os.PathLike | None = None) -> None:
    """Refuse ``folder`` when a folder between the cache root and it is a symbolic link.

    Raises
    ------
    CacheError
        Naming the link.
    """
    top = resolve("cache", cache)
    path = top
    for piece in folder.relative_to(top).parts:
        path = path / piece
        if path.is_symlink():
            raise CacheError(f"{path}: is a symbolic link inside the cache; the cache never follows "
                             "links (one could lead anywhere). Remove it (rm, not rm -r) and pull "
                             "again", path=str(path))
        if not path.exists():
            return


@dataclass(frozen=True)
class CachedCopy:
    """What :func:`check` found in a cached version folder."""

    state: Literal["absent", "ok", "damaged"]
    manifest: bytes | None = None
    """The cached manifest's bytes (when it is a readable file)."""
    problems: tuple[str, ...] = field(default=())
    """Why it is damaged, one reason per entry (``<file>: <what>``)."""


def check(target: Path, *, hashes: bool = True) -> CachedCopy:
    """Whether the cached version folder ``target`` is complete and intact (see the module)."""
    if not os.path.lexists(target):
        return CachedCopy("absent")
    if target.is_symlink() or not target.is_dir():
        return CachedCopy("damaged", None, (f"{target.name}: is a symbolic link or not a folder",))
    problems = []
    try:
        entries = list(os.scandir(target))
    except OSError as err:
        return CachedCopy("damaged", None, (f"{target.name}: {err.strerror}",))
    for entry in entries:
        if entry.is_symlink() or not entry.is_file(follow_symlinks=False):
            problems.append(f"{entry.name}: is a symbolic link or not a file")
    mpath = target / MANIFEST
    raw = mpath.read_bytes() if mpath.is_file() and not mpath.is_symlink() else None
    if problems:
        return CachedCopy("damaged", raw, tuple(problems))
    try:
        verify(target, hashes=hashes)
    except ArtifactIntegrityError as err:
        return CachedCopy("damaged", raw, (f"{Path(err.path).name}: {str(err).split(': ', 1)[-1]}",))
    except (OSError, ValueError, KeyError, TypeError) as err:  # unreadable parquet, odd manifest
        return CachedCopy("damaged", raw, (f"{target.name}: {err}",))
    return CachedCopy("ok", raw)


def reusable(old: Path, entry: Mapping[str, Any]) -> bool:
    """Whether the cached file ``old`` holds the manifest ``entry``'s bytes (a regular file, not a
    link, of the listed size and sha256)."""
    try:
        st = os.lstat(old)
    except OSError:
        return False
    import stat

    return (stat.S_ISREG(st.st_mode) and st.st_size == entry["bytes"]
            and sha256_file(old) == entry["sha256"])


def install(tmp: Path, target: Path) -> None:
    """Put the verified folder ``tmp`` at ``target``, moving aside whatever is there (a damaged
    copy or a link, which is removed, never followed).

    When ``tmp`` cannot be renamed into place (a full disk: ``ENOSPC``), what was at ``target`` is
    put back as it was and the ``OSError`` raised; ``tmp`` is removed either way.
    """
    old = None
    if os.path.lexists(target):
        old = temp_sibling(target, tag="old")
        try:
            os.rename(target, old)
        except FileNotFoundError:  # a concurrent pull moved it first
            old = None
    try:
        os.rename(tmp, target)
    except OSError:
        if check(target, hashes=False).state != "ok":  # not a concurrent pull that finished first
            if old is not None and not os.path.lexists(target):
                try:
                    os.rename(old, target)  # the copy cached before stays as it was
                    old = None
                except OSError:
                    pass
            raise
    finally:
        for path in (old, tmp):
            if path is not None and os.path.lexists(path):
                _remove(path)


def _remove(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def sweep(folder: Path, *, stale_after_s: float = STALE_AFTER_S) -> None:
    """Remove the temporaries that killed pulls left in ``folder`` (hidden, older than
    ``stale_after_s``)."""
    if not folder.is_dir() or folder.is_symlink():
        return
    now = time.time()
    for path in folder.glob(".*"):
        if ".tmp-" in path.name or ".old-" in path.name:
            try:
                if now - path.lstat().st_mtime > stale_after_s:
                    _remove(path)
            except OSError:
                continue


def cached_versions(folder: Path, prefix: str) -> list[Path]:
    """Version folders (real folders, full ids) in ``folder`` starting with ``prefix``."""
    if not folder.is_dir() or folder.is_symlink():
        return []
    return sorted(p for p in folder.iterdir() if VERSION_ID.match(p.name) and p.name.startswith(prefix)
                  and not p.is_symlink() and p.is_dir())


def read_latest(folder: Path) -> str | None:
    """The version ``<folder>/latest`` names, when it is a small regular file holding a version id."""
    pointer = folder / LATEST
    try:
        if pointer.is_symlink() or not pointer.is_file() or pointer.stat().st_size > 64:
            return None
        text = pointer.read_text(errors="replace").strip()
    except OSError:
        return None
    return text if VERSION_ID.match(text) else None
