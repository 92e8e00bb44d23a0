"""Synapse aggregation engines (etl/aggregate): rules on hand-computed cases, engine equality."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from connectome_priors.etl.aggregate import resolve_files, root_map, synapses_to_connections
from connectome_priors.etl.contracts import validate_table
from connectome_priors.etl.errors import EtlError, SourceError
from connectome_priors.kernel.dask import DaskError
from connectome_priors.testing.synapse_synth import SynapseSynthConfig, write_synthetic_synapses

R = 864691135_000_000_000  # realistic 18-digit root ids: beyond float64's exact integers


@pytest.fixture(scope="module")
def cluster():
    """A real distributed LocalCluster: 2 single-threaded worker processes, 1 GiB each."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit="1GiB",
                      dashboard_address=":0") as lc, Client(lc) as client:
        yield client


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    cfg = SynapseSynthConfig(rows=300_000, rows_per_file=60_000, n_neurons=3_000,
                             n_fragments=50_000, partner_sd=30.0, autapse_fraction=0.01, seed=7)
    paths = write_synthetic_synapses(tmp_path_factory.mktemp("synth"), cfg)
    return cfg, paths


NEURONS = pa.table({"nucleus_id": [10, 20, 30, 40, 41, 50],
                    "root_id": [R + 1, R + 2, R + 3, R + 4, R + 4, None]})


def _hand_synapses() -> pa.Table:
    rows = [  # pre, post, size
        (R + 1, R + 2, 10.0), (R + 1, R + 2, 2.5), (R + 1, R + 2, 7.0),   # 10 -> 20: 3, 10+3+7
        (R + 2, R + 1, 4.0),                                              # 20 -> 10: 1, 4
        (R + 1, R + 3, None), (R + 1, R + 3, 5.0),                        # 10 -> 30: 2, null
        (R + 3, R + 3, 9.0),                                              # autapse of 30
        (R + 1, R + 4, 8.0),                                              # ambiguous root: out
        (R + 1, R + 999, 1.0), (R + 999, R + 2, 1.0),                     # fragments: out
        (0, R + 2, 1.0), (R + 2, None, 1.0),                              # no segment: out
        (R + 3, R + 1, 0.49),                                             # 30 -> 10: 1, 0
    ]
    pre, post, size = zip(*rows)
    return pa.table({"pre_root_id": pa.array(pre, pa.int64()),
                     "post_root_id": pa.array(post, pa.int64()),
                     "size": pa.array(size, pa.float64())})


EXPECTED = {"pre_nucleus_id": [10, 10, 20, 30], "post_nucleus_id": [20, 30, 10, 10],
            "n_synapses": [3, 2, 1, 1], "sum_size": [20.0, None, 4.0, 0.0]}


@pytest.mark.parametrize("engine", ["duckdb", "dask"])
def test_hand_computed_connections(engine, cluster):
    report: dict = {}
    out = synapses_to_connections(_hand_synapses(), NEURONS, engine=engine, scheduler=cluster,
                                  report=report)
    assert out.to_pydict() == EXPECTED
    assert out.schema.names == ["pre_nucleus_id", "post_nucleus_id", "n_synapses", "sum_size"]
    assert report["ambiguous_root_ids"] == 1 and report["n_synapses_counted"] == 7
    validate_table(out, "connections", origin="test")  # the store contract accepts it


@pytest.mark.parametrize("engine", ["duckdb", "dask"])
def test_keep_self_counts_autapses(engine, cluster):
    out = synapses_to_connections(_hand_synapses(), NEURONS, engine=engine, scheduler=cluster,
                                  keep_self=True).to_pandas()
    auto = out[(out.pre_nucleus_id == 30) & (out.post_nucleus_id == 30)]
    assert auto.n_synapses.tolist() == [1] and auto.sum_size.tolist() == [9.0]
    assert len(out) == 5


def test_cave_column_names_and_no_size(cluster):
    syn = _hand_synapses().rename_columns(["pre_pt_root_id", "post_pt_root_id", "size"])
    a = synapses_to_connections(syn, NEURONS)
    assert a.to_pydict() == EXPECTED
    no_size = syn.drop_columns(["size"])
    for engine in ("duckdb", "dask"):
        b = synapses_to_connections(no_size, NEURONS, engine=engine, scheduler=cluster)
        assert b["n_synapses"].to_pylist() == EXPECTED["n_synapses"]
        assert b["sum_size"].null_count == b.num_rows


def test_root_map_drops_ambiguous_and_missing_roots():
    m = root_map(NEURONS)
    assert m.root_ids.tolist() == [R + 1, R + 2, R + 3] and m.nucleus_ids.tolist() == [10, 20, 30]
    assert m.n_ambiguous == 1
    assert m.lookup(np.array([R + 3, R + 4, 5], np.int64)).tolist() == [2, -1, -1]


def _pandas_reference(paths, cfg_neurons: pa.Table, *, keep_self=False) -> pd.DataFrame:
    """An independent plain-pandas computation of the same rules (merge + groupby)."""
    syn = pd.concat([pq.read_table(p, columns=["pre_pt_root_id", "post_pt_root_id", "size"])
                     .to_pandas() for p in sorted(paths.glob("*.parquet"))])
    m = cfg_neurons.to_pandas()
    m = m[m.root_id.map(m.root_id.value_counts()) == 1]
    df = (syn.merge(m.rename(columns={"root_id": "pre_pt_root_id", "nucleus_id": "pre_nucleus_id"}))
          .merge(m.rename(columns={"root_id": "post_pt_root_id", "nucleus_id": "post_nucleus_id"})))
    if not keep_self:
        df = df[df.pre_nucleus_id != df.post_nucleus_id]
    out = (df.groupby(["pre_nucleus_id", "post_nucleus_id"])
           .agg(n_synapses=("size", "size"), sum_size=("size", "sum")).reset_index())
    out["sum_size"] = out["sum_size"].astype(float)
    return out


def test_engines_identical_on_synthetic_partitions(synth, cluster):
    cfg, paths = synth
    neurons = pq.read_table(paths["neurons"])
    results = {}
    for fmt in ("parquet", "csv.gz"):
        for engine in ("duckdb", "dask"):
            results[fmt, engine] = synapses_to_connections(paths[fmt], neurons, engine=engine,
                                                           scheduler=cluster)
    first = results["parquet", "duckdb"]
    assert first.num_rows > 1_000 and int(np.asarray(first["n_synapses"]).sum()) > 10_000
    for key, table in results.items():
        assert table.equals(first), key
    ref = _pandas_reference(paths["parquet"], neurons)
    pd.testing.assert_frame_equal(first.to_pandas(), ref, check_dtype=False)
    # pairs repeat (local wiring), so counts and sums are really aggregated
    assert max(first["n_synapses"].to_pylist()) > 1


def test_dask_engine_via_scheduler_address(synth, cluster):
    cfg, paths = synth
    neurons = pq.read_table(paths["neurons"])
    address = cluster.scheduler.address
    via_address = synapses_to_connections(paths["parquet"], neurons, engine="dask",
                                          scheduler=address)
    assert via_address.equals(synapses_to_connections(paths["parquet"], neurons))


def test_single_files_and_lists(synth):
    cfg, paths = synth
    neurons = pq.read_table(paths["neurons"])
    files = sorted(paths["csv.gz"].glob("*.csv.gz"))[:2]
    src = resolve_files(files)
    assert src.format == "csv" and src.header is not None and len(src.files) == 2
    one = synapses_to_connections(files, neurons)
    pq_files = sorted(paths["parquet"].glob("*.parquet"))[:2]
    assert one.equals(synapses_to_connections(pq_files, neurons))


def test_csv_with_header_row(tmp_path, cluster):
    path = tmp_path / "syn.csv"
    pcsv.write_csv(_hand_synapses(), path)  # header row; no sidecar: names come from the file
    assert resolve_files(path).header is None
    for engine in ("duckdb", "dask"):
        assert synapses_to_connections(path, NEURONS, engine=engine,
                                       scheduler=cluster).to_pydict() == EXPECTED


def test_errors_name_what_is_wrong(tmp_path, synth):
    syn = _hand_synapses()
    floats = syn.set_column(0, "pre_root_id", syn["pre_root_id"].cast(pa.float64(), safe=False))
    for engine in ("duckdb", "dask"):
        with pytest.raises(SourceError, match="pre_root_id must hold integer root ids; found "
                                              "type double"):
            synapses_to_connections(floats, NEURONS, engine=engine, scheduler="tcp://127.0.0.1:1")
    with pytest.raises(SourceError, match="expected a column post_root_id or post_pt_root_id"):
        synapses_to_connections(syn.drop_columns(["post_root_id"]), NEURONS)
    with pytest.raises(SourceError, match="does not exist"):
        synapses_to_connections(tmp_path / "nope.parquet", NEURONS)
    with pytest.raises(SourceError, match="holds no .parquet"):
        synapses_to_connections(tmp_path, NEURONS)
    cfg, paths = synth
    with pytest.raises(SourceError, match="mix Parquet and CSV"):
        resolve_files([paths["parquet"], paths["csv.gz"]])
    with pytest.raises(SourceError, match="expected a column 'root_id'"):
        synapses_to_connections(syn, NEURONS.drop_columns(["root_id"]))
    with pytest.raises(EtlError, match="unknown aggregation engine 'spark'"):
        synapses_to_connections(syn, NEURONS, engine="spark")


def test_unreachable_scheduler_is_a_clear_error(monkeypatch):
    monkeypatch.setattr("connectome_priors.kernel.dask.CONNECT_TIMEOUT", "1s")
    with pytest.raises(DaskError, match=r"cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        synapses_to_connections(_hand_synapses(), NEURONS, engine="dask",
                                scheduler="tcp://127.0.0.1:9")


def test_corrupt_partition_names_the_file(tmp_path, synth, cluster):
    cfg, paths = synth
    neurons = pq.read_table(paths["neurons"])
    bad = tmp_path / "synapses_pni_2_merged"
    bad.mkdir()
    (tmp_path / "synapses_pni_2_merged_header.csv").write_text(
        (paths["csv.gz"].parent / "synapses_pni_2_merged_header.csv").read_text())
    (bad / "part-00000.csv.gz").write_bytes(b"\x1f\x8bnot really gzip")
    for engine in ("duckdb", "dask"):
        with pytest.raises(SourceError, match="part-00000.csv.gz"):
            synapses_to_connections(bad, neurons, engine=engine, scheduler=cluster)


def test_dask_combine_buckets_do_not_change_the_result(synth, cluster):
    from connectome_priors.etl.aggregate.engine_dask import aggregate_dask
    from connectome_priors.etl.aggregate.partial import finalize

    cfg, paths = synth
    neurons = pq.read_table(paths["neurons"])
    expected = synapses_to_connections(paths["parquet"], neurons)
    for n_buckets in (3, 7):
        cols = aggregate_dask(resolve_files(paths["csv.gz"]), root_map(neurons), keep_self=False,
                              scheduler=cluster, n_buckets=n_buckets)
        assert finalize(cols).equals(expected), n_buckets


@pytest.mark.slow
def test_engines_identical_at_scale_with_small_workers(tmp_path):
    """5M synthetic rows in 10 CSV.gz + 10 Parquet files: duckdb capped at 1GB, dask workers at
    1 GiB each (a worker over its budget would be restarted and the run would fail)."""
    from distributed import Client, LocalCluster

    cfg = SynapseSynthConfig(rows=5_000_000, rows_per_file=500_000, seed=3)
    paths = write_synthetic_synapses(tmp_path, cfg)
    neurons = pq.read_table(paths["neurons"])
    expected = synapses_to_connections(paths["parquet"], neurons, memory_limit="1GB")
    assert expected.num_rows > 500_000
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit="1GiB",
                      dashboard_address=":0") as lc, Client(lc) as client:
        for fmt in ("parquet", "csv.gz"):
            got = synapses_to_connections(paths[fmt], neurons, engine="dask", scheduler=client)
            assert got.equals(expected), fmt
    assert synapses_to_connections(paths["csv.gz"], neurons, memory_limit="1GB").equals(expected)
