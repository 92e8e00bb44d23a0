"""Store integrity: what a snapshot's files hashed to when it was committed, and the check of them.

Every committed snapshot folder ``raw/<snapshot_id>/`` holds its tables' Parquet files and a
``manifest.json`` (the snapshot's catalog row and each Parquet file's sha256 and size). The catalog
``store.duckdb`` records the sha256 and size of every file of every snapshot, the manifest
included, in its ``snapshot_files`` table; :meth:`~etl.store.Store.verify` hashes the files again
and compares. The manifest is what lets :meth:`~etl.store.Store.repair` rebuild a lost or damaged
catalog from ``raw/`` alone. Snapshot files and folders are made read-only once written.

This module holds the pieces :mod:`etl.store` assembles: the error, the report, the manifest and the
read-only file helpers.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from connectome_priors.kernel.files import atomic_write_text, sha256_file

from .errors import StoreError

__all__ = ["MANIFEST", "FileProblem", "IntegrityError", "IntegrityReport", "RepairReport",
           "file_record", "make_read_only", "read_manifest", "remove_tree", "write_manifest"]

#: Name of the manifest in each snapshot folder.
MANIFEST = "manifest.json"
_FORMAT = "connectome-priors snapshot manifest v1"

Problem = Literal["damaged", "missing", "unrecorded", "unreadable"]


@dataclass(frozen=True)
class FileProblem:
    """One file of one snapshot that does not match what was recorded at commit."""

    snapshot_id: str
    """The snapshot the file belongs to."""
    path: str
    """The file, relative to the store directory (``raw/<snapshot_id>/<name>``)."""
    problem: Problem
    """``damaged`` (other bytes), ``missing``, ``unrecorded`` (the catalog has no hash for the
    snapshot: stored by an earlier version) or ``unreadable`` (an OS error while hashing)."""
    expected: str | None = None
    """Recorded sha256 (and size), where there is one."""
    found: str | None = None
    """What the file hashes to now, or why it could not be read."""

    def describe(self) -> str:
        if self.problem == "damaged":
            return f"{self.path} (sha256 {self.found}; recorded {self.expected})"
        if self.problem == "missing":
            return f"{self.path} (missing)"
        if self.problem == "unreadable":
            return f"{self.path} (unreadable: {self.found})"
        return f"{self.path} (no recorded hash)"


@dataclass
class IntegrityReport:
    """What :meth:`~etl.store.Store.verify` checked and found."""

    store: Path
    """The store directory."""
    snapshots: list[str] = field(default_factory=list)
    """The snapshots checked."""
    files: int = 0
    """How many files were hashed and matched their recorded sha256."""
    bytes: int = 0
    """How many bytes were hashed."""
    problems: list[FileProblem] = field(default_factory=list)
    """Every file that did not match (empty when the store is intact)."""

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class RepairReport:
    """What :meth:`~etl.store.Store.repair` did."""

    store: Path
    """The store directory."""
    catalog_problem: str | None = None
    """Why the catalog could not be read (it was then rebuilt), or None."""
    rebuilt: list[str] | None = None
    """The snapshots of a catalog rebuilt from their manifests, or None (the catalog was kept)."""
    kept_aside: Path | None = None
    """Where the unreadable catalog was moved, or None."""
    recorded: list[str] = field(default_factory=list)
    """Snapshots of an earlier version whose hashes were recorded now."""
    views: str | None = None
    """Why the catalog's views were rewritten for the store's location (they read another folder's
    files, or named them relative to the store), or None."""
    skipped: list[str] = field(default_factory=list)
    """What could not be repaired here, and why (one sentence each)."""
    verified: IntegrityReport | None = None
    """The verification after the repair."""

    def summary(self) -> str:
        """What was done, in one line ('' when nothing was)."""
        done = []
        if self.rebuilt is not None:
            done.append(f"rebuilt the catalog from raw/ ({len(self.rebuilt)} snapshot(s)"
                        + (f"; the unreadable one kept as {self.kept_aside.name}" if self.kept_aside
                           else "") + ")")
        if self.recorded:
            done.append(f"recorded the file hashes of {', '.join(self.recorded)} (their files "
                        "reproduce the recorded content hash)")
        if self.views:
            done.append(f"rewrote the catalog's views for this location (they {self.views})")
        done += self.skipped
        return "; ".join(done)


class IntegrityError(StoreError):
    """A snapshot's files differ from what was recorded at commit (or were never recorded).

    ``problems`` lists each file (:class:`FileProblem`); ``store`` is the store directory.
    """

    def __init__(self, message: str, *, store: Path, problems: list[FileProblem]) -> None:
        self.store, self.problems = store, problems
        super().__init__(message)


def file_record(path: Path) -> dict:
    """``{"sha256": ..., "bytes": ...}`` of a file as it is now."""
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def write_manifest(folder: Path, row: dict, files: dict[str, dict]) -> dict:
    """Write ``folder/manifest.json``: the snapshot's catalog row and its Parquet files' records.
    Returns the manifest's own record (sha256 and size)."""
    text = json.dumps({"format": _FORMAT, "snapshot": row, "files": files}, sort_keys=True,
                      indent=1, default=str) + "\n"
    path = folder / MANIFEST
    atomic_write_text(path, text)
    return file_record(path)


def read_manifest(folder: Path) -> dict:
    """The manifest of a snapshot folder (``snapshot``: the catalog row, ``files``: name -> record).

    Raises
    ------
    StoreError
        No manifest, or one that is not this format (damaged, or not written by this code).
    """
    path = folder / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StoreError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise StoreError(f"{path} cannot be read as a snapshot manifest: {err}") from err
    ok = (isinstance(data, dict) and data.get("format") == _FORMAT
          and isinstance(data.get("snapshot"), dict) and isinstance(data.get("files"), dict)
          and data["snapshot"].get("snapshot_id") == folder.name
          and all(isinstance(r, dict) and isinstance(r.get("sha256"), str)
                  and isinstance(r.get("bytes"), int) for r in data["files"].values()))
    if not ok:
        raise StoreError(f"{path} is not a manifest of snapshot {folder.name} (expected format "
                         f"{_FORMAT!r} naming that snapshot, with a sha256 and size per file)")
    return data


def make_read_only(path: Path) -> None:
    """Clear every write bit of a file or a folder (its own mode only)."""
    mode = stat.S_IMODE(path.lstat().st_mode)
    os.chmod(path, mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _writable(path: Path) -> None:
    try:
        os.chmod(path, stat.S_IMODE(path.lstat().st_mode) | stat.S_IWUSR | stat.S_IXUSR | stat.S_IRUSR)
    except OSError:
        pass


def remove_tree(path: Path) -> None:
    """Remove a file or folder even where its folders were made read-only (best effort: what
    cannot be removed stays, as with ``shutil.rmtree(..., ignore_errors=True)``)."""
    if path.is_symlink() or not path.is_dir():
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass
        return
    _writable(path)
    for root, dirs, _ in os.walk(path):
        for name in dirs:
            _writable(Path(root) / name)
    shutil.rmtree(path, ignore_errors=True)
