"""Thin PyTorch layer that trains recurrent networks on prior artifacts.

Tasks (:mod:`training.tasks`), the batched model (:mod:`training.model`), initializations
(:mod:`training.init`), penalties (:mod:`training.regularizers`), the eleven variants
(:mod:`training.variants`), the training loop (:mod:`training.train`), the organization
metrics (:mod:`training.metrics`), experiments, statistics and reports. Matrices are indexed
[pre, post] throughout.

Names are imported on first use (PEP 562), so ``cxp`` commands that do not train never pay for
importing torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "errors": ("TrainingError", "UnknownTaskError", "UnknownVariantError"),
    "init": ("orthogonal", "bio", "permuted", "diagonal_only", "off_diagonal_only",
             "random_positive_matched", "spectral_radius"),
    "metrics": ("organization",),
    "model": ("BatchedRNN", "ModelConfig"),
    "regularizers": ("Regularizer", "communicability", "grid_distances", "grid_distances_paper",
                     "real_distances"),
    "tasks": ("TASKS", "make_task"),
    "train": ("FitConfig", "FitResult", "fit", "make_splits"),
    "variants": ("VARIANTS", "CONTROLS", "Variant", "parse_variant", "build_variant",
                 "default_variants"),
    "experiment": ("ExperimentConfig", "run_experiment"),
    "stats": ("summarize", "compare", "holm"),
    "report": ("write_report",),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [name for names in _EXPORTS.values() for name in names]


def __getattr__(name: str):
    if name in _MODULE_OF:
        value = getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
