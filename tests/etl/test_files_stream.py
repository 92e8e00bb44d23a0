"""The whole-volume release streamed into ``connections`` (issue 22): one gzip synapse view in
checkpointed chunks, bounded memory, resumable.

Checked against a hand count, an independent DuckDB count straight from the gzip, both aggregation
engines, and an uninterrupted load after a kill at a chunk checkpoint.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from connectome_priors.cli import main
from connectome_priors.etl import Store, run_etl
from connectome_priors.etl.aggregate import root_map, synapses_to_connections
from connectome_priors.etl.errors import SourceError
from connectome_priors.etl.sources.files import check_header, find_table, read_files
from connectome_priors.etl.sources.files.stream import CHUNK_BYTES, stream_connections
from connectome_priors.kernel.pause import marker
from connectome_priors.testing.release_synth import (VIEW_COLUMNS, VIEW_TABLE, release_config,
                                                     write_release)
from connectome_priors.testing.synapse_synth import VOLUME_BOUNDS, synthetic_cells

REPO = Path(__file__).resolve().parents[2]
_ROWS = 40_000
_CONFIG = release_config(_ROWS, seed=5, n_neurons=300, n_fragments=3_000)


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    return write_release(tmp_path_factory.mktemp("v1412") / "v1412", _CONFIG)["synapses"].parent


def _cells() -> pa.Table:
    nucleus, roots = synthetic_cells(_CONFIG)
    return pa.table({"nucleus_id": nucleus, "root_id": roots})


def _export(directory: Path):
    return check_header(find_table(directory, VIEW_TABLE))


def test_release_is_one_gzip_member_with_the_published_columns_and_bounds(release):
    names = sorted(p.name for p in release.iterdir())
    assert names == ["nucleus_detection_v0_merged.csv.gz", "nucleus_detection_v0_merged_header.csv",
                     f"{VIEW_TABLE}.csv.gz", f"{VIEW_TABLE}_header.csv"]
    lines = (release / f"{VIEW_TABLE}_header.csv").read_text().splitlines()
    assert [tuple(line.split(",")) for line in lines] == VIEW_COLUMNS and len(lines) == 15
    raw = (release / f"{VIEW_TABLE}.csv.gz").read_bytes()
    member = gzip.decompress(raw)
    assert raw.count(b"\x1f\x8b\x08") >= 1 and len(member.splitlines()) == _ROWS
    table = pcsv.read_csv(pa.py_buffer(member), read_options=pcsv.ReadOptions(autogenerate_column_names=True))
    rows = np.column_stack([c.to_numpy() for c in table.columns])
    assert rows.shape == (_ROWS, 15) and (rows[:, 0] == np.arange(1, _ROWS + 1)).all()
    for j, (lo, hi) in enumerate(VOLUME_BOUNDS):  # every position column, in voxels
        pos = rows[:, [1 + j, 4 + j, 7 + j]]
        assert pos.min() >= lo and pos.max() < hi
    # pairs repeat: more synapses than distinct pairs among cell-to-cell synapses
    roots = set(_cells().column("root_id").to_pylist())
    both = [(a, b) for a, b in rows[:, [12, 14]].tolist() if a in roots and b in roots]
    assert len(both) / len(set(both)) > 1.2



@pytest.mark.processes
def test_release_bytes_depend_on_the_seed_and_not_on_the_worker_count(tmp_path):
    import dataclasses

    config = dataclasses.replace(release_config(12_000, seed=3, n_neurons=200, n_fragments=2_000),
                                 rows_per_file=2_500)  # 5 partitions, the last one short

    def gz(name: str, cfg, workers: int) -> bytes:
        return write_release(tmp_path / name, cfg, workers=workers)["synapses"].read_bytes()

    one = gz("one", config, 1)
    assert gz("two", config, 2) == one  # partitions formatted in 2 processes, written in order
    assert len(gzip.decompress(one).splitlines()) == 12_000
    assert gz("other-seed", dataclasses.replace(config, seed=4), 2) != one

def _write_tiny(d: Path) -> Path:
    """Three cells (root 11 carried by nuclei 1 and 9: ambiguous) and six synapses, hand-made."""
    d.mkdir()
    (d / "nucleus_detection_v0_merged_header.csv").write_text(
        "id,bigint\nvalid,boolean\npt_root_id,bigint\npt_position_x,integer\npt_position_y,integer\n"
        "pt_position_z,integer\n")
    with gzip.open(d / "nucleus_detection_v0_merged.csv.gz", "wt") as fh:
        fh.write("1,t,11,100,100,20000\n2,t,22,200,200,20000\n3,t,33,300,300,20000\n"
                 "9,t,11,900,900,20000\n")
    (d / f"{VIEW_TABLE}_header.csv").write_text("".join(f"{c},{t}\n" for c, t in VIEW_COLUMNS))
    syn = [(22, 33, 10), (22, 33, 5), (33, 22, ""), (33, 22, 7), (22, 22, 3), (22, 99, 1),
           (11, 22, 4)]
    with gzip.open(d / f"{VIEW_TABLE}.csv.gz", "wt") as fh:
        for i, (pre, post, size) in enumerate(syn, 1):
            fh.write(f"{i},1,1,1,1,1,1,1,1,1,{size},0,{pre},0,{post}\n")
    return d


def test_hand_counted_connections_drop_autapses_fragments_and_ambiguous_roots(tmp_path):
    d = _write_tiny(tmp_path / "tiny")
    st = read_files(d, neurons="all", synapses=False, work_dir=tmp_path / "work")
    assert "synapses" not in st.tables and "synapses" not in st.streamed
    assert pq.read_table(st.streamed["connections"].path).to_pylist() == [
        {"pre_nucleus_id": 2, "post_nucleus_id": 3, "n_synapses": 2, "sum_size": 15.0},
        {"pre_nucleus_id": 3, "post_nucleus_id": 2, "n_synapses": 2, "sum_size": None}]
    # 5 rows between selected cells, as the held path counts them: 4 in connections, 1 autapse
    assert st.report["files"][-1]["rows"] == 7 and st.report["files"][-1]["kept"] == 5
    assert st.report["autapses_not_counted"] == 1 and st.report["synapses_in_connections"] == 4


def test_cli_connections_only_stores_connections_and_no_synapses(tmp_path, capsys):
    d = _write_tiny(tmp_path / "tiny")
    store = tmp_path / "s"
    assert main(["etl", "--source", "files", str(d), "--neurons", "all", "--connections-only",
                 "--store", str(store), "--no-progress"]) == 0
    out = capsys.readouterr().out
    counts = out.splitlines()[1]
    assert counts.startswith("  connections 2, neurons ") and "synapses" not in counts
    assert Store(store).sql("SELECT count(*) AS n FROM synapses").n[0] == 0
    assert Store(store).sql("SELECT sum(n_synapses) AS n FROM connections").n[0] == 4
    assert not (store / ".files-stream").exists()


def test_streamed_connections_equal_an_independent_duckdb_count_and_both_engines(release, tmp_path):
    cells = _cells()
    got = pq.read_table(stream_connections(_export(release), root_map(cells), tmp_path / "w",
                                           chunk_bytes=300_000).connections)
    assert got.num_rows > 1000
    names = ", ".join(f"'{c}': '{'BIGINT' if t == 'bigint' else 'INTEGER'}'" for c, t in VIEW_COLUMNS)
    sample = cells.column("nucleus_id").to_numpy()[::15]  # every 15th cell, as pre or as post
    con = duckdb.connect()
    con.register("cells", cells)
    expect = con.sql(f"""
        SELECT a.nucleus_id AS pre, b.nucleus_id AS post, count(*) AS n, sum(s.size) AS sz
        FROM read_csv('{release / f"{VIEW_TABLE}.csv.gz"}', header=false, columns={{{names}}}) s
        JOIN cells a ON s.pre_pt_root_id = a.root_id JOIN cells b ON s.post_pt_root_id = b.root_id
        WHERE a.nucleus_id <> b.nucleus_id
          AND (a.nucleus_id IN ({','.join(map(str, sample))})
               OR b.nucleus_id IN ({','.join(map(str, sample))}))
        GROUP BY pre, post
        ORDER BY pre, post""").fetchall()
    mine = got.to_pandas()
    mine = mine[mine.pre_nucleus_id.isin(sample) | mine.post_nucleus_id.isin(sample)]
    assert [(int(a), int(b), int(n), float(s)) for a, b, n, s in expect] == list(
        mine.itertuples(index=False, name=None))
    assert len(expect) > 100
    files = [release / f"{VIEW_TABLE}.csv.gz"]
    assert synapses_to_connections(files, cells, engine="duckdb").equals(got)
    assert synapses_to_connections(files, cells, engine="dask", n_workers=1).equals(got)


def test_a_stream_over_other_columns_is_refused_naming_them(tmp_path):
    d = _write_tiny(tmp_path / "tiny")
    (d / f"{VIEW_TABLE}_header.csv").write_text("".join(
        f"{c.replace('size', 'cleft')},{t}\n" for c, t in VIEW_COLUMNS))
    with pytest.raises(SourceError, match=r"no column size; expected id, pre_pt_root_id, post_pt_root_id, "
                                          r"size; found id, .*cleft"):
        stream_connections(_export(d), root_map(_cells()), tmp_path / "w")


_CHILD = """
import sys
import connectome_priors.etl.sources.files.source as source
source.CHUNK_BYTES = 250_000  # many chunks from a small file
from connectome_priors.etl import run_etl
run_etl("files", sys.argv[1], store=sys.argv[2], neurons="all", synapses=False)
"""


def _child(release: Path, store: Path, **env: str) -> subprocess.CompletedProcess:
    path = os.pathsep.join([str(REPO / "src"), str(REPO)])
    return subprocess.run([sys.executable, "-c", _CHILD, str(release), str(store)], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": path, **env}, capture_output=True,
                          text=True, timeout=300)


def test_killed_mid_stream_resumes_without_redoing_chunks_and_equals_an_uninterrupted_load(
        release, tmp_path):
    store = tmp_path / "killed"
    killed = _child(release, store, CXP_PAUSE_AT="files-stream:after-checkpoint:3",
                    CXP_PAUSE_ACTION="exit", CXP_PAUSE_DIR=str(tmp_path))
    assert killed.returncode == 137, killed.stderr
    assert marker("files-stream:after-checkpoint:3", tmp_path).is_file()
    assert not Store(store).exists()  # nothing visible: no catalog, no snapshot
    (work,) = (store / ".files-stream").iterdir()
    assert json.loads((work / "state.json").read_text())["done"] == 3
    assert sorted(p.name for p in work.glob("part-*.parquet")) == [
        f"part-{k:06d}.parquet" for k in range(3)]
    # redoing chunk 0, 1 or 2 would pass its write's pause point, and exit there
    redo = ",".join(f"files-stream:before-checkpoint:{k}" for k in range(3))
    resumed = _child(release, store, CXP_PAUSE_AT=redo, CXP_PAUSE_ACTION="exit",
                     CXP_PAUSE_DIR=str(tmp_path))
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(Store(store).snapshots().iloc[0]["report"])
    assert report["files_stream"]["resumed_chunks"] == 3
    assert report["files_stream"]["chunks"] > 6
    assert not (store / ".files-stream").exists()  # removed once stored
    whole = tmp_path / "whole"
    run_etl("files", release, store=whole, neurons="all", synapses=False)
    a = Store(store).sql("SELECT * EXCLUDE (snapshot_id) FROM connections ORDER BY ALL")
    b = Store(whole).sql("SELECT * EXCLUDE (snapshot_id) FROM connections ORDER BY ALL")
    assert len(a) > 1000 and a.equals(b)
    assert Store(store).snapshots().iloc[0]["content_hash"] == Store(whole).snapshots().iloc[0]["content_hash"]


def test_streamed_synapses_and_connections_equal_the_held_load(tmp_path):
    """``--stream`` keeps the synapses too, through the store's batch-by-batch copy: the same
    stored rows as the held path, and the tiny hand-made export's rows."""
    d = _write_tiny(tmp_path / "tiny")
    run_etl("files", d, store=tmp_path / "held", neurons="all")
    run_etl("files", d, store=tmp_path / "streamed", neurons="all", stream=True)
    for table in ("neurons", "synapses", "connections"):
        query = f"SELECT * EXCLUDE (snapshot_id) FROM {table} ORDER BY ALL"
        assert Store(tmp_path / "streamed").sql(query).equals(Store(tmp_path / "held").sql(query))
    syn = Store(tmp_path / "streamed").sql("SELECT synapse_id, size FROM synapses ORDER BY 1")
    # 6 goes to a fragment; 7 from root 11, which two nuclei carry (no cell has it)
    assert syn.synapse_id.tolist() == [1, 2, 3, 4, 5]
    assert syn["size"].isna().tolist() == [False, False, True, False, False]
    assert not (tmp_path / "streamed" / ".files-stream").exists()
    # the same rows hash alike on both paths: one snapshot id, whichever way they were loaded
    assert (Store(tmp_path / "streamed").snapshots().snapshot_id.tolist()
            == Store(tmp_path / "held").snapshots().snapshot_id.tolist())


def test_a_stream_over_a_csv_with_its_own_header_row_says_to_load_it_held(tmp_path):
    d = _write_tiny(tmp_path / "tiny")  # the same rows as a CSV whose first row names the columns
    sidecar = d / f"{VIEW_TABLE}_header.csv"
    names = ",".join(line.split(",")[0] for line in sidecar.read_text().splitlines())
    rows = gzip.decompress((d / f"{VIEW_TABLE}.csv.gz").read_bytes())
    (d / f"{VIEW_TABLE}.csv.gz").write_bytes(gzip.compress(names.encode() + b"\n" + rows))
    sidecar.unlink()
    with pytest.raises(SourceError, match=r"found a CSV with its own header row and no sidecar\. "
                                          r"Load it without --stream and --connections-only"):
        read_files(d, neurons="all", synapses=False, work_dir=tmp_path / "w")
    held = read_files(d, neurons="all", work_dir=tmp_path / "w")  # what the message says to do
    assert held.tables["connections"].num_rows == 2


def test_a_streamed_table_out_of_key_order_is_refused_naming_the_rows(tmp_path):
    from connectome_priors.etl.contracts import validate_streamed
    from connectome_priors.etl.errors import ValidationError
    from connectome_priors.etl.tables import ParquetRows

    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"pre_nucleus_id": [1, 1, 2, 2], "post_nucleus_id": [2, 3, 1, 1],
                             "n_synapses": [1, 1, 1, 1], "sum_size": [1.0, 1.0, 1.0, 1.0]}), path)
    neurons = pa.table({"nucleus_id": [1, 2, 3]})
    with pytest.raises(ValidationError, match=r"sorted strictly.*row 3 has key \(2, 1\) after \(2, 1\)"):
        validate_streamed(ParquetRows(path), "connections", {"neurons": neurons}, origin="test",
                          batch_rows=3)  # the repeat straddles two batches


def test_a_truncated_gzip_is_one_error_naming_the_file(tmp_path):
    d = _write_tiny(tmp_path / "tiny")
    data = d / f"{VIEW_TABLE}.csv.gz"
    lines = "".join(f"{i},1,1,1,1,1,1,1,1,1,5,0,22,0,33\n" for i in range(1, 20_001))
    data.write_bytes(gzip.compress(lines.encode())[:-5000])
    with pytest.raises(SourceError, match=r"cannot read .*\.csv\.gz: .*complete \.csv\.gz"):
        stream_connections(_export(d), root_map(_cells()), tmp_path / "w")


@pytest.mark.parametrize("chunk_bytes", [CHUNK_BYTES, 700], ids=["one-chunk", "many-chunks"])
@pytest.mark.parametrize(("bad", "found"), [
    ("12x,0,22,0,33", r"column size \(line 11 of the header\): expected an integer; found '12x'"),
    ("5,0,22", "expected one field per header line; found 13 fields, not 15")])
def test_a_value_that_does_not_parse_is_one_error_naming_file_line_and_column(tmp_path, chunk_bytes,
                                                                             bad, found):
    d = _write_tiny(tmp_path / "tiny")
    data = d / f"{VIEW_TABLE}.csv.gz"
    lines = [f"{i},1,1,1,1,1,1,1,1,1,5,0,22,0,33" for i in range(1, 1501)]
    # line 1237: past the rows the header check samples, so the stream's own parse meets it
    lines[1236] = lines[1236].replace("5,0,22,0,33", bad)
    data.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    with pytest.raises(SourceError, match=rf"\.csv\.gz .*: line 1237, {found}$"):
        stream_connections(_export(d), root_map(_cells()), tmp_path / "w", chunk_bytes=chunk_bytes)


def test_a_stored_load_removes_only_its_own_work_folder(tmp_path):
    """Another streamed load into the same store (its checkpoints under another key) keeps its
    work; the finished load's own folder goes."""
    d = _write_tiny(tmp_path / "tiny")
    store = tmp_path / "s"
    other = store / ".files-stream" / "another-load-in-progress"
    other.mkdir(parents=True)
    (other / "state.json").write_text("{}")
    run_etl("files", d, store=store, neurons="all", stream=True)
    assert [p.name for p in (store / ".files-stream").iterdir()] == ["another-load-in-progress"]
    assert (other / "state.json").read_text() == "{}"


def test_streamed_load_reports_autapses_and_other_rows_as_the_held_load_does(tmp_path, capsys):
    """Every row the streamed load leaves out is counted under its own reason, the same counts
    the held path prints: 1 autapse, 2 rows not between two selected cells (a fragment, a root
    two nuclei carry)."""
    d = _write_tiny(tmp_path / "tiny")
    lines = {}
    for how, extra in (("held", []), ("streamed", ["--connections-only"])):
        assert main(["etl", "--source", "files", str(d), "--neurons", "all", *extra,
                     "--store", str(tmp_path / how), "--no-progress"]) == 0
        lines[how] = [line for line in capsys.readouterr().out.splitlines()
                      if "left out" in line or "between selected cells" in line]
    assert lines["streamed"] == lines["held"]
    assert "  left out: 1 autapses (pre = post cell), not counted in connections" in lines["held"]
    assert "  left out: 2 synapses rows not between two selected cells" in lines["held"]


def _write_repeats(d: Path) -> Path:
    """The tiny export's cells, with synapse ids repeated: ids 1, 3 and 4 twice between cells (4
    an autapse), 5 twice to a fragment, 6 twice from the root two nuclei carry (no cell's)."""
    d = _write_tiny(d)
    syn = [(1, 22, 33, 10), (2, 22, 33, 5), (1, 22, 33, 99), (3, 33, 22, ""), (3, 33, 22, 7),
           (4, 22, 22, 3), (4, 22, 22, 3), (5, 22, 99, 1), (5, 22, 99, 1), (6, 11, 22, 4),
           (6, 11, 22, 4)]
    with gzip.open(d / f"{VIEW_TABLE}.csv.gz", "wt") as fh:
        for i, pre, post, size in syn:
            fh.write(f"{i},1,1,1,1,1,1,1,1,1,{size},0,{pre},0,{post}\n")
    return d


@pytest.mark.parametrize("chunk_bytes", [CHUNK_BYTES, 20], ids=["one-chunk", "line-per-chunk"])
def test_repeated_synapse_ids_are_dropped_and_counted_as_the_held_load_does(tmp_path, monkeypatch,
                                                                              chunk_bytes):
    """A repeated id keeps its first row, within a chunk or across chunks (then found through the
    id ranges' overlap): the streamed snapshot is the held one, with the same count dropped."""
    import connectome_priors.etl.sources.files.read as read
    import connectome_priors.etl.sources.files.source as source

    monkeypatch.setattr(source, "CHUNK_BYTES", chunk_bytes)
    # the header check refuses an id repeated among the first rows it samples (1000; a header out
    # of order puts another column under id): here it samples 2, so the repeats come after them
    monkeypatch.setattr(read, "SAMPLE_ROWS", 2)
    d = _write_repeats(tmp_path / "tiny")
    held = read_files(d, neurons="all")
    streamed = read_files(d, neurons="all", stream=True, work_dir=tmp_path / "w1")
    only = read_files(d, neurons="all", synapses=False, work_dir=tmp_path / "w2")
    if chunk_bytes == 20:
        assert streamed.report["files_stream"]["chunks"] == 11
    for st in (held, streamed, only):  # 5 and 6 are not between cells: not looked at
        assert st.report["synapse_duplicate_ids_dropped"] == 3
        assert st.report["autapses_not_counted"] == 1
        assert st.report["synapses_rows_not_between_selected_cells"] == 4
        assert st.report["files"][-1]["kept"] == 7  # between cells: repeats and the autapse included
    snaps = {how: Store(tmp_path / how).load(st)["snapshot_id"]
             for how, st in (("held", held), ("streamed", streamed), ("only", only))}
    assert snaps["held"] == snaps["streamed"]
    conn = Store(tmp_path / "only").sql(
        "SELECT pre_nucleus_id, post_nucleus_id, n_synapses, sum_size FROM connections ORDER BY 1, 2")
    # 2 -> 3: ids 1 (size 10, its repeat's 99 dropped) and 2 (5); 3 -> 2: id 3, size unknown
    assert conn.values.tolist()[0] == [2, 3, 2, 15.0] and conn.values.tolist()[1][:3] == [3, 2, 1]
    assert np.isnan(conn.values.tolist()[1][3]) and len(conn) == 2
    for how in ("held", "streamed"):
        syn = Store(tmp_path / how).sql("SELECT synapse_id, size FROM synapses ORDER BY 1")
        assert syn.synapse_id.tolist() == [1, 2, 3, 4]
        assert syn["size"].fillna(-1).tolist() == [10.0, 5.0, -1, 3.0]  # the first rows kept
