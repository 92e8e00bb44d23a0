"""The ``files`` source on the layouts and names the producers publish (issue 19).

Folders are written from the producers' column lists: the static dump's
``synapses_pni_2_v1_filtered_view`` (15 columns, MaterializationEngine's ``DumpTableToBucketAsCSV``:
header-less data + ``<table>_header.csv``), the ``_merged`` tables, the open-data bucket's
``connections_with_nuclei`` edge list, and pinky100's v185 CSVs (README: which was confirmed where).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectome_priors.cli import main
from connectome_priors.etl.errors import SourceError
from connectome_priors.etl.profiles import ProfileError, load_profile
from connectome_priors.etl.sources.cave.transform import canonical_tables
from connectome_priors.etl.sources.files import read_files, write_export
from connectome_priors.testing.cave_standin import minnie_fixture
from connectome_priors.testing.release_synth import VIEW_COLUMNS
from connectome_priors.testing.release_synth import VIEW_TABLE as VIEW  # the v1412 dump's view



@pytest.fixture(scope="module")
def raw():
    return minnie_fixture(n_cells=160, n_synapses=2500, versions=(1,), seed=3)[1]


def _cells(raw, neurons="coregistered_excitatory"):
    small = {k: v for k, v in raw.items() if k != "synapses_pni_2"}
    return canonical_tables(small, datastack=None, materialization_version=None,
                            materialization_timestamp=None, neurons=neurons).tables["neurons"]


def _write_dump(raw, d: Path, *, synapses: pd.DataFrame | None = None) -> Path:
    """The static dump: ``_merged`` tables + the synapse view as header-less CSV.gz + sidecar."""
    for table, df in raw.items():
        if table != "synapses_pni_2":
            write_export(df, d, table)
    syn = (raw["synapses_pni_2"] if synapses is None else synapses)[[c for c, _ in VIEW_COLUMNS]]
    with gzip.open(d / f"{VIEW}.csv.gz", "wt") as fh:
        syn.astype({"size": np.int64}).to_csv(fh, header=False, index=False)
    (d / f"{VIEW}_header.csv").write_text("".join(f"{c},{t}\n" for c, t in VIEW_COLUMNS))
    return d


def test_static_dump_stores_every_synapse_between_the_selected_cells(raw, tmp_path, capsys):
    d = _write_dump(raw, tmp_path / "v1412")
    st = read_files(d)
    cells = _cells(raw)
    roots = set(cells.column("root_id").drop_null().to_pylist())
    syn = raw["synapses_pni_2"]
    expect = syn[syn.pre_pt_root_id.isin(roots) & syn.post_pt_root_id.isin(roots)].sort_values("id")
    got = st.tables["synapses"].to_pandas()
    assert len(got) == len(expect) > 100
    assert got.synapse_id.tolist() == expect.id.tolist()
    for axis in "xyz":  # positions equal to the file's
        np.testing.assert_array_equal(got[f"{axis}_vox"], expect[f"ctr_pt_position_{axis}"])
    assert st.report["files"][-1] == {"file": f"{VIEW}.csv.gz", "role": "synapses", "table": VIEW,
                                      "rows": len(syn), "kept": len(expect),
                                      "not_between_selected_cells": len(syn) - len(expect)}
    # the CLI names every file with its role and rows, and what it left out
    assert main(["etl", "--source", "files", str(d), "--store", str(tmp_path / "s"),
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"read {VIEW}.csv.gz: synapses, {len(syn):,} rows, {len(expect):,} between selected" in out
    assert "read nucleus_detection_v0_merged.csv.gz: nucleus, 160 rows" in out
    assert f"left out: {len(syn) - len(expect):,} synapses rows not between two selected cells" in out


def test_list_and_text_positions_give_the_same_snapshot_tables(raw, tmp_path):
    reference = read_files(_write_dump(raw, tmp_path / "dump"))
    syn = raw["synapses_pni_2"]
    points = {p: [[x, y, z] for x, y, z in zip(syn[f"{p}_x"], syn[f"{p}_y"], syn[f"{p}_z"])]
              for p in ("pre_pt_position", "ctr_pt_position", "post_pt_position")}
    split = [f"{p}_{a}" for p in points for a in "xyz"]
    nuc = raw["nucleus_detection_v0"]
    nuc_points = [[x, y, z] for x, y, z in zip(nuc.pt_position_x, nuc.pt_position_y, nuc.pt_position_z)]
    # Parquet: list columns (caveclient's frames without split_positions, saved)
    pq_dir = tmp_path / "parquet"
    for table, df in raw.items():
        write_export(df, pq_dir, table, form="parquet")
    pq.write_table(pa.Table.from_pandas(syn.drop(columns=split), preserve_index=False).append_column(
        "ctr_pt_position", pa.array(points["ctr_pt_position"])), pq_dir / "synapses_pni_2.parquet")
    pq.write_table(pa.Table.from_pandas(nuc.drop(columns=["pt_position_x", "pt_position_y",
                                                          "pt_position_z"]), preserve_index=False)
                   .append_column("pt_position", pa.array(nuc_points)),
                   pq_dir / "nucleus_detection_v0.parquet")
    # CSV: "[x y z]" text, with numpy's uneven spacing
    csv_dir = tmp_path / "csv"
    for table, df in raw.items():
        write_export(df, csv_dir, table, form="csv")
    text = syn.drop(columns=split).assign(**{
        p: ["[" + "  ".join(f"{v:>6}" for v in pt) + " ]" for pt in pts] for p, pts in points.items()})
    text.to_csv(csv_dir / "synapses_pni_2.csv", index=False)
    for d in (pq_dir, csv_dir):
        st = read_files(d)
        assert sorted(st.tables) == sorted(reference.tables)
        for name, table in reference.tables.items():
            assert st.tables[name].equals(table), (d.name, name)


def test_a_position_that_does_not_parse_names_file_row_and_column(raw, tmp_path):
    d = tmp_path / "bad"
    for table, df in raw.items():
        write_export(df, d, table, form="csv")
    nuc = raw["nucleus_detection_v0"]
    text = nuc.drop(columns=["pt_position_x", "pt_position_y", "pt_position_z"]).assign(
        pt_position=[f"[{x} {y} {z}]" for x, y, z in zip(nuc.pt_position_x, nuc.pt_position_y,
                                                         nuc.pt_position_z)])
    text.loc[7, "pt_position"] = "[12 x 4]"
    text.to_csv(d / "nucleus_detection_v0.csv", index=False)
    with pytest.raises(SourceError, match=r"nucleus_detection_v0.csv: column pt_position, row 8: "
                                          r"expected a point \[x y z\] \(three numbers\); found "
                                          r"'\[12 x 4\]'"):
        read_files(d)


def test_connections_with_nuclei_is_stored_as_connections(raw, tmp_path):
    reference = read_files(_write_dump(raw, tmp_path / "dump"))
    d = tmp_path / "edges"
    for table, df in raw.items():
        if table != "synapses_pni_2":
            write_export(df, d, table)
    syn = raw["synapses_pni_2"]
    nuc = raw["nucleus_detection_v0"].set_index("pt_root_id")["id"]
    nuc = nuc[~nuc.index.duplicated(keep=False)]
    edges = syn.groupby(["pre_pt_root_id", "post_pt_root_id"]).agg(
        n_syn=("id", "size"), sum_size=("size", "sum")).reset_index()
    edges["pre_nuc_id"] = nuc.reindex(edges.pre_pt_root_id).fillna(0).astype(np.int64).to_numpy()
    edges["post_nuc_id"] = nuc.reindex(edges.post_pt_root_id).fillna(0).astype(np.int64).to_numpy()
    edges.to_csv(d / "connections_with_nuclei.csv.gz", index=False)
    st = read_files(d)
    assert "synapses" not in st.tables
    assert st.tables["connections"].equals(reference.tables["connections"])
    assert st.report["files"][-1]["role"] == "connections"
    assert st.report["autapses_not_counted"] == reference.report["autapses_not_counted"]


def test_unrecognized_files_and_a_synapse_file_matching_no_cell_are_said(raw, tmp_path, capsys):
    d = _write_dump(raw, tmp_path / "v9")
    (d / "notes.txt").write_text("downloaded by hand\n")
    (d / "synapses_pni_3.csv").write_text("id\n1\n")
    store = str(tmp_path / "s")
    assert main(["etl", "--source", "files", str(d), "--store", store, "--no-progress"]) == 0
    assert "not recognized (not read): notes.txt, synapses_pni_3.csv" in capsys.readouterr().out
    syn = raw["synapses_pni_2"].copy()
    syn["pre_pt_root_id"] += 1  # another materialization's root ids
    _write_dump(raw, d, synapses=syn)
    assert main(["etl", "--source", "files", str(d), "--store", store, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{VIEW}.csv.gz" in err and f"none of its {len(syn):,} synapses rows is between two" in err


def test_all_keeps_every_class_but_glia(raw):
    cells = _cells(raw, "all").to_pandas()
    ct = raw["aibs_metamodel_celltypes_v661"]
    assert "glia" not in set(cells.cell_class.dropna())
    nonneurons = set(ct.loc[ct.classification_system == "nonneuron", "target_id"])
    assert nonneurons and not nonneurons & set(cells.nucleus_id)


# --- profiles --------------------------------------------------------------------------------

def _pinky_like(d: Path, seed: int = 0, n: int = 40) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Files in pinky100 v185's published layout (columns, CRLF, "[x  y   z]" text positions)."""
    rng = np.random.default_rng(seed)
    roots = 648518346349530000 + rng.choice(10_000, n, replace=False)
    roots[1] = roots[0]  # two nuclei on one root (a merge): both excluded
    kind = rng.choice(np.array(["e", "e", "e", "i", "g"], dtype=object), n)
    kind[2] = "uncertain"
    vox = np.column_stack([rng.integers(60_000, 110_000, n), rng.integers(40_000, 60_000, n),
                           rng.integers(10, 2_000, n)])
    soma = pd.DataFrame({"id": np.arange(1, n + 1) * 7, "cell_type": kind,
                         "pt_position": ["[" + " ".join(f"{v:>6}" for v in row) + "]" for row in vox],
                         "pt_root_id": roots, "soma_x_nm": vox[:, 0] * 4, "soma_y_nm": vox[:, 0] * 4,
                         "soma_z_nm": vox[:, 0] * 40})
    m = 300
    pre, post = rng.choice(roots, m), rng.choice(roots, m)
    ctr = np.column_stack([rng.integers(60_000, 110_000, m), rng.integers(40_000, 60_000, m),
                           rng.integers(10, 2_000, m)])
    syn = pd.DataFrame({"id": rng.choice(10**7, m, replace=False), "pre_root_id": pre,
                        "post_root_id": post, "cleft_vx": rng.integers(30, 900, m),
                        "spine_vol_um3": rng.random(m), "ctr_pt_x_nm": ctr[:, 0] * 4,
                        "ctr_pt_y_nm": ctr[:, 1] * 4, "ctr_pt_z_nm": ctr[:, 2] * 40,
                        **{f"{p}_pos_{a}_vx": ctr[:, i] for p in ("pre", "ctr", "post")
                           for i, a in enumerate("xyz")}})
    d.mkdir(parents=True, exist_ok=True)
    soma.to_csv(d / "soma_valence_v185.csv", index=False, lineterminator="\r\n")
    syn.to_csv(d / "soma_subgraph_synapses_spines_v185.csv", index=False)
    return soma, syn


def _independent_counts(soma: pd.DataFrame, syn: pd.DataFrame) -> dict:
    """What the store must hold, counted straight from the files with pandas."""
    shared = soma.pt_root_id.duplicated(keep=False)
    cells = soma[~shared & (soma.cell_type != "g")]
    roots = set(cells.pt_root_id)
    among = syn[syn.pre_root_id.isin(roots) & syn.post_root_id.isin(roots)]
    pairs = among[among.pre_root_id != among.post_root_id].groupby(["pre_root_id", "post_root_id"])
    return {"neurons": len(cells), "synapses": len(among), "connections": pairs.ngroups,
            "n_synapses": int(pairs.size().sum()), "glia": int((soma.cell_type[~shared] == "g").sum())}


def _check_pinky(d: Path, store: Path, capsys) -> dict:
    soma = pd.read_csv(next(d.glob("soma_valence_v185.csv")))
    syn = pd.read_csv(next(d.glob("soma_subgraph_synapses_spines_v185.csv")))
    want = _independent_counts(soma, syn)
    assert main(["etl", "--source", "files", str(d), "--profile", "pinky100_v185", "--neurons",
                 "all", "--store", str(store), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "datastack pinky100" in out and f"left out: {want['glia']:,} glia" in out
    from connectome_priors.etl.store import Store
    s = Store(store)
    got = {t: int(s.sql(f"SELECT count(*) AS n FROM {t}").n[0])
           for t in ("neurons", "synapses", "connections")}
    got["n_synapses"] = int(s.sql("SELECT sum(n_synapses) AS n FROM connections").n[0])
    got["glia"] = want["glia"]
    assert got == want
    # positions as published: "[x y z]" voxels, and nm from the profile's voxel size
    first = s.sql("SELECT x_vox, y_vox, z_vox, x_nm, z_nm FROM neurons ORDER BY nucleus_id LIMIT 1")
    return {"counts": got, "first": first}


def test_a_pinky100_shaped_export_loads_through_its_profile(tmp_path, capsys):
    soma, _ = _pinky_like(tmp_path / "pinky")
    res = _check_pinky(tmp_path / "pinky", tmp_path / "store", capsys)
    row = soma.iloc[soma.index[(~soma.pt_root_id.duplicated(keep=False)) & (soma.cell_type != "g")][0]]
    xyz = [float(v) for v in row.pt_position.strip("[]").split()]
    assert res["first"].iloc[0].tolist() == [*xyz, xyz[0] * 4, xyz[2] * 40]


@pytest.mark.skipif(not os.environ.get("CXP_PINKY100_DIR"),
                    reason="real pinky100 v185 files: set CXP_PINKY100_DIR (README: Static CAVE exports)")
def test_the_real_pinky100_release_loads_through_its_profile(tmp_path, capsys):
    res = _check_pinky(Path(os.environ["CXP_PINKY100_DIR"]), tmp_path / "store", capsys)
    assert res["counts"]["neurons"] > 300


def test_a_profile_naming_an_absent_table_or_column_is_refused(tmp_path):
    _pinky_like(tmp_path / "pinky")
    bad = tmp_path / "bad.toml"
    text = load_profile("pinky100_v185").origin  # built-in
    assert text == "built-in"
    src = (Path(__file__).parents[2] / "etl" / "profiles" / "pinky100_v185.toml").read_text()
    bad.write_text(src.replace('size = "cleft_vx"', 'size = "cleft_size"'))
    with pytest.raises(ProfileError, match=r"soma_subgraph_synapses_spines_v185.csv: profile bad "
                                           r".* maps \[synapses\] size to column 'cleft_size', which "
                                           r"the table lacks; its columns: id, pre_root_id"):
        read_files(tmp_path / "pinky", profile=bad, neurons="all")
    bad.write_text(src.replace('table = "soma_valence_v185"', 'table = "soma_valence_v999"'))
    with pytest.raises(SourceError, match=r"has no nucleus table \(soma_valence_v999 as"):
        read_files(tmp_path / "pinky", profile=bad, neurons="all")
    bad.write_text(src.replace("g = \"glia\", ", ""))
    with pytest.raises(ProfileError, match=r"column cell_type: class value\(s\) 'g' \(\d+ rows\) "
                                           r"are not mapped"):
        read_files(tmp_path / "pinky", profile=bad, neurons="all")
    bad.write_text(src + "\n[synapses_extra]\ntable = 'x'\n")
    with pytest.raises(ProfileError, match=r"unknown key\(s\) \['synapses_extra'\]"):
        read_files(tmp_path / "pinky", profile=bad, neurons="all")


def test_a_synapse_list_without_id_or_size_loads(tmp_path):
    soma, syn = _pinky_like(tmp_path / "p")
    syn.drop(columns=["id", "cleft_vx"]).to_csv(tmp_path / "p" / "soma_subgraph_synapses_spines_v185.csv",
                                                index=False)
    prof = tmp_path / "noid.toml"
    src = (Path(__file__).parents[2] / "etl" / "profiles" / "pinky100_v185.toml").read_text()
    prof.write_text(src.replace('id = "id"\npre_root_id', 'pre_root_id').replace('size = "cleft_vx"\n', ""))
    st = read_files(tmp_path / "p", profile=prof, neurons="all")
    want = _independent_counts(soma, syn)
    assert st.tables["synapses"].num_rows == want["synapses"]
    assert st.tables["synapses"].column("size").null_count == want["synapses"]
    assert st.tables["connections"].column("sum_size").null_count == want["connections"]
    assert "row numbers" in st.parameters["synapse_ids"]
    assert st.datastack == "pinky100"


def test_builtin_profiles_parse():
    for name in ("minnie65_public", "v1dd_public", "pinky100_v185"):
        prof = load_profile(name)
        assert prof.origin == "built-in" and "nucleus" in prof.roles and len(prof.sha256) == 64


def test_a_functional_table_matching_no_unit_is_an_error(raw, tmp_path):
    d = _write_dump(raw, tmp_path / "v1")
    func = raw["digital_twin_properties_bcm_coreg_v4"].assign(session=99)  # another session's
    write_export(func, d, "digital_twin_properties_bcm_coreg_v4")
    with pytest.raises(SourceError, match=r"digital_twin_properties_bcm_coreg_v4: none of its \d+ rows "
                                          r"is usable \(no \(session, scan_idx, unit_id\) of the "
                                          r"co-registered units\)"):
        read_files(d)


def test_a_reload_of_a_damaged_snapshot_says_it_repaired_it(raw, tmp_path, capsys):
    d = _write_dump(raw, tmp_path / "v2")
    store = tmp_path / "s"
    args = ["etl", "--source", "files", str(d), "--store", str(store), "--no-progress"]
    assert main(args) == 0
    target = next((store / "raw").glob("*/synapses.parquet"))
    target.chmod(0o644)
    target.write_bytes(target.read_bytes()[:-7])
    capsys.readouterr()
    assert main(args) == 0
    assert "repaired (1 damaged or missing file(s) rewritten) snapshot files-" in capsys.readouterr().out
    assert main(args) == 0
    assert "already stored (same content hash), nothing written" in capsys.readouterr().out


def test_a_prior_of_a_profiled_export_builds_verifies_and_trains_structure_only(tmp_path, capsys,
                                                                                monkeypatch):
    """Issue 19's must-show end to end, on files in pinky100's published layout."""
    _pinky_like(tmp_path / "pinky", n=60)
    store, arts = tmp_path / "store", tmp_path / "artifacts"
    monkeypatch.setenv("CXP_ARTIFACTS", str(arts))
    assert main(["etl", "--source", "files", str(tmp_path / "pinky"), "--profile", "pinky100_v185",
                 "--neurons", "all", "--store", str(store), "--no-progress"]) == 0
    assert main(["priors", "build", "pinky_exc", "--sql", "SELECT nucleus_id FROM neurons WHERE "
                 "cell_class = 'excitatory'", "--store", str(store), "--no-progress"]) == 0
    assert main(["priors", "verify", "pinky_exc", "--store", str(store)]) == 0
    capsys.readouterr()
    quick = ["--tasks", "T2", "--runs", "1", "--epochs", "1", "--n-train", "128", "--n-val", "64",
             "--n-test", "64", "--threads", "1", "--no-progress"]
    assert main(["train", "--prior", "pinky_exc", "--store", str(store), "--variants", "W,WD",
                 "--out", str(tmp_path / "t"), *quick]) == 0
    assert (tmp_path / "t" / "report.md").is_file()
    capsys.readouterr()
    assert main(["train", "--prior", "pinky_exc", "--store", str(store), "--variants", "W*D*C",
                 "--out", str(tmp_path / "t2"), *quick]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no kind 'w_bio_modulation' (needed by W*D*C)" in err[0]
    assert not (tmp_path / "t2").exists()
