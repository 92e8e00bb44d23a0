"""Priors stage: derive versioned, immutable prior artifacts from the neuron store and load them.

Reads only what the ETL stage published (the store). Derivations in :mod:`priors_store.derive`
also work on bare arrays without a store.

Examples
--------
>>> from priors_store import Population, build, load              # doctest: +SKIP
>>> build("field_6_6_2", Population.of_fields("6_6_2"))          # doctest: +SKIP
>>> prior = load("field_6_6_2")                                  # doctest: +SKIP
>>> prior["distance_um"], prior.get("connectome", as_="torch")    # doctest: +SKIP
"""

from .pipeline import DeriveParams, build, build_per_field
from .config import ARTIFACTS_ENV, artifact_root
from .diff import diff
from .errors import ArtifactIntegrityError, ArtifactNotFoundError, PopulationError, PriorsError
from .export import export
from .load import Prior, list_artifacts, load, verify
from .population import Population, resolve

__all__ = [
    "ARTIFACTS_ENV", "artifact_root",
    "ArtifactIntegrityError", "ArtifactNotFoundError", "PopulationError", "PriorsError",
    "DeriveParams", "Population", "Prior",
    "build", "build_per_field", "diff", "export", "list_artifacts", "load", "resolve", "verify",
]
