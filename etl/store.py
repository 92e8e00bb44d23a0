"""The neuron store: one DuckDB file plus a Parquet raw layer per snapshot.

Layout of a store directory::

    store.duckdb                 every store table, each row tagged with its snapshot_id
    raw/<snapshot_id>/<table>.parquet   the same rows, one immutable folder per snapshot

A snapshot is loaded all-or-nothing: its Parquet files are written to a temporary folder, checked
and renamed into place, then every table is inserted inside one DuckDB transaction that ends by
inserting the snapshot's row. A failure or a kill before that commit leaves no trace a reader can
see; leftover folders are removed the next time the store is opened for writing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from connectome_priors.schemas import STORE_TABLES, store_contract

from .config import StoreConfig
from .contracts import validate_tables
from .errors import ReadOnlyError, StoreError
from .tables import SourceTables
from connectome_priors.kernel.version import code_version

__all__ = ["Store", "content_hash"]

_SQL_TYPES = {"int64": "BIGINT", "float64": "DOUBLE", "string": "VARCHAR", "bool": "BOOLEAN",
              "timestamp": "TIMESTAMPTZ", "list<float64>": "DOUBLE[]"}
_ALLOWED_STATEMENTS = {"SELECT", "EXPLAIN"}
_DB_NAME = "store"  # DuckDB names the attached database after the file stem


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


def _ddl(name: str) -> str:
    contract = store_contract(name)
    cols = ["snapshot_id VARCHAR NOT NULL"]
    for c in contract["columns"]:
        cols.append(f"{c['name']} {_SQL_TYPES[c['type']]}{'' if c['nullable'] else ' NOT NULL'}")
    if name != "snapshots":
        cols.append(f"PRIMARY KEY (snapshot_id, {', '.join(contract['primary_key'])})")
    else:
        cols = cols[1:] + ["PRIMARY KEY (snapshot_id)"]
    return f"CREATE TABLE IF NOT EXISTS {name} ({', '.join(cols)})"


class Store:
    """A neuron store directory (see module docstring).

    Parameters
    ----------
    directory
        Store directory; ``None`` resolves ``$CXP_STORE`` or the default (see :mod:`etl.config`).

    Examples
    --------
    >>> store = Store("/tmp/cxp-store")                       # doctest: +SKIP
    >>> store.sql("SELECT count(*) AS n FROM functional_units")  # doctest: +SKIP
    """

    def __init__(self, directory: str | os.PathLike | None = None) -> None:
        self.config = StoreConfig.resolve(directory)

    @property
    def directory(self) -> Path:
        """The store directory."""
        return self.config.directory

    # -- writing -----------------------------------------------------------------------------

    def _connect_rw(self) -> duckdb.DuckDBPyConnection:
        self.config.raw.mkdir(parents=True, exist_ok=True)
        try:
            con = duckdb.connect(str(self.config.database))
        except duckdb.IOException as err:
            raise StoreError(f"cannot open {self.config.database} for writing: {err}. "
                             "Is another cxp process loading into this store?") from err
        for name in ("snapshots",) + STORE_TABLES:
            con.execute(_ddl(name))
        self._relax_not_null(con)
        self._remove_orphans(con)
        return con

    @staticmethod
    def _relax_not_null(con: duckdb.DuckDBPyConnection) -> None:
        """Migrate a store created under an older contract: drop NOT NULL where a column has since
        become nullable (e.g. functional_units.nucleus_id, null in nwb snapshots)."""
        strict = {(t, c) for t, c in con.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE is_nullable = 'NO'").fetchall()}
        for name in STORE_TABLES:
            for col in store_contract(name)["columns"]:
                if col["nullable"] and (name, col["name"]) in strict:
                    con.execute(f'ALTER TABLE {name} ALTER COLUMN "{col["name"]}" DROP NOT NULL')

    def _remove_orphans(self, con: duckdb.DuckDBPyConnection) -> None:
        """Delete raw folders that belong to no committed snapshot (left by a failure or a kill)."""
        known = {r[0] for r in con.execute("SELECT snapshot_id FROM snapshots").fetchall()}
        for entry in self.config.raw.iterdir():
            if entry.name not in known:
                shutil.rmtree(entry, ignore_errors=True)

    def load(self, extracted: SourceTables, *, on_table: Callable[[str], None] | None = None) -> dict:
        """Validate ``extracted`` and store it as one snapshot, all or nothing.

        Loading the same content again (from the same materialization version, where there is
        one) returns the existing snapshot (``created`` False).

        Parameters
        ----------
        extracted
            Tables and provenance from a source.
        on_table
            Called with each table's name just before it is inserted (progress reporting).

        Returns
        -------
        dict
            The snapshot's row (see ``schemas/store/snapshots.json``) plus ``created``.
        """
        tables = validate_tables(extracted.tables, origins=extracted.origins)
        digest = content_hash(extracted.source, tables)
        snapshot_id = f"{extracted.source}-{_identity(digest, extracted)[:16]}"
        con = self._connect_rw()
        try:
            existing = self._snapshot_row(con, snapshot_id)
            if existing is not None:
                return {**existing, "created": False}
            final = self.config.raw / snapshot_id
            self._write_raw(snapshot_id, tables, final)
            try:
                row = self._insert(con, snapshot_id, digest, extracted, tables, final, on_table)
            except BaseException:
                shutil.rmtree(final, ignore_errors=True)
                raise
        finally:
            con.close()
        return {**row, "created": True}

    def _write_raw(self, snapshot_id: str, tables: dict[str, pa.Table], final: Path) -> None:
        tmp = self.config.raw / f".tmp-{snapshot_id}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            for name, table in tables.items():
                tagged = table.add_column(0, "snapshot_id",
                                          pa.array([snapshot_id] * table.num_rows, pa.string()))
                path = tmp / f"{name}.parquet"
                pq.write_table(tagged, path, compression="zstd")
                written = pq.read_metadata(path).num_rows
                if written != table.num_rows:
                    raise StoreError(f"{path}: wrote {written} rows, expected {table.num_rows}")
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _insert(self, con, snapshot_id, digest, extracted, tables, final, on_table) -> dict:
        counts = {name: tables[name].num_rows for name in STORE_TABLES if name in tables}
        row = {
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
        con.execute("BEGIN TRANSACTION")
        try:
            for name in STORE_TABLES:
                if name not in tables:
                    continue
                if on_table is not None:
                    on_table(name)
                cols = ", ".join(["snapshot_id"] + tables[name].column_names)
                con.execute(f"INSERT INTO {name} ({cols}) SELECT {cols} FROM read_parquet(?)",
                            [str(final / f"{name}.parquet")])
            names = list(row)
            con.execute(f"INSERT INTO snapshots ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                        [row[n] for n in names])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return row

    # -- reading -----------------------------------------------------------------------------

    def exists(self) -> bool:
        """True once the store's database file exists."""
        return self.config.database.is_file()

    def _connect_ro(self) -> duckdb.DuckDBPyConnection:
        if not self.exists():
            raise StoreError(f"no neuron store at {self.directory} (no {self.config.database.name}); "
                             "run `cxp etl` first, or point --store / $CXP_STORE at an existing store")
        try:
            con = duckdb.connect(str(self.config.database), read_only=True,
                                 config={"enable_external_access": False})
        except duckdb.Error as err:
            raise StoreError(f"cannot open {self.config.database} read-only: {err}") from err
        con.execute("SET lock_configuration = true")
        return con

    @staticmethod
    def _snapshot_row(con, snapshot_id: str) -> dict | None:
        cur = con.execute("SELECT * FROM snapshots WHERE snapshot_id = ?", [snapshot_id])
        names = [d[0] for d in cur.description]
        found = cur.fetchone()
        return None if found is None else dict(zip(names, found))

    def snapshots(self) -> pd.DataFrame:
        """All committed snapshots, oldest first."""
        con = self._connect_ro()
        try:
            return con.execute("SELECT * FROM snapshots ORDER BY created, snapshot_id").df()
        finally:
            con.close()

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

    def sql(self, query: str, *, snapshot: str | None = None) -> pd.DataFrame:
        """Run a read-only SQL query over the store and return its result.

        Table names (``neurons``, ``functional_units``, ...) refer to one snapshot: ``snapshot``
        (an id), the latest one when ``None``, or every snapshot when ``"all"``. ``snapshots``
        always lists them all. Only SELECT and EXPLAIN statements run; file access is disabled.

        Raises
        ------
        ReadOnlyError
            For any statement that is not a query (INSERT, CREATE, COPY, ATTACH, SET, ...).
        """
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
        con = self._connect_ro()
        try:
            scope = snapshot if snapshot is not None else self._latest(con)
            where = "" if scope == "all" else f" WHERE snapshot_id = {_quote(scope)}"
            present = {r[0] for r in con.execute(
                f"SELECT table_name FROM duckdb_tables() WHERE database_name = '{_DB_NAME}'").fetchall()}
            for name in STORE_TABLES:  # views shadow the tables: the query sees one snapshot
                if name in present:  # a store written by an older version may lack newer tables
                    con.execute(f"CREATE TEMP VIEW {name} AS SELECT * FROM {_DB_NAME}.main.{name}{where}")
            result = None
            for st in statements:
                result = con.execute(st.query)
            return result.df()
        except duckdb.Error as err:
            raise StoreError(f"SQL failed: {err}") from err
        finally:
            con.close()

    @staticmethod
    def _latest(con) -> str:
        found = con.execute("SELECT snapshot_id FROM snapshots ORDER BY created DESC, snapshot_id DESC "
                            "LIMIT 1").fetchone()
        return found[0] if found else ""

    def raw_path(self, snapshot_id: str, table: str) -> Path:
        """Path of one table's Parquet file in the raw layer."""
        return self.config.raw / snapshot_id / f"{table}.parquet"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
