"""The store from DuckDB clients (issue 21): ``store.duckdb`` opens from any working directory, a
moved or copied store says so in one line and ``cxp status --repair`` fixes it, and
``Store.connect()`` gives a DuckDB connection over one snapshot."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from connectome_priors.cli import main
from connectome_priors.etl.errors import StoreError
from connectome_priors.etl.integrity import remove_tree
from connectome_priors.etl.store import Store
from tests.conftest import REPO, tiny_source, tiny_tables

NOTE = "cxp: note: DuckDB clients that open"


def second_source(n: int = 5):
    t = tiny_tables()["connections"]
    return tiny_source(connections=t.set_column(2, "n_synapses", pa.array([n, 1])))


def two_snapshots(directory: Path) -> tuple[Store, str, str]:
    store = Store(directory)
    first = store.load(tiny_source())["snapshot_id"]
    second = store.load(second_source())["snapshot_id"]
    return store, first, second


def plain_duckdb(catalog: Path, query: str, *, cwd: Path) -> subprocess.CompletedProcess:
    """``duckdb.connect(catalog, read_only=True).sql(query)`` in a fresh process working in ``cwd``:
    what a user's script, notebook or GUI client does."""
    script = textwrap.dedent(f"""
        import duckdb
        con = duckdb.connect({str(catalog)!r}, read_only=True)
        print(con.sql({query!r}).fetchall())
    """)
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)


@pytest.mark.processes
def test_the_catalog_opens_from_another_working_directory(tmp_path):
    store, _, second = two_snapshots(tmp_path / "s")
    proc = plain_duckdb(store.config.database, "SELECT count(*), max(snapshot_id) FROM neurons",
                        cwd=tmp_path / "elsewhere")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"[(3, '{second}')]"  # the latest snapshot's neurons
    proc = plain_duckdb(store.config.database, "SELECT max(n_synapses) FROM connections",
                        cwd=tmp_path / "elsewhere")
    assert proc.stdout.strip() == "[(5,)]", proc.stderr


@pytest.mark.processes
def test_a_files_export_store_answers_plain_duckdb_from_elsewhere(tmp_path):
    """The issue's reproduction: a store loaded from CAVE-style exports, queried by a script that
    runs in another directory, and through Store.connect()."""
    from connectome_priors import run_etl
    from connectome_priors.etl.sources.files import write_export
    from connectome_priors.testing.cave_standin import minnie_fixture

    for table, df in minnie_fixture(n_cells=60, n_synapses=300, versions=(1,), seed=3)[1].items():
        write_export(df, tmp_path / "export", table, form="parquet")
    run_etl("files", tmp_path / "export", store=tmp_path / "store")
    store = Store(tmp_path / "store")
    n = int(store.sql("SELECT count(*) AS n FROM neurons").n[0])
    assert n > 0
    proc = plain_duckdb(store.config.database, "SELECT count(*) FROM neurons", cwd=tmp_path / "x")
    assert proc.stdout.strip() == f"[({n},)]", proc.stderr
    with store.connect() as con:
        assert con.table("neurons").aggregate("count(*)").fetchall() == [(n,)]


@pytest.mark.processes
def test_a_relative_store_path_is_written_as_an_absolute_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Store("rel/store").load(tiny_source())
    proc = plain_duckdb(tmp_path / "rel" / "store" / "store.duckdb", "SELECT count(*) FROM neurons",
                        cwd=tmp_path / "elsewhere")
    assert proc.stdout.strip() == "[(3,)]", proc.stderr


@pytest.mark.processes
def test_a_store_path_with_glob_characters_reads_only_its_own_files(tmp_path):
    """DuckDB expands *, ? and [...] in file names: the views must match their own path only, not a
    sibling store that the pattern would match too (rows counted twice). (Not ?: DuckDB 2.0.1
    cannot write a database whose path holds one, it takes what follows for URI parameters.)"""
    store = Store(tmp_path / "it's [1]*")
    sid = store.load(tiny_source())["snapshot_id"]
    shutil.copytree(store.directory, tmp_path / "it's 1b")  # what the unescaped pattern matches
    proc = plain_duckdb(store.config.database, "SELECT count(*) FROM neurons", cwd=tmp_path / "x")
    assert proc.stdout.strip() == "[(3,)]", proc.stderr
    con = store.connect(snapshot=sid)
    assert con.sql("SELECT count(*) FROM neurons").fetchall()[0] == (3,)


def test_connect_gives_a_duckdb_connection_over_one_snapshot(tmp_path, monkeypatch):
    store, first, second = two_snapshots(tmp_path / "s")
    monkeypatch.chdir(tmp_path)  # any working directory
    with store.connect() as con:
        assert isinstance(con, duckdb.DuckDBPyConnection)
        assert con.sql("SELECT count(*), max(snapshot_id) FROM neurons").fetchall()[0] == (3, second)
        rel = con.table("connections").filter("pre_nucleus_id = 11").project("n_synapses")
        assert rel.fetchall() == [(5,)]  # the relational API
        assert con.sql("SELECT count(*) FROM snapshots").fetchall()[0] == (2,)
        assert con.sql("SELECT count(*) FROM snapshot_files").fetchall()[0] == (10,)
        assert con.sql("SELECT count(*) FROM synapses").fetchall()[0] == (0,)  # a table it lacks
        assert con.sql("FROM spikes ORDER BY unit_id").df().spike_times[0].tolist() == [0.1, 0.5, 2.0]
    with store.connect(first) as con:
        assert con.sql("SELECT max(n_synapses) FROM connections").fetchall()[0] == (2,)
    with store.connect("all") as con:
        assert con.sql("SELECT snapshot_id, count(*) FROM neurons GROUP BY ALL ORDER BY 1"
                       ).fetchall() == sorted([(first, 3), (second, 3)])
    with pytest.raises(StoreError, match=rf"no snapshot 'nope' .*known: {first}, {second}, or 'all'"):
        store.connect("nope")
    with pytest.raises(StoreError, match=r"no neuron store at .* run `cxp etl` first"):
        Store(tmp_path / "none").connect()


def test_connect_never_writes_the_store_nor_blocks_a_writer(tmp_path):
    store, _, second = two_snapshots(tmp_path / "s")

    def listing() -> dict[str, tuple[int, int]]:
        return {str(p.relative_to(store.directory)): (p.stat().st_size, p.stat().st_mtime_ns)
                for p in sorted(store.directory.rglob("*")) if p.is_file()}

    before = listing()
    con = store.connect()
    con.execute("CREATE TABLE mine AS SELECT nucleus_id FROM neurons")  # lives in memory
    assert con.sql("SELECT count(*) FROM mine").fetchall()[0] == (3,)
    assert listing() == before
    third = store.load(second_source(7))["snapshot_id"]  # commits while the connection is open
    assert con.sql("SELECT max(n_synapses), max(snapshot_id) FROM connections").fetchall()[0] == (5, second)
    con.close()
    assert store.connect().sql("SELECT max(n_synapses), max(snapshot_id) FROM connections"
                               ).fetchall()[0] == (7, third)


@pytest.mark.processes
def test_a_moved_store_says_so_once_and_repair_rewrites_its_views(tmp_path, capsys):
    store, _, second = two_snapshots(tmp_path / "s")
    moved = tmp_path / "moved"
    os.rename(store.directory, moved)
    proc = plain_duckdb(moved / "store.duckdb", "SELECT count(*) FROM neurons", cwd=tmp_path)
    assert proc.returncode != 0 and "No files found that match the pattern" in proc.stderr
    assert f"{tmp_path / 's'}/raw/{second}/neurons.parquet" in proc.stderr  # names the old place
    here = Store(moved)
    assert here.sql("SELECT count(*) AS n FROM neurons").n[0] == 3  # cxp sql is not affected
    assert here.connect().sql("SELECT count(*) FROM neurons").fetchall()[0] == (3,)
    assert here.sql("SELECT count(*) AS n FROM neurons").n[0] == 3
    err = capsys.readouterr().err
    assert err.count(NOTE) == 1 and len(err.strip().splitlines()) == 1  # one line, once per Store
    assert (f"{NOTE} {moved / 'store.duckdb'} directly fail with 'No files found that match the "
            f"pattern': its views read the Parquet files of {tmp_path / 's'}, not of {moved}: the "
            "store was moved or copied; `cxp status --repair`") in err
    assert main(["status", "--store", str(moved)]) == 0
    out, err = capsys.readouterr()
    assert err.count(NOTE) == 1 and "2 snapshot(s)" in out
    assert main(["status", "--repair", "--store", str(moved)]) == 0
    out, err = capsys.readouterr()
    assert NOTE not in err
    assert (f"rewrote the catalog's views for this location (they read the Parquet files of "
            f"{tmp_path / 's'}, not of {moved}: the store was moved or copied)") in out
    assert "all 10 files of 2 snapshot(s) verified" in out
    proc = plain_duckdb(moved / "store.duckdb", "SELECT count(*) FROM neurons", cwd=tmp_path / "x")
    assert proc.stdout.strip() == "[(3,)]", proc.stderr
    assert Store(moved).snapshots().snapshot_id.iloc[-1] == second
    assert capsys.readouterr().err == ""
    assert main(["status", "--repair", "--store", str(moved)]) == 0
    assert "nothing to repair" in capsys.readouterr().out


@pytest.mark.processes
def test_a_copied_store_is_told_its_views_read_the_original(tmp_path, capsys):
    store, _, _ = two_snapshots(tmp_path / "s")
    copy = tmp_path / "copy"
    shutil.copytree(store.directory, copy)
    assert Store(copy).latest_snapshot() == store.latest_snapshot()
    assert f"{NOTE} {copy / 'store.duckdb'} directly read that folder's files instead: its views " \
           f"read the Parquet files of {store.directory}, not of {copy}" in capsys.readouterr().err
    assert "rewrote the catalog's views" in Store(copy).repair().summary()
    remove_tree(store.directory)
    proc = plain_duckdb(copy / "store.duckdb", "SELECT count(*) FROM neurons", cwd=tmp_path)
    assert proc.stdout.strip() == "[(3,)]", proc.stderr


@pytest.mark.processes
def test_a_load_rewrites_the_views_of_a_moved_store(tmp_path, capsys):
    store, _, _ = two_snapshots(tmp_path / "s")
    moved = tmp_path / "moved"
    os.rename(store.directory, moved)
    Store(moved).load(second_source(7))
    assert NOTE not in capsys.readouterr().err
    proc = plain_duckdb(moved / "store.duckdb", "SELECT max(n_synapses) FROM connections", cwd=tmp_path)
    assert proc.stdout.strip() == "[(7,)]", proc.stderr


@pytest.mark.processes
def test_a_catalog_with_relative_views_is_told_and_repaired(tmp_path, capsys):
    """A catalog of the version before this one named its files relative to the store."""
    store, _, second = two_snapshots(tmp_path / "s")
    db = store.config.database
    os.chmod(db, 0o644)
    with duckdb.connect(str(db)) as con:
        con.execute(f"SET file_search_path = '{store.directory}'")
        con.execute(f"CREATE OR REPLACE VIEW neurons AS SELECT * FROM "
                    f"read_parquet('raw/{second}/neurons.parquet')")
    os.chmod(db, 0o444)
    proc = plain_duckdb(db, "SELECT count(*) FROM neurons", cwd=tmp_path)
    assert "No files found that match the pattern" in proc.stderr
    assert store.sql("SELECT count(*) AS n FROM neurons").n[0] == 3
    assert f"{NOTE} {db} directly fail from any other working directory: its views name their " \
           "Parquet files relative to the store" in capsys.readouterr().err
    report = store.repair()
    assert report.views and report.verified.files == 10
    proc = plain_duckdb(db, "SELECT count(*) FROM neurons", cwd=tmp_path)
    assert proc.stdout.strip() == "[(3,)]", proc.stderr
    row_counts = json.loads(store.snapshots().row_counts.iloc[-1])
    assert row_counts["neurons"] == 3
