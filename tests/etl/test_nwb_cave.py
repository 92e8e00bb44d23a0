"""End to end with the real ``cave`` source: the CAVE stand-in server (unmodified caveclient) gives
the cells, wiring and co-registration; an NWB file of one of its scans gives the spikes. The
stand-in's unit ids do not follow the pipeline's numbering, so the join is refused (see
tests/etl/test_nwb_join.py for the joined case)."""

from __future__ import annotations

import numpy as np
import pytest

from connectome_priors.etl import Store, run_etl
from connectome_priors.testing.cave_standin import StandinCave
from connectome_priors.testing.nwb_writer import SynthField, dandi_name, write_scan_file
from connectome_priors.priors_store.population import Population, UnitMappingError, resolve
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
    # The stand-in numbers units at random, not as the pipeline does (through the scan's fields):
    # a file in the release's layout (mask ids 1..n per field) cannot reproduce its unit ids, and
    # the join must say so with numbers instead of joining the wrong cells.
    rng = np.random.default_rng(0)
    specs = []
    n_fields = int(scan.field.max())
    n = int(scan.unit_id.max()) // n_fields + 1  # enough ROIs that every co-registered unit id exists
    for k in range(1, n_fields + 1):
        events = [np.array([int(rng.integers(2, 38))]) for _ in range(n)]
        specs.append(SynthField(k, events, pt_root_id=np.zeros(n, dtype=np.int64)))
    path = write_scan_file(tmp_path / dandi_name(session, scan_idx), specs, session=session,
                           scan_idx=scan_idx, n_frames=40, frame_rate_hz=RATE)
    nwb_sid = run_etl("nwb", [path], store=store)["snapshot_id"]
    name = f"{session}_{scan_idx}_{field}"
    with pytest.raises(UnitMappingError, match=rf"activity snapshot {nwb_sid} and snapshot {cave_sid} do not "
                                               rf"number the units of session {session} scan {scan_idx} alike"):
        resolve(Population.of_fields(name, snapshot=cave_sid, activity_snapshot=nwb_sid), store)
    assert store.sql("SELECT count(*) AS n FROM functional_units WHERE root_id IS NOT NULL",
                     snapshot=nwb_sid).n.iloc[0] == 0
