"""The neuron store: atomic snapshots, idempotent loads, raw layer, read-only SQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectome_priors.etl.errors import ReadOnlyError, StoreError, ValidationError
from connectome_priors.etl.store import Store, content_hash
from connectome_priors.etl.tables import SourceTables
from connectome_priors.kernel import pause
from connectome_priors.testing.pauses import pause_env
from tests.conftest import REPO, tiny_source, tiny_tables


def counts(store: Store) -> dict[str, int]:
    q = " UNION ALL ".join(f"SELECT '{t}' AS t, count(*) AS n FROM {t}"
                           for t in ("neurons", "functional_units", "connections", "spikes"))
    return dict(store.sql(q, snapshot="all").itertuples(index=False))


def second_source():
    t = tiny_tables()["connections"]
    return tiny_source(connections=t.set_column(2, "n_synapses", pa.array([5, 1])))


def test_load_then_query(tmp_path):
    store = Store(tmp_path / "s")
    snap = store.load(tiny_source())
    assert snap["created"] and snap["snapshot_id"].startswith("synthetic-")
    assert json.loads(snap["row_counts"]) == {"neurons": 3, "functional_units": 3,
                                              "connections": 2, "spikes": 3}
    df = store.sql("SELECT snapshot_id, nucleus_id, root_id FROM neurons ORDER BY nucleus_id")
    assert df.nucleus_id.tolist() == [11, 12, 13]
    assert set(df.snapshot_id) == {snap["snapshot_id"]}
    assert df.root_id.isna().tolist() == [False, False, True]
    spikes = store.sql("SELECT unit_id, spike_times FROM spikes ORDER BY unit_id")
    assert list(spikes.spike_times[0]) == [0.1, 0.5, 2.0]


def test_raw_layer_matches_the_database(tmp_path):
    store = Store(tmp_path / "s")
    sid = store.load(tiny_source())["snapshot_id"]
    raw = pq.read_table(store.raw_path(sid, "connections")).to_pandas()
    db = store.sql("SELECT * FROM connections ORDER BY pre_nucleus_id")
    assert raw.columns.tolist() == db.columns.tolist()
    assert raw.values.tolist() == db.values.tolist()


def test_same_input_is_idempotent(tmp_path):
    store = Store(tmp_path / "s")
    first = store.load(tiny_source())
    again = store.load(tiny_source())
    assert not again["created"]
    assert again["snapshot_id"] == first["snapshot_id"]
    assert len(store.snapshots()) == 1
    assert counts(store)["neurons"] == 3


def test_content_hash_ignores_the_bytes_under_nulls_but_not_the_values():
    """Arrow leaves the value under a null to its producer (pandas leaves NaN, Parquet zero): the
    hash must see only the rows, or one export would get two snapshot ids."""
    tables = tiny_tables()
    conn = tables["connections"]
    i = conn.schema.get_field_index("sum_size")
    sizes = conn.column(i).to_numpy(zero_copy_only=False).copy()
    mask = np.zeros(len(sizes), bool)
    mask[0] = True

    def with_slot(value: float, table=conn) -> dict:
        data = sizes.copy()
        data[0] = value
        arr = pa.array(data, pa.float64(), mask=mask)
        return {**tables, "connections": table.set_column(i, conn.field(i), arr)}

    assert content_hash("s", with_slot(np.nan)) == content_hash("s", with_slot(7.0))
    assert content_hash("s", with_slot(np.nan)) == content_hash("s", with_slot(0.0))
    mask[0] = False
    assert content_hash("s", with_slot(7.0)) != content_hash("s", with_slot(0.0))


def test_content_hash_is_deterministic_and_sensitive():
    a = content_hash("synthetic", tiny_tables())
    assert a == content_hash("synthetic", tiny_tables())
    assert a != content_hash("blueprint", tiny_tables())
    assert a != content_hash("synthetic", second_source().tables)


def test_tables_are_scoped_to_one_snapshot(tmp_path):
    store = Store(tmp_path / "s")
    first = store.load(tiny_source())["snapshot_id"]
    second = store.load(second_source())["snapshot_id"]
    assert first != second
    assert store.latest_snapshot() == second
    assert store.sql("SELECT max(n_synapses) AS m FROM connections").m[0] == 5
    assert store.sql("SELECT max(n_synapses) AS m FROM connections", snapshot=first).m[0] == 2
    assert store.sql("SELECT count(*) AS n FROM connections", snapshot="all").n[0] == 4
    assert store.status().snapshot_id.tolist() == [first, second]


def test_failure_midway_leaves_the_store_as_it_was(tmp_path):
    store = Store(tmp_path / "s")
    first = store.load(tiny_source())["snapshot_id"]
    before = counts(store)

    def explode(table: str) -> None:
        if table == "connections":  # neurons and functional_units already inserted
            raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        store.load(second_source(), on_table=explode)
    assert store.snapshots().snapshot_id.tolist() == [first]
    assert counts(store) == before
    assert sorted(p.name for p in (tmp_path / "s" / "raw").iterdir()) == [first]


def test_invalid_input_stores_nothing(tmp_path):
    store = Store(tmp_path / "s")
    store.load(tiny_source())
    before = counts(store)
    bad = tiny_tables()["connections"].set_column(2, "n_synapses", pa.array([2, -1]))
    with pytest.raises(ValidationError, match=r"connections\.n_synapses \(from tiny_connections\.parquet\)"):
        store.load(tiny_source(connections=bad))
    assert counts(store) == before and len(store.snapshots()) == 1


@pytest.mark.processes
@pytest.mark.parametrize("point", ["store:wrote:functional_units", "store:catalog-written"])
def test_kill_midway_leaves_no_half_snapshot(tmp_path, point):
    """A load that dies at ``point`` (as SIGKILL would: nothing flushed, no ``finally``), with two
    tables written or with its new catalog complete but not renamed, leaves the committed
    snapshot alone; the next write removes what it left and succeeds."""
    store = Store(tmp_path / "s")
    first = store.load(tiny_source())["snapshot_id"]
    before = counts(store)
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        import pyarrow as pa
        from connectome_priors.etl.store import Store
        from tests.conftest import tiny_source, tiny_tables
        t = tiny_tables()["connections"]
        src = tiny_source(connections=t.set_column(2, "n_synapses", pa.array([7, 1])))
        Store({str(tmp_path / 's')!r}).load(src)
    """)
    env = {**os.environ, **pause_env(point, tmp_path / "pause", action="exit")}
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, env=env)
    assert proc.returncode == pause.EXIT_STATUS, proc.stderr.decode()
    assert pause.marker(point, tmp_path / "pause").exists()
    assert store.snapshots().snapshot_id.tolist() == [first]
    assert counts(store) == before
    # the killed load's raw folder (or catalog) is an orphan: removed on the next write, which
    # then succeeds
    assert len(list((tmp_path / "s" / "raw").iterdir())) == 2
    again = store.load(second_source())
    assert again["created"]
    assert sorted(p.name for p in (tmp_path / "s" / "raw").iterdir()) == sorted([first, again["snapshot_id"]])
    assert [p.name for p in (tmp_path / "s").iterdir() if p.name.startswith(".store.duckdb.tmp")] == []


@pytest.mark.parametrize("statement, kind", [
    ("INSERT INTO neurons SELECT * FROM neurons", "INSERT"),
    ("CREATE TABLE x AS SELECT 1", "CREATE"),
    ("DROP TABLE neurons", "DROP"),
    ("DELETE FROM snapshots", "DELETE"),
    ("UPDATE neurons SET root_id = 1", "UPDATE"),
    ("COPY neurons TO '/tmp/leak.csv'", "COPY"),
    ("ATTACH '/tmp/other.duckdb' AS o", "ATTACH"),
    ("SET enable_external_access = true", "SET"),
    ("SELECT 1; DROP TABLE neurons", "DROP"),
])
def test_sql_refuses_writes(tmp_path, statement, kind):
    store = Store(tmp_path / "s")
    store.load(tiny_source())
    with pytest.raises(ReadOnlyError, match=rf"refused: the store is read-only over SQL, and this is a {kind} statement"):
        store.sql(statement)
    assert counts(store)["neurons"] == 3


def test_sql_cannot_read_files(tmp_path):
    store = Store(tmp_path / "s")
    store.load(tiny_source())
    with pytest.raises(StoreError, match=r"file system operations are disabled"):
        store.sql("SELECT * FROM read_csv('/etc/passwd')")


def test_sql_on_a_missing_store_says_what_to_do(tmp_path):
    with pytest.raises(StoreError, match=r"no neuron store at .*run `cxp etl` first"):
        Store(tmp_path / "nothing").sql("SELECT 1")


def test_default_location_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CXP_STORE", str(tmp_path / "env-store"))
    assert Store().directory == tmp_path / "env-store"
    assert Store(tmp_path / "arg").directory == tmp_path / "arg"


def _old_layout(directory: Path) -> None:
    """Rewrite a store's catalog in the former layout: every row also in store.duckdb, in tables
    with the contract's keys, functional_units.nucleus_id still NOT NULL."""
    import duckdb

    from connectome_priors.etl.store import _columns
    from connectome_priors.schemas import STORE_TABLES

    catalog = directory / "store.duckdb"
    with duckdb.connect(str(catalog), read_only=True) as old:
        snaps = old.sql("SELECT * FROM snapshots").to_arrow_table()
    catalog.unlink()
    con = duckdb.connect(str(catalog))
    con.execute("CREATE TABLE snapshots AS SELECT * FROM snaps")
    for name in STORE_TABLES:
        cols = ", ".join(f"{c} {t}" for c, t in _columns(name))
        con.execute(f"CREATE TABLE {name} ({cols})")
        for sid in snaps.column("snapshot_id").to_pylist():
            path = directory / "raw" / sid / f"{name}.parquet"
            if path.exists():
                con.execute(f"INSERT INTO {name} SELECT * FROM read_parquet('{path}')")
    con.execute("ALTER TABLE functional_units ALTER COLUMN nucleus_id SET NOT NULL")
    con.close()


def test_store_in_the_former_layout_is_read_and_then_migrated(tmp_path):
    """A store written by the former layout (all rows in store.duckdb, nucleus_id NOT NULL) is
    read as it is; the next write replaces its catalog, so an activity-only snapshot (nucleus_id
    null) loads; earlier rows are kept."""
    store = Store(tmp_path)
    first = store.load(tiny_source())
    _old_layout(tmp_path)
    assert counts(store)["neurons"] == 3 and store.latest_snapshot() == first["snapshot_id"]
    tables = tiny_tables()
    units = tables["functional_units"]
    units = units.set_column(units.schema.get_field_index("nucleus_id"), "nucleus_id",
                             pa.array([None] * 3, pa.int64()))
    second = store.load(SourceTables(source="nwb", tables={"functional_units": units,
                                                          "spikes": tables["spikes"]}))
    assert second["snapshot_id"] != first["snapshot_id"]
    rows = store.sql("SELECT count(*) AS n, count(nucleus_id) AS cells FROM functional_units",
                     snapshot="all")
    assert rows.to_dict("records") == [{"n": 6, "cells": 3}]
    assert store.sql("SELECT count(*) AS n FROM neurons").n[0] == 0  # nwb: no neurons table


def test_a_new_materialization_with_unchanged_rows_is_a_new_snapshot(tmp_path):
    """Identity = content + the materialization it claims: version 2 with the rows of version 1
    is stored (once), so a refresh sees version 2 as stored; sources without a version keep
    content-only identity."""
    import dataclasses

    store = Store(tmp_path)
    v1 = dataclasses.replace(tiny_source(), source="cave", datastack="minnie65_public",
                             materialization_version=1)
    a = store.load(v1)
    b = store.load(dataclasses.replace(v1, materialization_version=2))
    again = store.load(dataclasses.replace(v1, materialization_version=2))
    assert a["created"] and b["created"] and not again["created"]
    assert a["snapshot_id"] != b["snapshot_id"] == again["snapshot_id"]
    assert a["content_hash"] == b["content_hash"]
    versions = store.sql("SELECT materialization_version AS v FROM snapshots ORDER BY v",
                         snapshot="all")["v"].tolist()
    assert versions == [1, 2]
    plain = store.load(tiny_source())
    assert plain["snapshot_id"] == "synthetic-" + plain["content_hash"][:16]


def test_unknown_snapshot_is_an_error_naming_the_known_ones(tmp_path, capsys):
    from connectome_priors.cli import main

    store = Store(tmp_path / "s")
    sid = store.load(tiny_source())["snapshot_id"]
    with pytest.raises(StoreError, match=rf"no snapshot 'synthetic-nope' in the store at .*known: {sid}, or 'all'"):
        store.sql("SELECT count(*) FROM neurons", snapshot="synthetic-nope")
    assert main(["sql", "SELECT 1", "--snapshot", "x", "--store", str(store.directory)]) == 2
    assert f"no snapshot 'x' in the store at {store.directory}; known: {sid}" in capsys.readouterr().err


def _files_export(directory: Path, *, empty: str | None = None, form: str = "parquet") -> Path:
    from connectome_priors.etl.sources.files import write_export
    from connectome_priors.testing.cave_standin import minnie_fixture

    for table, df in minnie_fixture(n_cells=60, n_synapses=300, versions=(1,), seed=3)[1].items():
        write_export(df.iloc[:0] if table == empty else df, directory, table, form=form)
    return directory


@pytest.mark.parametrize("form", ["parquet", "csv"])
def test_empty_nucleus_export_exits_2_and_keeps_the_latest_snapshot(tmp_path, capsys, form):
    from connectome_priors.cli import main

    store = tmp_path / "store"
    good = _files_export(tmp_path / "v1", form=form)
    assert main(["etl", "--source", "files", str(good), "--store", str(store), "--no-progress"]) == 0
    latest = Store(store).latest_snapshot()
    capsys.readouterr()
    empty = _files_export(tmp_path / "v2", empty="nucleus_detection_v0", form=form)
    assert main(["etl", "--source", "files", str(empty), "--store", str(store), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "cxp etl: error: neurons (from " in err and "nucleus_detection_v0" in err
    assert "expected at least one row (every files snapshot needs neurons); found 0 rows" in err
    assert Store(store).latest_snapshot() == latest and len(Store(store).snapshots()) == 1


def test_a_source_without_a_required_table_stores_nothing(tmp_path):
    tables = tiny_tables()
    with pytest.raises(ValidationError, match=r"functional_units \(from .*\): expected at least one "
                                              r"row \(every nwb snapshot needs functional_units\); found no table"):
        Store(tmp_path / "s").load(SourceTables(source="nwb", tables={"spikes": tables["spikes"]}))
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_sql_streams_its_result_to_a_file(tmp_path, fmt, capsys):
    import pandas as pd

    from connectome_priors.cli import main

    store = Store(tmp_path / "s")
    store.load(tiny_source())
    query = "SELECT nucleus_id, root_id, spike_times FROM neurons JOIN spikes ON true ORDER BY 1, 2"
    out = tmp_path / f"r.{fmt}"
    assert main(["sql", query, "--store", str(store.directory), "--format", fmt, "--out", str(out)]) == 0
    assert "wrote 9 rows to" in capsys.readouterr().err
    got = pd.read_parquet(out) if fmt == "parquet" else pd.read_csv(out)
    want = store.sql(query)
    assert got.nucleus_id.tolist() == want.nucleus_id.tolist() and len(got) == 9
    if fmt == "csv":
        assert out.read_text().splitlines()[0] == "nucleus_id,root_id,spike_times"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".r")] == []
    # many batches, never the whole result at once
    n = store.sql_to_file("SELECT range AS i FROM range(200000)", tmp_path / "big.parquet")
    assert n == 200000 and pq.read_metadata(tmp_path / "big.parquet").num_row_groups >= 1


def test_sql_out_that_is_a_directory_and_a_store_that_is_a_file(tmp_path, capsys):
    from connectome_priors.cli import main

    store = Store(tmp_path / "s")
    store.load(tiny_source())
    for fmt in ("csv", "parquet", "table"):
        assert main(["sql", "SELECT 1", "--store", str(store.directory), "--format", fmt,
                     "--out", str(tmp_path)]) == 2
        assert f"--out {tmp_path} is a directory; give a file path" in capsys.readouterr().err
    afile = tmp_path / "not-a-store"
    afile.write_text("x")
    with pytest.raises(StoreError, match=r"the store path .*not-a-store is a file, not a directory"):
        Store(afile).sql("SELECT 1")
    with pytest.raises(StoreError, match=r"is a file, not a directory"):
        Store(afile).load(tiny_source())
    assert main(["status", "--store", str(afile)]) == 2
    assert "is a file, not a directory" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["raw", "catalog"])
def test_disk_full_is_reported_as_such_and_changes_nothing(tmp_path, monkeypatch, where):
    import errno
    import os

    import connectome_priors.etl.store as store_module

    store = Store(tmp_path / "s")
    first = store.load(tiny_source())["snapshot_id"]
    before = counts(store)
    enospc = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if where == "raw":
        def full(*args, **kwargs):
            raise enospc
        monkeypatch.setattr(store_module.pq, "write_table", full)
        target = r"s/raw/\.tmp-synthetic-\w+-\d+/neurons\.parquet"
    else:
        real = os.replace

        def full(src, dst):
            if str(dst).endswith("store.duckdb"):
                raise enospc
            return real(src, dst)
        monkeypatch.setattr(store_module.os, "replace", full)
        target = r"s/store\.duckdb"
    with pytest.raises(StoreError, match=rf"cannot .* {tmp_path}/{target}: No space left on device "
                                         r"\(errno 28\)\. Free space"):
        store.load(second_source())
    monkeypatch.undo()
    assert store.snapshots().snapshot_id.tolist() == [first] and counts(store) == before
    assert sorted(p.name for p in (tmp_path / "s" / "raw").iterdir()) == [first]
    assert [p.name for p in (tmp_path / "s").iterdir() if ".tmp" in p.name] == []


def test_the_catalog_opens_in_plain_duckdb(tmp_path):
    """What the README shows: the catalog's views, relative to the store directory, from DuckDB."""
    import duckdb

    store = Store(tmp_path / "s")
    store.load(tiny_source())
    latest = store.load(second_source())["snapshot_id"]
    con = duckdb.connect()
    con.execute(f"SET file_search_path = '{store.directory}'")
    con.execute(f"ATTACH '{store.directory / 'store.duckdb'}' AS store (READ_ONLY)")
    assert con.execute("SELECT max(n_synapses), max(snapshot_id) FROM store.connections").fetchone() == (5, latest)
    assert con.execute("SELECT count(*) FROM store.snapshots").fetchone() == (2,)
    assert con.execute("SELECT count(*) FROM store.synapses").fetchone() == (0,)
