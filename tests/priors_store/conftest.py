"""What the priors tests share, each built once per session and never written to by a test: a
small synthetic store, one artifact built on it (field 6_6_2, no precision) with a private copy per
test for tampering or building beside it, and the pooled prior ``tiny`` of a one-field store."""

from __future__ import annotations

import shutil

import pytest

from connectome_priors.etl.pipeline import run_etl
from connectome_priors.etl.sources.synthetic import SyntheticConfig
from connectome_priors.priors_store import DeriveParams, Population, build

SMALL = SyntheticConfig(seed=5, n_fields=8, duration_s=300.0)
#: One field of 20-24 units, one minute: the store of the pooled prior ``tiny``.
TINY = SyntheticConfig(seed=5, n_fields=1, fields_per_scan=1, duration_s=60.0,
                       field_size_range=(20, 24))
#: Every kind but the (slow) precision fit.
FAST = DeriveParams(precision=False)


@pytest.fixture(scope="session")
def small_store(tmp_path_factory):
    """Store directory holding one small synthetic snapshot (field 6_6_2 among its 8 fields, two scans)."""
    path = tmp_path_factory.mktemp("priors-store") / "store"
    run_etl("synthetic", store=path, synthetic=SMALL)
    return path


@pytest.fixture(scope="session")
def built(small_store, tmp_path_factory):
    """(artifact root, manifest) of ``f662``: field 6_6_2 of the small store, built once per session.
    Read-only: a test that writes (tampers, builds another version beside it) uses ``copy``."""
    root = tmp_path_factory.mktemp("artifacts")
    manifest = build("f662", Population.of_fields("6_6_2"), store=small_store, root=root, params=FAST)
    return root, manifest


@pytest.fixture
def copy(built, tmp_path):
    """A private copy of the built artifact: (its folder, its manifest, the copy's root)."""
    root, m = built
    shutil.copytree(root, tmp_path / "root")
    return tmp_path / "root" / "f662" / m["version"], m, tmp_path / "root"


@pytest.fixture(scope="session")
def tiny_pooled(tmp_path_factory):
    """(store, artifact root, manifest) of ``tiny``: every neuron of the :data:`TINY` store pooled,
    no precision; built once per session. Read-only: copy the root to build beside it."""
    base = tmp_path_factory.mktemp("tiny-pooled")
    run_etl("synthetic", store=base / "store", synthetic=TINY)
    manifest = build("tiny", Population.pooled(), store=base / "store", root=base / "artifacts",
                     params=FAST)
    return base / "store", base / "artifacts", manifest
