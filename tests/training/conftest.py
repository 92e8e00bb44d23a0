"""Training tests run torch on one thread: on a shared 2-core machine, two OpenMP threads
contending with other processes made tiny RNN steps ~100x slower. The priors they train on are
built once per session (``tiny_prior``, ``structure_only``) and never written to by a test."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from connectome_priors.etl.pipeline import run_etl
from connectome_priors.etl.sources.synthetic import SyntheticConfig
from connectome_priors import priors_store
from connectome_priors.etl.sources.cave.transform import canonical_tables
from connectome_priors.etl.store import Store
from connectome_priors.priors_store.pipeline import DeriveParams
from connectome_priors.priors_store.population import Population
from connectome_priors.testing.cave_standin import minnie_fixture


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def w_bio() -> np.ndarray:
    """A random symmetric non-negative modulation of N = 24 with a unit-ish diagonal."""
    rng = np.random.default_rng(7)
    a = rng.random((24, 24)) ** 3
    a = (a + a.T) / 2
    np.fill_diagonal(a, 1.0)
    return a


#: Two scans' worth of tiny fields (~45 units each), 2 minutes of recording.
TINY = SyntheticConfig(seed=5, n_fields=2, fields_per_scan=2, duration_s=120.0,
                       field_size_range=(40, 48))


@pytest.fixture(scope="session")
def tiny_prior(tmp_path_factory):
    """(store, artifact root, manifest) of a ~45-unit prior 'tiny' of field 6_6_2 of :data:`TINY`,
    under <store>/artifacts; built once per session. Read-only: tests write into their own folders."""
    path = tmp_path_factory.mktemp("train-tiny") / "store"
    run_etl("synthetic", store=path, synthetic=TINY)
    manifest = priors_store.build("tiny", Population.of_fields("6_6_2"), store=path,
                                  root=path / "artifacts", params=DeriveParams(precision=False))
    return path, path / "artifacts", manifest


@pytest.fixture(scope="session")
def structure_only(tmp_path_factory):
    """(store, manifest) of prior 'wiring' under <store>/artifacts, built from a CAVE-like
    snapshot without activity: only the nucleus and synapse tables of a seeded minnie65-shaped
    fixture (no co-registration, no spikes), every nucleus a neuron (N = 56). Its kinds are the
    structure ones (distances, connectome, communicability, modules_wiring), no functional kind.
    Read-only: tests train into their own folders."""
    raw = minnie_fixture(n_cells=60, n_synapses=600, versions=(1,), seed=4)[1]
    tables = canonical_tables({t: raw[t] for t in ("nucleus_detection_v0", "synapses_pni_2")},
                              datastack="minnie65_public", materialization_version=1,
                              materialization_timestamp=None, neurons="all")
    path = tmp_path_factory.mktemp("structure-only") / "store"
    Store(path).load(tables)
    manifest = priors_store.build("wiring", Population.of_sql("SELECT nucleus_id FROM neurons"),
                                  store=path, root=path / "artifacts",
                                  params=DeriveParams(precision=False))
    return path, manifest
