"""A ``cave`` snapshot (cells, wiring, co-registration) plus an ``nwb`` snapshot (spike trains) of the
same scan give a field population with positions, wiring and spikes, joined on (session, scan_idx,
unit_id), and ``cxp priors build`` derives every kind for it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from connectome_priors.etl import Store, run_etl
from connectome_priors.cli import main
from connectome_priors.testing.nwb_writer import SynthField, dandi_name, write_scan_file
from connectome_priors.etl.tables import SourceTables
from connectome_priors.priors_store.manifest import validate_manifest
from connectome_priors.priors_store.errors import PopulationError
from connectome_priors.priors_store.pipeline import DeriveParams, build
from connectome_priors.priors_store.population import Population, UnitMappingError, resolve

N_FRAMES = 400
RATE = 6.3009
ALL_KINDS = {"distance_um", "distance_minmax", "connectome", "connectome_size", "communicability",
             "cell_sign", "connectome_signed", "connectome_type_pair", "modules_wiring", "correlation", "sttc", "precision", "w_bio_modulation",
             "modules_functional"}


SIZES = {1: 12, 2: 6, 3: 9}  # ROIs per field, artifacts included: unit ids 1..12, 13..18, 19..27
ARTIFACTS = {1: (5, 10), 2: (2,), 3: ()}  # mask ids


def nwb_fields(seed: int = 0) -> list[SynthField]:
    """Three fields in the release's layout (mask ids 1..n per field, some artifacts); each ROI has
    its own events; the file's (float64, stale) root ids name *other* cells of the cave snapshot;
    field 2 matched no cell, so it has no structural columns."""
    rng = np.random.default_rng(seed)
    out = []
    offset = 0
    for field, n in SIZES.items():
        masks = np.arange(1, n + 1)
        events = [np.sort(rng.choice(np.arange(2, N_FRAMES - 2, 2), size=int(rng.integers(8, 30)),
                                     replace=False)) for _ in masks]
        kinds = ["artifact" if m in ARTIFACTS[field] else "soma" for m in masks]
        stale = None if field == 2 else np.array([cave_root(offset + m + 1) for m in masks])
        out.append(SynthField(field, events, mask_type=kinds, pt_root_id=stale,
                              pt_position=np.tile([1, 2, 3], (n, 1))))
        offset += n
    return out


def soma_units(field: int) -> list[int]:
    """The scan-wide unit ids of a field's soma ROIs (the pipeline's numbering)."""
    offset = sum(n for k, n in SIZES.items() if k < field)
    return [offset + m for m in range(1, SIZES[field] + 1) if m not in ARTIFACTS[field]]


def field_of_unit(unit: int) -> int:
    return next(k for k in SIZES if unit <= sum(n for j, n in SIZES.items() if j <= k))


def cave_root(unit: int) -> int:
    return 864691136000000000 + unit


def event_times(fields: list[SynthField], unit: int) -> np.ndarray:
    field = fields[field_of_unit(unit) - 1]
    mask = unit - sum(n for k, n in SIZES.items() if k < field.field)
    return field.event_frames[mask - 1] / RATE  # all fields share the scan's frame times


def cave_tables(*, field_of=field_of_unit) -> SourceTables:
    """A cave-shaped snapshot: one cell per soma unit of fields 1 and 3 of scan 4-7 and of 3 of
    field 2's, co-registration, wiring."""
    units = soma_units(1) + soma_units(2)[:3] + soma_units(3)
    rng = np.random.default_rng(1)
    n = len(units)
    nuclei = [2000 + u for u in units]
    vox = rng.uniform([150000, 80000, 15000], [250000, 180000, 25000], size=(n, 3))
    pre, post = np.nonzero(rng.random((n, n)) < 0.2)
    keep = pre != post
    neurons = pa.table({
        "nucleus_id": nuclei, "root_id": [cave_root(u) for u in units],
        "x_vox": vox[:, 0], "y_vox": vox[:, 1], "z_vox": vox[:, 2],
        "x_nm": vox[:, 0] * 4, "y_nm": vox[:, 1] * 4, "z_nm": vox[:, 2] * 40,
        "cell_type": ["23P"] * n, "cell_class": ["excitatory"] * n, "layer": ["L2/3"] * n,
    })
    fu = pa.table({
        "session": [4] * n, "scan_idx": [7] * n, "field": [field_of(u) for u in units],
        "unit_id": units, "nucleus_id": nuclei, "root_id": [cave_root(u) for u in units],
        "score": [0.9] * n, "residual": [2.0] * n,
    })
    conns = pa.table({
        "pre_nucleus_id": [nuclei[i] for i in pre[keep]], "post_nucleus_id": [nuclei[i] for i in post[keep]],
        "n_synapses": rng.integers(1, 4, keep.sum()).tolist(),
        "sum_size": rng.uniform(100, 900, keep.sum()).tolist(),
    })
    return SourceTables(source="cave", tables={"neurons": neurons, "functional_units": fu,
                                               "connections": conns},
                        datastack="minnie65_public", materialization_version=1300,
                        origins={"functional_units": "fixture coregistration_manual_v4"})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A store with the cave-shaped snapshot, then the nwb snapshot of the same scan."""
    root = tmp_path_factory.mktemp("join")
    fields = nwb_fields()
    path = write_scan_file(root / dandi_name(4, 7), fields, session=4, scan_idx=7, n_frames=N_FRAMES,
                           frame_rate_hz=RATE)
    store = Store(root / "store")
    cave = store.load(cave_tables())["snapshot_id"]
    nwb = run_etl("nwb", [path], store=store)["snapshot_id"]
    return {"root": root, "store": store, "cave": cave, "nwb": nwb, "fields": fields, "path": path}


def test_a_field_gets_positions_wiring_and_spikes_joined_on_unit_keys(world):
    store, fields = world["store"], world["fields"]
    pop = Population.of_fields("4_7_1", snapshot=world["cave"], activity_snapshot="auto")
    res = resolve(pop, store)
    assert res.neurons.unit_id.tolist() == [1, 2, 3, 4, 6, 7, 8, 9, 11, 12] == soma_units(1)
    assert res.neurons.nucleus_id.tolist() == [2000 + u for u in res.neurons.unit_id]
    assert res.neurons.root_id.tolist() == [cave_root(u) for u in res.neurons.unit_id]  # cave's, not the file's
    assert np.isfinite(res.positions_um).all() and len(res.connections) > 0
    assert res.activity["snapshot_id"] == world["nwb"] and res.activity["source"] == "nwb"
    for unit, train in zip(res.neurons.unit_id, res.spikes):
        # the file's root id of unit u names the cell of unit u+1: a root-id join would shift trains
        np.testing.assert_allclose(train, event_times(fields, unit), rtol=0, atol=1e-9)
    agreement = res.activity["unit_agreement"]
    assert agreement["threshold"] == 0.99
    assert [(f["field"], f["units"], f["coregistered"], f["same_field"], f["share"])
            for f in agreement["fields"]] == [(1, 10, 10, 10, 1.0), (2, 5, 3, 3, 1.0), (3, 9, 9, 9, 1.0)]


def test_without_an_activity_snapshot_behaviour_is_unchanged(world):
    res = resolve(Population.of_fields("4_7_1", snapshot=world["cave"]), world["store"])
    assert res.spikes is None and res.activity is None


def test_priors_build_derives_every_kind_and_records_the_activity_snapshot(world):
    pop = Population.of_fields("4_7_3", snapshot=world["cave"], activity_snapshot="auto")
    m = build("joined_4_7_3", pop, store=world["store"], root=world["root"] / "art")
    assert set(m["kinds"]) == ALL_KINDS
    validate_manifest(m)
    act = m["source_snapshot"]["activity_snapshot"]
    assert act["snapshot_id"] == world["nwb"] and act["source"] == "nwb" and len(act["content_hash"]) == 64
    assert [f["share"] for f in act["unit_agreement"]["fields"]] == [1.0, 1.0, 1.0]
    assert m["source_snapshot"]["snapshot_id"] == world["cave"]
    assert m["population"]["activity_snapshot"] == "auto"
    assert m["parameters"]["functional_source"] == "derived from spike trains"
    plain = build("plain_4_7_3", Population.of_fields("4_7_3", snapshot=world["cave"]),
                  store=world["store"], root=world["root"] / "art", params=DeriveParams(precision=False))
    assert "activity_snapshot" not in plain["source_snapshot"] and "correlation" not in plain["kinds"]
    assert "activity_snapshot" not in plain["population"]


def test_an_explicit_activity_snapshot_and_its_errors(world):
    store = world["store"]
    res = resolve(Population.of_fields("4_7_1", snapshot=world["cave"], activity_snapshot=world["nwb"]),
                  store)
    assert res.activity["snapshot_id"] == world["nwb"] and len(res.spikes) == 10
    with pytest.raises(PopulationError, match="no activity snapshot 'nwb-0000'"):
        resolve(Population.of_fields("4_7_1", snapshot=world["cave"], activity_snapshot="nwb-0000"), store)


def test_the_nwb_snapshot_alone_is_not_a_cell_population(world):
    with pytest.raises(PopulationError, match=r"selects no neuron in snapshot nwb-.*not co-registered to "
                                              r"cells: build from a cave snapshot"):
        resolve(Population.of_fields("4_7_1", snapshot=world["nwb"]), world["store"])


def test_fields_that_disagree_between_the_snapshots_are_refused(world, tmp_path):
    store = Store(tmp_path / "store")
    shutil.copytree(world["store"].directory, store.directory)
    moved = store.load(cave_tables(field_of=lambda u: 2 if u <= 18 else 3))["snapshot_id"]
    with pytest.raises(UnitMappingError, match=r"do not number the units of session 4 scan 7 alike: field "
                                               r"4_7_1: 0 of 10 co-registered units \(0.0%\) lie in the same "
                                               r"field; elsewhere: 10 in field 2; expected at least 99% per "
                                               r"field") as err:
        resolve(Population.of_fields("4_7_2", snapshot=moved, activity_snapshot=world["nwb"]), store)
    assert err.value.activity_snapshot == world["nwb"] and err.value.snapshot == moved


def test_shuffled_fields_are_refused_with_numbers(world, tmp_path):
    """A co-registration whose fields 1 and 3 are swapped: every unit lands in the wrong field."""
    store = Store(tmp_path / "store")
    shutil.copytree(world["store"].directory, store.directory)
    swap = {1: 3, 2: 2, 3: 1}
    shuffled = store.load(cave_tables(field_of=lambda u: swap[field_of_unit(u)]))["snapshot_id"]
    with pytest.raises(UnitMappingError) as err:
        resolve(Population.of_fields("4_7_1", snapshot=shuffled, activity_snapshot="auto"), store)
    text = str(err.value)
    assert "field 4_7_1: 0 of 10 co-registered units (0.0%) lie in the same field; elsewhere: 10 in field 3" in text
    assert "field 4_7_3: 0 of 9 co-registered units (0.0%) lie in the same field; elsewhere: 9 in field 1" in text
    assert "field 4_7_2" not in text  # field 2 agrees
    assert [(r["field"], r["share"]) for r in err.value.fields] == [(1, 0.0), (2, 1.0), (3, 0.0)]


def test_one_unit_off_is_within_the_threshold_only_for_large_fields():
    """The threshold (99%): one misplaced unit of ten refuses; the check is per field."""
    from connectome_priors.etl.unit_ids import field_agreement, implausible

    derived = pd.DataFrame({"session": 4, "scan_idx": 7, "field": [1] * 10 + [2] * 200,
                            "unit_id": range(1, 211)})
    coreg = derived.copy()
    coreg.loc[0, "field"] = 2  # unit 1 placed in field 2
    coreg.loc[10, "field"] = 1  # unit 11 placed in field 1
    rows = field_agreement(derived, coreg)
    assert [(r["field"], r["coregistered"], r["same_field"]) for r in rows] == [(1, 10, 9), (2, 200, 199)]
    assert [r["field"] for r in implausible(rows)] == [1]


def test_auto_never_takes_spikes_from_synthetic_data_for_measured_cells(world, tmp_path):
    store = Store(tmp_path / "store")
    shutil.copytree(world["store"].directory, store.directory)
    units = [u for u in range(1, 13) if u not in (5, 10)]
    n = len(units)
    fake = SourceTables(source="synthetic", tables={
        "neurons": pa.table({"nucleus_id": [1], "root_id": pa.array([None], pa.int64()),
                             "x_vox": [1e5], "y_vox": [1e5], "z_vox": [2e4], "x_nm": [4e5],
                             "y_nm": [4e5], "z_nm": [8e5], "cell_type": pa.array([None], pa.string()),
                             "cell_class": pa.array([None], pa.string()),
                             "layer": pa.array([None], pa.string())}),
        "functional_units": pa.table({"session": [4] * n, "scan_idx": [7] * n, "field": [1] * n,
                                      "unit_id": units, "nucleus_id": pa.array([None] * n, pa.int64()),
                                      "root_id": pa.array([None] * n, pa.int64()),
                                      "score": pa.array([None] * n, pa.float64()),
                                      "residual": pa.array([None] * n, pa.float64())}),
        "spikes": pa.table({"session": [4] * n, "scan_idx": [7] * n, "field": [1] * n, "unit_id": units,
                            "n_spikes": [1] * n, "spike_times": [[1.0]] * n})})
    store.load(fake)  # the latest snapshot with spikes for these keys, but generated
    res = resolve(Population.of_fields("4_7_1", snapshot=world["cave"], activity_snapshot="auto"), store)
    assert res.activity["snapshot_id"] == world["nwb"]


def test_cli_etl_then_priors_build_with_activity_snapshot(world, tmp_path, capsys):
    store = str(tmp_path / "store")
    Store(store).load(cave_tables())
    assert main(["etl", "--source", "nwb", str(world["path"]), "--store", store, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "from source 'nwb'" in out and "functional_units 24, spikes 24" in out
    snaps = Store(store).snapshots()
    cave = snaps[snaps.source == "cave"].snapshot_id.iloc[0]
    assert main(["priors", "build", "j471", "--fields", "4_7_1", "--snapshot", cave, "--activity-snapshot",
                 "auto", "--no-precision", "--store", store, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "kinds: cell_sign, communicability, connectome, connectome_signed, connectome_size, connectome_type_pair, correlation" in out
    assert f"spikes from snapshot {world['nwb']} (source nwb)" in out
    assert main(["priors", "show", "j471", "--store", store]) == 0
    assert f"activity:   {world['nwb']} (source nwb; spikes joined on session, scan_idx, unit_id)" \
        in capsys.readouterr().out
    assert main(["priors", "build", "x", "--fields", "all", "--per-field", "--activity-snapshot", "auto",
                 "--store", store]) == 2
    assert "--activity-snapshot is not supported with --per-field" in capsys.readouterr().err
    params = json.loads(Store(store).snapshots().query("source == 'nwb'").parameters.iloc[0])
    assert params["events"]["threshold"] == 0.01 and params["events"]["method"] == "oasis"


def test_an_activity_snapshot_without_the_population_units_is_named(world, tmp_path):
    store = Store(tmp_path / "store")
    shutil.copytree(world["store"].directory, store.directory)
    only1 = SynthField(1, world["fields"][2].event_frames)  # a one-field file: its units are 1..9
    only3 = write_scan_file(tmp_path / dandi_name(4, 7), [only1], session=4, scan_idx=7,
                            n_frames=50, frame_rate_hz=RATE)
    partial = run_etl("nwb", [only3], store=store)["snapshot_id"]
    with pytest.raises(PopulationError, match=rf"activity snapshot {partial} holds no spike train for 9 of "
                                              r"the population's 9 units of session 4 scan 7 .*unit_id "
                                              r"\[19, 20, 21, 22, 23\]"):
        resolve(Population.of_fields("4_7_3", snapshot=world["cave"], activity_snapshot=partial), store)
    # auto skips it (it lacks units) and still finds the complete one
    res = resolve(Population.of_fields("4_7_1", snapshot=world["cave"], activity_snapshot="auto"), store)
    assert res.activity["snapshot_id"] == world["nwb"]


def test_reading_into_a_store_with_a_cave_snapshot_reports_per_field_agreement(world):
    from connectome_priors.etl.sources.nwb import read_nwb

    out = read_nwb(world["path"], store_dir=world["store"].directory)
    report = out.report["coregistration"]
    assert report["status"] == "compared" and report["snapshot_id"] == world["cave"]
    assert report["threshold"] == 0.99 and report["implausible"] == []
    assert [r["line"] for r in report["fields"]] == [
        "field 4_7_1: 10 of 10 co-registered units (100.0%) lie in the same field",
        "field 4_7_2: 3 of 3 co-registered units (100.0%) lie in the same field",
        "field 4_7_3: 9 of 9 co-registered units (100.0%) lie in the same field"]
    assert read_nwb(world["path"]).report["coregistration"] == {"status": "no store"}


def test_cli_etl_into_a_store_with_a_cave_snapshot_reports_agreement(world, tmp_path, capsys):
    store = str(tmp_path / "store")
    Store(store).load(cave_tables(field_of=lambda u: {1: 3, 2: 2, 3: 1}[field_of_unit(u)]))
    assert main(["etl", "--source", "nwb", str(world["path"]), "--store", store, "--no-progress"]) == 0
    out = capsys.readouterr().out
    report = json.loads(Store(store).snapshots().query("source == 'nwb'").report.iloc[0])["coregistration"]
    assert report["implausible"] == ["4_7_1", "4_7_3"]
    assert "field 4_7_1: 0 of 10 co-registered units (0.0%) lie in the same field; elsewhere: 10 in field 3" \
        in out
