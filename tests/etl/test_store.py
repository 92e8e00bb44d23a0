"""The neuron store: atomic snapshots, idempotent loads, raw layer, read-only SQL."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectome_priors.etl.errors import ReadOnlyError, StoreError, ValidationError
from connectome_priors.etl.store import Store, content_hash
from connectome_priors.etl.tables import SourceTables
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


def test_kill_midway_leaves_no_half_snapshot(tmp_path):
    store = Store(tmp_path / "s")
    first = store.load(tiny_source())["snapshot_id"]
    before = counts(store)
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(REPO)!r})
        import pyarrow as pa
        from connectome_priors.etl.store import Store
        from tests.conftest import tiny_source, tiny_tables
        t = tiny_tables()["connections"]
        src = tiny_source(connections=t.set_column(2, "n_synapses", pa.array([7, 1])))
        def die(table):
            if table == "spikes":  # three tables inserted, transaction open
                os.kill(os.getpid(), signal.SIGKILL)
        Store({str(tmp_path / 's')!r}).load(src, on_table=die)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()
    assert store.snapshots().snapshot_id.tolist() == [first]
    assert counts(store) == before
    # the killed load's raw folder is an orphan: removed on the next write, which then succeeds
    again = store.load(second_source())
    assert again["created"]
    assert sorted(p.name for p in (tmp_path / "s" / "raw").iterdir()) == sorted([first, again["snapshot_id"]])


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


def test_store_from_an_older_contract_accepts_units_without_a_cell(tmp_path):
    """A store created when functional_units.nucleus_id was NOT NULL is migrated on the next
    write, so an activity-only snapshot (nucleus_id null) loads; earlier rows are kept."""
    import duckdb

    store = Store(tmp_path)
    first = store.load(tiny_source())
    con = duckdb.connect(str(tmp_path / "store.duckdb"))
    con.execute("ALTER TABLE functional_units ALTER COLUMN nucleus_id SET NOT NULL")
    con.close()
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
