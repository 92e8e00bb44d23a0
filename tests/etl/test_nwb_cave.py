"""End to end with the real ``cave`` source: the CAVE stand-in server (unmodified caveclient) gives
the cells, wiring and co-registration; an NWB scan file in the release's layout gives the spikes.
The stand-in numbers units as the pipeline does (through each scan's fields), so a file with the
same fields joins, per-field agreement is 100 %, and every kind is derived; a file whose first
field holds half a field more ROIs shifts every later unit id and is refused with numbers (a
shift of a few ROIs moves few units across a field boundary: the check's stated limit)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from connectome_priors.etl import Store, run_etl
from connectome_priors.priors_store.pipeline import DeriveParams, build
from connectome_priors.priors_store.population import Population, UnitMappingError, resolve
from connectome_priors.testing.cave_standin import StandinCave
from connectome_priors.testing.nwb_writer import SynthField, dandi_name, write_scan_file
from tests.etl._cave import fast_config, fixture_versions

RATE = 6.3009
N_FRAMES = 600


def _scan_file(tmp_path, scan, per_field: int, n_fields: int, *, extra_first: int = 0, seed: int = 0):
    rng = np.random.default_rng(seed)
    specs = []
    for k in range(1, n_fields + 1):
        n = per_field + (extra_first if k == 1 else 0)
        events = [np.sort(rng.choice(np.arange(2, N_FRAMES - 2), size=int(rng.integers(15, 40)),
                                     replace=False)) for _ in range(n)]
        specs.append(SynthField(k, events))
    session, scan_idx = scan
    return write_scan_file(tmp_path / f"{extra_first}" / dandi_name(session, scan_idx), specs,
                           session=session, scan_idx=scan_idx, n_frames=N_FRAMES, frame_rate_hz=RATE)


@pytest.fixture(scope="module")
def cave_store(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    mp = pytest.MonkeyPatch()
    mp.setenv("HOME", str(home))
    mp.delenv("CXP_CAVE_TOKEN", raising=False)
    store = Store(tmp_path_factory.mktemp("store"))
    with StandinCave(fixture_versions()) as cave:  # materialization 2: root ids changed since 1
        sid = run_etl("cave", store=store, cave=fast_config(cave.url, version=2))["snapshot_id"]
    mp.undo()
    units = store.sql("SELECT session, scan_idx, field, unit_id FROM functional_units", snapshot=sid)
    sizes = units.groupby(["session", "scan_idx", "field"]).size()
    session, scan_idx, field = (int(v) for v in sizes.idxmax())
    scan = units[(units.session == session) & (units.scan_idx == scan_idx)]
    # the stand-in's fields hold per_field ROIs each: field k's units are (k-1)*per_field + 1..
    per_field = next(p for p in range(1, int(scan.unit_id.max()) + 1)
                     if (((scan.unit_id - 1) // p + 1) == scan.field).all())
    return store, sid, (session, scan_idx, field), per_field, int(scan.field.max())


def test_cave_snapshot_plus_nwb_snapshot_give_a_field_with_functional_kinds(cave_store, tmp_path):
    store, cave_sid, (session, scan_idx, field), per_field, n_fields = cave_store
    path = _scan_file(tmp_path, (session, scan_idx), per_field, n_fields)
    snap = run_etl("nwb", [path], store=store)
    report = json.loads(snap["report"])["coregistration"]
    assert report["status"] == "compared" and not report["implausible"]
    name = f"{session}_{scan_idx}_{field}"
    pop = resolve(Population.of_fields(name, snapshot=cave_sid, activity_snapshot=snap["snapshot_id"]),
                  store)
    assert len(pop.spikes) == len(pop.neurons) >= 4 and all(len(t) >= 15 for t in pop.spikes)
    manifest = build(f"cave_{name}", Population.of_fields(name, snapshot=cave_sid,
                                                           activity_snapshot=snap["snapshot_id"]),
                     store=store, root=tmp_path / "artifacts", params=DeriveParams(precision=False))
    kinds = set(manifest["files"]) if isinstance(manifest.get("files"), dict) else set(manifest["kinds"])
    assert {"correlation", "sttc", "connectome", "distance_um"} <= {k.split(".")[0] for k in kinds}


def test_a_file_whose_later_unit_ids_are_shifted_is_refused(cave_store, tmp_path):
    store, cave_sid, (session, scan_idx, field), per_field, n_fields = cave_store
    if n_fields < 2 or field == 1:
        pytest.skip("the largest field must not be the first")
    path = _scan_file(tmp_path, (session, scan_idx), per_field, n_fields,
                      extra_first=per_field // 2)
    nwb_sid = run_etl("nwb", [path], store=store)["snapshot_id"]
    name = f"{session}_{scan_idx}_{field}"
    with pytest.raises(UnitMappingError, match=rf"activity snapshot {nwb_sid} and snapshot {cave_sid} do not "
                                               rf"number the units of session {session} scan {scan_idx} alike"):
        resolve(Population.of_fields(name, snapshot=cave_sid, activity_snapshot=nwb_sid), store)
    assert store.sql("SELECT count(*) AS n FROM functional_units WHERE root_id IS NOT NULL",
                     snapshot=nwb_sid).n.iloc[0] == 0
