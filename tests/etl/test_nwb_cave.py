"""End to end with the real ``cave`` source: the CAVE stand-in server (unmodified caveclient) gives
the cells, wiring and co-registration; an NWB file of one of its scans gives the spikes."""

from __future__ import annotations

import numpy as np

from connectome_priors.etl import Store, run_etl
from connectome_priors.testing.cave_standin import StandinCave
from connectome_priors.testing.nwb_writer import SynthField, dandi_name, write_scan_file
from connectome_priors.priors_store.artifact import validate_manifest
from connectome_priors.priors_store.pipeline import DeriveParams, build
from connectome_priors.priors_store.population import Population, resolve
from tests.etl._cave import fast_config, fixture_versions, isolated_home  # noqa: F401 (fixture)

RATE = 6.3009
N_FRAMES = 400


def test_cave_snapshot_plus_nwb_snapshot_give_a_field_with_functional_kinds(isolated_home, tmp_path):
    store = Store(tmp_path / "store")
    versions = fixture_versions()
    with StandinCave(versions) as cave:  # materialization 2: root ids changed since version 1
        snap = run_etl("cave", store=store, cave=fast_config(cave.url, version=2))
    cave_sid = snap["snapshot_id"]
    units = store.sql("SELECT session, scan_idx, field, unit_id, nucleus_id FROM functional_units",
                      snapshot=cave_sid)
    sizes = units.groupby(["session", "scan_idx", "field"]).size()
    session, scan_idx, field = (int(v) for v in sizes.idxmax())
    assert sizes.max() >= 4
    scan = units[(units.session == session) & (units.scan_idx == scan_idx)]
    # the file's structural ids are those of an older materialization (version 1 here, 343 on DANDI)
    old = versions[1]["coregistration_manual_v4"].set_index(["session", "scan_idx", "unit_id"]).pt_root_id
    rng = np.random.default_rng(0)
    specs, truth = [], {}
    fields = sorted(scan.field.unique())
    for k in fields:
        ids = np.sort(scan[scan.field == k].unit_id.to_numpy())
        ids = np.concatenate([ids, [900_000 + k]])  # a unit CAVE never co-registered
        events = [np.sort(rng.choice(np.arange(0, N_FRAMES, 2), size=int(rng.integers(8, 25)),
                                     replace=False)) for _ in ids]
        roots = np.array([int(old.get((session, scan_idx, int(u)), 0)) for u in ids])
        specs.append(SynthField(int(k), ids, events, pt_root_id=roots,
                                pt_position=np.zeros((len(ids), 3))))
        for u, e in zip(ids, events):  # the writer offsets field k's frame times by (k - 1) / n_fields
            truth[int(u)] = (e + (int(k) - 1) / len(fields)) / RATE
    path = write_scan_file(tmp_path / dandi_name(session, scan_idx), specs, session=session,
                           scan_idx=scan_idx, n_frames=N_FRAMES, frame_rate_hz=RATE)
    nwb_sid = run_etl("nwb", [path], store=store)["snapshot_id"]

    name = f"{session}_{scan_idx}_{field}"
    res = resolve(Population.of_fields(name, snapshot=cave_sid, activity_snapshot="auto"), store)
    assert res.activity["snapshot_id"] == nwb_sid
    cave_roots = store.sql("SELECT unit_id, root_id FROM functional_units WHERE session = "
                           f"{session} AND scan_idx = {scan_idx}", snapshot=cave_sid).set_index("unit_id").root_id
    stale = [u for u in cave_roots.index if int(old.get((session, scan_idx, int(u)), 0)) != cave_roots[u]]
    assert stale, "the fixture changes ~30% of root ids between versions; some units must differ"
    for unit, train in zip(res.neurons.unit_id, res.spikes):
        np.testing.assert_allclose(train, truth[int(unit)], rtol=0, atol=1e-9)
    m = build(f"cave_nwb_{name}", Population.of_fields(name, snapshot=cave_sid, activity_snapshot="auto"),
              store=store, root=tmp_path / "art", params=DeriveParams(precision=False))
    validate_manifest(m)
    assert {"correlation", "sttc", "w_bio_modulation", "modules_functional",
            "distance_um", "connectome", "communicability", "modules_wiring"} <= set(m["kinds"])
    assert m["source_snapshot"]["source"] == "cave" and m["source_snapshot"]["materialization_version"] == 2
    assert m["source_snapshot"]["activity_snapshot"]["snapshot_id"] == nwb_sid
    unmatched = store.sql("SELECT count(*) AS n FROM functional_units WHERE unit_id >= 900000",
                          snapshot=nwb_sid).n.iloc[0]
    assert unmatched == len(fields)  # stored in the nwb snapshot, simply not part of any cell population
