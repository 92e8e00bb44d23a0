"""The ``duckdb`` engine: one process, DuckDB's streaming hash aggregate (spills to disk)."""

from __future__ import annotations

import shutil
import tempfile

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import SourceError
from .inputs import SynapseFiles, check_arrow_types, csv_first_line, pick_columns
from .mapping import RootMap

__all__ = ["aggregate_duckdb"]


def _lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _ident(s: str) -> str:
    return '"' + s.replace('"', '""') + '"'


def _source_sql(src: pa.Table | SynapseFiles, con: duckdb.DuckDBPyConnection) -> str:
    """A SELECT yielding columns pre, post, size from ``src``."""
    if isinstance(src, pa.Table):
        origin = "the in-memory synapse table"
        cols = pick_columns(src.column_names, origin)
        check_arrow_types(src.schema, cols, origin)
        con.register("syn_in", src)
        relation = "syn_in"
    else:
        origin = src.describe()
        files = "[" + ", ".join(_lit(str(f)) for f in src.files) + "]"
        if src.format == "parquet":
            schema = pq.read_schema(src.files[0])
            cols = pick_columns(schema.names, origin)
            check_arrow_types(schema, cols, origin)
            relation = f"read_parquet({files})"
        elif src.header is not None:
            cols = pick_columns(src.header.columns, f"{origin} (header {src.header.path})")
            kinds = src.header.kinds()
            for canon in ("pre_root_id", "post_root_id"):
                if kinds[cols[canon]] != "int":
                    raise SourceError(
                        f"export header {src.header.path}: column {cols[canon]} must be an integer "
                        f"type; found {dict(zip(src.header.columns, src.header.types))[cols[canon]]}",
                        path=str(src.header.path))
            want = {cols["pre_root_id"]: "BIGINT", cols["post_root_id"]: "BIGINT"}
            if "size" in cols:
                want[cols["size"]] = "DOUBLE"
            spec = ", ".join(f"{_lit(c)}: {_lit(want.get(c, 'VARCHAR'))}"
                             for c in src.header.columns)
            relation = f"read_csv({files}, header = false, auto_detect = false, columns = {{{spec}}})"
        else:
            names = csv_first_line(src.files[0])
            cols = pick_columns(names, origin)
            want = {cols["pre_root_id"]: "BIGINT", cols["post_root_id"]: "BIGINT"}
            if "size" in cols:
                want[cols["size"]] = "DOUBLE"
            spec = ", ".join(f"{_lit(c)}: {_lit(t)}" for c, t in want.items())
            relation = f"read_csv({files}, header = true, types = {{{spec}}})"
    if "size" in cols:  # NaN counts as unknown, as in the other engine
        raw = f"CAST({_ident(cols['size'])} AS DOUBLE)"
        size = f"CASE WHEN isnan({raw}) THEN NULL ELSE {raw} END"
    else:
        size = "CAST(NULL AS DOUBLE)"
    return (f"SELECT {_ident(cols['pre_root_id'])} AS pre, {_ident(cols['post_root_id'])} AS post, "
            f"{size} AS size FROM {relation}")


def aggregate_duckdb(src: pa.Table | SynapseFiles, rmap: RootMap, *, keep_self: bool,
                     memory_limit: str | None = "4GB", threads: int | None = None) -> dict[str, np.ndarray]:
    """Aggregate with DuckDB; returns columns pre, post, n, n_known, size (see ``partial.decode``).

    DuckDB reads Parquet row groups and CSV blocks as a stream and its hash aggregate spills to a
    temporary directory beyond ``memory_limit``, so the synapse table is never held in memory.
    """
    tmp = tempfile.mkdtemp(prefix="cxp-aggregate-")
    try:
        con = duckdb.connect(config={"temp_directory": tmp, "preserve_insertion_order": False})
        try:
            if memory_limit:
                con.execute(f"SET memory_limit = {_lit(memory_limit)}")
            if threads:
                con.execute(f"SET threads = {int(threads)}")
            con.register("rmap", pa.table({"root_id": rmap.root_ids, "nucleus_id": rmap.nucleus_ids}))
            source = _source_sql(src, con)
            self_filter = "" if keep_self else "WHERE s.pre <> s.post"
            sql = f"""
                SELECT a.nucleus_id AS pre, b.nucleus_id AS post, count(*) AS n,
                       count(s.size) AS n_known,
                       CAST(coalesce(sum(CAST(floor(s.size + 0.5) AS BIGINT)), 0) AS BIGINT) AS size
                FROM ({source}) s
                JOIN rmap a ON s.pre = a.root_id
                JOIN rmap b ON s.post = b.root_id
                {self_filter}
                GROUP BY ALL"""
            try:
                out = con.sql(sql).to_arrow_table()
            except duckdb.Error as err:
                where = "the in-memory table" if isinstance(src, pa.Table) else src.describe()
                raise SourceError(f"synapses from {where} could not be read/aggregated: {err}") from err
        finally:
            con.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {c: out.column(c).to_numpy(zero_copy_only=False).astype(np.int64)
            for c in ("pre", "post", "n", "n_known", "size")}
