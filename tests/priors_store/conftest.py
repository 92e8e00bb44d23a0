"""A small synthetic store shared by the priors tests (built once per session), and one artifact
built on it (field 6_6_2, no precision) with a private copy per test for tampering."""

from __future__ import annotations

import shutil

import pytest

from connectome_priors.etl.pipeline import run_etl
from connectome_priors.etl.sources.synthetic import SyntheticConfig
from connectome_priors.priors_store import DeriveParams, Population, build

SMALL = SyntheticConfig(seed=5, n_fields=8, duration_s=300.0)
#: Every kind but the (slow) precision fit.
FAST = DeriveParams(precision=False)


@pytest.fixture(scope="session")
def small_store(tmp_path_factory):
    """Store directory holding one small synthetic snapshot (field 6_6_2 among its 8 fields, two scans)."""
    path = tmp_path_factory.mktemp("priors-store") / "store"
    run_etl("synthetic", store=path, synthetic=SMALL)
    return path


@pytest.fixture(scope="module")
def built(small_store, tmp_path_factory):
    """(artifact root, manifest) of ``f662``: field 6_6_2 of the small store, built once per module."""
    root = tmp_path_factory.mktemp("artifacts")
    manifest = build("f662", Population.of_fields("6_6_2"), store=small_store, root=root, params=FAST)
    return root, manifest


@pytest.fixture
def copy(built, tmp_path):
    """A private copy of the built artifact: (its folder, its manifest, the copy's root)."""
    root, m = built
    shutil.copytree(root, tmp_path / "root")
    return tmp_path / "root" / "f662" / m["version"], m, tmp_path / "root"
