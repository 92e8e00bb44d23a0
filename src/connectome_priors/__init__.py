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
    # `X as X`: an explicit re-export (PEP 484), for mypy, pyright and ruff alike
    from .etl.pipeline import run_etl as run_etl
    from .etl.sources.registry import BlueprintSource as BlueprintSource
    from .etl.sources.registry import CaveSource as CaveSource
    from .etl.sources.registry import FilesSource as FilesSource
    from .etl.sources.registry import NwbSource as NwbSource
    from .etl.sources.registry import SyntheticSource as SyntheticSource
    from .etl.sources.registry import extract as extract
    from .etl.store import Store as Store
    from .kernel.errors import CxpError as CxpError
    from .priors_store.pipeline import DeriveParams as DeriveParams
    from .priors_store.pipeline import build as build
    from .priors_store.pipeline import build_per_field as build_per_field
    from .priors_store.population import Population as Population
    from .priors_store.reader import load as load
    from .priors_store.verification import verify as verify
    from .training.config import ExperimentConfig as ExperimentConfig
    from .training.config import FitConfig as FitConfig
    from .training.experiment import run_experiment as run_experiment

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "etl": ("run_etl", "extract", "Store", "SyntheticSource", "BlueprintSource", "CaveSource",
            "FilesSource", "NwbSource"),
    "priors_store": ("build", "build_per_field", "load", "verify", "Population", "DeriveParams"),
    "training": ("run_experiment", "ExperimentConfig", "FitConfig"),
    "kernel.errors": ("CxpError",),
})
