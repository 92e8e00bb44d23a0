"""The ``files`` source (etl/sources/files.py): static CAVE exports through the shared transform."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectome_priors.cli import main
from connectome_priors.etl.errors import SourceError
from connectome_priors.etl.pipeline import run_etl
from connectome_priors.testing.cave_standin import minnie_fixture
from connectome_priors.etl.sources.cave.transform import canonical_tables
from connectome_priors.etl.formats.export_header import read_header
from connectome_priors.etl.sources.files import check_header, find_exports, read_files, write_export


@pytest.fixture(scope="module")
def raw():
    return minnie_fixture(n_cells=160, n_synapses=2500, versions=(1,), seed=3)[1]


@pytest.fixture(scope="module")
def reference(raw):
    return canonical_tables(raw, datastack="minnie65_public", materialization_version=1300,
                            materialization_timestamp=None)


def _write_all(raw, directory, form):
    for table, df in raw.items():
        write_export(df, directory, table, form=form)
    return directory


@pytest.mark.parametrize("form", ["export", "csv", "parquet"])
def test_every_form_gives_the_cave_transform_tables(raw, reference, tmp_path, form):
    d = _write_all(raw, tmp_path / "v1300", form)
    st = read_files(d)
    assert st.source == "files" and st.materialization_version == 1300
    assert sorted(st.tables) == sorted(reference.tables)
    for name, table in reference.tables.items():
        assert st.tables[name].equals(table), name
    assert st.tables["connections"].num_rows > 100 and st.tables["synapses"].num_rows > 1000
    assert "nucleus_detection_v0" in st.origins["neurons"]
    assert st.origins["tuning"].count("+") == 0  # only the table actually used is named


def test_merged_export_format_on_disk(raw, tmp_path):
    write_export(raw["synapses_pni_2"], tmp_path, "synapses_pni_2")
    header = read_header(tmp_path / "synapses_pni_2_merged_header.csv")
    assert header.columns[:2] == ("id", "valid") and dict(zip(header.columns, header.types))[
        "pre_pt_root_id"] == "bigint"
    first = gzip.open(tmp_path / "synapses_pni_2_merged.csv.gz", "rt").readline().strip().split(",")
    assert len(first) == len(header.columns) and first[1] == "t"  # no header row; booleans t/f
    roots = raw["synapses_pni_2"]["pre_pt_root_id"].to_numpy()
    assert int(first[header.columns.index("pre_pt_root_id")]) in set(roots.tolist())


def test_partitioned_export_and_invalid_rows(raw, reference, tmp_path):
    d = _write_all(raw, tmp_path / "x", "export")
    syn = raw["synapses_pni_2"]
    parts = d / "synapses_pni_2_merged"
    half = len(syn) // 2
    write_export(syn.iloc[:half], parts, "a")
    write_export(syn.iloc[half:], parts, "b")
    (d / "synapses_pni_2_merged.csv.gz").unlink()
    for extra in parts.glob("*_header.csv"):
        extra.unlink()
    exports = find_exports(d)
    assert exports["synapses_pni_2"].form == "export" and len(exports["synapses_pni_2"].paths) == 2
    st = read_files(d)
    assert st.tables["connections"].equals(reference.tables["connections"])
    # a nucleus marked invalid ('f' in the export) is not a cell
    nuc = raw["nucleus_detection_v0"].copy()
    victim = int(reference.tables["neurons"]["nucleus_id"][0].as_py())
    nuc.loc[nuc["id"] == victim, "valid"] = False
    write_export(nuc, d, "nucleus_detection_v0")
    st = read_files(d)
    assert victim not in st.tables["neurons"]["nucleus_id"].to_pylist()
    assert st.tables["neurons"].num_rows == reference.tables["neurons"].num_rows - 1


def test_list_positions_are_split(raw, reference, tmp_path):
    d = _write_all(raw, tmp_path / "p", "parquet")
    nuc = raw["nucleus_detection_v0"]
    pts = [[x, y, z] for x, y, z in zip(nuc.pt_position_x, nuc.pt_position_y, nuc.pt_position_z)]
    table = pa.Table.from_pandas(nuc.drop(columns=["pt_position_x", "pt_position_y",
                                                   "pt_position_z"]), preserve_index=False)
    pq.write_table(table.append_column("pt_position", pa.array(pts)), d / "nucleus_detection_v0.parquet")
    assert read_files(d).tables["neurons"].equals(reference.tables["neurons"])


def test_header_and_data_disagree(raw, tmp_path):
    d = _write_all(raw, tmp_path / "h", "export")
    header = d / "nucleus_detection_v0_merged_header.csv"
    lines = header.read_text().splitlines()
    header.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(SourceError, match=r"nucleus_detection_v0_merged.csv.gz: first row has "
                                          rf"{len(lines)} values; header .* lists {len(lines) - 1}"):
        read_files(d)
    # a column declared bigint holding text: the file, column, declared type and value are named
    lines[lines.index("volume,double precision")] = "volume,bigint"
    header.write_text("\n".join(lines) + "\n")
    with pytest.raises(SourceError, match=r"nucleus_detection_v0_merged.csv.gz: column volume \(line 3 "
                                          r"of .*\): expected integers \(declared 'bigint'\); "
                                          r"found '[\d.]+' in row 1, a number\. Either"):
        read_files(d)
    header.write_text("id bigint\n")
    with pytest.raises(SourceError, match=r"line 1: expected 'column,type'; found 'id bigint'"):
        read_files(d)
    header.unlink()
    with pytest.raises(SourceError, match=r"has no header file; expected .*"
                                          r"nucleus_detection_v0_merged_header.csv"):
        read_files(d)


def test_missing_tables_and_float_ids(raw, tmp_path):
    with pytest.raises(SourceError, match="is not a directory"):
        read_files(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="has no nucleus table \\(nucleus_detection_v0 as"):
        read_files(tmp_path / "empty")
    d = _write_all(raw, tmp_path / "f", "parquet")
    nuc = raw["nucleus_detection_v0"].astype({"pt_root_id": "float64"})
    write_export(nuc, d, "nucleus_detection_v0", form="parquet")
    with pytest.raises(SourceError, match="column pt_root_id: expected integer ids; found type double"):
        read_files(d)


def test_run_etl_and_cli_store_a_files_snapshot(raw, tmp_path, capsys):
    d = _write_all(raw, tmp_path / "v7", "export")
    snap = run_etl("files", d, store=tmp_path / "store")
    assert snap["created"] and snap["source"] == "files" and snap["materialization_version"] == 7
    counts = json.loads(snap["row_counts"])
    assert counts["neurons"] > 0 and counts["connections"] > 0
    assert main(["etl", "--source", "files", str(d), "--store", str(tmp_path / "store"),
                 "--no-progress"]) == 0
    assert "already stored" in capsys.readouterr().out
    assert main(["etl", "--source", "files", str(tmp_path / "nope"), "--store",
                 str(tmp_path / "store"), "--no-progress"]) == 2
    assert "is not a directory" in capsys.readouterr().err

def _swap_lines(header, a, b):
    lines = header.read_text().splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith(f"{a},"))
    j = next(k for k, line in enumerate(lines) if line.startswith(f"{b},"))
    lines[i], lines[j] = lines[j], lines[i]
    header.write_text("\n".join(lines) + "\n")


def _add_name_row(directory, table, columns):
    path = directory / f"{table}_merged.csv.gz"
    body = gzip.open(path, "rt").read()
    with gzip.open(path, "wt") as fh:
        fh.write(",".join(columns) + "\n" + body)


def test_data_with_a_row_of_names_is_bound_by_name(raw, reference, tmp_path):
    d = _write_all(raw, tmp_path / "v1300", "export")
    for table in ("nucleus_detection_v0", "synapses_pni_2"):
        _add_name_row(d, table, list(raw[table].columns))
        header = d / f"{table}_merged_header.csv"
        lines = header.read_text().splitlines()
        header.write_text("\n".join(reversed(lines)) + "\n")  # shuffled: the names decide
    exports = find_exports(d)
    st = read_files(d)
    for name, table in reference.tables.items():
        assert st.tables[name].equals(table), name
    assert not exports["nucleus_detection_v0"].header_row  # found, not yet bound
    # a row of names that is not the header's columns is refused, naming the difference
    header = d / "nucleus_detection_v0_merged_header.csv"
    header.write_text("\n".join(line for line in header.read_text().splitlines()
                                if not line.startswith("volume,")) + "\n")
    with pytest.raises(SourceError, match=r"nucleus_detection_v0_merged.csv.gz: the first row names "
                                          r"columns .* \(missing none, not in the header \['volume'\]"):
        read_files(d)


@pytest.mark.parametrize("a,b,match", [
    # different types: the values at the swapped positions contradict the declared types
    ("id", "valid", r"column valid \(line 1 of nucleus_detection_v0_merged_header.csv\): expected "
                    r"booleans \(t/f\) \(declared 'boolean'\); found '\d+' in row 1, an integer"),
    # same type, but ids repeat where the header says `id`
    ("id", "pt_root_id", r"column id \(line 8 of .*\): expected unique annotation ids; found '\d+' "
                         r"again in row \d+"),
    # same type, out of CAVE's order
    ("pt_position_x", "pt_position_y", r"column pt_position_y: the header places it before "
                                       r"pt_position_x \(lines 4 and 5\); CAVE's tables put "
                                       r"pt_position_x first"),
])
def test_shuffled_header_of_header_less_data_is_refused(raw, tmp_path, a, b, match):
    d = _write_all(raw, tmp_path / "s", "export")
    header = d / "nucleus_detection_v0_merged_header.csv"
    _swap_lines(header, a, b)
    with pytest.raises(SourceError, match=r"nucleus_detection_v0_merged.csv.gz: " + match + r".*"
                                          r"Put the lines of .* in the order of the data's columns"):
        read_files(d)
    _swap_lines(header, a, b)  # back in the data's order: it loads
    assert read_files(d).tables["neurons"].num_rows > 0


def test_shuffled_synapse_header_is_refused(raw, tmp_path):
    d = _write_all(raw, tmp_path / "s", "export")
    header = d / "synapses_pni_2_merged_header.csv"
    _swap_lines(header, "pre_pt_root_id", "post_pt_root_id")  # would reverse every connection
    with pytest.raises(SourceError, match=r"synapses_pni_2_merged.csv.gz: column post_pt_root_id: "
                                          r"the header places it before pre_pt_root_id"):
        read_files(d)
    _swap_lines(header, "pre_pt_root_id", "post_pt_root_id")
    lines = header.read_text().splitlines()
    np.random.default_rng(5).shuffle(lines)
    header.write_text("\n".join(lines) + "\n")
    with pytest.raises(SourceError, match=r"synapses_pni_2_merged.csv.gz: column \w+"):
        read_files(d)


def test_refused_header_stores_nothing(raw, tmp_path, capsys):
    d = _write_all(raw, tmp_path / "v3", "export")
    _swap_lines(d / "nucleus_detection_v0_merged_header.csv", "id", "valid")
    store = tmp_path / "store"
    assert main(["etl", "--source", "files", str(d), "--store", str(store), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "nucleus_detection_v0_merged.csv.gz: column valid" in err and "found '" in err
    assert not (store / "store.duckdb").exists()


def test_header_type_against_the_schema_and_mixed_partitions(raw, tmp_path):
    d = _write_all(raw, tmp_path / "t", "export")
    header = d / "nucleus_detection_v0_merged_header.csv"
    header.write_text(header.read_text().replace("valid,boolean", "valid,bigint"))
    with pytest.raises(SourceError, match=r"nucleus_detection_v0_merged_header.csv: column valid is "
                                          r"declared 'bigint'; CAVE's tables hold booleans \(t/f\)"):
        read_files(d)
    syn = raw["synapses_pni_2"]
    parts = d / "synapses_pni_2_merged"
    write_export(syn.iloc[:100], parts, "a")
    write_export(syn.iloc[100:], parts, "b")
    (parts / "b_merged_header.csv").unlink()
    (d / "synapses_pni_2_merged.csv.gz").unlink()
    _add_name_row(parts, "a", list(syn.columns))
    export = find_exports(d)["synapses_pni_2"]
    with pytest.raises(SourceError, match=r"some partitions start with a row of column names "
                                          r"\(a_merged.csv.gz\), others do not"):
        check_header(export)
