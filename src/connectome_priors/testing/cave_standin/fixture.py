"""A seeded, minnie65-shaped set of CAVE tables per materialization version (synthetic data)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...etl.sources.cave.transform import CELLTYPES_TABLE, COREG_TABLES, NUCLEUS_TABLE, SYNAPSE_TABLE
from .frames import schema_frame
from .schemas import BOUND_COREG_SCHEMA, TABLE_SCHEMAS

__all__ = ["minnie_fixture"]

_EXC = [("23P", 100_000, 130_000), ("4P", 130_000, 160_000), ("5P-IT", 160_000, 190_000),
        ("5P-ET", 160_000, 190_000), ("6P-IT", 190_000, 240_000)]
_INH = ["BC", "MC", "BPC", "NGC"]


def _pipeline_unit_ids(session, scan_idx, field_, order) -> np.ndarray:
    """Unit ids as the MICrONS pipeline numbers them: through each scan's fields in order, every
    field holding ``per_field`` ROIs (masks 1..per_field), so ``unit_id = (field - 1) * per_field +
    mask_id``. ``order`` (distinct numbers) decides which mask each co-registered unit gets."""
    keys = pd.DataFrame({"s": session, "c": scan_idx, "f": field_, "o": order})
    mask = keys.groupby(["s", "c", "f"])["o"].rank(method="first").to_numpy(np.int64)
    per_field = int(mask.max()) + 5 if len(mask) else 1  # a few ROIs without a cell per field
    return (np.asarray(field_, dtype=np.int64) - 1) * per_field + mask


def minnie_fixture(*, n_cells: int = 300, n_synapses: int = 6000, seed: int = 0,
                   versions: tuple[int, ...] = (1, 2), changed_fraction: float = 0.3,
                   coreg_fraction: float = 0.6,
                   coregistration: str = "reference") -> dict[int, dict[str, pd.DataFrame]]:
    """A seeded, minnie65-shaped set of CAVE tables per materialization version (synthetic).

    Every table's columns come from its schema (:data:`TABLE_SCHEMAS`, :func:`schema_frame`):
    the cell types and co-registration are reference tables (``target_id`` -> nucleus id, no
    root id or position of their own), as a real server answers them.

    Cells: nuclei with voxel positions in the minnie65 volume, AIBS metamodel cell types
    (excitatory by depth, inhibitory, non-neuronal), two nuclei with root id 0 and one root id
    carrying two nuclei (a merge). Co-registration rows (session, scan_idx, field, unit_id, score,
    residual) for ``coreg_fraction`` of the neurons, digital-twin tuning in degrees and the same
    tuning in the older radians/clockwise table, and ``n_synapses`` synapses of which most join
    co-registered excitatory cells. Every later version changes the root ids of
    ``changed_fraction`` of the cells (synapses follow); nucleus ids never change. Rows are stored
    in shuffled order, as a database returns them.

    Parameters
    ----------
    coregistration
        ``reference`` (schema ``func_unit_ext_coreg``, as MICrONS serves it) or ``bound_point``
        (:data:`BOUND_COREG_SCHEMA`: the soma's bound point instead of ``target_id``, its root id
        that of the nucleus in the same version).

    Returns
    -------
    dict
        version -> {CAVE table name -> DataFrame, split positions in voxels}.
    """
    if coregistration not in ("reference", "bound_point"):
        raise ValueError(f"coregistration must be 'reference' or 'bound_point', not {coregistration!r}")
    rng = np.random.default_rng(seed)
    n = n_cells
    nucleus_id = 100_000 + np.sort(rng.choice(np.arange(1, 50 * n + 10), n, replace=False))
    roots = 864691135_000_000_000 + (1 + rng.choice(10**9, n, replace=False))
    roots[0] = roots[1] = 0  # nuclei without a segment
    roots[3] = roots[2]       # a merge: one root id, two nuclei
    kinds = rng.choice(3, n, p=[0.75, 0.17, 0.08])  # excitatory, inhibitory, non-neuronal
    cell_type = np.empty(n, dtype=object)
    cls = np.empty(n, dtype=object)
    y = rng.uniform(90_000, 250_000, n)
    for i in range(n):
        if kinds[i] == 0:
            label = _EXC[rng.integers(len(_EXC))]
            cell_type[i], cls[i] = label[0], "excitatory_neuron"
            y[i] = rng.uniform(label[1], label[2])
        elif kinds[i] == 1:
            cell_type[i], cls[i] = _INH[rng.integers(len(_INH))], "inhibitory_neuron"
        else:
            cell_type[i], cls[i] = "astrocyte", "nonneuron"
    pos = np.column_stack([rng.uniform(150_000, 250_000, n), y, rng.uniform(15_000, 27_000, n)])
    pos = np.round(pos).astype(np.int64)  # the server casts positions to integers
    neuron = kinds < 2
    coreg_idx = np.flatnonzero(neuron & (rng.random(n) < coreg_fraction))
    m = len(coreg_idx)
    session = rng.choice([4, 5, 6], m)
    scan_idx = rng.choice([2, 7], m)
    field_ = rng.integers(1, 6, m)
    unit_id = _pipeline_unit_ids(session, scan_idx, field_, rng.permutation(np.arange(1, 20 * m + 1))[:m])
    auto_idx = np.flatnonzero(neuron & ~np.isin(np.arange(n), coreg_idx) & (rng.random(n) < 0.3))
    pref_ori = rng.uniform(0, 180, m)
    pref_dir = np.mod(pref_ori + 180 * rng.integers(0, 2, m), 360)
    gosi, gdsi = rng.uniform(0, 1, m), rng.uniform(0, 1, m)
    cc = rng.uniform(0.1, 0.9, (m, 3))
    readout = rng.uniform(-1, 1, (m, 2))

    # synapses: mostly among co-registered excitatory cells, some to other / unknown segments
    core = coreg_idx[cls[coreg_idx] == "excitatory_neuron"]
    core = core[roots[core] != 0]
    any_cell = np.arange(n)
    n_core = int(n_synapses * 0.8)
    pre_i = np.concatenate([rng.choice(core, n_core), rng.choice(any_cell, n_synapses - n_core)])
    post_i = np.concatenate([rng.choice(core, n_core), rng.choice(any_cell, n_synapses - n_core)])
    orphan = rng.random(n_synapses) < 0.05  # partner is a fragment without a nucleus
    syn_id = 1 + rng.permutation(np.arange(3 * n_synapses))[:n_synapses]
    size = rng.integers(40, 5000, n_synapses).astype(np.float64)
    ctr = pos[post_i] + rng.normal(0, [500, 500, 20], (n_synapses, 3))
    ctr = np.clip(np.round(ctr), 0, None).astype(np.int64)
    orphan_root = 864691136_000_000_000 + rng.integers(1, 10**9, n_synapses)
    sv = 88_000_000_000_000_000 + np.arange(n)
    ct_rows = np.flatnonzero(cell_type != None)  # noqa: E711

    def frame(table: str, values: dict, *, schema: str | None = None) -> pd.DataFrame:
        schema_type, target = TABLE_SCHEMAS[table]
        if schema is not None:
            schema_type, target = schema, None
        df = schema_frame(schema_type, values, table=table, reference_table=target)
        shuffled = df.sample(frac=1, random_state=int(rng.integers(2**31))).reset_index(drop=True)
        shuffled.attrs.update(df.attrs)
        return shuffled

    def coreg_frame(table: str, idx: np.ndarray, values: dict, cur: np.ndarray) -> pd.DataFrame:
        if coregistration == "reference":
            return frame(table, {"target_id": nucleus_id[idx], **values})
        return frame(table, {"pt_position": pos[idx], "pt_supervoxel_id": sv[idx],
                             "pt_root_id": cur[idx], **values}, schema=BOUND_COREG_SCHEMA)

    out: dict[int, dict[str, pd.DataFrame]] = {}
    cur = roots.copy()
    for k, version in enumerate(sorted(versions)):
        if k > 0:
            change = rng.random(n) < changed_fraction
            change &= cur != 0
            change[2] = change[3] = False  # keep the merge as it is
            cur = cur.copy()
            cur[change] = 864691137_000_000_000 + 1 + rng.choice(10**9, int(change.sum()),
                                                                 replace=False)
        nuc = frame(NUCLEUS_TABLE, {
            "id": nucleus_id, "volume": np.round(rng.uniform(100, 400, n), 3), "pt_position": pos,
            "pt_supervoxel_id": sv, "pt_root_id": cur})
        ct = frame(CELLTYPES_TABLE, {
            "target_id": nucleus_id[ct_rows], "classification_system": cls[ct_rows].astype(str),
            "cell_type": cell_type[ct_rows].astype(str)})
        coreg = coreg_frame(COREG_TABLES[0], coreg_idx, {
            "session": session, "scan_idx": scan_idx, "field": field_, "unit_id": unit_id,
            "residual": np.round(rng.uniform(0, 8, m), 3), "score": np.round(rng.uniform(0, 20, m), 3)},
            cur)
        ma = len(auto_idx)
        auto = coreg_frame(COREG_TABLES[1], auto_idx, {
            "session": np.full(ma, 4), "scan_idx": np.full(ma, 7), "field": np.full(ma, 3),
            "unit_id": 10**6 + np.arange(ma), "residual": np.full(ma, 2.5), "score": np.full(ma, 1.5)},
            cur)
        tuning = {"target_id": nucleus_id[coreg_idx], "session": session, "scan_idx": scan_idx,
                  "unit_id": unit_id, "gOSI": gosi, "gDSI": gdsi, "cc_abs": cc[:, 0]}
        twin = frame("digital_twin_properties_bcm_coreg_v4", {
            **tuning, "pref_ori": pref_ori, "pref_dir": pref_dir, "cc_max": cc[:, 1],
            "cc_norm": cc[:, 2], "OSI": gosi, "DSI": gdsi, "readout_loc_x": readout[:, 0],
            "readout_loc_y": readout[:, 1]})
        older = frame("functional_properties_v3_bcm", {  # radians, measured clockwise
            **tuning, "pref_ori": np.mod(-np.radians(pref_ori), np.pi),
            "pref_dir": np.mod(-np.radians(pref_dir), 2 * np.pi)})
        pre = np.where(orphan, orphan_root, cur[pre_i])
        post = cur[post_i]
        keep = (pre != 0) & (post != 0)
        pre_pos = np.where(orphan[keep, None], ctr[keep], pos[pre_i[keep]])
        syn = frame(SYNAPSE_TABLE, {
            "id": syn_id[keep], "pre_pt_position": pre_pos, "pre_pt_root_id": pre[keep],
            "post_pt_position": pos[post_i[keep]], "post_pt_root_id": post[keep],
            "ctr_pt_position": ctr[keep], "size": size[keep]})
        out[version] = {NUCLEUS_TABLE: nuc, CELLTYPES_TABLE: ct, COREG_TABLES[0]: coreg,
                        COREG_TABLES[1]: auto, "digital_twin_properties_bcm_coreg_v4": twin,
                        "functional_properties_v3_bcm": older, SYNAPSE_TABLE: syn}
    return out
