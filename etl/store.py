"""The neuron store: immutable Parquet per snapshot, plus a small catalog replaced whole at commit.

Layout of a store directory::

    store.duckdb                        the catalog: the ``snapshots`` table, and views named after
                                        the store tables over the latest snapshot's Parquet files
    raw/<snapshot_id>/<table>.parquet   the rows, one immutable (read-only) folder per snapshot
    raw/<snapshot_id>/manifest.json     the snapshot's catalog row and each Parquet file's sha256
    .store-write.lock                   writers take an ``flock`` on it

Concurrency model (why this design)
-----------------------------------
Readers never wait for or block a writer, and each sees one committed snapshot throughout.
A snapshot's rows are written once, to Parquet files that never change afterwards, and a snapshot
is committed by writing a *new* catalog file under a temporary name and renaming it onto
``store.duckdb`` (an atomic ``rename``). A reader reads the catalog once, then queries an
in-memory DuckDB whose views point at the committed snapshot's Parquet files: nothing it touches is
ever modified, so a commit beside it changes nothing it sees (the next reader sees the new one), and
it holds no lock a writer needs. Writers are serialized by an ``flock`` on ``.store-write.lock``,
held only while one writes its Parquet files and the catalog (not while a source is extracted); a
second writer waits for it up to ``StoreConfig.lock_timeout_s`` (``$CXP_STORE_LOCK_TIMEOUT``,
default 300 s), saying so on stderr, then fails with a :class:`StoreError`. The lock is released
when its holder exits or is killed.

The former layout kept every row in one DuckDB file as well; DuckDB allows one writing process or
any number of reading processes per file, so ``cxp sql`` and ``cxp etl`` excluded each other.
DuckLake was considered: with a DuckDB file as its catalog it has the same one-writer-or-readers
lock, and a catalog server (PostgreSQL) or another extension is more than a single-user store needs.

A load is all-or-nothing: the Parquet files go to a temporary folder, are checked and renamed to
``raw/<snapshot_id>/``, then the catalog is replaced. A failure or a kill before that rename leaves
nothing a reader sees; the next writer (holding the lock, so no other writer is mid-way) removes
temporary catalogs and raw folders that no committed snapshot names. A store in the former layout
is read as it is (its ``snapshots`` table and raw layer), and its first new commit writes the
catalog in this layout (the former file's table copies, duplicates of the raw layer, are dropped).

Integrity (why nothing changes a snapshot unnoticed)
---------------------------------------------------
At commit the catalog's ``snapshot_files`` table records the sha256 and size of every file of the
snapshot (its Parquet files, written with page checksums, and its manifest), and the files and the
folder are made read-only. :meth:`Store.verify` hashes them again (``cxp status --verify``); priors
are derived only from verified snapshots. Loading the same content again rewrites a snapshot whose
files are damaged or missing (the snapshot id derives from the content, not the bytes), and
:meth:`Store.repair` (``cxp status --repair``) rebuilds a missing or damaged catalog from the
manifests in ``raw/``, and records the hashes of snapshots stored by an earlier version once their
files reproduce the snapshot's content hash.

Read-only SQL
-------------
``Store.sql`` runs exactly one statement that DuckDB's own parser classifies as a query (SELECT,
WITH ... SELECT, FROM ..., VALUES, DESCRIBE, SUMMARIZE); anything else (EXPLAIN [ANALYZE], COPY,
PRAGMA, SET, CALL, ATTACH, CREATE, ...) is refused before a connection exists. The query then runs
on an in-memory DuckDB that reads the snapshot's Parquet files through Arrow datasets and has no
file access at all: external access off, no allowed directory or file, no temporary directory (it
does not spill to disk), no replacement scans of Python variables, configuration locked.

DuckDB clients
--------------
The catalog's views name the latest snapshot's Parquet files by absolute path, written at commit
(DuckDB resolves a relative path in a view against the client's working directory, not the
database file's, and has no setting that a plain ``duckdb.connect(path)`` would pick up), so the
catalog opens read-only from any directory in the DuckDB CLI, Python and GUI clients::

    duckdb -readonly "$CXP_STORE/store.duckdb" -c "SELECT count(*) FROM neurons"

Characters DuckDB would expand as a glob (``*``, ``[``, ``?``) are escaped in those paths. A store
folder moved or copied elsewhere keeps views that name the old place: clients then fail (or read
the original's files); reading the catalog through :class:`Store` (``cxp status``, ``cxp sql``,
:meth:`Store.sql`, ...) checks this and says so once on stderr, in one line, and the next load or
``cxp status --repair`` rewrites the views for the new place.
:meth:`Store.sql` and :meth:`Store.connect` never use the catalog's views (they build their own
from the store's directory), so they work wherever the store is. :meth:`Store.connect` is a plain
DuckDB connection over one snapshot for trusted use, not the locked-down one of :meth:`Store.sql`.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from connectome_priors.kernel.files import atomic_path, fsync_path, temp_sibling
from connectome_priors.kernel.pause import pause
from connectome_priors.kernel.version import code_version
from connectome_priors.schemas import STORE_TABLES, store_contract

from .config import StoreConfig
from .contracts import arrow_schema, require_rows, validate_streamed, validate_tables
from .errors import ReadOnlyError, StoreError
from .integrity import (MANIFEST, FileProblem, IntegrityError, IntegrityReport, RepairReport,
                        file_record, make_read_only, read_manifest, remove_tree, write_manifest)
from .tables import ParquetRows, SourceTables

__all__ = ["IntegrityError", "IntegrityReport", "RepairReport", "Store", "content_hash"]

_SQL_TYPES = {"int64": "BIGINT", "float64": "DOUBLE", "string": "VARCHAR", "bool": "BOOLEAN",
              "timestamp": "TIMESTAMPTZ", "list<float64>": "DOUBLE[]"}
_TMP_RAW = ".tmp-"           # raw/.tmp-<snapshot_id>-<pid>: a snapshot being written (or replaced)
_TMP_CATALOG = ".store.duckdb.tmp-"  # a catalog being written (temp_sibling of store.duckdb)
_BATCH_ROWS = 65_536         # rows per batch when a query result is streamed to a file
_IPC_CHUNK = 1 << 20         # content_hash's max_chunksize
_ROW_GROUP_BYTES = 16 << 20  # uncompressed bytes per Parquet row group: a filtered read skips groups
_FILES_DDL = ("CREATE TABLE snapshot_files (snapshot_id VARCHAR NOT NULL, file VARCHAR NOT NULL, "
              "bytes BIGINT NOT NULL, sha256 VARCHAR NOT NULL, PRIMARY KEY (snapshot_id, file))")
# the reader's connection: set in this order (temp_directory before access is locked down)
_READER_SETTINGS = (
    ("temp_directory", "''"),               # no spill files; it would also be an allowed directory
    ("allowed_directories", "[]"),
    ("allowed_paths", "[]"),
    ("python_enable_replacements", "false"),
    ("autoinstall_known_extensions", "false"),
    ("autoload_known_extensions", "false"),
    ("enable_external_access", "false"),
    ("lock_configuration", "true"),
)


def content_hash(source: str, tables: dict[str, pa.Table | ParquetRows]) -> str:
    """sha256 of a source name and its canonical tables (Arrow IPC stream of each, contract order)."""
    digest = hashlib.sha256(f"connectome-priors snapshot v1\0{source}\0".encode())
    for name in STORE_TABLES:
        if name in tables:
            _hash_table(digest, name, tables[name])
    return digest.hexdigest()


def _hash_table(digest, name: str, table: pa.Table | ParquetRows) -> None:
    """Feed ``table``'s canonical IPC stream to ``digest``: batches of :data:`_IPC_CHUNK` rows, the
    null slots of fixed-width columns zeroed (:func:`_zero_null_slots`), so a table held whole, the
    same rows streamed from Parquet and the stored file read back hash alike."""
    digest.update(f"{name}\0".encode())
    if isinstance(table, ParquetRows):  # the same bytes as the table held whole, batch by batch
        schema = arrow_schema(name)
        with pa.ipc.new_stream(pa.PythonFile(_Digest(digest), mode="w"), schema) as writer:
            for batch in table.batches(_IPC_CHUNK):
                writer.write_table(_zero_null_slots(batch.cast(schema)), max_chunksize=_IPC_CHUNK)
        return
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(_zero_null_slots(table), max_chunksize=_IPC_CHUNK)
    digest.update(sink.getvalue())


def _zero_null_slots(table: pa.Table) -> pa.Table:
    """``table`` with the value under every null of a fixed-width column set to zero.

    Arrow leaves those bytes to the producer (pandas leaves NaN there, Parquet's reader zero), and
    the IPC stream carries them: without this the same rows would hash differently by the path
    they came through."""
    columns = []
    for column in table.columns:
        kind = column.type
        if column.null_count == 0 or not (pa.types.is_integer(kind) or pa.types.is_floating(kind)
                                           or pa.types.is_temporal(kind) or pa.types.is_boolean(kind)):
            columns.append(column)
            continue
        chunks = []
        for chunk in column.chunks:
            valid = pc.is_valid(chunk)  # both kernels allocate fresh arrays at offset 0
            filled = pc.fill_null(chunk, pa.scalar(0).cast(kind))
            if valid.offset or filled.offset:  # the two buffers would not line up
                raise RuntimeError("content hash: a pyarrow compute kernel returned a sliced array; "
                                   "expected fresh arrays at offset 0 (pyarrow "
                                   f"{pa.__version__})")
            chunks.append(pa.Array.from_buffers(kind, len(chunk), [
                valid.buffers()[1], filled.buffers()[1]], null_count=chunk.null_count))
        columns.append(pa.chunked_array(chunks, kind))
    return pa.table(columns, schema=table.schema)


class _Digest:
    """A write-only file that feeds a hash (Arrow's IPC writer streams into it)."""

    def __init__(self, digest) -> None:
        self.digest, self.closed = digest, False

    def write(self, data) -> int:
        self.digest.update(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def _stored_content_hash(source: str, folder: Path, present: list[str]) -> str:
    """:func:`content_hash` of the tables stored in ``folder``, each read back as one canonical
    chunk (one table in memory at a time). It reproduces the recorded content hash of any load
    since null slots are zeroed before hashing (:func:`_zero_null_slots`); for an older load whose
    held table carried other bytes under its nulls it does not, the repair says so and re-running
    the load records the hashes instead."""
    digest = hashlib.sha256(f"connectome-priors snapshot v1\0{source}\0".encode())
    for name in STORE_TABLES:
        if name in present:
            table = pq.read_table(folder / f"{name}.parquet", page_checksum_verification=True)
            _hash_table(digest, name, table.drop_columns(["snapshot_id"]).cast(arrow_schema(name))
                        .combine_chunks())
    return digest.hexdigest()


def _row_group_rows(table: pa.Table) -> int:
    """Rows per Parquet row group for about 16 MiB of ``table`` (1,024 to 2**20 rows): spike trains
    of thousands of units then span several groups, whose statistics let a scan of one session or
    scan skip the rest (the reader goes through Arrow datasets, which prune by row group)."""
    per_row = max(1, table.nbytes // max(1, table.num_rows))
    return int(min(1 << 20, max(1024, _ROW_GROUP_BYTES // per_row)))


def _copy_streamed(rows: ParquetRows, name: str, snapshot_id: str, path: Path) -> None:
    """Write ``rows`` as the snapshot's ``name`` file, batch by batch, tagged and cast like a held
    table (row groups of about 16 MiB, page checksums)."""
    meta = pq.read_metadata(rows.path)
    per_row = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    per_row = max(1, per_row // max(1, meta.num_rows)) + len(snapshot_id)
    group = int(min(1 << 20, max(1024, _ROW_GROUP_BYTES // per_row)))
    schema = pa.schema([("snapshot_id", pa.string()), *arrow_schema(name)])
    with pq.ParquetWriter(path, schema, compression="zstd", write_page_checksum=True) as writer:
        for batch in rows.batches(group):
            batch = batch.cast(arrow_schema(name))
            writer.write_table(batch.add_column(0, "snapshot_id",
                                                pa.repeat(pa.scalar(snapshot_id), batch.num_rows)),
                               row_group_size=group)


def _identity(digest: str, extracted: SourceTables) -> str:
    """What names a snapshot: its content, plus the materialization it claims where it has one (a
    new CAVE version is a new snapshot even when the rows did not change, so a refresh records
    it once and then sees it as stored)."""
    if extracted.materialization_version is None:
        return digest
    key = f"{digest}\0{extracted.datastack}\0{extracted.materialization_version}"
    return hashlib.sha256(key.encode()).hexdigest()


def _columns(name: str) -> list[tuple[str, str]]:
    """(column, SQL type) of store table ``name`` as stored (``snapshot_id`` first, except in
    ``snapshots`` whose first column it already is)."""
    cols = [(c["name"], _SQL_TYPES[c["type"]]) for c in store_contract(name)["columns"]]
    return cols if name == "snapshots" else [("snapshot_id", "VARCHAR"), *cols]


def _snapshots_ddl() -> str:
    contract = {c["name"]: c for c in store_contract("snapshots")["columns"]}
    cols = [f"{n} {t}{'' if contract[n]['nullable'] else ' NOT NULL'}" for n, t in _columns("snapshots")]
    return f"CREATE TABLE snapshots ({', '.join(cols)}, PRIMARY KEY (snapshot_id))"


def _empty_select(name: str) -> str:
    """A query with table ``name``'s columns and types and no rows (a table a snapshot lacks)."""
    cols = ", ".join(f"CAST(NULL AS {t}) AS {c}" for c, t in _columns(name))
    return f"SELECT {cols} WHERE false"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# DuckDB expands *, ? and [...] in a file name even when the file exists (a store at /data/run*
# would read /data/run1's files too); each is matched literally as a one-character class
_GLOB_LITERAL = {"[": "[[]", "*": "[*]", "?": "[?]"}
_PARQUET_PATH = re.compile(r"read_parquet\(\[?'((?:[^']|'')*)'")


def _glob_literal(path: Path) -> str:
    """``path`` as a DuckDB file pattern that matches only itself."""
    return "".join(_GLOB_LITERAL.get(ch, ch) for ch in str(path))


def _read_parquet(paths: list[Path]) -> str:
    """A ``read_parquet`` call over exactly ``paths`` (absolute; several are unioned by name)."""
    if len(paths) == 1:
        return f"read_parquet({_quote(_glob_literal(paths[0]))})"
    return f"read_parquet([{', '.join(_quote(_glob_literal(p)) for p in paths)}], union_by_name = true)"


def _view_path(sql: str) -> str | None:
    """The first file a catalog view's SQL reads (glob escapes undone), or None."""
    found = _PARQUET_PATH.search(sql)
    if found is None:
        return None
    return re.sub(r"\[([\[*?])\]", r"\1", found.group(1).replace("''", "'"))


def _one_line(err: BaseException) -> str:
    """A DuckDB error on one line (its message, position and caret lines joined; carets dropped)."""
    lines = (line.strip() for line in str(err).splitlines())
    return " ".join(line for line in lines if line and set(line) != {"^"})


def _jsonable(row: dict) -> dict:
    """A catalog row with timestamps as ISO text (what the manifest holds)."""
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}


def _disk_error(err: OSError, path: Path, what: str) -> StoreError:
    """A StoreError that names the path and keeps the OSError's cause (e.g. ENOSPC) in view."""
    reason = err.strerror or str(err)
    hint = " Free space on that file system and load again; the store is unchanged." \
        if err.errno in (errno.ENOSPC, errno.EDQUOT) else " The store is unchanged."
    out = StoreError(f"cannot {what} {path}: {reason} (errno {err.errno}).{hint}")
    out.path, out.errno = str(path), err.errno
    return out


def _reload_hint(rows: dict[str, dict], sid: str) -> str:
    row = rows.get(sid) or {}
    source = row.get("source") or sid.split("-", 1)[0]
    params = row.get("parameters") or "{}"
    return (f"re-run the `cxp etl --source {source}` load that stored {sid} with the same input "
            f"(parameters {params}): it rewrites the snapshot's files")


class Store:
    """A neuron store directory (see module docstring).

    Parameters
    ----------
    directory
        Store directory; ``None`` resolves ``$CXP_STORE`` or the default (see :mod:`etl.config`).
    lock_timeout_s
        How long a writer waits for another writer, in seconds; ``None``: ``$CXP_STORE_LOCK_TIMEOUT``
        or 300.

    Examples
    --------
    >>> store = Store("/tmp/cxp-store")                       # doctest: +SKIP
    >>> store.sql("SELECT count(*) AS n FROM functional_units")  # doctest: +SKIP
    >>> store.connect().table("neurons").aggregate("count(*)").df()  # doctest: +SKIP
    >>> store.verify().files                                  # doctest: +SKIP
    """

    def __init__(self, directory: str | os.PathLike | None = None, *,
                 lock_timeout_s: float | None = None) -> None:
        self.config = StoreConfig.resolve(directory, lock_timeout_s=lock_timeout_s)
        self._views_note: tuple[str, str] | None = None  # by _open_catalog: the views read elsewhere
        self._views_told = False

    @property
    def directory(self) -> Path:
        """The store directory."""
        return self.config.directory

    def _absolute(self) -> Path:
        """The store directory as an absolute path (symbolic links kept, ``..`` removed)."""
        return Path(os.path.abspath(self.directory))

    def _check_directory(self) -> None:
        if self.directory.exists() and not self.directory.is_dir():
            raise StoreError(f"the store path {self.directory} is a file, not a directory; point "
                             "--store / $CXP_STORE at a store directory (or a new one to create)")

    def _snapshot_folders(self) -> list[Path]:
        """Folders of ``raw/`` that are not a writer's temporary folder, by name."""
        raw = self.config.raw
        if not raw.is_dir():
            return []
        return sorted(p for p in raw.iterdir()
                      if p.is_dir() and not p.is_symlink() and not p.name.startswith(_TMP_RAW))

    # -- writing -----------------------------------------------------------------------------

    @contextmanager
    def _write_lock(self) -> Iterator[None]:
        """Hold the writers' flock, waiting up to ``lock_timeout_s`` for another writer."""
        path = self.config.lock
        try:
            self.config.raw.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise _disk_error(err, path, "create the write lock") from err
        try:
            deadline = time.monotonic() + self.config.lock_timeout_s
            told = False
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                    if time.monotonic() >= deadline:
                        raise StoreError(
                            f"another cxp process (pid {holder}) is still writing to {self.directory} "
                            f"after {self.config.lock_timeout_s:g} s (lock {path}); nothing was "
                            "stored. Try again when it has finished, or raise the wait with "
                            "$CXP_STORE_LOCK_TIMEOUT (seconds)") from None
                    if not told:
                        print(f"cxp: waiting for another cxp process (pid {holder}) writing to "
                              f"{self.directory} (up to {self.config.lock_timeout_s:g} s)",
                              file=sys.stderr, flush=True)
                        told = True
                    time.sleep(0.1)
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            # Pause points (kernel/pause.py; no-ops unless $CXP_PAUSE_AT names them), where crash and
            # concurrency tests stop a writer: store:locked, store:wrote:<table>, store:raw-written,
            # store:catalog-written (before the rename), store:committed (lock still held); and a
            # reader: store:reader-bound (its snapshot's files bound, before its query runs).
            pause("store:locked")
            yield
        finally:
            os.close(fd)  # releases the flock

    def _remove_temporaries(self) -> None:
        """Delete temporary catalogs and temporary raw folders. Only while holding the write lock."""
        for entry in self.directory.iterdir():
            if entry.name.startswith(_TMP_CATALOG):
                remove_tree(entry)
        for entry in self.config.raw.iterdir():
            if entry.name.startswith(_TMP_RAW):
                remove_tree(entry)

    def _remove_leftovers(self, known: set[str]) -> None:
        """Delete what a failed or killed writer left: temporary catalogs and raw folders that belong
        to no committed snapshot (read-only ones too). Call only while holding the write lock."""
        self._remove_temporaries()
        for entry in self.config.raw.iterdir():
            if entry.name not in known:
                remove_tree(entry)

    def load(self, extracted: SourceTables, *, on_table: Callable[[str], None] | None = None) -> dict:
        """Validate ``extracted`` and store it as one snapshot, all or nothing.

        Loading the same content again (from the same materialization version, where there is
        one) returns the existing snapshot (``created`` False) after checking its files against
        the sha256 recorded at commit; files that are damaged or missing (or whose hashes were
        never recorded: a store of an earlier version) are written again from ``extracted`` and
        their hashes recorded (``repaired`` lists them). Readers are never blocked; another
        writer of the same store is waited for (see module docstring).

        Parameters
        ----------
        extracted
            Tables and provenance from a source.
        on_table
            Called with each table's name just before it is written (progress reporting).

        Returns
        -------
        dict
            The snapshot's row (see ``schemas/store/snapshots.json``) plus ``created`` and
            ``repaired`` (the files rewritten, relative to the store; empty when none was).

        Raises
        ------
        ValidationError
            A table breaks its contract, or a table the source must provide has no rows.
        StoreError
            The store could not be written (the path is a file, the disk is full, another writer
            held the lock too long, the catalog is missing beside snapshot folders or damaged);
            the store is then unchanged.
        """
        require_rows(extracted.source, {**extracted.tables, **extracted.streamed},
                     origins=extracted.origins)
        held = validate_tables(extracted.tables, origins=extracted.origins)
        for name, rows in extracted.streamed.items():  # batch by batch: never held whole
            validate_streamed(rows, name, held, origin=extracted.origins.get(name, "?"),
                              batch_rows=_IPC_CHUNK)
        tables: dict[str, pa.Table | ParquetRows] = {**held, **extracted.streamed}
        digest = content_hash(extracted.source, tables)
        snapshot_id = f"{extracted.source}-{_identity(digest, extracted)[:16]}"
        self._check_directory()
        with self._write_lock():
            if self.exists():
                catalog, files = self._open_catalog(tell=False)  # a commit rewrites the views
            else:
                orphans = self._snapshot_folders()
                if orphans:
                    raise StoreError(self._missing_catalog_message(orphans) + "; nothing was stored")
                catalog, files = None, None
            rows = catalog.to_pylist() if catalog is not None else []
            self._remove_leftovers({r["snapshot_id"] for r in rows})
            existing = [r for r in rows if r["snapshot_id"] == snapshot_id]
            final = self.config.raw / snapshot_id
            if existing:
                problems = self._check([snapshot_id], files).problems
                if not problems:
                    return {**existing[0], "created": False, "repaired": []}
                records = self._write_raw(snapshot_id, tables, final, on_table, existing[0])
                self._commit(catalog, [], _replace_files(files, snapshot_id, records))
                return {**existing[0], "created": False, "repaired": [p.path for p in problems]}
            row = self._row(snapshot_id, digest, extracted, tables)
            records = self._write_raw(snapshot_id, tables, final, on_table, row)
            pause("store:raw-written")
            try:
                self._commit(catalog, [row], _replace_files(files, snapshot_id, records))
            except BaseException:
                remove_tree(final)
                raise
            pause("store:committed")
        return {**row, "created": True, "repaired": []}

    def _write_raw(self, snapshot_id: str, tables: dict[str, pa.Table], final: Path,
                   on_table: Callable[[str], None] | None, row: dict) -> dict[str, dict]:
        """Write the snapshot folder (Parquet files and manifest, read-only) under a temporary name
        and rename it to ``final`` (replacing a damaged one); return each file's record."""
        raw = self.config.raw
        tmp = raw / f"{_TMP_RAW}{snapshot_id}-{os.getpid()}"
        aside = raw / f"{_TMP_RAW}replaced-{snapshot_id}-{os.getpid()}"
        remove_tree(tmp)
        path = tmp
        records: dict[str, dict] = {}
        try:
            tmp.mkdir(parents=True)
            for name in STORE_TABLES:
                if name not in tables:
                    continue
                if on_table is not None:
                    on_table(name)
                table = tables[name]
                path = tmp / f"{name}.parquet"
                if isinstance(table, ParquetRows):
                    _copy_streamed(table, name, snapshot_id, path)
                else:
                    tagged = table.add_column(0, "snapshot_id",
                                              pa.array([snapshot_id] * table.num_rows, pa.string()))
                    pq.write_table(tagged, path, compression="zstd", write_page_checksum=True,
                                   row_group_size=_row_group_rows(tagged))
                fsync_path(path)
                written = pq.read_metadata(path).num_rows
                if written != table.num_rows:
                    raise StoreError(f"{path}: wrote {written} rows, expected {table.num_rows}")
                records[path.name] = file_record(path)
                make_read_only(path)
                pause(f"store:wrote:{name}")
            path = tmp / MANIFEST
            records[MANIFEST] = write_manifest(tmp, _jsonable(row), dict(records))
            make_read_only(path)
            fsync_path(tmp)
            path = final
            if final.exists() or final.is_symlink():
                remove_tree(aside)
                os.replace(final, aside)
            os.replace(tmp, final)
            make_read_only(final)
            fsync_path(raw)
            remove_tree(aside)
        except OSError as err:
            remove_tree(tmp)
            raise _disk_error(err, path, "write") from err
        except BaseException:
            remove_tree(tmp)
            raise
        return records

    @staticmethod
    def _row(snapshot_id, digest, extracted, tables) -> dict:
        counts = {name: tables[name].num_rows for name in STORE_TABLES if name in tables}
        return {
            "snapshot_id": snapshot_id,
            "source": extracted.source,
            "datastack": extracted.datastack,
            "materialization_version": extracted.materialization_version,
            "materialization_timestamp": extracted.materialization_timestamp,
            "created": datetime.now(timezone.utc).isoformat(),
            "parameters": json.dumps(extracted.parameters, sort_keys=True, default=str),
            "report": json.dumps(extracted.report, sort_keys=True, default=str),
            "row_counts": json.dumps(counts, sort_keys=True),
            "content_hash": digest,
            "code_version": code_version(),
            "status": "complete",
        }

    def _commit(self, catalog: pa.Table | None, rows: list[dict], files: list[dict]) -> None:
        """Write the catalog (``catalog``'s snapshots plus ``rows``; ``files``: every snapshot's file
        records) under a temporary name, read-only, then rename it into place."""
        database = self.config.database
        tmp = temp_sibling(database, tag="tmp")
        try:
            con = duckdb.connect(str(tmp))
            try:
                con.execute(_snapshots_ddl())
                con.execute(_FILES_DDL)
                if catalog is not None and catalog.num_rows:
                    con.register("previous", catalog)
                    con.execute("INSERT INTO snapshots BY NAME SELECT * FROM previous")
                    con.unregister("previous")
                names = [c for c, _ in _columns("snapshots")]
                for row in rows:
                    con.execute(f"INSERT INTO snapshots ({', '.join(names)}) "
                                f"VALUES ({', '.join('?' * len(names))})", [row.get(n) for n in names])
                if files:
                    records = pa.Table.from_pylist(files, schema=pa.schema([
                        ("snapshot_id", pa.string()), ("file", pa.string()), ("bytes", pa.int64()),
                        ("sha256", pa.string())]))
                    con.register("records", records)
                    con.execute("INSERT INTO snapshot_files BY NAME SELECT * FROM records")
                    con.unregister("records")
                latest = con.execute("SELECT snapshot_id, row_counts FROM snapshots ORDER BY created "
                                     "DESC, snapshot_id DESC LIMIT 1").fetchall()
                sid, present = (str(latest[0][0]), json.loads(latest[0][1])) if latest else ("", {})
                # views for DuckDB clients: absolute paths, so the catalog opens from any working
                # directory (DuckDB resolves a relative path against the process's, not the
                # database file's); bound, so checked, at creation
                folder = self._absolute() / "raw" / sid
                for name in STORE_TABLES:
                    body = (f"SELECT * FROM {_read_parquet([folder / f'{name}.parquet'])}"
                            if name in present else _empty_select(name))
                    con.execute(f"CREATE VIEW {name} AS {body}")
                con.execute("CHECKPOINT")
            finally:
                con.close()
            fsync_path(tmp)
            make_read_only(tmp)
            pause("store:catalog-written")
            os.replace(tmp, database)
            fsync_path(self.directory)
        except OSError as err:
            _unlink_catalog(tmp)
            raise _disk_error(err, database, "commit the catalog") from err
        except duckdb.Error as err:
            _unlink_catalog(tmp)
            raise StoreError(f"cannot commit the catalog {database} (written as {tmp}): "
                             f"{_one_line(err)}. The store is unchanged.") from err
        except BaseException:
            _unlink_catalog(tmp)
            raise

    # -- reading -----------------------------------------------------------------------------

    def exists(self) -> bool:
        """True once the store's catalog file exists."""
        return self.config.database.is_file()

    def _missing_catalog_message(self, folders: list[Path]) -> str:
        names = ", ".join(p.name for p in folders[:3]) + (", ..." if len(folders) > 3 else "")
        return (f"the catalog {self.config.database} is missing, but {self.config.raw} holds "
                f"{len(folders)} snapshot folder(s) ({names}): `cxp status --repair` rebuilds the "
                "catalog from them")

    def _open_catalog(self, con: duckdb.DuckDBPyConnection | None = None, *, tell: bool = True
                      ) -> tuple[pa.Table, pa.Table | None]:
        """The committed snapshots (oldest first) and the recorded file hashes (``None`` in a
        catalog written before they were recorded), read once from the current catalog file
        (attached to ``con`` and detached again, or to a connection of its own).

        Also checks where the catalog's views read their files (``_views_note``: why DuckDB clients
        opening ``store.duckdb`` directly would not read this store, or None); with ``tell``, says
        so once per ``Store`` on stderr, in one line."""
        self._check_directory()
        database = self.config.database
        if not self.exists():
            folders = self._snapshot_folders()
            if folders:
                raise StoreError(self._missing_catalog_message(folders))
            raise StoreError(f"no neuron store at {self.directory} (no {database.name}); "
                             "run `cxp etl` first, or point --store / $CXP_STORE at an existing store")
        hint = f"; if it is damaged, `cxp status --repair` rebuilds it from {self.config.raw}"
        own = con is None
        # not connect(path): that may reuse a cached, older instance
        con = duckdb.connect(":memory:") if con is None else con
        try:
            try:
                con.execute(f"ATTACH {_quote(str(database))} AS catalog (READ_ONLY)")
            except duckdb.Error as err:
                raise StoreError(f"cannot open {database} read-only: {_one_line(err)}{hint}") from err
            try:
                snaps = con.sql("SELECT * FROM catalog.snapshots ORDER BY created, snapshot_id"
                                ).to_arrow_table()
                recorded = con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = "
                                       "'catalog' AND table_name = 'snapshot_files'").fetchall()[0][0]
                files = con.sql("SELECT snapshot_id, file, bytes, sha256 FROM catalog.snapshot_files "
                                "ORDER BY snapshot_id, file").to_arrow_table() if recorded else None
                views = con.execute("SELECT sql FROM duckdb_views() WHERE database_name = 'catalog' "
                                    "AND NOT internal ORDER BY view_name").fetchall()
                con.execute("DETACH catalog")
            except duckdb.Error as err:
                raise StoreError(f"cannot read the snapshots of {database}: {_one_line(err)}{hint}") \
                    from err
        finally:
            if own:
                con.close()
        self._views_note = self._check_views([v[0] for v in views])
        if tell and self._views_note and not self._views_told:
            why, effect = self._views_note
            print(f"cxp: note: DuckDB clients that open {database} directly {effect}: its views "
                  f"{why}; `cxp status --repair` (Store.repair()) rewrites them for this location "
                  "(cxp sql, Store.sql and Store.connect() are not affected)",
                  file=sys.stderr, flush=True)
            self._views_told = True
        return snaps, files

    def _check_views(self, views: list[str]) -> tuple[str, str] | None:
        """Why the catalog's views (their SQL) do not read this store's files, and what DuckDB
        clients that open the catalog then do; None when they do read them (or read no file: an
        empty snapshot, a catalog of the former layout)."""
        paths = {p for p in map(_view_path, views) if p is not None}
        if any(not os.path.isabs(p) for p in paths):
            return ("name their Parquet files relative to the store: a catalog of an earlier "
                    "version", "fail from any other working directory")
        for where in sorted({Path(p).parent.parent.parent for p in paths}):  # <store>/raw/<sid>/<t>
            try:
                if os.path.samefile(where, self.directory):
                    continue
            except OSError:
                pass
            return (f"read the Parquet files of {where}, not of {self._absolute()}: the store was "
                    "moved or copied", "read that folder's files instead" if (where / "raw").is_dir()
                    else "fail with 'No files found that match the pattern'")
        return None

    def _read_catalog(self, *, frame: bool = False) -> pa.Table | pd.DataFrame:
        """The committed snapshots, oldest first, read once from the current catalog file (an Arrow
        table, or a DataFrame with ``frame``)."""
        snaps = self._open_catalog()[0]
        return snaps.to_pandas() if frame else snaps

    def snapshots(self) -> pd.DataFrame:
        """All committed snapshots, oldest first."""
        return self._read_catalog(frame=True)

    def latest_snapshot(self) -> str:
        """Id of the most recently committed snapshot."""
        snaps = self.snapshots()
        if snaps.empty:
            raise StoreError(f"the store at {self.directory} holds no snapshot yet; run `cxp etl`")
        return str(snaps["snapshot_id"].iloc[-1])

    def status(self) -> pd.DataFrame:
        """One row per snapshot: id, source, version, created and the row count of every table."""
        snaps = self.snapshots()
        rows = []
        for rec in snaps.to_dict("records"):
            counts = json.loads(rec["row_counts"])
            rows.append({"snapshot_id": rec["snapshot_id"], "source": rec["source"],
                         "version": "-" if pd.isna(rec["materialization_version"])
                         else int(rec["materialization_version"]),
                         "created": rec["created"],
                         **{t: counts.get(t, 0) for t in STORE_TABLES}})
        return pd.DataFrame(rows, columns=["snapshot_id", "source", "version", "created", *STORE_TABLES])

    # -- integrity ---------------------------------------------------------------------------

    def _check(self, scope: list[str], files: pa.Table | None) -> IntegrityReport:
        """Hash every recorded file of the snapshots ``scope``; no exception for what differs."""
        report = IntegrityReport(store=self.directory, snapshots=list(scope))
        recorded: dict[str, list[dict]] = {}
        for rec in (files.to_pylist() if files is not None else []):
            recorded.setdefault(rec["snapshot_id"], []).append(rec)
        for sid in scope:
            if sid not in recorded:
                report.problems.append(FileProblem(sid, f"raw/{sid}/", "unrecorded"))
                continue
            for rec in recorded[sid]:
                rel = f"raw/{sid}/{rec['file']}"
                path = self.directory / rel
                expected = f"{rec['sha256']}, {rec['bytes']} bytes"
                if not path.is_file():
                    report.problems.append(FileProblem(sid, rel, "missing", expected))
                    continue
                try:
                    now = file_record(path)
                except OSError as err:
                    report.problems.append(FileProblem(sid, rel, "unreadable", expected,
                                                       err.strerror or str(err)))
                    continue
                report.bytes += now["bytes"]
                if now["sha256"] != rec["sha256"] or now["bytes"] != rec["bytes"]:
                    report.problems.append(FileProblem(sid, rel, "damaged", expected,
                                                       f"{now['sha256']}, {now['bytes']} bytes"))
                else:
                    report.files += 1
        return report

    def _damage_message(self, report: IntegrityReport, rows: dict[str, dict]) -> str:
        bad = [p for p in report.problems if p.problem != "unrecorded"]
        unrecorded = [p.snapshot_id for p in report.problems if p.problem == "unrecorded"]
        parts = []
        if bad:
            sids = list(dict.fromkeys(p.snapshot_id for p in bad))
            parts.append(f"{len(bad)} file(s) of the store at {self.directory} differ from the sha256 "
                         f"recorded at commit: {'; '.join(p.describe() for p in bad)}. Nothing may be "
                         "derived from snapshot(s) " + ", ".join(sids) + " until repaired: "
                         + "; ".join(_reload_hint(rows, sid) for sid in sids))
        if unrecorded:
            parts.append(f"snapshot(s) {', '.join(unrecorded)} of the store at {self.directory} have "
                         "no recorded file hashes (stored by an earlier version), so they cannot be "
                         "verified: `cxp status --repair` records them once the files reproduce "
                         "the snapshot's content hash (or re-run the load that stored them)")
        return ". ".join(parts)

    def verify(self, snapshot: str | None = None) -> IntegrityReport:
        """Hash every file of one snapshot (or of all, ``None``) and compare with the sha256 and
        size recorded in the catalog when it was committed.

        Returns
        -------
        IntegrityReport
            What was checked: ``files`` verified, ``bytes`` hashed, ``snapshots``.

        Raises
        ------
        IntegrityError
            A file is damaged or missing, or a snapshot has no recorded hashes (stored by an
            earlier version); the message names each file and the repair. ``problems`` lists them.
        StoreError
            No store, an unknown ``snapshot``, an unreadable catalog.

        Examples
        --------
        >>> Store("/tmp/cxp-store").verify().files   # doctest: +SKIP
        6
        """
        catalog, files = self._open_catalog()
        ids = catalog.column("snapshot_id").to_pylist()
        if snapshot is not None and snapshot not in ids:
            raise StoreError(f"no snapshot {snapshot!r} in the store at {self.directory}; known: "
                             f"{', '.join(ids) if ids else 'none (run `cxp etl`)'}")
        report = self._check(ids if snapshot is None else [snapshot], files)
        if report.problems:
            rows = {r["snapshot_id"]: r for r in catalog.to_pylist()}
            raise IntegrityError(self._damage_message(report, rows), store=self.directory,
                                 problems=report.problems)
        return report

    def repair(self) -> RepairReport:
        """Rebuild what can be rebuilt without the sources, then verify the whole store.

        A missing or unreadable catalog is rebuilt from the manifests in ``raw/`` (a damaged one is
        kept beside it as ``store.duckdb.damaged-<time>``); snapshot folders without a manifest are
        reported and left alone. In a readable catalog, snapshots stored before file hashes were
        recorded get them recorded (and a manifest written) once their Parquet files reproduce the
        snapshot's content hash. Damaged or missing snapshot files cannot be rebuilt here: the
        error names the load to re-run.

        Returns
        -------
        RepairReport
            What was done, and the verification that followed.

        Raises
        ------
        IntegrityError
            Files still damaged or missing, snapshots still unrecorded, or snapshot folders left
            out of a rebuilt catalog, after the repair (what was repaired stays repaired); the
            message says what was done and which load to re-run.
        StoreError
            Nothing to repair from (no catalog and no snapshot folder), or the store could not be
            written.
        """
        self._check_directory()
        if not self.exists() and not self._snapshot_folders():
            raise StoreError(f"no neuron store at {self.directory} (no {self.config.database.name} "
                             "and no snapshot folder in raw/): nothing to repair")
        out = RepairReport(store=self.directory)
        with self._write_lock():
            try:
                catalog, files = self._open_catalog(tell=False)
            except StoreError as err:
                catalog, files, out.catalog_problem = None, None, str(err)
            self._remove_temporaries()
            if catalog is None:
                rows, records = self._from_manifests(out)
                if self.exists():
                    out.kept_aside = self._keep_aside(self.config.database)
                self._commit(None, rows, records)
                out.rebuilt = [r["snapshot_id"] for r in rows]
            else:
                records = files.to_pylist() if files is not None else []
                have = {r["snapshot_id"] for r in records}
                for row in catalog.to_pylist():
                    if row["snapshot_id"] in have:
                        continue
                    try:
                        found = self._record_legacy(row)
                    except StoreError as err:
                        out.skipped.append(str(err))
                        continue
                    records += [{"snapshot_id": row["snapshot_id"], "file": name, **rec}
                                for name, rec in found.items()]
                    out.recorded.append(row["snapshot_id"])
                if self._views_note is not None:  # moved or copied: views for this location
                    out.views = self._views_note[0]
                if out.recorded or out.views:
                    self._commit(catalog, [], records)
                    self._views_note = None
        try:
            out.verified = self.verify()
        except IntegrityError as err:
            done = out.summary()
            raise IntegrityError((f"{done}; still " if done else "") + str(err), store=err.store,
                                 problems=err.problems) from None
        if out.skipped:  # consistent now, but not everything in raw/ could be taken back
            raise IntegrityError(out.summary(), store=self.directory, problems=[])
        return out

    def _keep_aside(self, database: Path) -> Path:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        aside = database.with_name(f"{database.name}.damaged-{stamp}")
        try:
            os.replace(database, aside)
        except OSError as err:
            raise _disk_error(err, database, "move the damaged catalog aside from") from err
        return aside

    def _from_manifests(self, out: RepairReport) -> tuple[list[dict], list[dict]]:
        """Catalog rows and file records of every snapshot folder with a readable manifest."""
        names = [c for c, _ in _columns("snapshots")]
        required = {c["name"] for c in store_contract("snapshots")["columns"] if not c["nullable"]}
        rows, records = [], []
        for folder in self._snapshot_folders():
            try:
                manifest = read_manifest(folder)
            except StoreError as err:
                out.skipped.append(f"raw/{folder.name} left out of the catalog ({err}; a folder "
                                   "stored by an earlier version has no manifest: re-run its load)")
                continue
            row = {n: manifest["snapshot"].get(n) for n in names}
            lacking = sorted(n for n in required if row[n] is None)
            if lacking:
                out.skipped.append(f"raw/{folder.name} left out of the catalog (its manifest lacks "
                                   f"{', '.join(lacking)}; re-run its load)")
                continue
            rows.append(row)
            records += [{"snapshot_id": folder.name, "file": name, "sha256": rec["sha256"],
                         "bytes": rec["bytes"]} for name, rec in manifest["files"].items()]
            records.append({"snapshot_id": folder.name, "file": MANIFEST,
                            **file_record(folder / MANIFEST)})
        return rows, records

    def _record_legacy(self, row: dict) -> dict[str, dict]:
        """File records of a snapshot stored before hashes were recorded, once its Parquet files
        reproduce its content hash; writes its manifest."""
        sid = row["snapshot_id"]
        folder = self.config.raw / sid
        present = list(json.loads(row["row_counts"]))
        try:
            again = _stored_content_hash(row["source"], folder, present)
        except (OSError, ValueError, KeyError, pa.ArrowException) as err:
            raise StoreError(f"snapshot {sid}: its files cannot be read ({err}); "
                             f"{_reload_hint({sid: row}, sid)}") from err
        if again != row["content_hash"]:
            raise StoreError(f"snapshot {sid}: its files hash to content {again[:16]}..., not the "
                             f"recorded {row['content_hash'][:16]}... (damaged, or written in "
                             f"another layout): {_reload_hint({sid: row}, sid)}")
        found = {f"{name}.parquet": file_record(folder / f"{name}.parquet") for name in present}
        try:
            os.chmod(folder, 0o755)
            found[MANIFEST] = write_manifest(folder, _jsonable(row), dict(found))
            make_read_only(folder / MANIFEST)
            for name in present:
                make_read_only(folder / f"{name}.parquet")
            make_read_only(folder)
        except OSError as err:
            raise _disk_error(err, folder / MANIFEST, "write") from err
        return found

    # -- SQL -----------------------------------------------------------------------------------

    @staticmethod
    def _statement(query: str):
        """The one statement of ``query``, if DuckDB's parser classifies it as a query."""
        try:
            statements = duckdb.extract_statements(query)
        except duckdb.Error as err:
            raise StoreError(f"cannot parse SQL: {_one_line(err)}") from err
        if not statements:
            raise StoreError("empty SQL query")
        for st in statements:
            if st.type != duckdb.StatementType.SELECT:
                raise ReadOnlyError(
                    f"refused: the store is read-only over SQL, and this is a {st.type.name} "
                    f"statement ({st.query.strip()[:60]!r}). Only one SELECT / WITH ... SELECT query "
                    "runs (not EXPLAIN, COPY, SET, PRAGMA, CALL, ATTACH, ...); load data with `cxp etl`.")
        if len(statements) > 1:
            raise ReadOnlyError(f"refused: {len(statements)} statements; `cxp sql` runs one query "
                                "at a time (no ';' between statements)")
        return statements[0]

    def check_output(self, out: str | os.PathLike) -> Path:
        """``out`` as a Path, unless it (or the folder it would be written in) lies inside the store.

        Raises
        ------
        StoreError
            ``out`` resolves (symbolic links followed) to the store directory or anything under it.
        """
        path = Path(out).expanduser()
        store = self.directory.resolve()
        for where in (path.resolve(), path.absolute().parent.resolve()):
            if where == store or store in where.parents:
                raise StoreError(f"--out {out} lies inside the store {self.directory} ({where}); the "
                                 "store is written only by `cxp etl`: give a path outside it")
        return path

    @contextmanager
    def _reader(self, query: str, snapshot: str | None) -> Iterator[duckdb.DuckDBPyConnection]:
        """An in-memory DuckDB whose views show one committed snapshot (or all), read through Arrow
        datasets, with no file access and its configuration locked."""
        con = duckdb.connect(":memory:")
        try:
            catalog, files = self._open_catalog(con)
            scope, counts = self._scope(catalog, snapshot)
        except BaseException:
            con.close()
            raise
        parquet = ds.ParquetFileFormat(default_fragment_scan_options=ds.ParquetFragmentScanOptions(
            page_checksum_verification=True))
        try:
            _catalog_tables(con, catalog, files)
            for name in STORE_TABLES:
                if not re.search(rf"\b{name}\b", query, re.IGNORECASE):
                    continue  # a dataset reads its files' footers: only for tables named
                paths = [str(self.config.raw / sid / f"{name}.parquet") for sid in scope
                         if name in counts[sid]]
                if paths:
                    schema = pa.unify_schemas([pq.read_schema(p) for p in paths]) \
                        if len(paths) > 1 else None
                    con.register(name, ds.dataset(paths, format=parquet, schema=schema))
                else:
                    con.execute(f"CREATE VIEW {name} AS {_empty_select(name)}")
            for setting, value in _READER_SETTINGS:
                con.execute(f"SET {setting} = {value}")
            pause("store:reader-bound")
        except (duckdb.Error, pa.ArrowException, OSError) as err:
            con.close()
            text = _one_line(err) if isinstance(err, duckdb.Error) else str(err)
            raise StoreError(f"cannot open snapshot(s) {', '.join(scope)} of {self.directory}: "
                             f"{text}; `cxp status --verify` checks its files") from err
        try:
            yield con
        finally:
            con.close()

    def _scope(self, catalog: pa.Table, snapshot: str | None
               ) -> tuple[list[str], dict[str, dict[str, int]]]:
        """The snapshot ids ``snapshot`` selects (None: the latest; "all"), and every snapshot's
        row counts by table."""
        ids = catalog.column("snapshot_id").to_pylist()
        if snapshot is None:
            scope = ids[-1:]
        elif snapshot == "all":
            scope = ids
        elif snapshot in ids:
            scope = [snapshot]
        else:
            raise StoreError(f"no snapshot {snapshot!r} in the store at {self.directory}; known: "
                             f"{', '.join(ids) if ids else 'none (run `cxp etl`)'}, or 'all'")
        counts = dict(zip(ids, (json.loads(c) for c in catalog.column("row_counts").to_pylist())))
        return scope, counts

    def connect(self, snapshot: str | None = None) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection over one snapshot of the store, for the relational API, Ibis or Polars.

        An in-memory database whose views ``neurons``, ``functional_units``, ... read the
        snapshot's Parquet files (``snapshot``: an id, the latest when ``None``, or ``"all"``: every
        snapshot's rows, each with its ``snapshot_id``), and whose tables ``snapshots`` and
        ``snapshot_files`` are copies of the catalog's. The views name the files by absolute path
        from this ``Store``'s directory, so it works from any working directory, and after the
        store was moved. It sees the snapshot committed when it was opened for as long as it is
        open (those files never change), and holds no lock: writers are not blocked.

        The store is never written through it: the catalog file is not attached, and the store's
        files and snapshot folders are read-only on disk; what you create lives in this in-memory
        database. It is **not** the locked-down connection of :meth:`sql` and ``cxp sql``: file
        access, extensions and settings are DuckDB's defaults (any SQL runs, ``COPY ... TO``
        included), so it is for trusted local use, like ``duckdb.connect()`` itself. DuckDB's
        Parquet reader does not check page checksums as :meth:`sql` does; :meth:`verify` checks
        every file. Close it (or use it in a ``with`` block) when done.

        Parameters
        ----------
        snapshot
            Snapshot id, ``None`` for the latest, or ``"all"``.

        Returns
        -------
        duckdb.DuckDBPyConnection

        Raises
        ------
        StoreError
            No store, an unknown ``snapshot`` (the message lists the known ones), or a snapshot
            whose files cannot be opened.

        Examples
        --------
        >>> con = Store("/tmp/cxp-store").connect()                      # doctest: +SKIP
        >>> con.table("neurons").filter("layer = 'L2/3'").count("*").fetchall()  # doctest: +SKIP
        >>> con.sql("FROM connections").df()     # .pl() where Polars is installed  # doctest: +SKIP
        >>> import ibis                           # ibis-framework[duckdb], not a dependency  # doctest: +SKIP
        >>> ibis.duckdb.from_connection(con).table("neurons")            # doctest: +SKIP
        """
        con = duckdb.connect(":memory:")
        scope: list[str] = []
        try:
            catalog, files = self._open_catalog(con, tell=False)
            scope, counts = self._scope(catalog, snapshot)
            _catalog_tables(con, catalog, files)
            raw = self._absolute() / "raw"
            for name in STORE_TABLES:
                paths = [raw / sid / f"{name}.parquet" for sid in scope if name in counts[sid]]
                body = f"SELECT * FROM {_read_parquet(paths)}" if paths else _empty_select(name)
                con.execute(f"CREATE VIEW {name} AS {body}")
        except duckdb.Error as err:
            con.close()
            raise StoreError(f"cannot open snapshot(s) {', '.join(scope)} of {self.directory}: "
                             f"{_one_line(err)}; `cxp status --verify` checks its files") from err
        except BaseException:
            con.close()
            raise
        return con

    def sql(self, query: str, *, snapshot: str | None = None) -> pd.DataFrame:
        """Run one read-only SQL query over the store and return its result.

        Table names (``neurons``, ``functional_units``, ...) refer to one snapshot: ``snapshot``
        (an id), the latest one when ``None``, or every snapshot when ``"all"``. ``snapshots``
        always lists them all, ``snapshot_files`` every file's recorded sha256. Only a query
        (SELECT, WITH ... SELECT, FROM, VALUES, DESCRIBE, SUMMARIZE) runs, on a connection without
        file access (see module docstring). The query sees the snapshot committed when it
        started, even if a writer commits meanwhile.

        Raises
        ------
        ReadOnlyError
            Anything that is not one query (INSERT, CREATE, COPY, ATTACH, SET, EXPLAIN, two
            statements, ...).
        StoreError
            No store, an unknown ``snapshot`` (the message lists the known ones), or SQL that fails
            (DuckDB's message on one line).
        """
        statement = self._statement(query)
        with self._reader(query, snapshot) as con:
            try:
                return con.execute(statement.query).df()
            except duckdb.Error as err:
                raise StoreError(f"SQL failed: {_one_line(err)}") from err

    def sql_to_file(self, query: str, out: str | os.PathLike, *,
                    format: Literal["parquet", "csv"] = "parquet",
                    snapshot: str | None = None) -> int:
        """Run a read-only query like :meth:`sql` and stream its result to ``out``; return the row count.

        The result goes out in batches of 65,536 rows, never held whole; the file is written under a
        temporary name and renamed when complete.

        Raises
        ------
        StoreError
            ``out`` is a directory, lies inside the store, or cannot be written, or as :meth:`sql`.
        """
        out = self.check_output(out)
        if out.is_dir():
            raise StoreError(f"--out {out} is a directory; give a file path for the {format} result")
        statement = self._statement(query)
        with self._reader(query, snapshot) as con:
            try:
                reader = con.sql(statement.query).to_arrow_reader(_BATCH_ROWS)
                with atomic_path(out) as tmp:
                    return _write_batches(reader, tmp, format)
            except duckdb.Error as err:
                raise StoreError(f"SQL failed: {_one_line(err)}") from err
            except OSError as err:
                raise _disk_error(err, out, "write the result to") from err

    def raw_path(self, snapshot_id: str, table: str) -> Path:
        """Path of one table's Parquet file in the raw layer."""
        return self.config.raw / snapshot_id / f"{table}.parquet"


def _catalog_tables(con: duckdb.DuckDBPyConnection, catalog: pa.Table, files: pa.Table | None
                    ) -> None:
    """Create the tables ``snapshots`` and ``snapshot_files`` in ``con`` with the catalog's rows."""
    con.execute(_snapshots_ddl())
    con.execute(_FILES_DDL)
    for table, rows in (("snapshots", catalog), ("snapshot_files", files)):
        if rows is not None and rows.num_rows:
            con.register("_rows", rows)
            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _rows")
            con.unregister("_rows")


def _replace_files(files: pa.Table | None, snapshot_id: str, records: dict[str, dict]) -> list[dict]:
    """The catalog's file records with ``snapshot_id``'s replaced by ``records``."""
    kept = [r for r in (files.to_pylist() if files is not None else []) if r["snapshot_id"] != snapshot_id]
    return kept + [{"snapshot_id": snapshot_id, "file": name, "sha256": rec["sha256"],
                    "bytes": rec["bytes"]} for name, rec in records.items()]


def _unlink_catalog(tmp: Path) -> None:
    for path in (tmp, tmp.with_name(tmp.name + ".wal")):
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass


def _write_batches(reader: pa.RecordBatchReader, path: Path, fmt: str) -> int:
    n = 0
    if fmt == "parquet":
        with pq.ParquetWriter(path, reader.schema, compression="zstd") as writer:
            for batch in reader:
                writer.write_batch(batch)
                n += batch.num_rows
        return n
    with open(path, "w", newline="") as fh:
        header = True
        for batch in reader:
            batch.to_pandas().to_csv(fh, header=header, index=False)
            header, n = False, n + batch.num_rows
        if header:
            reader.schema.empty_table().to_pandas().to_csv(fh, index=False)
    return n
