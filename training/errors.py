"""Exceptions of the training stage (all derive from :class:`etl.errors.CxpError`)."""

from __future__ import annotations

from connectome_priors.kernel.errors import CxpError

__all__ = ["MissingKindError", "TrainingError", "UnknownTaskError", "UnknownVariantError"]


class TrainingError(CxpError):
    """Root of the training stage's errors."""


class UnknownTaskError(TrainingError, ValueError):
    """A task name is not one of the known tasks; ``name`` holds it, ``known`` the valid ones."""

    def __init__(self, message: str, *, name: str, known: tuple[str, ...]) -> None:
        self.name, self.known = name, known
        super().__init__(message)


class UnknownVariantError(TrainingError, ValueError):
    """A variant name does not parse; ``name`` holds it, ``known`` the canonical names."""

    def __init__(self, message: str, *, name: str, known: tuple[str, ...]) -> None:
        self.name, self.known = name, known
        super().__init__(message)


class MissingKindError(TrainingError):
    """A prior lacks kinds that requested variants need (e.g. a structure-only prior asked for
    ``W*D*C``, which initializes from ``w_bio_modulation``).

    ``prior`` holds the artifact's ``name@version``, ``missing`` maps each absent kind to the
    requested variants that need it, ``runnable`` lists the requested variants the prior supports.
    """

    def __init__(self, message: str, *, prior: str, missing: dict[str, tuple[str, ...]],
                 runnable: tuple[str, ...]) -> None:
        self.prior, self.missing, self.runnable = prior, missing, runnable
        super().__init__(message)
