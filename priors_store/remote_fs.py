"""One remote location (an fsspec URL): credentials refused, reads bounded, writes create-only,
and every failure of the backend turned into one :class:`RemoteError` line.

- **URLs** carrying a user name or password (``s3://KEY:SECRET@bucket/...``,
  ``file://user:SECRET@/p``) are refused before fsspec sees them, without echoing them; messages
  and logs show URLs without any ``user:password@`` and library error texts are scrubbed alike.
- **Reads** are size-limited: a key is read with a range request of at most ``limit + 1`` bytes
  (:data:`INDEX_LIMIT` 16 MiB for indices, :data:`MANIFEST_LIMIT` 4 MiB for manifests), so an
  oversized object costs at most the limit and is then treated as wrong by the caller.
- **Create-only writes** (:meth:`Remote.create_file`, :meth:`Remote.create_bytes`) never replace
  an object that exists: on S3 a conditional ``PutObject`` (``If-None-Match: *``, s3fs
  ``mode="create"``; a multipart upload is completed with the same condition), on ``file://`` a
  temporary sibling that is written, flushed and then hard-linked onto the final name (``link``
  fails when the name exists; it never replaces), so a killed writer leaves at most a hidden
  temporary, never a partial object. They return ``False`` when the object already existed. Other
  protocols fall back to look-then-write (logged once: not safe against concurrent pushers).
- **Failures**: an unreachable remote is :class:`RemoteUnavailableError` (transient); permission
  denied (a read-only folder, S3 403), a missing bucket, a name too long and any other backend
  error is :class:`RemoteError` naming the URL and the operation.
- **A full disk** (``ENOSPC``, ``EDQUOT``, ``EFBIG``: :data:`DISK_FULL`) while writing to a
  ``file://`` remote is a :class:`RemoteError` naming the object's final path, with ``path`` and
  ``errno`` attributes (its temporary is removed; nothing was linked into place). While
  *downloading* (:meth:`Remote.get_file`) the full disk is the local one: the ``OSError`` passes
  through untranslated, naming the local file, for the caller to report as a cache error.
"""

from __future__ import annotations

import errno
import hashlib
import inspect
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from connectome_priors.kernel.errors import TransientError
from connectome_priors.kernel.files import atomic_write_bytes, sha256_file, temp_sibling
from connectome_priors.kernel.pause import pause

from .errors import PriorsError

__all__ = ["DISK_FULL", "INDEX_LIMIT", "MANIFEST_LIMIT", "Remote", "RemoteError", "RemoteIndexError",
           "RemoteUnavailableError", "is_url", "public_url", "reason", "refuse_credentials", "scrub"]

log = logging.getLogger(__name__)

#: Largest index (``index.json``, ``index/<name>.json``) read; a larger one is treated as absent.
INDEX_LIMIT = 16 * 2**20
#: Largest manifest read; a larger one is refused.
MANIFEST_LIMIT = 4 * 2**20
#: ``errno`` values of a write that failed for want of space (the disk, a quota, a file size
#: limit): reported as "No space left on device" with what to do, never as a backend failure.
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_BLOCK = 1 << 20
_USERINFO = re.compile(r"://[^/?#\s]*@")
_CREATE_ONLY = {"s3", "s3a", "file", "local"}
_NO_BUCKET = re.compile(r"bucket does not exist|NoSuchBucket", re.IGNORECASE)
_warned: set[str] = set()


class RemoteError(PriorsError):
    """A remote artifact location could not be used (credentials in the URL, missing package or
    bucket, permission denied, a full disk, a conflict); ``url`` is the URL without credentials,
    ``path`` and ``errno`` the object and reason of a failed write (else ``None``)."""

    def __init__(self, message: str, *, url: str, path: str | None = None,
                 errno: int | None = None) -> None:
        self.url = url
        self.path = path
        self.errno = errno
        super().__init__(message)


class _DiskFull(Exception):
    """Carries a local disk-full ``OSError`` past :meth:`Remote.call`'s translation."""


class RemoteUnavailableError(RemoteError, TransientError):
    """The remote could not be reached (connection refused, timeout); worth retrying later."""


class RemoteIndexError(RemoteError, TransientError):
    """The version was published but the remote index did not settle; push again to repair it."""


def is_url(ref: str) -> bool:
    """Whether ``ref`` names a remote location (``scheme://...``) rather than a local artifact."""
    return "://" in str(ref)


def public_url(url: str) -> str:
    """``url`` without any ``user:password@`` (for messages and logs)."""
    return _USERINFO.sub("://", str(url))


def scrub(text: str, *, limit: int = 300) -> str:
    """A library's error text fit for a message: any ``user:password@`` removed, one line, at most
    ``limit`` characters."""
    text = " ".join(public_url(str(text)).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def reason(err: OSError) -> str:
    """Why ``err`` failed, in words: ``No space left on device`` (``strerror``, else from
    ``errno``)."""
    return err.strerror or (os.strerror(err.errno) if err.errno else str(err))


def refuse_credentials(url: str) -> None:
    """Raise :class:`RemoteError` if ``url`` holds a user name or password (``scheme://USER[:PW]@``),
    without echoing it: such URLs land in shell history and logs, and fsspec would not even use
    them as credentials (``file://user:pw@/p`` is the relative path ``user:pw@/p``)."""
    if _USERINFO.search(str(url)):
        public = public_url(url)
        raise RemoteError(f"{public}: the URL carries a user name or password before '@' (not "
                          "shown); credentials are not accepted in URLs. Give the URL without "
                          "them and configure the backend instead (S3: AWS_ACCESS_KEY_ID / "
                          "AWS_SECRET_ACCESS_KEY, or a ~/.aws profile with -o profile=NAME)",
                          url=public)


def _unreachable(err: BaseException) -> bool:
    """Whether ``err`` says the remote could not be reached (as opposed to missing or refused)."""
    if isinstance(err, (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError,
                        NotADirectoryError)):
        return False
    if isinstance(err, (ConnectionError, TimeoutError)):
        return True
    if isinstance(err, OSError) and err.errno in (errno.ETIMEDOUT, errno.ECONNREFUSED,
                                                  errno.ECONNRESET, errno.EHOSTUNREACH):
        return True
    if re.search(r"SlowDown|ServiceUnavailable|RequestTimeout|InternalError", str(err)):
        return True
    return any("Connection" in c.__name__ or "Timeout" in c.__name__ for c in type(err).__mro__)


def _filesystem(base: str, storage_options: Mapping[str, Any] | None):
    """(fsspec filesystem, base path) of ``base``; no remote call is made here."""
    public = public_url(base)
    try:
        import fsspec  # only for remote artifacts
    except ImportError as err:
        raise RemoteError("remote artifacts need fsspec: pip install fsspec (and s3fs for s3://: "
                          "pip install 'connectome-priors[s3]')", url=public) from err
    try:
        fs, path = fsspec.core.url_to_fs(base, **dict(storage_options or {}))
    except ImportError as err:
        raise RemoteError(f"{public}: the package for this protocol is not installed "
                          f"({scrub(err)}); for s3:// install 'connectome-priors[s3]'",
                          url=public) from err
    except (ValueError, TypeError, KeyError) as err:
        raise RemoteError(f"{public}: not a usable fsspec URL or storage option ({scrub(err)})",
                          url=public) from err
    return fs, path.rstrip("/")


def _takes_mode(fs) -> bool:
    """Whether ``fs`` offers fsspec's exclusive writes (``put_file``/``pipe_file`` ``mode=``)."""
    try:
        return all("mode" in inspect.signature(getattr(fs, f"_{m}", None) or getattr(fs, m)).parameters
                   for m in ("put_file", "pipe_file"))
    except (TypeError, ValueError):
        return False


class Remote:
    """One base URL: bounded reads, listings, create-only writes; backend errors translated.

    Parameters
    ----------
    base
        fsspec URL of the remote's root (``s3://bucket/priors``, ``file:///shared/priors``);
        refused when it carries credentials.
    storage_options
        fsspec options (endpoint, profile...); passed as they are, never written or logged.
    """

    def __init__(self, base: str, storage_options: Mapping[str, Any] | None) -> None:
        refuse_credentials(base)
        self.url = public_url(base.rstrip("/"))
        self.fs, self.root = _filesystem(base, storage_options)
        protocol = self.fs.protocol
        self.protocol = protocol if isinstance(protocol, str) else protocol[0]
        from fsspec.implementations.local import LocalFileSystem

        self.local = isinstance(self.fs, LocalFileSystem)
        self._manifests: dict[tuple[str, int], bytes] = {}

    # ---------------------------------------------------------------------------- plumbing

    def key(self, *parts: str) -> str:
        """The backend path of ``parts`` below the root."""
        return "/".join([self.root, *parts])

    def full(self, rel: str, err: OSError, path: str | os.PathLike | None = None) -> RemoteError:
        """A write of ``rel`` that failed for want of space (``err.errno`` in :data:`DISK_FULL`), as
        one line naming the object's path (``path``, else the key) with ``path`` and ``errno``."""
        where = str(path) if path is not None else f"{self.url}/{rel}"
        return RemoteError(f"cannot write {where}: {reason(err)} (errno {err.errno}) on the remote "
                           f"{self.url}", url=self.url, path=where, errno=err.errno)

    def error(self, what: str, err: BaseException) -> RemoteError:
        """``err`` (from the backend, while doing ``what``) as one line naming the remote."""
        if isinstance(err, OSError) and err.errno in DISK_FULL and what.startswith("write "):
            return self.full(what[len("write "):], err)
        text = scrub(err) or type(err).__name__
        if _unreachable(err):
            return RemoteUnavailableError(f"cannot reach {self.url} ({what}): {text}. Check the URL, "
                                          "the endpoint and the network; a pinned, cached version "
                                          "loads offline", url=self.url)
        if isinstance(err, PermissionError):
            hint = ("pushing needs write access (a read-only folder, or S3 403 AccessDenied)"
                    if what.startswith(("write", "upload")) else
                    "an unreadable folder, or S3 403 AccessDenied")
            return RemoteError(f"{self.url}: permission denied to {what} ({text}); {hint}: check "
                               "the credentials, profile and bucket policy", url=self.url)
        if isinstance(err, FileNotFoundError):
            return RemoteError(f"{self.url}: cannot {what}: {text} (for S3: does the bucket "
                               "exist?)", url=self.url)
        if isinstance(err, OSError) and err.errno == errno.ENAMETOOLONG:
            return RemoteError(f"{self.url}: cannot {what}: a path is too long for the file "
                               "system", url=self.url)
        return RemoteError(f"{self.url}: cannot {what}: {text}", url=self.url)

    def call(self, what: str, fn: Callable, *args, missing: bool = False, exists: bool = False,
             **kwargs):
        """``fn(*args, **kwargs)`` with backend errors translated; ``FileNotFoundError`` passes
        through when ``missing`` (the caller treats it as absent), ``FileExistsError`` when
        ``exists`` (a create-only write that lost)."""
        try:
            return fn(*args, **kwargs)
        except FileNotFoundError as err:
            if missing and not _NO_BUCKET.search(str(err)):
                raise
            raise self.error(what, err) from err
        except FileExistsError as err:
            if exists:
                raise
            raise self.error(what, err) from err
        except (OSError, ValueError, TypeError, RuntimeError) as err:
            raise self.error(what, err) from err
        except Exception as err:  # botocore / aiohttp errors have their own roots
            if type(err).__module__.split(".")[0] in ("botocore", "aiobotocore", "aiohttp", "s3fs",
                                                      "fsspec", "urllib3", "requests"):
                raise self.error(what, err) from err
            raise

    # ------------------------------------------------------------------------------- reads

    def read(self, *parts: str, limit: int) -> bytes | None:
        """At most ``limit + 1`` bytes of a key (so ``len(result) > limit`` means too large);
        ``None`` when it does not exist (or is a link, on ``file://``)."""
        key = self.key(*parts)
        what = f"read {'/'.join(parts)}"
        if self.local:
            path = Path(key)
            try:
                if path.is_symlink() or not path.is_file():
                    return None
                with open(path, "rb") as fh:
                    return fh.read(limit + 1)
            except FileNotFoundError:
                return None
            except OSError as err:
                raise self.error(what, err) from err
        try:
            return self.call(what, self.fs.cat_file, key, start=0, end=limit + 1, missing=True)
        except FileNotFoundError:
            return None

    def read_many(self, rels: Iterable[tuple[str, int]], *, limit: int) -> dict[str, bytes]:
        """Bytes of many keys ``(relative key, listed size)`` at once (concurrently on S3); keys
        that vanished are left out. Immutable objects are read once per instance."""
        out, todo = {}, []
        for rel, size in rels:
            if (rel, size) in self._manifests:
                out[rel] = self._manifests[(rel, size)]
            else:
                todo.append((rel, size))
        if not todo:
            return out
        if self.local:
            got = {rel: self.read(rel, limit=limit) for rel, _ in todo}
        else:
            keys = {self.key(rel): rel for rel, _ in todo}
            found = self.call("read manifests", self.fs.cat, list(keys), on_error="return",
                              start=0, end=limit + 1)
            got = {}
            for key, value in found.items():
                rel = keys.get(key) or keys.get(key.split("://", 1)[-1])
                if isinstance(value, FileNotFoundError) or rel is None:
                    continue
                if isinstance(value, BaseException):
                    raise self.error(f"read {rel}", value) from value
                got[rel] = value
        for rel, size in todo:
            if got.get(rel) is not None:
                out[rel] = self._manifests[(rel, size)] = got[rel]
        return out

    def listing(self, *parts: str) -> dict[str, int]:
        """Every object below ``parts`` as {key relative to the root: size} (never from fsspec's
        listing cache; links on ``file://`` left out)."""
        key = self.key(*parts)
        self.fs.invalidate_cache()
        try:
            found = self.call(f"list {'/'.join(parts) or '/'}", self.fs.find, key, detail=True,
                              missing=True)
        except FileNotFoundError:
            return {}
        out = {}
        for path, info in found.items():
            if info.get("type") != "file" or info.get("islink"):
                continue
            path = str(path)
            if path.startswith(self.root + "/"):
                out[path[len(self.root) + 1:]] = int(info.get("size") or 0)
        return out

    def names(self) -> list[str]:
        """The folder names directly below the root."""
        self.fs.invalidate_cache()
        try:
            found = self.call("list the remote", self.fs.ls, self.root, detail=True, missing=True)
        except FileNotFoundError:
            return []
        return sorted(str(i["name"]).rstrip("/").rsplit("/", 1)[-1] for i in found
                      if i.get("type") == "directory" and not i.get("islink"))

    def sha256(self, rel: str) -> str:
        """Hex sha256 of an object's bytes (streamed)."""
        key = self.key(rel)
        if self.local:
            try:
                return sha256_file(key)
            except OSError as err:
                raise self.error(f"read {rel}", err) from err
        digest = hashlib.sha256()

        def stream():
            with self.fs.open(key, "rb", block_size=_BLOCK) as fh:
                for block in iter(lambda: fh.read(_BLOCK), b""):
                    digest.update(block)

        self.call(f"read {rel}", stream)
        return digest.hexdigest()

    def get_file(self, rel: str, local: Path) -> None:
        """Download an object to the local file ``local``.

        Raises
        ------
        OSError
            The local disk is full (``errno`` in :data:`DISK_FULL`), with ``filename`` ``local``
            (``shutil.copyfile`` names the source instead): the caller's disk, not the remote.
        RemoteError
            Anything else.
        """
        def fetch() -> None:
            try:
                self.fs.get_file(self.key(rel), str(local))
            except OSError as err:
                if err.errno in DISK_FULL:
                    raise _DiskFull(err, local) from err
                raise

        try:
            self.call(f"download {rel}", fetch)
        except _DiskFull as err:
            full = err.args[0]
            raise OSError(full.errno, reason(full), str(local)) from full

    # ------------------------------------------------------------------------------ writes

    def create_file(self, local: Path, *parts: str, pause_at: str | None = None) -> bool:
        """Upload ``local`` to ``parts`` unless an object is there; ``False`` when one was."""
        def write(fh: BinaryIO) -> None:
            size = os.path.getsize(local)
            with open(local, "rb") as src:
                fh.write(src.read(size // 2))
                if pause_at:
                    pause(pause_at)  # a kill here leaves half a temporary, never a partial object
                shutil.copyfileobj(src, fh, _BLOCK)

        def upload(key: str, create: bool) -> None:
            if create:
                self.fs.put_file(str(local), key, mode="create")
            else:
                self.fs.put_file(str(local), key)

        return self._create(parts, write, upload, pause_at)

    def create_bytes(self, data: bytes, *parts: str, pause_at: str | None = None) -> bool:
        """Write ``data`` to ``parts`` unless an object is there; ``False`` when one was."""
        def write(fh: BinaryIO) -> None:
            fh.write(data[:len(data) // 2])
            if pause_at:
                pause(pause_at)
            fh.write(data[len(data) // 2:])

        def upload(key: str, create: bool) -> None:
            if create:
                self.fs.pipe_file(key, data, mode="create")
            else:
                self.fs.pipe_file(key, data)

        return self._create(parts, write, upload, pause_at)

    def _create(self, parts: tuple[str, ...], write: Callable[[BinaryIO], None],
                upload: Callable[[str, bool], Any], pause_at: str | None) -> bool:
        rel = "/".join(parts)
        key = self.key(*parts)
        if self.local:
            final = Path(key)
            tmp = temp_sibling(final)
            try:
                final.parent.mkdir(parents=True, exist_ok=True)
                if os.path.lexists(final):
                    return False
                with open(tmp, "xb") as fh:
                    write(fh)
                    fh.flush()
                    os.fsync(fh.fileno())
                try:
                    os.link(tmp, final)  # never replaces: fails if the name exists
                except FileExistsError:
                    return False
                return True
            except OSError as err:
                if err.errno in DISK_FULL:
                    raise self.full(rel, err, final) from err
                hint = (" (the file system offers no hard links, which create-only writes need)"
                        if err.errno in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK) else "")
                raise RemoteError(f"{self.error(f'write {rel}', err)}{hint}", url=self.url) from err
            finally:
                tmp.unlink(missing_ok=True)
        if pause_at:
            pause(pause_at)  # an S3 PUT is all or nothing: "mid-file" is before it
        if self.protocol not in _CREATE_ONLY:
            if self.protocol not in _warned:
                _warned.add(self.protocol)
                log.warning("%s: protocol %s has no create-only writes here; concurrent pushes of "
                            "one version are not safe on it", self.url, self.protocol)
            if self.call(f"look up {rel}", self.fs.exists, key):
                return False
            self.call(f"write {rel}", upload, key, False)
            return True
        if not _takes_mode(self.fs):
            raise RemoteError(f"{self.url}: the installed {type(self.fs).__module__.split('.')[0]} "
                              "has no create-only writes (put_file/pipe_file mode='create'), which "
                              "pushing needs; upgrade it (pip install -U s3fs)", url=self.url)
        try:
            self.call(f"write {rel}", upload, key, True, exists=True)
        except FileExistsError:
            return False
        return True

    def write_index(self, data: bytes, *parts: str) -> None:
        """Replace a derived index (the only objects ever rewritten): atomically (a temporary
        sibling renamed over it on ``file://``; one PUT, which S3 applies whole)."""
        key = self.key(*parts)
        rel = "/".join(parts)
        if self.local:
            try:
                atomic_write_bytes(key, data)
            except OSError as err:
                if err.errno in DISK_FULL:
                    raise self.full(rel, err, key) from err
                raise self.error(f"write {rel}", err) from err
            return
        self.call(f"write {rel}", self.fs.pipe_file, key, data)

    def remove(self, *parts: str) -> None:
        """Remove an unpublished prefix (best effort: a failure is logged)."""
        key = self.key(*parts)
        try:
            if self.local:
                path = Path(key)
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
            else:
                self.fs.rm(key, recursive=True)
        except Exception as err:  # noqa: BLE001 (only garbage is left behind)
            log.warning("%s/%s: could not remove this unpublished staging prefix (%s); it is "
                        "harmless", self.url, "/".join(parts), scrub(err))
