"""``cxp etl|status|sql``: the CLI is a thin layer whose output and exit codes users rely on."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from connectome_priors.cli import main
from connectome_priors.testing.cave_standin import minnie_fixture
from connectome_priors.etl.sources.files import write_export
from tests.conftest import write_field


@pytest.fixture
def release(tmp_path) -> Path:
    write_field(tmp_path / "rel", "4_7_2", n=25, seed=1)
    write_field(tmp_path / "rel", "4_7_4", n=20, seed=2, spikes=False)
    return tmp_path / "rel"


def test_etl_status_sql_round_trip(tmp_path, release, capsys):
    store = str(tmp_path / "store")
    assert main(["etl", "--source", "blueprint", str(release), "--store", store, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "stored snapshot blueprint-" in out and "functional_units 45" in out
    assert main(["etl", "--source", "blueprint", str(release), "--store", store, "--no-progress"]) == 0
    assert "already stored (same content hash), nothing written" in capsys.readouterr().out
    assert main(["status", "--store", store, "--format", "csv"]) == 0
    status = capsys.readouterr().out.splitlines()
    assert status[0].startswith("snapshot_id,source,version,created,neurons,functional_units")
    assert len(status) == 2 and ",blueprint,-," in status[1]
    assert main(["sql", "SELECT count(*) AS n FROM functional_units", "--store", store,
                 "--format", "csv"]) == 0
    assert capsys.readouterr().out == "n\n45\n"


def test_sql_parquet_output(tmp_path, release, capsys):
    store = str(tmp_path / "store")
    main(["etl", "--source", "blueprint", str(release), "--store", store, "--no-progress"])
    out = tmp_path / "units.parquet"
    assert main(["sql", "SELECT field, count(*) AS n FROM functional_units GROUP BY field ORDER BY field",
                 "--store", store, "--format", "parquet", "--out", str(out)]) == 0
    df = pd.read_parquet(out)
    assert df.to_dict("list") == {"field": [2, 4], "n": [25, 20]}
    assert main(["sql", "SELECT 1", "--store", store, "--format", "parquet"]) == 2
    assert "--format parquet needs --out PATH" in capsys.readouterr().err


def test_write_statement_is_refused_with_exit_2(tmp_path, release, capsys):
    store = str(tmp_path / "store")
    main(["etl", "--source", "blueprint", str(release), "--store", store, "--no-progress"])
    capsys.readouterr()
    assert main(["sql", "DELETE FROM neurons", "--store", store]) == 2
    err = capsys.readouterr().err
    assert "cxp sql: error: refused: the store is read-only over SQL, and this is a DELETE statement" in err


def test_strict_failure_names_the_field_and_stores_nothing(tmp_path, release, capsys):
    write_field(release, "5_3_4", n=30, seed=4, file_order="units")
    store = tmp_path / "store"
    assert main(["etl", "--source", "blueprint", str(release), "--store", str(store), "--no-progress"]) == 2
    assert "field 5_3_4: after re-ordering connectome_5_3_4.csv" in capsys.readouterr().err
    assert not (store / "store.duckdb").exists()  # the source failed before the store was touched
    assert main(["etl", "--source", "blueprint", str(release), "--store", str(store), "--mode",
                 "lenient", "--no-progress"]) == 0
    assert "skipped fields: 5_3_4" in capsys.readouterr().out


def test_status_of_an_empty_location(tmp_path, capsys):
    assert main(["status", "--store", str(tmp_path / "none")]) == 2
    assert "no neuron store at" in capsys.readouterr().err


@pytest.mark.processes
def test_console_script_is_installed(tmp_path, release):
    cxp = shutil.which("cxp") or str(Path(__import__("sys").executable).parent / "cxp")
    proc = subprocess.run([cxp, "sql", "SELECT 42 AS answer", "--store", str(tmp_path / "none")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "run `cxp etl` first" in proc.stderr
    proc = subprocess.run([cxp, "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "etl" in proc.stdout and "sql" in proc.stdout


def test_files_source_honours_neurons_datastack_and_version(tmp_path, capsys):
    raw = minnie_fixture(n_cells=60, n_synapses=600, versions=(1,), seed=4)[1]
    d = tmp_path / "pinky-export"  # no cell-type or co-registration tables, no v<N> name
    for table in ("nucleus_detection_v0", "synapses_pni_2"):
        write_export(raw[table], d, table)
    store = str(tmp_path / "store")
    # the default selection (co-registered excitatory cells) needs the absent tables
    assert main(["etl", "--source", "files", str(d), "--store", store, "--no-progress"]) == 2
    assert "needs cell classes ('aibs_metamodel_celltypes_v661' or a profile's" in capsys.readouterr().err
    assert main(["etl", "--source", "files", str(d), "--neurons", "all", "--datastack", "pinky100",
                 "--store", store, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "stored snapshot files-" in out and "datastack pinky100, materialization version unknown; neurons: all" in out
    out = tmp_path / "snapshots.parquet"
    assert main(["sql", "SELECT datastack, materialization_version AS v, parameters FROM snapshots",
                 "--snapshot", "all", "--store", store, "--format", "parquet", "--out", str(out)]) == 0
    [row] = pd.read_parquet(out).to_dict("records")
    assert row["datastack"] == "pinky100" and pd.isna(row["v"])
    assert json.loads(row["parameters"])["neurons"] == "all"
    roots = raw["nucleus_detection_v0"].pt_root_id.to_numpy()  # every nucleus with its own root
    expected = sum(1 for r in roots if r != 0 and (roots == r).sum() == 1)
    assert main(["sql", "SELECT count(*) AS n FROM neurons", "--store", store, "--format", "csv",
                 "--out", str(tmp_path / "n.csv")]) == 0
    assert pd.read_csv(tmp_path / "n.csv").n.iloc[0] == expected
    from connectome_priors.etl.sources.files import read_files

    assert read_files(d, neurons="all").datastack is None  # without --datastack: never guessed
    # --version: the version the export was made of (it overrides a v<N> folder name)
    assert main(["etl", "--source", "files", str(d), "--neurons", "all", "--datastack", "pinky100",
                 "--version", "185", "--store", store, "--no-progress"]) == 0
    assert "datastack pinky100, materialization v185; neurons: all" in capsys.readouterr().out
