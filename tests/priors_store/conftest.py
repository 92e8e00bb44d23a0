"""A small synthetic store shared by the priors tests (built once per session)."""

from __future__ import annotations

import pytest

from connectome_priors.etl.pipeline import run_etl
from connectome_priors.etl.sources.synthetic import SyntheticConfig

SMALL = SyntheticConfig(seed=5, n_fields=8, duration_s=300.0)


@pytest.fixture(scope="session")
def small_store(tmp_path_factory):
    """Store directory holding one small synthetic snapshot (field 6_6_2 among its 8 fields, two scans)."""
    path = tmp_path_factory.mktemp("priors-store") / "store"
    run_etl("synthetic", store=path, synthetic=SMALL)
    return path
