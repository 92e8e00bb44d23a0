"""Source ``blueprint``: reading, re-aligning and checking the study's released fields."""

from __future__ import annotations

import numpy as np
import pytest

from connectome_priors.etl.errors import FieldCheckError, SourceError
from connectome_priors.etl.sources.blueprint import align_connectome, read_blueprint, read_field
from tests.conftest import write_field


def test_align_connectome_hand_computed():
    roots = np.array([30, 10, 20])
    order = list(set(roots.tolist()))  # CPython: small ints iterate in hash order -> [10, 20, 30]
    assert order == [10, 20, 30]
    # in file order (10, 20, 30): 10 -> 30 has 5 synapses, 20 -> 10 has 1
    file_matrix = np.array([[0, 0, 5], [1, 0, 0], [0, 0, 0]])
    aligned = align_connectome(file_matrix, roots)
    # in unit order (30, 10, 20): row 1 (10) -> col 0 (30) = 5; row 2 (20) -> col 1 (10) = 1
    assert aligned.tolist() == [[0, 0, 0], [5, 0, 0], [0, 1, 0]]


def test_reads_a_well_formed_field(tmp_path):
    write_field(tmp_path, "4_7_2", n=30)
    f = read_field(tmp_path / "DATA" / "info" / "4_7_2")
    assert (f.session, f.scan_idx, f.field) == (4, 7, 2)
    assert f.connectome.shape == (30, 30) and f.connectome.sum() > 0
    assert f.alignment_ratio < 0.5
    assert len(f.spikes) == 30


def test_misaligned_connectome_fails_the_self_check(tmp_path):
    write_field(tmp_path, "5_3_4", n=40, file_order="units")
    with pytest.raises(FieldCheckError, match=r"field 5_3_4: after re-ordering connectome_5_3_4\.csv.*expected < 0\.7") as info:
        read_field(tmp_path / "DATA" / "info" / "5_3_4")
    assert info.value.field == "5_3_4" and info.value.check == "connectome_alignment"


def test_arrays_that_disagree_in_length(tmp_path):
    d = write_field(tmp_path, "6_6_2", n=20)
    np.save(d / "unit_ids_6_6_2.npy", np.arange(19))
    with pytest.raises(FieldCheckError, match=r"field 6_6_2: arrays disagree in length: root_ids_6_6_2\.npy has 20, unit_ids_6_6_2\.npy has 19"):
        read_field(d)


def test_missing_file_is_named(tmp_path):
    d = write_field(tmp_path, "6_6_2", n=20, drop="positions_{name}.npy")
    with pytest.raises(FieldCheckError, match=r"field 6_6_2: missing positions_6_6_2\.npy"):
        read_field(d)


def test_connectome_of_wrong_shape(tmp_path):
    d = write_field(tmp_path, "6_6_2", n=20)
    lines = (d / "connectome_6_6_2.csv").read_text().splitlines()
    (d / "connectome_6_6_2.csv").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(FieldCheckError, match=r"connectome_6_6_2\.csv is 19 x 20; expected 20 x 20 to match root_ids_6_6_2\.npy \(20 units\)"):
        read_field(d)


def test_negative_synapse_count(tmp_path):
    d = write_field(tmp_path, "6_6_2", n=10)
    lines = (d / "connectome_6_6_2.csv").read_text().splitlines()
    cells = lines[3].split(",")
    cells[4] = "-2"
    lines[3] = ",".join(cells)
    (d / "connectome_6_6_2.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(FieldCheckError, match=r"negative synapse count -2 at row 2, column 3"):
        read_field(d)


def test_duplicate_root_ids(tmp_path):
    d = write_field(tmp_path, "6_6_2", n=10)
    roots = np.load(d / "root_ids_6_6_2.npy")
    roots[3] = roots[4]
    np.save(d / "root_ids_6_6_2.npy", roots)
    with pytest.raises(FieldCheckError, match=r"repeats root id\(s\) \[\d+\]"):
        read_field(d)


def test_position_with_wrong_arity(tmp_path):
    d = write_field(tmp_path, "6_6_2", n=10)
    obj = np.empty(10, dtype=object)
    for i in range(10):
        obj[i] = np.array([150000, 150000, 20000]) if i != 7 else np.array([1, 2])
    np.save(d / "positions_6_6_2.npy", obj, allow_pickle=True)
    with pytest.raises(FieldCheckError, match=r"positions_6_6_2\.npy element 7 has shape \(2,\); expected 3 coordinates"):
        read_field(d)


def test_strict_aborts_and_lenient_skips_and_reports(tmp_path):
    write_field(tmp_path, "4_7_2", n=30, seed=1)
    write_field(tmp_path, "5_3_4", n=30, seed=2, file_order="units")
    with pytest.raises(FieldCheckError, match=r"field 5_3_4"):
        read_blueprint(tmp_path, mode="strict")
    st = read_blueprint(tmp_path, mode="lenient")
    assert st.report["fields_loaded"] == ["4_7_2"]
    assert list(st.report["fields_skipped"]) == ["5_3_4"]
    assert "connectome_alignment" not in st.report["fields_skipped"]["5_3_4"]  # message, not code
    assert "field 5_3_4" in st.report["fields_skipped"]["5_3_4"]
    assert st.tables["functional_units"].num_rows == 30


def test_not_a_release(tmp_path):
    with pytest.raises(SourceError, match=r"no DATA/info folder"):
        read_blueprint(tmp_path)


def test_unknown_field_is_named(tmp_path):
    write_field(tmp_path, "4_7_2", n=10)
    with pytest.raises(SourceError, match=r"no field\(s\) \['9_9_9'\]; available: \['4_7_2'\]"):
        read_blueprint(tmp_path, fields=["9_9_9"])


def test_same_nucleus_in_two_fields_is_one_neuron(tmp_path):
    write_field(tmp_path, "4_7_2", n=12, seed=3, n_connections=5)
    write_field(tmp_path, "4_7_4", n=12, seed=3, n_connections=5)  # same nuclei, same positions; unit ids collide
    d = tmp_path / "DATA" / "info" / "4_7_4"
    np.save(d / "unit_ids_4_7_4.npy", np.arange(500, 512))
    st = read_blueprint(tmp_path)
    assert st.tables["neurons"].num_rows == 12
    assert st.tables["functional_units"].num_rows == 24


@pytest.mark.needs_shared_data
def test_all_released_fields_load_and_align(blueprint_root):
    st = read_blueprint(blueprint_root)
    assert len(st.report["fields_loaded"]) == 54
    assert st.tables["functional_units"].num_rows == 18834
    ratios = [r for r in st.report["alignment_ratio"].values() if r is not None]
    assert len(ratios) == 54 and max(ratios) < 0.45  # released fields align at 0.23-0.40
    assert st.report["connections_excluded_root_id_0"] == 4
    assert st.tables["spikes"].num_rows == sum(
        len(np.load(p)) for p in blueprint_root.glob("DATA/info/*/unit_ids_*.npy")
        if (p.parent / p.name.replace("unit_ids", "spikes")).exists())


@pytest.mark.needs_shared_data
def test_release_in_file_order_would_fail(blueprint_root):
    """The study's mistake, reproduced: in file order the 6_6_2 wiring looks spatially random."""
    from connectome_priors.etl.sources.blueprint import alignment_ratio
    from connectome_priors.etl.formats.safe_npy import load_numeric_object_array

    d = blueprint_root / "DATA" / "info" / "6_6_2"
    f = read_field(d)
    pos = np.array(load_numeric_object_array(d / "positions_6_6_2.npy"), float) * [4, 4, 40] / 1000
    raw = np.loadtxt(d / "connectome_6_6_2.csv", delimiter=",", skiprows=1)[:, 1:]
    assert f.alignment_ratio < 0.35
    assert alignment_ratio(raw, pos) > 0.9


def test_released_matrix_of_wrong_shape_is_named(tmp_path):
    d = write_field(tmp_path, "6_6_2", n=20)
    np.save(d / "corr_matrix.npy", np.eye(19))
    with pytest.raises(FieldCheckError, match=r"corr_matrix\.npy in field 6_6_2 is float64 with shape \(19, 19\); expected float \(20, 20\) to match root_ids_6_6_2\.npy"):
        read_field(d)


def test_released_matrices_become_study_functional_rows(tmp_path):
    from connectome_priors.etl.contracts import validate_tables

    d = write_field(tmp_path, "6_6_2", n=6, spikes=False, n_connections=2)
    rng = np.random.default_rng(0)
    corr = np.corrcoef(rng.normal(size=(6, 50)))
    sttc = np.tril(corr * 0.5)
    np.fill_diagonal(sttc, 1.0)
    np.save(d / "corr_matrix.npy", corr)
    np.save(d / "sttc_matrix.npy", sttc)
    st = read_blueprint(tmp_path)
    t = st.tables["study_functional"].to_pandas()
    assert len(t) == 6 * 7 // 2 and t.precision.isna().all()
    units = np.load(d / "unit_ids_6_6_2.npy")
    row = t[(t.unit_a == units[4]) & (t.unit_b == units[1])].iloc[0]
    assert row.correlation == corr[4, 1] and row.sttc == sttc[4, 1]
    validate_tables(st.tables, origins=st.origins)


@pytest.mark.parametrize("fields", [[], [""], ["6_6_2", " "]])
def test_empty_field_selection_is_an_error_not_every_field(tmp_path, fields):
    write_field(tmp_path, "6_6_2", n=20)
    with pytest.raises(SourceError, match=r"fields .* name no field; give field names such as '6_6_2'"):
        read_blueprint(tmp_path, fields=fields)


def test_non_utf8_connectome_is_a_field_check(tmp_path):
    d = write_field(tmp_path, "6_6_2", n=20)
    path = d / "connectome_6_6_2.csv"
    path.write_bytes(path.read_bytes().replace(b",0,", b",\xff,", 1))
    with pytest.raises(FieldCheckError, match=r"field 6_6_2: connectome_6_6_2\.csv is not UTF-8 text "
                                              r"\(byte b'\\xff' at offset \d+\)") as info:
        read_field(d)
    assert info.value.check == "connectome_encoding"


def test_lenient_mode_skips_unreadable_and_unsafe_fields(tmp_path):
    write_field(tmp_path, "4_7_2", n=30, seed=1)
    unsafe = write_field(tmp_path, "5_3_4", n=30, seed=2)
    obj = np.empty(1, dtype=object)
    obj[0] = np.array([1.0])
    with open(unsafe / "positions_5_3_4.npy", "wb") as fh:  # the object count is larger than the file
        import numpy.lib.format as npy_format
        import pickle

        npy_format.write_array_header_1_0(fh, {"descr": "|O", "fortran_order": False,
                                               "shape": (200_000_000,)})
        fh.write(pickle.dumps(obj, protocol=4))
    empty = write_field(tmp_path, "6_6_2", n=20, seed=3)
    (empty / "unit_ids_6_6_2.npy").write_bytes(b"")
    with pytest.raises(SourceError, match=r"positions_5_3_4\.npy: header declares 200,000,000 objects"):
        read_blueprint(tmp_path)
    st = read_blueprint(tmp_path, mode="lenient")
    assert st.report["fields_loaded"] == ["4_7_2"]
    assert set(st.report["fields_skipped"]) == {"5_3_4", "6_6_2"}
    assert "unit_ids_6_6_2.npy: not a .npy file" in st.report["fields_skipped"]["6_6_2"]


@pytest.mark.needs_shared_data
def test_a_corrupted_copy_of_a_released_field_is_refused(blueprint_root, tmp_path):
    """The release's own 6_6_2, copied and its positions truncated: refused, named, no crash."""
    import shutil

    src = blueprint_root / "DATA" / "info" / "6_6_2"
    d = tmp_path / "DATA" / "info" / "6_6_2"
    shutil.copytree(src, d)
    pos = d / "positions_6_6_2.npy"
    pos.write_bytes(pos.read_bytes()[: pos.stat().st_size // 2])
    with pytest.raises(SourceError, match=r"positions_6_6_2\.npy: not a valid pickled NumPy object array"):
        read_field(d)
