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

from connectome_priors.kernel.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "pipeline": ("DeriveParams", "build", "build_per_field",),
    "config": ("ARTIFACTS_ENV", "artifact_root",),
    "compare": ("diff",),
    "errors": ("ArtifactIntegrityError", "ArtifactNotFoundError", "PopulationError", "PriorsError",),
    "exporters": ("export",),
    "prior": ("Prior",),
    "reader": ("load",),
    "catalog": ("list_artifacts",),
    "verification": ("verify",),
    "population": ("Population", "resolve",),
})
