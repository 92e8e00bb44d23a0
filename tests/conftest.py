"""Shared fixtures: the path to ../shared/data, tiny canonical tables, released-layout fields."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from connectome_priors.etl.sources.cave.client import TOKEN_ENV
from connectome_priors.etl.tables import SourceTables

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("CXP_SHARED_DATA", REPO.parent / "shared" / "data"))
BLUEPRINT = SHARED_DATA / "cortical-blueprint"


@pytest.fixture
def blueprint_root() -> Path:
    """The study's released arrays; tests using it must be marked needs_shared_data."""
    if not (BLUEPRINT / "DATA" / "info").is_dir():
        pytest.skip(f"shared data not found at {BLUEPRINT} (set CXP_SHARED_DATA)")
    return BLUEPRINT


def tiny_tables() -> dict[str, pa.Table]:
    """Three neurons, three units, two connections, three spike trains: valid by construction."""
    return {
        "neurons": pa.table({
            "nucleus_id": [11, 12, 13],
            "root_id": pa.array([864691135000000001, 864691135000000002, None], pa.int64()),
            "x_vox": [100000.0, 100100.0, 101000.0], "y_vox": [150000.0, 150000.0, 150500.0],
            "z_vox": [20000.0, 20010.0, 20020.0],
            "x_nm": [400000.0, 400400.0, 404000.0], "y_nm": [600000.0, 600000.0, 602000.0],
            "z_nm": [800000.0, 800400.0, 800800.0],
            "cell_type": ["23P", "23P", None], "cell_class": ["excitatory", "excitatory", None],
            "layer": ["L2/3", "L2/3", None],
        }),
        "functional_units": pa.table({
            "session": [4, 4, 4], "scan_idx": [7, 7, 7], "field": [2, 2, 2], "unit_id": [1, 2, 3],
            "nucleus_id": [11, 12, 13],
            "root_id": pa.array([864691135000000001, 864691135000000002, None], pa.int64()),
            "score": pa.array([None, None, None], pa.float64()),
            "residual": pa.array([None, None, None], pa.float64()),
        }),
        "connections": pa.table({
            "pre_nucleus_id": [11, 12], "post_nucleus_id": [12, 13], "n_synapses": [2, 1],
            "sum_size": [3000.0, 900.0],
        }),
        "spikes": pa.table({
            "session": [4, 4, 4], "scan_idx": [7, 7, 7], "field": [2, 2, 2], "unit_id": [1, 2, 3],
            "n_spikes": [3, 0, 2],
            "spike_times": pa.array([[0.1, 0.5, 2.0], [], [1.0, 1.05]], pa.list_(pa.float64())),
        }),
    }


def tiny_source(**changes: pa.Table) -> SourceTables:
    """A SourceTables of :func:`tiny_tables`, with some tables replaced."""
    tables = tiny_tables()
    tables.update(changes)
    return SourceTables(source="synthetic", tables=tables, parameters={"test": True},
                        origins={name: f"tiny_{name}.parquet" for name in tables})


def write_field(root: Path, name: str, *, n: int = 30, seed: int = 0, file_order: str = "set",
                drop: str | None = None, spikes: bool = True, n_connections: int = 40) -> Path:
    """Write one field in the study's released layout, with nearby-biased wiring.

    ``file_order="set"`` writes the connectome in list(set(root_ids)) order as the release does;
    ``"units"`` writes it in the order of the other arrays (what a mis-aligned release looks like
    once the reader re-orders it).
    """
    rng = np.random.default_rng(seed)
    d = root / "DATA" / "info" / name
    d.mkdir(parents=True)
    roots = rng.choice(np.arange(864691135000000000, 864691135000900000), size=n, replace=False)
    units = np.arange(1, n + 1) + 1000 * seed
    nuclei = np.arange(1, n + 1) + 100000 + 1000 * seed
    pos = np.column_stack([rng.uniform(150000, 250000, n), rng.uniform(100000, 200000, n),
                           rng.uniform(16000, 26000, n)]).astype(np.int64)
    um = pos * np.array([4, 4, 40]) / 1000
    dist = np.sqrt(((um[:, None] - um[None]) ** 2).sum(-1))
    near = np.argsort(dist + np.eye(n) * 1e9, axis=None)[: 2 * n_connections]
    mat_units = np.zeros((n, n), dtype=np.int64)
    for flat in near[::2]:
        mat_units.flat[flat] = 1 + flat % 3
    if file_order == "set":
        order = list(set(roots.tolist()))
        idx = {r: i for i, r in enumerate(roots.tolist())}
        perm = np.array([idx[r] for r in order])
        mat_file = mat_units[np.ix_(perm, perm)]
    else:
        mat_file = mat_units
    np.save(d / f"root_ids_{name}.npy", roots.astype(np.int64))
    np.save(d / f"unit_ids_{name}.npy", units.astype(np.int64))
    np.save(d / f"target_ids_{name}.npy", nuclei.astype(np.int64))
    obj = np.empty(n, dtype=object)
    for i in range(n):
        obj[i] = pos[i]
    np.save(d / f"positions_{name}.npy", obj, allow_pickle=True)
    if spikes:
        sp = np.empty(n, dtype=object)
        for i in range(n):
            sp[i] = np.sort(rng.uniform(0, 100, rng.integers(5, 50)))
        np.save(d / f"spikes_{name}.npy", sp, allow_pickle=True)
    with open(d / f"connectome_{name}.csv", "w") as fh:
        fh.write("," + ",".join(str(i) for i in range(n)) + "\n")
        for i in range(n):
            fh.write(f"{i}," + ",".join(str(v) for v in mat_file[i]) + "\n")
    if drop:
        (d / drop.format(name=name)).unlink()
    return d


@pytest.fixture
def isolated_home(tmp_path, monkeypatch) -> Path:
    """HOME (and so caveclient's token file and caches) in a temp dir; no token in the env."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    return home
