"""``cxp etl --source cave --profile``: another datastack's tables by their own names, through the
unmodified caveclient against the stand-in serving them (v1dd_public's names: a bound-point
cell-type table with ``excitatory``/``inhibitory`` classes, ``synapses_v1dd``)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from connectome_priors.cli import main
from connectome_priors.etl import Store
from connectome_priors.testing.cave_standin import StandinCave, minnie_fixture

CLASSES = {"excitatory_neuron": "excitatory", "inhibitory_neuron": "inhibitory"}


def _v1dd_like(raw: dict) -> dict:
    """minnie fixture tables renamed and reshaped as v1dd_public publishes them."""
    nuc = raw["nucleus_detection_v0"]
    ct = raw["aibs_metamodel_celltypes_v661"]
    ct = ct[ct.classification_system.isin(list(CLASSES))]  # v1dd: excitatory / inhibitory only
    pos = nuc.set_index("id").loc[ct.target_id]
    multifeature = pd.DataFrame({
        "id": ct.id.to_numpy(), "valid": True,
        "classification_system": ct.classification_system.map(CLASSES).to_numpy(),
        "cell_type": ct.cell_type.to_numpy(),
        **{f"pt_position_{a}": pos[f"pt_position_{a}"].to_numpy() for a in "xyz"},
        "pt_supervoxel_id": pos.pt_supervoxel_id.to_numpy(), "pt_root_id": pos.pt_root_id.to_numpy()})
    multifeature.attrs["schema_type"] = "cell_type_local"
    return {"nucleus_detection_v0": nuc, "cell_type_multifeature_v1": multifeature,
            "synapses_v1dd": raw["synapses_pni_2"]}


@pytest.fixture
def v1dd(isolated_home):
    versions = {v: _v1dd_like(t) for v, t in minnie_fixture(n_cells=120, n_synapses=2000, seed=5,
                                                             versions=(1,)).items()}
    with StandinCave(versions, datastack="v1dd_public") as server:
        yield server, versions[1]


def test_v1dd_profile_pulls_another_datastack_by_its_names(v1dd, tmp_path, capsys):
    server, tables = v1dd
    store = tmp_path / "store"
    assert main(["etl", "--source", "cave", "--server", server.url, "--profile", "v1dd_public",
                 "--version", "1", "--neurons", "excitatory", "--store", str(store),
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "v1dd_public materialization v1" in out
    snap = Store(store).snapshots().iloc[-1]
    assert snap["datastack"] == "v1dd_public"
    params = json.loads(snap["parameters"])
    assert params["profile"]["name"] == "v1dd_public" and params["voxel_resolution_nm"] == [9, 9, 45]
    # independent count: excitatory cells whose root carries one nucleus, and their synapses
    nuc = tables["nucleus_detection_v0"]
    nuc = nuc[nuc.valid.astype(bool) & (nuc.pt_root_id != 0)]
    single = nuc[~nuc.pt_root_id.duplicated(keep=False)]
    ct = tables["cell_type_multifeature_v1"]
    exc_roots = set(ct.loc[ct.classification_system == "excitatory", "pt_root_id"]) & set(single.pt_root_id)
    syn = tables["synapses_v1dd"]
    among = syn[syn.pre_pt_root_id.isin(exc_roots) & syn.post_pt_root_id.isin(exc_roots)]
    counts = json.loads(snap["row_counts"])
    assert counts["neurons"] == len(exc_roots) > 20
    assert counts["synapses"] == len(among) > 50
    s = Store(store)
    x = s.sql("SELECT x_vox, x_nm FROM neurons ORDER BY nucleus_id LIMIT 1")
    assert x.x_nm[0] == pytest.approx(x.x_vox[0] * 9)  # the profile's voxel size


def test_a_profile_whose_tables_the_version_lacks_is_refused(v1dd, tmp_path, capsys):
    server, _ = v1dd
    assert main(["etl", "--source", "cave", "--server", server.url, "--profile", "pinky100_v185",
                 "--datastack", "v1dd_public", "--version", "1", "--neurons", "all", "--store",
                 str(tmp_path / "s"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "v1dd_public v1 has no nucleus table of profile pinky100_v185 (built-in) (looked for " \
           "soma_valence_v185); its tables: cell_type_multifeature_v1, nucleus_detection_v0, " \
           "synapses_v1dd" in err
    assert not np.any([p.name.endswith(".parquet") for p in (tmp_path / "s").rglob("*")])
