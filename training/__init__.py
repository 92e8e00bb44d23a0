"""Thin PyTorch layer that trains recurrent networks on prior artifacts.

Tasks (:mod:`training.tasks`), the batched model (:mod:`training.model`), initializations
(:mod:`training.initializers`), penalties (:mod:`training.regularizers`), the eleven variants
(:mod:`training.variants`), the training loop (:mod:`training.train`), the organization
metrics (:mod:`training.metrics`), experiments, statistics and reports. Matrices are indexed
[pre, post] throughout. Drop-in components for any model (``torch.nn.RNN`` included):
:mod:`training.components` (``bio_init_`` and the penalties as ``nn.Module`` s).

Names are imported on first use (PEP 562), so ``cxp`` commands that do not train never pay for
importing torch.
"""

from connectome_priors.kernel.lazy import lazy_exports

_EXPORTS = {
    "errors": ("TrainingError", "UnknownTaskError", "UnknownVariantError", "MissingKindError"),
    "initializers": ("orthogonal", "bio", "permuted", "diagonal_only", "off_diagonal_only",
             "random_positive_matched", "spectral_radius", "bio_family"),
    "metrics": ("organization",),
    "model": ("BatchedRNN", "ModelConfig"),
    "regularizers": ("Regularizer", "communicability", "grid_distances", "grid_distances_paper",
                     "real_distances", "penalty_distances"),
    "components": ("bio_init_", "DistancePenalty", "WiringDistanceCommunicability",
                   "CommunicabilityPenalty"),
    "tasks": ("TASKS", "make_task"),
    "train": ("FitConfig", "FitResult", "fit", "make_splits"),
    "variants": ("VARIANTS", "CONTROLS", "Variant", "parse_variant", "build_variant",
                 "default_variants", "required_kinds", "missing_kinds"),
    "experiment": ("ExperimentConfig", "run_experiment"),
    "stats": ("summarize", "compare", "holm"),
    "report": ("write_report",),
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
