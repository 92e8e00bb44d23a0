"""The synthetic source: contract shape, keys, bounds, determinism and the structure it promises."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from connectome_priors.etl.contracts import validate_tables
from connectome_priors.etl.sources.synthetic import VOXEL_SIZE_NM, SyntheticConfig, generate
from connectome_priors.etl.store import content_hash
from connectome_priors.schemas import store_contract

SMALL = SyntheticConfig(seed=7, n_fields=4, duration_s=300.0)
TINY = SyntheticConfig(seed=11, n_fields=2, duration_s=60.0)
TABLES = ("neurons", "functional_units", "connections", "spikes", "tuning")
TYPES = {"int64": pa.int64(), "float64": pa.float64(), "string": pa.string(),
         "list<float64>": pa.list_(pa.float64())}
UNIT_KEY = ["session", "scan_idx", "unit_id"]


@pytest.fixture(scope="module")
def small():
    return generate(SMALL)


def frame(result, name):
    return result.tables[name].drop_columns(["spike_times"] if name == "spikes" else []).to_pandas()


def positions_um(result) -> dict[int, np.ndarray]:
    n = frame(result, "neurons")
    xyz = n[["x_nm", "y_nm", "z_nm"]].to_numpy() / 1000.0
    return dict(zip(n["nucleus_id"].to_numpy(), xyz))


def field_units(result, session, scan_idx, field):
    """The field's functional units in unit_id order."""
    u = frame(result, "functional_units")
    u = u[(u.session == session) & (u.scan_idx == scan_idx) & (u.field == field)]
    return u.sort_values("unit_id").reset_index(drop=True)


def binned_counts(result, session, scan_idx, field, *, bin_s=0.2) -> np.ndarray:
    """Spike counts (units, bins) of a field as the study bins them: edges arange(0, t_end, bin_s),
    t_end = last spike of the field + 0.1 s; rows in unit_id order."""
    spikes = result.tables["spikes"]
    mask = pc.and_(pc.and_(pc.equal(spikes["session"], session), pc.equal(spikes["scan_idx"], scan_idx)),
                   pc.equal(spikes["field"], field))
    sub = spikes.filter(mask)
    assert (np.diff(np.asarray(sub["unit_id"])) > 0).all()
    rows = [np.asarray(v.values) for v in sub["spike_times"].combine_chunks()]
    edges = np.arange(0.0, max(r.max() for r in rows if len(r)) + 0.1, bin_s)
    return np.stack([np.histogram(r, edges)[0] for r in rows]).astype(float)


def connection_matrix(result, nucleus_ids) -> np.ndarray:
    c = frame(result, "connections")
    index = {n: k for k, n in enumerate(nucleus_ids)}
    a = np.zeros((len(nucleus_ids), len(nucleus_ids)), bool)
    keep = c.pre_nucleus_id.isin(index) & c.post_nucleus_id.isin(index)
    a[[index[n] for n in c.pre_nucleus_id[keep]], [index[n] for n in c.post_nucleus_id[keep]]] = True
    return a


def largest_field(result):
    u = frame(result, "functional_units")
    return u.groupby(["session", "scan_idx", "field"]).size().idxmax()


def test_columns_and_types_match_the_contracts(small):
    assert sorted(small.tables) == sorted(TABLES)
    for name in TABLES:
        contract = store_contract(name)["columns"]
        table = small.tables[name]
        assert table.column_names == [c["name"] for c in contract]
        assert [table.schema.field(c["name"]).type for c in contract] == [TYPES[c["type"]] for c in contract]
        assert "snapshot_id" not in table.column_names


def test_metadata_is_labelled_synthetic_and_json_serializable(small):
    assert small.source == "synthetic"
    assert small.parameters["synthetic"] is True and small.report["synthetic"] is True
    assert small.parameters["voxel_size_nm"] == [4, 4, 40]
    assert small.parameters["seed"] == 7 and small.parameters["n_fields"] == 4
    assert small.origins == {name: "synthetic generator (seed 7)" for name in TABLES}
    json.dumps(small.parameters)
    json.dumps(small.report)
    assert small.report["n_units"] == small.tables["functional_units"].num_rows
    assert small.report["n_neurons"] == small.tables["neurons"].num_rows


def test_tables_pass_contract_validation(small):
    validate_tables(small.tables, origins=small.origins)


def test_keys_are_unique(small):
    neurons = frame(small, "neurons")
    assert neurons.nucleus_id.is_unique and neurons.root_id.is_unique
    for name in ("functional_units", "spikes", "tuning"):
        assert not frame(small, name).duplicated(UNIT_KEY).any(), name
    conns = frame(small, "connections")
    assert not conns.duplicated(["pre_nucleus_id", "post_nucleus_id"]).any()
    assert (conns.pre_nucleus_id != conns.post_nucleus_id).all()


def test_foreign_keys_join(small):
    nuclei = set(frame(small, "neurons").nucleus_id)
    units = frame(small, "functional_units")
    assert set(units.nucleus_id) <= nuclei
    assert nuclei == set(units.nucleus_id)  # every cell is co-registered to at least one unit
    conns = frame(small, "connections")
    assert set(conns.pre_nucleus_id) <= nuclei and set(conns.post_nucleus_id) <= nuclei
    keys = set(map(tuple, units[UNIT_KEY].to_numpy()))
    for name in ("spikes", "tuning"):
        assert set(map(tuple, frame(small, name)[UNIT_KEY].to_numpy())) == keys
    spikes = frame(small, "spikes")
    assert (spikes.field.to_numpy() == units.field.to_numpy()).all()
    roots = dict(zip(frame(small, "neurons").nucleus_id, frame(small, "neurons").root_id))
    assert (units.root_id.to_numpy() == units.nucleus_id.map(roots).to_numpy()).all()


def test_ids_and_positions_are_in_bounds(small):
    n = frame(small, "neurons")
    assert (n.nucleus_id >= 1).all()
    assert n.root_id.astype(str).str.fullmatch(r"864691135\d{9}").all()
    for axis, hi, size in (("x", 500000, VOXEL_SIZE_NM[0]), ("y", 350000, VOXEL_SIZE_NM[1]),
                           ("z", 30000, VOXEL_SIZE_NM[2])):
        vox = n[f"{axis}_vox"].to_numpy()
        assert ((vox >= 0) & (vox <= hi)).all() and (vox == np.round(vox)).all()
        assert (n[f"{axis}_nm"].to_numpy() == vox * size).all()
    assert n.x_vox.between(108000, 385000).all() and n.z_vox.between(14900, 27700).all()
    depth = (n.y_nm / 1000.0 - SMALL.pia_y_um).to_numpy()
    layer_index = np.searchsorted([100, 350, 500, 750], depth, "right")
    layer_of = np.array(["L1", "L2/3", "L4", "L5", "L6"])[layer_index]
    assert (n.layer.to_numpy() == layer_of).all()
    assert set(n.cell_class) == {"excitatory", "inhibitory"}
    assert 0.75 < (n.cell_class == "excitatory").mean() < 0.95
    assert (n.cell_class[n.layer == "L1"] == "inhibitory").all()
    assert set(n.cell_type[n.layer == "L2/3"]) <= {"23P", "BC", "MC", "BPC", "NGC"}
    u = frame(small, "functional_units")
    assert set(u.field) == {2, 4, 6, 8}
    assert (u.session.to_numpy() == 6).all() and (u.scan_idx.to_numpy() == 6).all()  # study scan first
    assert (u.residual >= 0).all() and (u.score >= 0).all() and (u.unit_id >= 1).all()


def test_connections_and_tuning_are_in_range(small):
    c = frame(small, "connections")
    assert c.n_synapses.between(1, SMALL.max_synapses).all() and (c.sum_size > 0).all()
    assert (c.sum_size.to_numpy() >= c.n_synapses.to_numpy() * 1.0).all()
    t = frame(small, "tuning")
    assert t.pref_ori_deg.between(0, 180, inclusive="left").all()
    assert t.pref_dir_deg.between(0, 360, inclusive="left").all()
    assert t.osi.between(0, 1).all() and t.dsi.between(0, 1).all()
    assert 0.1 < t.osi.median() < 0.9


def test_spike_trains_are_sorted_finite_and_counted(small):
    spikes = small.tables["spikes"]
    times = spikes["spike_times"].combine_chunks()
    flat = np.asarray(times.values)
    lengths = np.diff(np.asarray(times.offsets))
    assert (lengths == np.asarray(spikes["n_spikes"])).all()
    assert np.isfinite(flat).all() and (flat >= 0).all() and (flat < SMALL.duration_s).all()
    step = np.diff(flat)
    new_row = np.zeros(len(flat), bool)
    new_row[np.asarray(times.offsets)[1:-1]] = True
    assert (step[~new_row[1:]] >= 0).all()
    rate = len(flat) / spikes.num_rows / SMALL.duration_s
    assert rate == pytest.approx(SMALL.mean_rate_hz, rel=0.2)


def test_same_seed_same_tables_other_seed_differs():
    first, again = generate(TINY), generate(TINY, progress=True)
    for name in TABLES:
        assert first.tables[name].equals(again.tables[name]), name
    assert first.report == again.report
    other = generate(SyntheticConfig(seed=TINY.seed + 1, n_fields=2, duration_s=60.0))
    for name in TABLES:
        assert not first.tables[name].equals(other.tables[name]), name


def test_connected_pairs_are_closer_than_field_pairs(small):
    pos = positions_um(small)
    connected, pairs = [], []
    for key in frame(small, "functional_units").groupby(["session", "scan_idx", "field"]).groups:
        ids = field_units(small, *key).nucleus_id.to_numpy()
        xyz = np.stack([pos[n] for n in ids])
        d = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)
        a = connection_matrix(small, ids)
        connected.append(d[a])
        pairs.append(d[~np.eye(len(ids), dtype=bool)])
    connected, pairs = np.concatenate(connected), np.concatenate(pairs)
    assert len(connected) > 200
    assert connected.mean() < 0.6 * pairs.mean()
    assert small.report["within_field_mean_connected_distance_um"] == pytest.approx(connected.mean())
    assert small.report["within_field_mean_pair_distance_um"] == pytest.approx(pairs.mean())


def test_a_field_of_about_312_units_has_about_300_connections(small):
    p = small.report["within_field_connection_prob"]
    assert 150 < p * 312 * 311 < 600


def test_connected_pairs_are_more_correlated(small):
    key = largest_field(small)
    units = field_units(small, *key)
    corr = np.corrcoef(binned_counts(small, *key))
    a = connection_matrix(small, units.nucleus_id.to_numpy())
    off = ~np.eye(len(units), dtype=bool)
    assert a.sum() > 50
    assert np.nanmean(corr[a]) > np.nanmean(corr[off & ~a]) + 0.01


def test_nearby_pairs_are_more_correlated_than_far_pairs(small):
    key = largest_field(small)
    units = field_units(small, *key)
    corr = np.corrcoef(binned_counts(small, *key))
    pos = positions_um(small)
    xyz = np.stack([pos[n] for n in units.nucleus_id])
    d = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)
    off = ~np.eye(len(units), dtype=bool)
    near, far = corr[off & (d < 100)], corr[off & (d > 300)]
    assert len(near) > 100 and len(far) > 100
    assert np.nanmean(near) > np.nanmean(far) + 0.01


def test_connected_pairs_share_preferred_orientation(small):
    t = frame(small, "tuning").merge(frame(small, "functional_units"), on=UNIT_KEY)
    ori = t.groupby("nucleus_id").pref_ori_deg.first()
    c = frame(small, "connections")
    c = c[c.pre_nucleus_id.isin(ori.index) & c.post_nucleus_id.isin(ori.index)]
    diff = np.radians(2 * (ori[c.pre_nucleus_id].to_numpy() - ori[c.post_nucleus_id].to_numpy()))
    assert np.nanmean(np.cos(diff)) > 0.05  # 0 for unrelated orientations


@pytest.mark.parametrize("kwargs, match", [
    ({"n_fields": 0}, "n_fields"),
    ({"n_fields": 200}, "scans needed"),
    ({"fov_um": (2000.0, 500.0)}, "fov_um"),
    ({"duration_s": 0.01}, "duration_s"),
    ({"wiring_peak_prob": 0.9}, "wiring_peak_prob"),
])
def test_invalid_config_is_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SyntheticConfig(**kwargs)


@pytest.mark.slow
def test_full_default_has_the_microns_scale():
    result = generate()
    units = frame(result, "functional_units")
    n_fields = units.groupby(["session", "scan_idx", "field"]).ngroups
    assert n_fields == 56
    assert 14000 <= result.tables["neurons"].num_rows <= 17000
    assert 17000 <= units.shape[0] <= 21000
    assert 10_000_000 <= result.report["n_spikes"] <= 20_000_000
    assert result.report["within_field_mean_connected_distance_um"] \
        < 0.6 * result.report["within_field_mean_pair_distance_um"]
    validate_tables(result.tables, origins=result.origins)


# ---------------------------------------------------------------------------------------------
# Same content on every machine: the stored tables must not depend on the CPU's SIMD paths, the
# BLAS kernel or its thread count. Each condition runs the generator in a child process whose
# environment selects other numpy / OpenBLAS code paths, and compares the content hash.

PORTABLE = SyntheticConfig(seed=5, n_fields=2, fields_per_scan=2, duration_s=120.0,
                           field_size_range=(40, 48))
PORTABLE_LARGER = SyntheticConfig(seed=9, n_fields=4, duration_s=300.0)

_CHILD = """
import json, sys
try:
    from numpy._core._multiarray_umath import __cpu_features__
except ImportError:  # numpy < 2
    from numpy.core._multiarray_umath import __cpu_features__
from connectome_priors.etl.sources.synthetic import SyntheticConfig, generate
from connectome_priors.etl.store import content_hash
result = generate(SyntheticConfig(**json.loads(sys.argv[1])))
try:
    from threadpoolctl import threadpool_info
    blas = [(i.get("architecture"), i.get("num_threads")) for i in threadpool_info()
            if i.get("user_api") == "blas"]
except ImportError:
    blas = []
print(json.dumps({"hash": content_hash(result.source, result.tables),
                  "report": json.dumps(result.report, sort_keys=True),
                  "features": {k: bool(v) for k, v in __cpu_features__.items()}, "blas": blas}))
"""
def _cpu_dispatch() -> tuple[dict, list[str]]:
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:  # numpy < 2
        from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    return dict(__cpu_features__), list(__cpu_dispatch__)


def _blas_kernel() -> str | None:
    if os.environ.get("OPENBLAS_CORETYPE"):
        return os.environ["OPENBLAS_CORETYPE"]
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    arch = [i.get("architecture") for i in threadpool_info() if i.get("internal_api") == "openblas"]
    return arch[0] if arch else None


def _conditions() -> list[tuple[str, dict]]:
    """(name, environment changes) of the conditions this machine can run."""
    features, dispatch = _cpu_dispatch()
    present = [f for f in dispatch if features.get(f)]
    # numpy's dispatched loops, top tier first: AVX512 (X86_V4 / AVX512_*), then AVX2 / FMA3 (X86_V3)
    wide = [f for f in present if "512" in f or f == "X86_V4"]
    out = [("1 BLAS/OpenMP thread", {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}),
           ("2 BLAS/OpenMP threads", {"OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2"})]
    if wide:
        out.append((f"numpy SIMD without {'/'.join(wide)}", {"NPY_DISABLE_CPU_FEATURES": " ".join(wide)}))
    if present and present != wide:
        out.append((f"numpy SIMD baseline only (without {'/'.join(present)})",
                    {"NPY_DISABLE_CPU_FEATURES": " ".join(present)}))
    kernel = (_blas_kernel() or "").lower()
    needs = {"SkylakeX": ("AVX512F",), "Haswell": ("AVX2", "FMA3"), "Sandybridge": ("AVX",),
             "Nehalem": ("SSE42",)}
    if kernel:  # OpenBLAS with runtime kernel selection: try the other kernels this CPU runs
        for name, required in needs.items():
            if name.lower() != kernel and all(features.get(f) for f in required):
                out.append((f"OpenBLAS kernel {name} (not {kernel})", {"OPENBLAS_CORETYPE": name}))
    return out


def _run_child(config: SyntheticConfig, changes: dict) -> dict:
    env = {**os.environ, **changes}  # the reference ({}) runs as this process would
    args = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}
    proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(args)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _check_condition_applied(child: dict, changes: dict) -> None:
    """The condition really selected other code paths (else the comparison proves nothing)."""
    for feature in changes.get("NPY_DISABLE_CPU_FEATURES", "").split():
        assert child["features"].get(feature) is False, feature
    if "OPENBLAS_CORETYPE" in changes and child["blas"]:
        assert child["blas"][0][0].lower() == changes["OPENBLAS_CORETYPE"].lower(), child["blas"]
    if "OPENBLAS_NUM_THREADS" in changes and child["blas"]:
        assert child["blas"][0][1] == int(changes["OPENBLAS_NUM_THREADS"]), child["blas"]


CONDITIONS = _conditions()


@pytest.fixture(scope="module")
def portable_reference():
    return _run_child(PORTABLE, {})


@pytest.mark.processes
@pytest.mark.parametrize("name, changes", CONDITIONS, ids=[c[0] for c in CONDITIONS])
def test_content_is_the_same_on_other_cpu_paths_and_blas_kernels(portable_reference, name, changes):
    child = _run_child(PORTABLE, changes)
    _check_condition_applied(child, changes)
    assert child["hash"] == portable_reference["hash"], f"content changed under: {name}"
    assert child["report"] == portable_reference["report"], f"report changed under: {name}"


@pytest.mark.processes
def test_content_hash_in_process_matches_the_child(portable_reference):
    result = generate(PORTABLE)
    assert content_hash(result.source, result.tables) == portable_reference["hash"]


@pytest.mark.processes
@pytest.mark.slow
def test_larger_content_is_the_same_with_every_alternative_path_at_once():
    worst = {}
    for _, changes in CONDITIONS:  # the widest SIMD removal, one other BLAS kernel, one thread
        if "NPY_DISABLE_CPU_FEATURES" in changes and len(changes["NPY_DISABLE_CPU_FEATURES"]) > \
                len(worst.get("NPY_DISABLE_CPU_FEATURES", "")):
            worst["NPY_DISABLE_CPU_FEATURES"] = changes["NPY_DISABLE_CPU_FEATURES"]
        if "OPENBLAS_CORETYPE" in changes:
            worst["OPENBLAS_CORETYPE"] = changes["OPENBLAS_CORETYPE"]
    worst.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    child = _run_child(PORTABLE_LARGER, worst)
    _check_condition_applied(child, worst)
    result = generate(PORTABLE_LARGER)
    assert child["hash"] == content_hash(result.source, result.tables), worst
    assert child["report"] == json.dumps(result.report, sort_keys=True), worst


#: Snapshot id of ``cxp etl --source synthetic`` (seed 0, full default size), on every machine.
FULL_DEFAULT_SNAPSHOT = "synthetic-2aa950722fdd6447"


@pytest.mark.slow
def test_full_default_snapshot_id_is_pinned():
    result = generate()
    digest = content_hash(result.source, validate_tables(result.tables, origins=result.origins))
    assert f"synthetic-{digest[:16]}" == FULL_DEFAULT_SNAPSHOT
