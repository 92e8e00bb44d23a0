"""Source ``nwb``: small NWB files in the DANDI 000402 layout (mask ids per field, float64 root ids),
written by pynwb, read back with unit ids by the pipeline's convention."""

from __future__ import annotations

import json
import shutil
import warnings

import h5py
import numpy as np
import pytest

from connectome_priors.etl import EtlError, SourceError, Store, run_etl
from connectome_priors.etl.sources.nwb import EventRule, NwbLayoutError, read_nwb
from connectome_priors.testing.nwb_writer import SynthField, dandi_name, unit_ids_of, write_scan_file

N_FRAMES = 300
RATE = 6.3009


def scan_fields(seed: int, *, structural: bool = True) -> list[SynthField]:
    """Two fields: field 1 with 12 ROIs (two artifacts, root ids for half), field 2 with 9 ROIs."""
    rng = np.random.default_rng(seed)
    fields = []
    for field, n in ((1, 12), (2, 9)):
        ids = np.arange(1, n + 1)
        events = [np.sort(rng.choice(np.arange(0, N_FRAMES, 2), size=int(rng.integers(1, 9)),
                                     replace=False)) for _ in range(n)]
        kinds = ["soma"] * n
        if field == 1:
            kinds[4] = kinds[9] = "artifact"
        roots = None
        if structural and field == 1:
            roots = np.where(np.arange(n) % 2 == 0, 864691135000000000 + ids, 0)
        fields.append(SynthField(field, events, mask_type=kinds, pt_root_id=roots,
                                 pt_position=np.tile([180000, 100000, 20000], (n, 1))))
    return fields


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    """Two scan files (4-7 and 5-3) and their fields."""
    root = tmp_path_factory.mktemp("nwb")
    made = {}
    for (session, scan_idx), seed in (((4, 7), 1), ((5, 3), 2)):
        fields = scan_fields(seed)
        path = write_scan_file(root / "cache" / dandi_name(session, scan_idx), fields, session=session,
                               scan_idx=scan_idx, n_frames=N_FRAMES, frame_rate_hz=RATE)
        made[(session, scan_idx)] = (path, fields)
    return made


def expected_times(field: SynthField, j: int) -> np.ndarray:
    return field.event_frames[j] / RATE  # every field shares the scan's frame times


def test_units_and_spikes_come_back_exactly(scans):
    path, fields = scans[(4, 7)]
    out = read_nwb(path)
    fu = out.tables["functional_units"].to_pandas()
    sp = out.tables["spikes"].to_pandas()
    assert out.source == "nwb"
    assert len(fu) == 12 - 2 + 9 and len(sp) == len(fu)  # artifacts dropped
    assert (fu.session == 4).all() and (fu.scan_idx == 7).all()
    assert fu.nucleus_id.isna().all()  # units, not cells: co-registration lives in CAVE
    f1 = fields[0]
    units = unit_ids_of(fields)
    soma = [j for j, k in enumerate(f1.mask_type) if k == "soma"]
    assert fu[fu.field == 1].unit_id.tolist() == [1, 2, 3, 4, 6, 7, 8, 9, 11, 12] == units[1][soma].tolist()
    assert fu[fu.field == 2].unit_id.tolist() == list(range(13, 22))  # 12 ROIs of field 1 before it
    assert fu.root_id.isna().all()  # float64 root ids are not exact: never stored
    trains = sp.set_index("unit_id").spike_times
    for field in fields:
        for j, kind in enumerate(field.mask_type):
            if kind != "soma":
                continue
            np.testing.assert_allclose(trains[units[field.field][j]], expected_times(field, j), rtol=0,
                                       atol=1e-9)
    assert (sp.n_spikes == sp.spike_times.map(len)).all()
    assert out.parameters["events"]["threshold"] == 0.01
    assert out.parameters["events"]["rule"] == "oasis-deconvolution-peaks-v1"
    assert out.parameters["events"]["deconvolution"].startswith("oasis-deconv ")
    assert "deconvolved here: oasis-deconv" in out.parameters["event_traces"][0]
    report = out.report["files"][0]
    assert report["session_id"] == "4-scan-7" and report["intervals"] == ["Clip", "Monet2", "Trippy"]
    assert [f["soma"] for f in report["fields"]] == [10, 9]
    assert [f["unit_ids"] for f in report["fields"]] == [[1, 12], [13, 21]]
    assert report["fields"][0]["root_ids_in_file"] == 6 == report["fields"][0]["root_ids_dropped_float64"]
    assert report["fields"][0]["with_root_id"] == 0 and out.report["root_ids_dropped_float64"] == 6


def pd_isna(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def test_blocks_of_rois_give_the_same_result(scans, monkeypatch):
    import connectome_priors.etl.sources.nwb.reader as reader

    path, _ = scans[(4, 7)]
    whole = read_nwb(path, rule=EventRule(block_rois=1000))
    shapes = []
    inner = reader.events_from_block

    def spy(block, *args, **kwargs):
        shapes.append(block.shape)
        return inner(block, *args, **kwargs)

    monkeypatch.setattr(reader, "events_from_block", spy)
    small = read_nwb(path, rule=EventRule(block_rois=3))
    # traces were read 3 ROI columns at a time (fewer where artifacts were dropped), never whole
    assert max(s[1] for s in shapes) == 3 and all(s[0] == N_FRAMES for s in shapes)
    assert sum(s[1] for s in shapes) == 19 and len(shapes) == 4 + 3
    assert whole.tables["spikes"].equals(small.tables["spikes"])
    assert whole.tables["functional_units"].equals(small.tables["functional_units"])


def test_several_files_and_folders_in_any_order(scans):
    a, _ = scans[(4, 7)]
    b, _ = scans[(5, 3)]
    one = read_nwb([a, b])
    other = read_nwb([b, a])
    folder = read_nwb(a.parent)
    assert one.tables["spikes"].equals(other.tables["spikes"])
    assert one.tables["spikes"].equals(folder.tables["spikes"])
    keys = one.tables["functional_units"].select(["session", "scan_idx"]).to_pylist()
    assert {(k["session"], k["scan_idx"]) for k in keys} == {(4, 7), (5, 3)}


def test_snapshot_records_the_rule_and_loads_without_neurons(scans, tmp_path):
    a, _ = scans[(4, 7)]
    b, _ = scans[(5, 3)]
    snap = run_etl("nwb", [a, b], store=tmp_path / "store", events=EventRule(threshold=0.02))
    assert snap["snapshot_id"].startswith("nwb-") and snap["created"]
    params = json.loads(snap["parameters"])
    assert params["events"]["threshold"] == 0.02 and params["events"]["tau_s"] == 1.0
    counts = json.loads(snap["row_counts"])
    assert counts == {"functional_units": 38, "spikes": 38}
    store = Store(tmp_path / "store")
    nulls = store.sql("SELECT count(*) AS n FROM functional_units WHERE nucleus_id IS NULL").n.iloc[0]
    assert nulls == 38
    again = run_etl("nwb", [b, a], store=tmp_path / "store", events=EventRule(threshold=0.02))
    assert not again["created"] and again["snapshot_id"] == snap["snapshot_id"]


def test_session_and_scan_from_the_file_name_when_metadata_lacks_them(tmp_path):
    fields = scan_fields(4)
    path = write_scan_file(tmp_path / dandi_name(6, 2), fields, session=0, scan_idx=0,
                           n_frames=60, session_id="")
    fu = read_nwb(path).tables["functional_units"]
    assert set(fu.column("session").to_pylist()) == {6} and set(fu.column("scan_idx").to_pylist()) == {2}


def test_a_field_whose_rois_match_no_cell_writes_and_reads(tmp_path):
    """A field without any matched ROI has no structural columns (as in the release), and the
    reader keeps its units with a null root id."""
    events = [np.array([4, 10]), np.array([6]), np.array([8, 20])]
    field = SynthField(1, events, pt_root_id=np.zeros(3, dtype=np.int64), pt_position=np.zeros((3, 3)))
    path = write_scan_file(tmp_path / dandi_name(4, 7), [field], session=4, scan_idx=7, n_frames=40)
    fu = read_nwb(path).tables["functional_units"]
    assert fu.column("unit_id").to_pylist() == [1, 2, 3]
    assert fu.column("root_id").null_count == 3
    with h5py.File(path, "r") as h5:
        assert "pt_root_id" not in h5["processing/ophys/ImageSegmentation/PlaneSegmentation1"]


def test_metadata_and_name_that_disagree_are_refused(tmp_path):
    path = write_scan_file(tmp_path / dandi_name(6, 2), scan_fields(4), session=6, scan_idx=3, n_frames=60)
    with pytest.raises(NwbLayoutError, match=r"session_id '6-scan-3' says session/scan \(6, 3\) but the "
                                              r"file name says \(6, 2\)") as err:
        read_nwb(path)
    assert err.value.group == "/general/session_id"


# -- bad input: a clear error naming the file and group; nothing stored ---------------------------


def assert_nothing_stored(store_dir, *paths):
    with pytest.raises(SourceError) as err:
        run_etl("nwb", list(paths), store=store_dir)
    store = Store(store_dir)
    assert not store.exists() or store.snapshots().empty
    return err.value


def test_a_file_that_is_not_nwb(scans, tmp_path):
    good, _ = scans[(4, 7)]
    text = tmp_path / "notes.nwb"
    text.write_text("not an HDF5 file")
    err = assert_nothing_stored(tmp_path / "store", good, text)
    assert isinstance(err, NwbLayoutError) and err.path == str(text)
    assert f"{text}: not an NWB file" in str(err) and "no HDF5 signature" in str(err)
    plain = tmp_path / "plain.nwb"
    with h5py.File(plain, "w") as h5:
        h5.create_dataset("x", data=[1, 2, 3])
    with pytest.raises(NwbLayoutError, match=rf"{plain}: not an NWB file \(an HDF5 file without the root "
                                             "attribute nwb_version\\)"):
        read_nwb(plain)


def test_a_file_without_the_ophys_module(scans, tmp_path):
    from datetime import datetime, timezone

    from pynwb import NWBHDF5IO, NWBFile

    path = tmp_path / dandi_name(4, 9)
    nwb = NWBFile(session_description="behaviour only", identifier="x", session_id="4-scan-9",
                  session_start_time=datetime(2018, 1, 1, tzinfo=timezone.utc))
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    good, _ = scans[(4, 7)]
    err = assert_nothing_stored(tmp_path / "store", good, path)
    assert err.group == "/processing/ophys" and err.path == str(path)
    assert "no ophys processing module" in str(err)


def _replace_rois(path, keep: int) -> None:
    """Rewrite RoiResponseSeries1/rois with only its first ``keep`` entries (h5py surgery)."""
    with h5py.File(path, "r+") as h5:
        group = h5["processing/ophys/Fluorescence/RoiResponseSeries1"]
        attrs, data = dict(group["rois"].attrs), group["rois"][:keep]
        del group["rois"]
        new = group.create_dataset("rois", data=data)
        for k, v in attrs.items():
            new.attrs[k] = v


def test_roi_counts_that_disagree_between_traces_and_segmentation(scans, tmp_path):
    good, _ = scans[(4, 7)]
    bad = tmp_path / dandi_name(5, 3)
    shutil.copy(scans[(5, 3)][0], bad)
    _replace_rois(bad, 7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pynwb itself warns about the mismatch while reading
        err = assert_nothing_stored(tmp_path / "store", good, bad)
    assert err.group == "/processing/ophys/Fluorescence/RoiResponseSeries1" and err.path == str(bad)
    assert ("ROI counts disagree in field 1: /processing/ophys/Fluorescence/RoiResponseSeries1/data has "
            "12 ROI columns but /processing/ophys/Fluorescence/RoiResponseSeries1/rois has 7 entries") in str(err)


def test_segmentation_with_more_rows_than_the_traces(tmp_path):
    fields = scan_fields(7)
    path = write_scan_file(tmp_path / dandi_name(4, 7), fields, session=4, scan_idx=7, n_frames=40)
    with h5py.File(path, "r+") as h5:  # drop the last trace column and its rois entry
        group = h5["processing/ophys/Fluorescence/RoiResponseSeries2"]
        data, attrs = group["data"][:, :-1], dict(group["data"].attrs)
        del group["data"]
        new = group.create_dataset("data", data=data)
        for k, v in attrs.items():
            new.attrs[k] = v
        rattrs, rois = dict(group["rois"].attrs), group["rois"][:-1]
        del group["rois"]
        new = group.create_dataset("rois", data=rois)
        for k, v in rattrs.items():
            new.attrs[k] = v
    with pytest.raises(NwbLayoutError, match=r"ROI counts disagree in field 2: .*RoiResponseSeries2 has 8 "
                                             r"ROIs .* but /processing/ophys/ImageSegmentation/"
                                             r"PlaneSegmentation2 has 9 rows") as err:
        read_nwb(path)
    assert err.value.group == "/processing/ophys/ImageSegmentation/PlaneSegmentation2"


def test_the_same_scan_twice_is_refused(scans, tmp_path):
    a, _ = scans[(4, 7)]
    copy = tmp_path / "again" / a.name.replace("behavior", "copy")
    copy.parent.mkdir()
    shutil.copy(a, copy)
    with pytest.raises(NwbLayoutError, match=r"19 soma unit id\(s\) of scan 4-7 repeat ids already read"):
        read_nwb([a, copy])


def test_a_missing_field_is_refused(tmp_path):
    """Unit ids count the ROIs of every earlier field: without field 2, field 3's cannot be derived."""
    one, two = scan_fields(9)
    three = SynthField(3, two.event_frames)
    path = write_scan_file(tmp_path / dandi_name(4, 7), [one, three], session=4, scan_idx=7, n_frames=40)
    with pytest.raises(NwbLayoutError, match=r"fields \[1, 3\] of scan 4-7; expected fields 1..3 "
                                             r"\(missing \[2\]\)") as err:
        read_nwb(path)
    assert err.value.group == "/processing/ophys/ImageSegmentation" and err.value.path == str(path)


def test_mask_ids_that_are_not_1_to_n_are_refused(tmp_path):
    path = write_scan_file(tmp_path / dandi_name(4, 7), scan_fields(9), session=4, scan_idx=7, n_frames=40)
    with h5py.File(path, "r+") as h5:  # scan-wide ids, as an older writer of ours wrote
        ids = h5["processing/ophys/ImageSegmentation/PlaneSegmentation2/id"]
        ids[...] = ids[...] + 12
    with pytest.raises(NwbLayoutError, match=r"PlaneSegmentation2/id holds mask ids \[13, 14, 15, 16, 17\]"
                                             r".*expected 1..9 in row order") as err:
        read_nwb(path)
    assert err.value.group == "/processing/ophys/ImageSegmentation/PlaneSegmentation2"


def test_missing_path_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="no such file or folder"):
        read_nwb(tmp_path / "nope.nwb")
    with pytest.raises(EtlError, match="source 'nwb' needs PATH"):
        run_etl("nwb", None, store=tmp_path / "store")


def test_negative_timestamps_are_refused_by_the_spikes_contract(tmp_path):
    from connectome_priors.etl import ValidationError

    path = write_scan_file(tmp_path / dandi_name(4, 7), scan_fields(8), session=4, scan_idx=7, n_frames=40)
    with h5py.File(path, "r+") as h5:
        ts = h5["processing/ophys/Fluorescence/RoiResponseSeries1/timestamps"]
        ts[...] = ts[...] - 100.0
    with pytest.raises(ValidationError, match=r"spikes\.spike_times .*values >= 0"):
        run_etl("nwb", [path], store=tmp_path / "store")


def test_functional_units_fk_is_checked_for_non_null_nucleus_ids_only():
    import pyarrow as pa

    from connectome_priors.etl import ValidationError, validate_tables
    from tests.conftest import tiny_tables

    tables = tiny_tables()
    fu = tables["functional_units"]
    tables["functional_units"] = fu.set_column(4, "nucleus_id", pa.array([11, None, 13], pa.int64()))
    validate_tables(tables, origins={})  # a unit without co-registration refers to no neuron
    tables["functional_units"] = fu.set_column(4, "nucleus_id", pa.array([99, None, 13], pa.int64()))
    with pytest.raises(ValidationError, match=r"functional_units\.nucleus_id .*1 row\(s\) that do not "
                                              r"join.*'nucleus_id': 99"):
        validate_tables(tables, origins={})
    only_units = {"functional_units": fu.set_column(4, "nucleus_id", pa.array([None] * 3, pa.int64()))}
    validate_tables(only_units, origins={})  # all null: no neurons table needed
    with pytest.raises(ValidationError, match=r"expected table neurons to join against"):
        validate_tables({"functional_units": fu}, origins={})
