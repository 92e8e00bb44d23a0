"""Shared helpers of the cave tests: an isolated HOME, the stand-in fixture, a fast config."""

from __future__ import annotations

from dataclasses import replace


from connectome_priors.etl.sources.cave.client import CaveConfig
from connectome_priors.testing.cave_standin import minnie_fixture

#: One small fixture for the whole session (generation is seeded: same data every time).
_FIXTURE: dict = {}


def fixture_versions() -> dict:
    """The stand-in's tables (300 cells, 6000 synapses, versions 1 and 2)."""
    if not _FIXTURE:
        _FIXTURE.update(minnie_fixture(n_cells=300, n_synapses=6000, seed=7))
    return _FIXTURE


def fast_config(url: str, **changes) -> CaveConfig:
    """A config for loopback tests: short timeouts and backoffs, small chunks."""
    base = CaveConfig(server=url, datastack="minnie65_public", version=1, timeout_s=2.0,
                      retries=3, backoff_s=0.01, backoff_max_s=0.05, chunk_size=40)
    return replace(base, **changes)
