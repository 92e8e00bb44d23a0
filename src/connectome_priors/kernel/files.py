"""Atomic file writes and file hashing: the one implementation every stage uses.

A write goes to a temporary sibling of its final path, is flushed and (optionally) checked, and is
renamed into place only when complete, so a crash or an error never leaves a half-written file at
the final path (pooch's ``stream_download`` pattern).

Examples
--------
>>> import shutil, tempfile
>>> out = Path(tempfile.mkdtemp())
>>> with atomic_path(out / "table.csv") as tmp:  # tmp: a hidden sibling of table.csv
...     _ = tmp.write_text("a,b")                  # (or pq.write_table(table, tmp))
>>> sorted(p.name for p in out.iterdir())          # renamed into place when the block ended
['table.csv']
>>> sha256_file(atomic_write_text(out / "manifest.json", "{}"))[:12]
'44136fa355b3'
>>> shutil.rmtree(out)
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "fsync_path", "sha256_file",
           "temp_sibling"]

_BLOCK = 1 << 20


def temp_sibling(path: str | os.PathLike, *, tag: str = "tmp") -> Path:
    """A fresh hidden path beside ``path`` (same folder, so the final rename is atomic)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{tag}-{uuid.uuid4().hex[:12]}")


@contextmanager
def atomic_path(path: str | os.PathLike, *, mkdir: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s content to; on a clean exit it is renamed onto
    ``path`` (replacing it), on an error it is removed and ``path`` is left as it was.

    Works for files and folders (a folder is renamed whole; an existing folder at ``path`` is not
    replaced: the rename then fails with ``OSError``).
    """
    path = Path(path)
    if mkdir:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (flushed to disk before the rename)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file's (or a folder's: its entries, after a rename) data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        import shutil

        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
