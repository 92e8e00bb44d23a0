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

from typing import TYPE_CHECKING

from .kernel.lazy import lazy_exports

if TYPE_CHECKING:  # what editors and type checkers see; at run time the names load on first use
    from .etl.pipeline import run_etl
    from .etl.sources.registry import (BlueprintSource, CaveSource, FilesSource, NwbSource,
                                       SyntheticSource, extract)
    from .etl.store import Store
    from .kernel.errors import CxpError
    from .priors_store.reader import load
    from .priors_store.verification import verify
    from .priors_store.pipeline import DeriveParams, build, build_per_field
    from .priors_store.population import Population
    from .training.config import ExperimentConfig, FitConfig
    from .training.experiment import run_experiment

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "etl": ("run_etl", "extract", "Store", "SyntheticSource", "BlueprintSource", "CaveSource",
            "FilesSource", "NwbSource"),
    "priors_store": ("build", "build_per_field", "load", "verify", "Population", "DeriveParams"),
    "training": ("run_experiment", "ExperimentConfig", "FitConfig"),
    "kernel.errors": ("CxpError",),
})
