"""connectome-priors: MICrONS cortical structure and activity turned into versioned, reusable
prior artifacts for machine learning.

One import root; the stages are subpackages (``connectome_priors.etl``, ``.priors_store``,
``.training``, ``.schemas``) over a small shared ``kernel``; the command line is ``.cli`` and the
test doubles are ``.testing``. The names below are imported on first use (PEP 562), so
``import connectome_priors`` loads no stage.

Examples
--------
>>> from connectome_priors import run_etl, build, load, Population   # doctest: +SKIP
>>> run_etl("synthetic")                                             # doctest: +SKIP
>>> build("synthetic_6_6_2", Population.of_fields("6_6_2"))           # doctest: +SKIP
>>> prior = load("synthetic_6_6_2")                                   # doctest: +SKIP
"""

from .kernel.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "etl": ("run_etl", "extract", "Store", "SyntheticSource", "BlueprintSource", "CaveSource",
            "FilesSource", "NwbSource"),
    "priors_store": ("build", "build_per_field", "load", "verify", "Population", "DeriveParams"),
    "training": ("run_experiment", "ExperimentConfig", "FitConfig"),
    "kernel.errors": ("CxpError",),
})
