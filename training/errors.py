"""Exceptions of the training stage (all derive from :class:`etl.errors.CxpError`)."""

from __future__ import annotations

from connectome_priors.kernel.errors import CxpError

__all__ = ["TrainingError", "UnknownTaskError", "UnknownVariantError"]


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
