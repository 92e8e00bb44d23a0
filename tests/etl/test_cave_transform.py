"""connectome_priors.etl.sources.cave.transform: CAVE tables -> canonical tables (pure, no server)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from connectome_priors.etl.contracts import validate_tables
from connectome_priors.etl.errors import SourceError
from connectome_priors.etl.sources.cave.transform import canonical_tables, layer_of, normalize_angles
from tests.etl._cave import fixture_versions

R = 864691135_000_000_000


def _raw() -> dict[str, pd.DataFrame]:
    """Five nuclei: 1-3 fine, 4 has root id 0, 5 and 6 share one root (a merge)."""
    nuc = pd.DataFrame({
        "id": [1, 2, 3, 4, 5, 6], "valid": True,
        "pt_root_id": [R + 1, R + 2, R + 3, 0, R + 5, R + 5],
        "pt_position_x": [1000.0, 2000, 3000, 4000, 5000, 6000],
        "pt_position_y": [110_000.0, 140_000, 200_000, 1, 1, 1],
        "pt_position_z": [20_000.0, 20_001, 20_002, 1, 1, 1]})
    ct = pd.DataFrame({"id": [10, 11, 12, 13, 14], "target_id": [1, 2, 3, 5, 6],
                       "classification_system": ["excitatory_neuron", "excitatory_neuron",
                                                 "inhibitory_neuron", "excitatory_neuron",
                                                 "excitatory_neuron"],
                       "cell_type": ["23P", "4P", "BC", "5P-IT", "6P-IT"]})
    coreg = pd.DataFrame({"target_id": [1, 2, 3, 5], "session": [4, 4, 4, 4], "scan_idx": [7, 7, 7, 7],
                          "field": [1, 2, 2, 3], "unit_id": [11, 12, 13, 15],
                          "pt_root_id": [R + 1, R + 2, R + 3, R + 5], "score": [1.0, 2.0, np.nan, 3.0],
                          "residual": [0.5, 0.7, 0.9, 1.0]})
    twin = pd.DataFrame({"session": [4, 4], "scan_idx": [7, 7], "unit_id": [11, 12],
                         "pref_ori": [30.0, 179.9], "pref_dir": [210.0, 359.9],
                         "gOSI": [0.5, 0.2], "gDSI": [0.1, 0.9]})
    syn = pd.DataFrame({"id": [100, 101, 102, 103, 104],
                        "pre_pt_root_id": [R + 1, R + 1, R + 2, R + 3, R + 1],
                        "post_pt_root_id": [R + 2, R + 2, R + 1, R + 1, R + 999],
                        "size": [10, 30, 5, 7, 1],
                        "ctr_pt_position_x": [1.0] * 5, "ctr_pt_position_y": [2.0] * 5,
                        "ctr_pt_position_z": [3.0] * 5})
    return {"nucleus_detection_v0": nuc, "aibs_metamodel_celltypes_v661": ct,
            "coregistration_manual_v4": coreg, "digital_twin_properties_bcm_coreg_v4": twin,
            "synapses_pni_2": syn}


def test_identity_selection_positions_and_connections():
    st = canonical_tables(_raw(), datastack="minnie65_public", materialization_version=943,
                          materialization_timestamp="2024-01-22T00:00:00+00:00")
    validate_tables(st.tables, origins=st.origins)
    n = st.tables["neurons"].to_pydict()
    # default: co-registered excitatory -> nuclei 1 and 2 (3 is inhibitory; 4 root 0; 5/6 merged)
    assert n["nucleus_id"] == [1, 2]
    assert n["layer"] == ["L2/3", "L4"] and n["cell_class"] == ["excitatory", "excitatory"]
    assert n["x_nm"] == [4000.0, 8000.0] and n["z_nm"] == [800_000.0, 800_040.0]
    assert st.report["excluded_root_id_zero"] == 1
    assert st.report["excluded_multi_nucleus_roots"] == 1
    assert st.report["excluded_multi_nucleus_nuclei"] == 2
    assert st.materialization_version == 943 and st.datastack == "minnie65_public"
    # only synapses whose both partners are selected neurons, aggregated by nucleus id
    assert st.tables["synapses"].column("synapse_id").to_pylist() == [100, 101, 102]
    c = st.tables["connections"].to_pydict()
    assert c == {"pre_nucleus_id": [1, 2], "post_nucleus_id": [2, 1], "n_synapses": [2, 1],
                 "sum_size": [40.0, 5.0]}
    assert st.tables["functional_units"].column("unit_id").to_pylist() == [11, 12]


def test_other_selections():
    st = canonical_tables(_raw(), datastack=None, materialization_version=None,
                          materialization_timestamp=None, neurons="coregistered")
    assert st.tables["neurons"].column("nucleus_id").to_pylist() == [1, 2, 3]
    assert st.tables["functional_units"].column("score").to_pylist() == [1.0, 2.0, None]
    everything = canonical_tables(_raw(), datastack=None, materialization_version=None,
                                  materialization_timestamp=None, neurons="all")
    assert everything.tables["neurons"].num_rows == 3  # 4, 5, 6 excluded whatever the selection
    no_coreg = {k: v for k, v in _raw().items() if k != "coregistration_manual_v4"}
    with pytest.raises(SourceError, match="needs a co-registration table"):
        canonical_tables(no_coreg, datastack=None, materialization_version=None,
                         materialization_timestamp=None)
    with pytest.raises(SourceError, match="neuron selection must be one of"):
        canonical_tables(_raw(), datastack=None, materialization_version=None,
                         materialization_timestamp=None, neurons="pyramidal")


def test_angles_degrees_and_radians_agree():
    ori, drn = normalize_angles([190.0, -10.0], [370.0, -90.0], unit="deg")
    assert ori.tolist() == pytest.approx([10.0, 170.0]) and drn.tolist() == pytest.approx([10.0, 270.0])
    ori, drn = normalize_angles([np.pi / 4], [np.pi / 2], unit="rad")  # clockwise -> ccw
    assert ori.tolist() == pytest.approx([135.0]) and drn.tolist() == pytest.approx([270.0])
    # the stand-in's two tuning tables hold the same tuning in the two conventions
    raw = dict(fixture_versions()[1])
    twin = canonical_tables(raw, datastack=None, materialization_version=1,
                            materialization_timestamp=None).tables["tuning"]
    raw.pop("digital_twin_properties_bcm_coreg_v4")
    older = canonical_tables(raw, datastack=None, materialization_version=1,
                             materialization_timestamp=None).tables["tuning"]
    assert twin.num_rows == older.num_rows > 20
    a = twin.column("pref_dir_deg").to_numpy()
    b = older.column("pref_dir_deg").to_numpy()
    assert np.allclose(np.mod(a - b + 180, 360) - 180, 0, atol=1e-9)
    o = np.abs(twin.column("pref_ori_deg").to_numpy() - older.column("pref_ori_deg").to_numpy())
    assert np.all(np.minimum(o, 180 - o) < 1e-9)


def test_layer_of():
    assert [layer_of(t) for t in ["23P", "4P", "5P-ET", "6P-CT", "BC", None]] == [
        "L2/3", "L4", "L5", "L6", None, None]


def test_missing_column_names_table_and_column():
    raw = _raw()
    raw["synapses_pni_2"] = raw["synapses_pni_2"].drop(columns=["post_pt_root_id"])
    with pytest.raises(SourceError, match=r"synapses_pni_2.*lacks column\(s\) \['post_pt_root_id'\]"):
        canonical_tables(raw, datastack=None, materialization_version=None,
                         materialization_timestamp=None)
    with pytest.raises(SourceError, match="nucleus_detection_v0"):
        canonical_tables({}, datastack=None, materialization_version=None,
                         materialization_timestamp=None)
