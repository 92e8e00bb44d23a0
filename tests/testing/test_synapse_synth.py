"""Seeded synthetic synapse table (etl/sources/synapse_synth.py) and ``cxp synth-synapses``."""

from __future__ import annotations

import gzip

import numpy as np
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from connectome_priors.cli import main
from connectome_priors.etl.errors import SourceError
from connectome_priors.etl.formats.export_header import read_header
from connectome_priors.testing.synapse_synth import (SYNAPSE_COLUMNS, SynapseSynthConfig, synapse_partition,
                                       synthetic_cells, write_synthetic_synapses)

CFG = SynapseSynthConfig(rows=25_000, rows_per_file=10_000, n_neurons=500, n_fragments=20_000,
                         seed=11)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    return write_synthetic_synapses(tmp_path_factory.mktemp("syn"), CFG)


def test_layout_and_row_counts(written):
    parts = sorted(written["parquet"].glob("*.parquet"))
    csvs = sorted(written["csv.gz"].glob("*.csv.gz"))
    assert [p.name for p in parts] == ["part-00000.parquet", "part-00001.parquet",
                                       "part-00002.parquet"]
    assert len(csvs) == 3 and CFG.n_files == 3
    assert [pq.read_metadata(p).num_rows for p in parts] == [10_000, 10_000, 5_000]
    header = read_header(written["csv.gz"].parent / "synapses_pni_2_merged_header.csv")
    assert list(zip(header.columns, header.types)) == SYNAPSE_COLUMNS
    ids = np.concatenate([pq.read_table(p, columns=["id"])["id"].to_numpy() for p in parts])
    assert np.array_equal(ids, np.arange(1, 25_001))


def test_csv_and_parquet_hold_the_same_rows(written):
    header = read_header(written["csv.gz"].parent / "synapses_pni_2_merged_header.csv")
    first_line = gzip.open(written["csv.gz"] / "part-00001.csv.gz", "rt").readline()
    assert not first_line.startswith("id,")  # header-less, like the static export
    csv = pcsv.read_csv(written["csv.gz"] / "part-00001.csv.gz",
                        read_options=pcsv.ReadOptions(column_names=list(header.columns)))
    par = pq.read_table(written["parquet"] / "part-00001.parquet")
    for col in ("id", "pre_pt_root_id", "post_pt_root_id", "size", "ctr_pt_position_z"):
        assert csv[col].to_pylist() == par[col].to_pylist(), col  # root ids exact (> 2**53)
    assert par["pre_pt_root_id"].to_numpy().min() > 2**53
    assert set(csv["valid"].to_pylist()) == {"t"}  # PostgreSQL CSV booleans


def test_same_seed_same_rows_and_independent_partitions(written):
    again = synapse_partition(CFG, 2)
    assert again.equals(pq.read_table(written["parquet"] / "part-00002.parquet"))
    other = synapse_partition(SynapseSynthConfig(**{**CFG.__dict__, "seed": 12}), 2)
    assert not other.equals(again)
    nuc = pq.read_table(written["neurons"])
    cells = synthetic_cells(CFG)
    assert np.array_equal(nuc["nucleus_id"].to_numpy(), cells[0])
    assert len(np.unique(cells[1])) == CFG.n_neurons


def test_statistics_follow_the_model():
    cfg = SynapseSynthConfig(rows=200_000, rows_per_file=200_000, n_neurons=2_000, partner_sd=20.0,
                             seed=1)
    t = synapse_partition(cfg, 0)
    _, roots = synthetic_cells(cfg)
    pre_cell = np.isin(t["pre_pt_root_id"].to_numpy(), roots)
    post_cell = np.isin(t["post_pt_root_id"].to_numpy(), roots)
    assert pre_cell.mean() == pytest.approx(cfg.p_pre_cell, abs=0.01)
    assert post_cell.mean() == pytest.approx(cfg.p_post_cell, abs=0.01)
    both = pre_cell & post_cell
    pre = t["pre_pt_root_id"].to_numpy()[both]
    post = t["post_pt_root_id"].to_numpy()[both]
    assert (pre == post).mean() == pytest.approx(cfg.autapse_fraction, abs=0.002)
    size = t["size"].to_numpy()
    assert size.min() >= 1 and np.median(size) == pytest.approx(cfg.size_median, rel=0.05)
    # local wiring: cell-to-cell pairs repeat far more often than uniform partners would
    pairs = np.unique(np.stack([pre, post]), axis=1).shape[1]
    assert pairs < 0.97 * both.sum()


def test_bad_configs_are_refused(tmp_path):
    with pytest.raises(SourceError, match="rows_per_file >= 1"):
        SynapseSynthConfig(rows_per_file=0)
    with pytest.raises(SourceError, match="formats must be parquet and/or csv.gz; found"):
        write_synthetic_synapses(tmp_path, CFG, formats=("json",))
    with pytest.raises(SourceError, match="partition 3 out of range"):
        synapse_partition(CFG, 3)


def test_cli_generates_then_aggregates(tmp_path, capsys):
    out = tmp_path / "gen"
    assert main(["synth-synapses", "--rows", "30000", "--rows-per-file", "10000", "--cells", "300",
                 "--out", str(out), "--format", "csv.gz", "--no-progress"]) == 0
    assert "SYNTHETIC" in capsys.readouterr().out
    assert not (out / "synapses_pni_2").exists() and (out / "synapses_pni_2_merged").is_dir()
    conns = tmp_path / "c.parquet"
    assert main(["aggregate", str(out / "synapses_pni_2_merged"), "--neurons",
                 str(out / "neurons.parquet"), "--out", str(conns), "--no-progress"]) == 0
    table = pq.read_table(conns)
    assert table.num_rows > 100 and "connections" in capsys.readouterr().out
    assert table["n_synapses"].to_numpy().sum() > table.num_rows  # pairs repeat
    assert main(["aggregate", str(out / "missing"), "--neurons", str(out / "neurons.parquet"),
                 "--out", str(conns), "--no-progress"]) == 2
    assert "does not exist" in capsys.readouterr().err
