"""Thin PyTorch layer that trains recurrent networks on prior artifacts.

Tasks (:mod:`training.tasks`), the batched model (:mod:`training.model`), initializations
(:mod:`training.init`), penalties (:mod:`training.regularizers`), the eleven variants
(:mod:`training.variants`), the training loop (:mod:`training.train`) and the organization
metrics (:mod:`training.metrics`). Matrices are indexed [pre, post] throughout.
"""

from .errors import TrainingError, UnknownTaskError, UnknownVariantError
from .init import (bio, diagonal_only, off_diagonal_only, orthogonal, permuted,
                   random_positive_matched, spectral_radius)
from .metrics import organization
from .model import BatchedRNN, ModelConfig
from .regularizers import Regularizer, communicability, grid_distances, grid_distances_paper, \
    real_distances
from .tasks import TASKS, make_task
from .train import FitConfig, FitResult, fit, make_splits
from .variants import VARIANTS, Variant, build_variant, parse_variant

__all__ = [
    "TrainingError", "UnknownTaskError", "UnknownVariantError",
    "orthogonal", "bio", "permuted", "diagonal_only", "off_diagonal_only",
    "random_positive_matched", "spectral_radius",
    "organization", "BatchedRNN", "ModelConfig",
    "Regularizer", "communicability", "grid_distances", "grid_distances_paper", "real_distances",
    "TASKS", "make_task", "FitConfig", "FitResult", "fit", "make_splits",
    "VARIANTS", "Variant", "parse_variant", "build_variant",
]
