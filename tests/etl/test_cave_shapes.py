"""Every shape a CAVE reference table can reach us in gives the same canonical tables: reference
(own columns, ``target_id``), bound point (``pt_root_id``, no ``target_id``), the merged static
export (target columns beside ``target_id``), and caveclient's ``merge_reference=True`` (``_ref``
suffixes); live through the stand-in, and capped, shuffled pulls store exactly the right cells."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from connectome_priors.etl import Store
from connectome_priors.cli import main
from connectome_priors.etl.errors import SourceError
from connectome_priors.etl.sources.cave.client import CaveRequestError, connect
from connectome_priors.etl.sources.cave.source import read_cave, table_shape
from connectome_priors.testing.cave_standin import (StandinCave, merge_reference, minnie_fixture, schema_frame,
                                      split_layout, table_columns)
from connectome_priors.etl.sources.cave.transform import (CELLTYPES_TABLE, COREG_TABLES, NUCLEUS_TABLE,
                                        SYNAPSE_TABLE, canonical_tables, infer_shape)
from connectome_priors.etl.sources.files import read_files, write_export
from tests.etl._cave import fast_config  # fixture

COREG = COREG_TABLES[0]
KW = dict(datastack="minnie65_public", materialization_version=1, materialization_timestamp=None)


@pytest.fixture(scope="module")
def reference():
    return minnie_fixture(n_cells=200, n_synapses=3000, versions=(1,), seed=11)[1]


@pytest.fixture(scope="module")
def bound():
    return minnie_fixture(n_cells=200, n_synapses=3000, versions=(1,), seed=11,
                          coregistration="bound_point")[1]


@pytest.fixture(scope="module")
def expected(reference):
    return canonical_tables(reference, **KW)


def _assert_same(st, expected):
    assert sorted(st.tables) == sorted(expected.tables)
    for name, table in expected.tables.items():
        assert st.tables[name].equals(table), name


def test_reference_tables_carry_no_target_columns(reference):
    for table in (CELLTYPES_TABLE, COREG):
        cols = list(reference[table].columns)  # merged frozen layout
        assert cols[:3] == ["id", "valid", "target_id"], cols
        split = list(split_layout(reference[table]).columns)
        assert split[:5] == ["id", "created", "superceded_id", "valid", "target_id"], split
        assert not any(c.startswith("pt_") or c == "volume" for c in cols)
        assert infer_shape(reference[table], table) == "reference"
    nuc = [c for c, _, _ in table_columns("nucleus_detection", layout="split")]
    assert nuc[-2:] == ["pt_supervoxel_id", "pt_root_id"] and "pt_position_x" in nuc
    merged = [c for c, _, _ in table_columns("nucleus_detection", layout="merged")]
    assert merged[:3] == ["id", "valid", "volume"] and "created" not in merged
    with pytest.raises(ValueError, match=r"no column\(s\) \['pt_root_id'\]"):
        schema_frame("cell_type_reference", {"target_id": [1], "classification_system": ["a"],
                                             "cell_type": ["b"], "pt_root_id": [5]}, table="t")


def test_bound_point_shape_gives_the_same_tables(bound, expected):
    assert "target_id" not in bound[COREG] and "pt_root_id" in bound[COREG]
    st = canonical_tables(bound, **KW)
    _assert_same(st, expected)
    assert st.report["shapes"][COREG] == "bound_point"
    # the multi-soma root and root 0 rows are counted, not matched
    nuc = bound[NUCLEUS_TABLE]
    counts = nuc[nuc.pt_root_id != 0].groupby("pt_root_id").size()
    roots = bound[COREG].pt_root_id
    assert st.report[f"{COREG}_ambiguous_rows"] == int(roots.isin(counts[counts > 1].index).sum())
    assert st.report[f"{COREG}_unmatched_rows"] == int((~roots.isin(counts.index)).sum())
    # an explicit shape that contradicts the columns is an error naming table and column
    with pytest.raises(SourceError, match=rf"{COREG}.*lacks column\(s\) \['target_id'\]"):
        canonical_tables(bound, **KW, shapes={COREG: "reference"})
    with pytest.raises(SourceError, match="declared a bound point table but has a 'target_id'"):
        canonical_tables(minnie_fixture(n_cells=50, n_synapses=50, versions=(1,))[1], **KW,
                         shapes={COREG: "bound_point"})


def test_ambiguous_and_unmatched_bound_points_are_reported():
    nuc = pd.DataFrame({"id": [1, 2, 3, 4], "valid": True, "pt_root_id": [11, 12, 12, 0],
                        "pt_position_x": 1.0, "pt_position_y": 1.0, "pt_position_z": 1.0})
    coreg = pd.DataFrame({"pt_root_id": [11, 12, 0, 99], "session": 4, "scan_idx": 7,
                          "field": 1, "unit_id": [1, 2, 3, 4]})
    st = canonical_tables({NUCLEUS_TABLE: nuc, COREG: coreg}, **KW, neurons="coregistered")
    assert st.tables["functional_units"].column("nucleus_id").to_pylist() == [1]
    assert st.report[f"{COREG}_ambiguous_rows"] == 1 and st.report[f"{COREG}_unmatched_rows"] == 2


def test_merged_shapes_give_the_same_tables(reference, expected):
    split = {t: split_layout(df) for t, df in reference.items()}  # as a split frozen db answers
    nuc = split[NUCLEUS_TABLE]
    ref = {t: merge_reference(df, nuc) if "target_id" in df else df for t, df in split.items()}
    cols = set(ref[COREG].columns)
    assert {"id", "valid", "created", "id_ref", "valid_ref", "created_ref", "volume",
            "pt_root_id", "pt_position_x"} <= cols
    assert not {"superceded_id", "superceded_id_ref", "volume_ref", "target_id_ref"} & cols
    assert infer_shape(ref[COREG], COREG) == "merged"
    _assert_same(canonical_tables(ref, **KW), expected)
    # the static <table>_merged export: target columns beside target_id, no suffixes
    exported = {t: df.merge(nuc[["id", "volume", "pt_position_x", "pt_position_y", "pt_position_z",
                                 "pt_supervoxel_id", "pt_root_id"]].rename(columns={"id": "target_id"}),
                            on="target_id", how="left").fillna({"pt_root_id": 0})
                if "target_id" in df else df for t, df in reference.items()}
    _assert_same(canonical_tables(exported, **KW), expected)


@pytest.mark.parametrize("form", ["export", "parquet"])
def test_merged_exports_through_the_files_source(reference, bound, expected, tmp_path, form):
    nuc = reference[NUCLEUS_TABLE]
    for name, raw in (("merged", {t: merge_reference(df, nuc) if "target_id" in df else df
                                  for t, df in reference.items()}), ("bound", bound)):
        d = tmp_path / name / "v1"
        for table, df in raw.items():
            write_export(df, d, table, form=form)
        st = read_files(d)
        for t, table in expected.tables.items():
            assert st.tables[t].equals(table), (name, t)


def test_live_shapes_from_table_metadata(isolated_home, reference, bound, expected, tmp_path):
    with StandinCave({1: reference}, split_frozen=True) as cave:
        conn = connect(fast_config(cave.url))
        md = conn.table_metadata(COREG, 1)
        assert md["reference_table"] == NUCLEUS_TABLE and md["schema_type"] == "func_unit_ext_coreg"
        assert table_shape(md, COREG) == "reference"
        # what caveclient's merge_reference=True returns from the server's join query
        joined = conn.client.materialize.query_table(
            COREG, materialization_version=1, merge_reference=True, split_positions=True,
            desired_resolution=[4, 4, 40], log_warning=False)
        assert {"id_ref", "valid_ref", "created_ref", "pt_root_id"} <= set(joined.columns)
        assert not {"superceded_id", "superceded_id_ref"} & set(joined.columns)
        _assert_same(canonical_tables({**reference, COREG: joined}, **KW), expected)
        assert "zstd" in cave.state.codecs
        st = read_cave(fast_config(cave.url), store_dir=tmp_path / "a")
        _assert_same(st, expected)
        assert st.report["shapes"] == {CELLTYPES_TABLE: "reference", COREG: "reference"}
    with StandinCave({1: bound}) as cave:
        assert table_shape(connect(fast_config(cave.url)).table_metadata(COREG, 1), COREG) == "bound_point"
        st = read_cave(fast_config(cave.url), store_dir=tmp_path / "b")
        _assert_same(st, expected)
        assert st.report["shapes"][COREG] == "bound_point"
    with pytest.raises(CaveRequestError, match="references 'synapses_pni_2'; expected 'nucleus_detection_v0'"):
        table_shape({"reference_table": SYNAPSE_TABLE}, COREG)


def _expected_sets(raw: dict) -> tuple[set[int], set[int]]:
    """Co-registered excitatory nuclei (valid, root != 0, root with one nucleus) and the ids of
    the synapses among them, computed directly from the fixture frames."""
    nuc = raw[NUCLEUS_TABLE]
    nuc = nuc[nuc.valid & (nuc.pt_root_id != 0)]
    per_root = nuc.pt_root_id.map(nuc.pt_root_id.value_counts())
    nuc = nuc[per_root == 1]
    ct = raw[CELLTYPES_TABLE]
    exc = set(ct.loc[ct.valid & (ct.classification_system == "excitatory_neuron"), "target_id"])
    coreg = raw[COREG]
    co = set(coreg.loc[coreg.valid, "target_id"])
    cells = {int(i) for i in nuc.id if i in exc and i in co}
    roots = set(nuc.loc[nuc.id.isin(cells), "pt_root_id"])
    syn = raw[SYNAPSE_TABLE]
    among = syn[syn.valid & syn.pre_pt_root_id.isin(roots) & syn.post_pt_root_id.isin(roots)]
    return cells, {int(i) for i in among.id}


def test_capped_shuffled_reference_pull_stores_exactly_the_right_cells(isolated_home, tmp_path,
                                                                         capsys):
    raw = minnie_fixture(n_cells=6000, n_synapses=24_000, versions=(1,), seed=5)[1]
    assert len(raw[NUCLEUS_TABLE]) > 5000 and len(raw[SYNAPSE_TABLE]) > 5000
    assert not raw[NUCLEUS_TABLE].id.is_monotonic_increasing  # shuffled, as a database returns rows
    cells, synapses = _expected_sets(raw)
    store = tmp_path / "store"
    with StandinCave({1: raw}, row_cap=5000,
                     notices={SYNAPSE_TABLE: "stand-in notice"}) as cave:
        rc = main(["etl", "--source", "cave", "--server", cave.url, "--version", "1",
                   "--store", str(store), "--no-progress", "--timeout", "20"])
        assert rc == 0, capsys.readouterr().err
    snap = Store(store).snapshots().iloc[-1]
    report = json.loads(snap["report"])
    assert report["queries"][NUCLEUS_TABLE]["capped"] >= 1
    got = Store(store).sql("SELECT nucleus_id FROM neurons")["nucleus_id"]
    assert got.is_unique and set(got.tolist()) == cells and len(cells) > 1000
    syn = Store(store).sql("SELECT synapse_id FROM synapses")["synapse_id"]
    assert syn.is_unique and set(syn.tolist()) == synapses and len(synapses) > 5000
    assert np.isin(sorted(cells), raw[COREG].target_id).all()
