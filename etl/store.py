"""The neuron store: immutable Parquet per snapshot, plus a small catalog replaced whole at commit.

Layout of a store directory::

    store.duckdb                        the catalog: the ``snapshots`` table, and views named after
                                        the store tables over the latest snapshot's Parquet files
    raw/<snapshot_id>/<table>.parquet   the rows, one immutable folder per snapshot
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

From the DuckDB CLI the catalog opens read-only; its views use paths relative to the store::

    cd "$CXP_STORE" && duckdb -readonly store.duckdb -c "SELECT count(*) FROM neurons"
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
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
import pyarrow.parquet as pq

from connectome_priors.kernel.files import atomic_path, fsync_path, temp_sibling
from connectome_priors.kernel.version import code_version
from connectome_priors.schemas import STORE_TABLES, store_contract

from .config import StoreConfig
from .contracts import require_rows, validate_tables
from .errors import ReadOnlyError, StoreError
from .tables import SourceTables

__all__ = ["Store", "content_hash"]

_SQL_TYPES = {"int64": "BIGINT", "float64": "DOUBLE", "string": "VARCHAR", "bool": "BOOLEAN",
              "timestamp": "TIMESTAMPTZ", "list<float64>": "DOUBLE[]"}
_ALLOWED_STATEMENTS = {"SELECT", "EXPLAIN"}
_TMP_RAW = ".tmp-"           # raw/.tmp-<snapshot_id>-<pid>: a snapshot being written
_TMP_CATALOG = ".store.duckdb.tmp-"  # a catalog being written (temp_sibling of store.duckdb)
_BATCH_ROWS = 65_536         # rows per batch when a query result is streamed to a file


def content_hash(source: str, tables: dict[str, pa.Table]) -> str:
    """sha256 of a source name and its canonical tables (Arrow IPC stream of each, contract order)."""
    digest = hashlib.sha256(f"connectome-priors snapshot v1\0{source}\0".encode())
    for name in STORE_TABLES:
        if name not in tables:
            continue
        digest.update(f"{name}\0".encode())
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, tables[name].schema) as writer:
            writer.write_table(tables[name], max_chunksize=1 << 20)
        digest.update(sink.getvalue())
    return digest.hexdigest()


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


def _disk_error(err: OSError, path: Path, what: str) -> StoreError:
    """A StoreError that names the path and keeps the OSError's cause (e.g. ENOSPC) in view."""
    reason = err.strerror or str(err)
    hint = " Free space on that file system and load again; the store is unchanged." \
        if err.errno in (errno.ENOSPC, errno.EDQUOT) else " The store is unchanged."
    out = StoreError(f"cannot {what} {path}: {reason} (errno {err.errno}).{hint}")
    out.path, out.errno = str(path), err.errno
    return out


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
    """

    def __init__(self, directory: str | os.PathLike | None = None, *,
                 lock_timeout_s: float | None = None) -> None:
        self.config = StoreConfig.resolve(directory, lock_timeout_s=lock_timeout_s)

    @property
    def directory(self) -> Path:
        """The store directory."""
        return self.config.directory

    def _check_directory(self) -> None:
        if self.directory.exists() and not self.directory.is_dir():
            raise StoreError(f"the store path {self.directory} is a file, not a directory; point "
                             "--store / $CXP_STORE at a store directory (or a new one to create)")

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
            yield
        finally:
            os.close(fd)  # releases the flock

    def _remove_leftovers(self, known: set[str]) -> None:
        """Delete what a failed or killed writer left: temporary catalogs and raw folders that belong
        to no committed snapshot. Call only while holding the write lock."""
        for entry in self.directory.iterdir():
            if entry.name.startswith(_TMP_CATALOG):
                entry.unlink(missing_ok=True)
        for entry in self.config.raw.iterdir():
            if entry.name not in known:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)

    def load(self, extracted: SourceTables, *, on_table: Callable[[str], None] | None = None) -> dict:
        """Validate ``extracted`` and store it as one snapshot, all or nothing.

        Loading the same content again (from the same materialization version, where there is
        one) returns the existing snapshot (``created`` False). Readers are never blocked; another
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
            The snapshot's row (see ``schemas/store/snapshots.json``) plus ``created``.

        Raises
        ------
        ValidationError
            A table breaks its contract, or a table the source must provide has no rows.
        StoreError
            The store could not be written (the path is a file, the disk is full, another writer
            held the lock too long); the store is then unchanged.
        """
        require_rows(extracted.source, extracted.tables, origins=extracted.origins)
        tables = validate_tables(extracted.tables, origins=extracted.origins)
        digest = content_hash(extracted.source, tables)
        snapshot_id = f"{extracted.source}-{_identity(digest, extracted)[:16]}"
        self._check_directory()
        with self._write_lock():
            catalog = self._read_catalog() if self.exists() else None
            rows = catalog.to_pylist() if catalog is not None else []
            self._remove_leftovers({r["snapshot_id"] for r in rows})
            existing = [r for r in rows if r["snapshot_id"] == snapshot_id]
            if existing:
                return {**existing[0], "created": False}
            final = self.config.raw / snapshot_id
            self._write_raw(snapshot_id, tables, final, on_table)
            row = self._row(snapshot_id, digest, extracted, tables)
            try:
                self._commit(catalog, row)
            except BaseException:
                shutil.rmtree(final, ignore_errors=True)
                raise
        return {**row, "created": True}

    def _write_raw(self, snapshot_id: str, tables: dict[str, pa.Table], final: Path,
                   on_table: Callable[[str], None] | None) -> None:
        tmp = self.config.raw / f"{_TMP_RAW}{snapshot_id}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        path = tmp
        try:
            tmp.mkdir(parents=True)
            for name in STORE_TABLES:
                if name not in tables:
                    continue
                if on_table is not None:
                    on_table(name)
                table = tables[name]
                tagged = table.add_column(0, "snapshot_id",
                                          pa.array([snapshot_id] * table.num_rows, pa.string()))
                path = tmp / f"{name}.parquet"
                pq.write_table(tagged, path, compression="zstd")
                fsync_path(path)
                written = pq.read_metadata(path).num_rows
                if written != table.num_rows:
                    raise StoreError(f"{path}: wrote {written} rows, expected {table.num_rows}")
            path = final
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            fsync_path(self.config.raw)
        except OSError as err:
            shutil.rmtree(tmp, ignore_errors=True)
            raise _disk_error(err, path, "write") from err
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

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

    def _commit(self, catalog: pa.Table | None, row: dict) -> None:
        """Write the catalog with ``row`` added under a temporary name, then rename it into place."""
        database = self.config.database
        tmp = temp_sibling(database, tag="tmp")
        try:
            con = duckdb.connect(str(tmp))
            try:
                con.execute(_snapshots_ddl())
                if catalog is not None and catalog.num_rows:
                    con.register("previous", catalog)
                    con.execute("INSERT INTO snapshots BY NAME SELECT * FROM previous")
                    con.unregister("previous")
                names = list(row)
                con.execute(f"INSERT INTO snapshots ({', '.join(names)}) "
                            f"VALUES ({', '.join('?' * len(names))})", [row[n] for n in names])
                latest = con.execute("SELECT snapshot_id, row_counts FROM snapshots ORDER BY created "
                                     "DESC, snapshot_id DESC LIMIT 1").fetchone()
                # views for the DuckDB CLI: relative to the store directory, bound at creation
                con.execute(f"SET file_search_path = {_quote(str(self.directory))}")
                present = json.loads(latest[1])
                for name in STORE_TABLES:
                    body = (f"SELECT * FROM read_parquet({_quote(f'raw/{latest[0]}/{name}.parquet')})"
                            if name in present else _empty_select(name))
                    con.execute(f"CREATE VIEW {name} AS {body}")
                con.execute("CHECKPOINT")
            finally:
                con.close()
            fsync_path(tmp)
            os.replace(tmp, database)
            fsync_path(self.directory)
        except OSError as err:
            _unlink_catalog(tmp)
            raise _disk_error(err, database, "commit the catalog") from err
        except duckdb.Error as err:
            _unlink_catalog(tmp)
            raise StoreError(f"cannot commit the catalog {database} (written as {tmp}): {err}. "
                             "The store is unchanged.") from err
        except BaseException:
            _unlink_catalog(tmp)
            raise

    # -- reading -----------------------------------------------------------------------------

    def exists(self) -> bool:
        """True once the store's catalog file exists."""
        return self.config.database.is_file()

    def _read_catalog(self, *, frame: bool = False) -> pa.Table | pd.DataFrame:
        """The committed snapshots, oldest first, read once from the current catalog file (an Arrow
        table, or a DataFrame with ``frame``)."""
        self._check_directory()
        if not self.exists():
            raise StoreError(f"no neuron store at {self.directory} (no {self.config.database.name}); "
                             "run `cxp etl` first, or point --store / $CXP_STORE at an existing store")
        con = duckdb.connect(":memory:")  # not connect(path): that may reuse a cached, older instance
        try:
            con.execute(f"ATTACH {_quote(str(self.config.database))} AS catalog (READ_ONLY)")
        except duckdb.Error as err:
            con.close()
            raise StoreError(f"cannot open {self.config.database} read-only: {err}") from err
        try:
            result = con.sql("SELECT * FROM catalog.snapshots ORDER BY created, snapshot_id")
            return result.df() if frame else result.to_arrow_table()
        except duckdb.Error as err:
            raise StoreError(f"cannot read the snapshots of {self.config.database}: {err}") from err
        finally:
            con.close()

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

    @staticmethod
    def _statements(query: str) -> list:
        try:
            statements = duckdb.extract_statements(query)
        except duckdb.Error as err:
            raise StoreError(f"cannot parse SQL: {err}") from err
        if not statements:
            raise StoreError("empty SQL query")
        for st in statements:
            kind = st.type.name
            if kind not in _ALLOWED_STATEMENTS:
                raise ReadOnlyError(f"refused: the store is read-only over SQL, and this is a {kind} "
                                    f"statement ({st.query.strip()[:60]!r}). Only SELECT / WITH ... "
                                    "SELECT / EXPLAIN queries run; load data with `cxp etl`.")
        return statements

    @contextmanager
    def _reader(self, query: str, snapshot: str | None) -> Iterator[duckdb.DuckDBPyConnection]:
        """An in-memory DuckDB whose views show one committed snapshot (or all), file access
        limited to the store's raw layer and configuration locked."""
        catalog = self._read_catalog()
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
        con = duckdb.connect(":memory:")
        try:
            con.execute(_snapshots_ddl())
            if catalog.num_rows:
                con.register("catalog", catalog)
                con.execute("INSERT INTO snapshots BY NAME SELECT * FROM catalog")
                con.unregister("catalog")
            for name in STORE_TABLES:
                if not re.search(rf"\b{name}\b", query, re.IGNORECASE):
                    continue  # binding a view reads its files' footers: only for tables named
                files = [str(self.config.raw / sid / f"{name}.parquet") for sid in scope
                         if name in counts[sid]]
                body = (f"SELECT * FROM read_parquet([{', '.join(map(_quote, files))}], "
                        "union_by_name = true)" if files else _empty_select(name))
                con.execute(f"CREATE VIEW {name} AS {body}")
            con.execute(f"SET allowed_directories = [{_quote(str(self.config.raw) + os.sep)}]")
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
        except duckdb.Error as err:
            con.close()
            raise StoreError(f"cannot open snapshot(s) {', '.join(scope)} of {self.directory}: "
                             f"{err}") from err
        try:
            yield con
        finally:
            con.close()

    def sql(self, query: str, *, snapshot: str | None = None) -> pd.DataFrame:
        """Run a read-only SQL query over the store and return its result.

        Table names (``neurons``, ``functional_units``, ...) refer to one snapshot: ``snapshot``
        (an id), the latest one when ``None``, or every snapshot when ``"all"``. ``snapshots``
        always lists them all. Only SELECT and EXPLAIN statements run; file access is disabled.
        The query sees the snapshot committed when it started, even if a writer commits meanwhile.

        Raises
        ------
        ReadOnlyError
            For any statement that is not a query (INSERT, CREATE, COPY, ATTACH, SET, ...).
        StoreError
            No store, an unknown ``snapshot`` (the message lists the known ones), or SQL that fails.
        """
        statements = self._statements(query)
        with self._reader(query, snapshot) as con:
            try:
                result = None
                for st in statements:
                    result = con.execute(st.query)
                return result.df()
            except duckdb.Error as err:
                raise StoreError(f"SQL failed: {err}") from err

    def sql_to_file(self, query: str, out: str | os.PathLike, *,
                    format: Literal["parquet", "csv"] = "parquet",  # noqa: A002
                    snapshot: str | None = None) -> int:
        """Run a read-only query like :meth:`sql` and stream its result to ``out``; return the row count.

        The result goes out in batches of 65,536 rows, never held whole; the file is written under a
        temporary name and renamed when complete.

        Raises
        ------
        StoreError
            ``out`` is a directory or cannot be written, or as :meth:`sql`.
        """
        out = Path(out)
        if out.is_dir():
            raise StoreError(f"--out {out} is a directory; give a file path for the {format} result")
        statements = self._statements(query)
        with self._reader(query, snapshot) as con:
            try:
                for st in statements[:-1]:
                    con.execute(st.query)
                reader = con.sql(statements[-1].query).to_arrow_reader(_BATCH_ROWS)
                with atomic_path(out) as tmp:
                    return _write_batches(reader, tmp, format)
            except duckdb.Error as err:
                raise StoreError(f"SQL failed: {err}") from err
            except OSError as err:
                raise _disk_error(err, out, "write the result to") from err

    def raw_path(self, snapshot_id: str, table: str) -> Path:
        """Path of one table's Parquet file in the raw layer."""
        return self.config.raw / snapshot_id / f"{table}.parquet"


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
