"""Exceptions of the priors stage (all derive from :class:`etl.errors.CxpError`)."""

from __future__ import annotations

from connectome_priors.kernel.errors import CxpError

__all__ = ["PriorsError", "PopulationError", "ArtifactNotFoundError", "ArtifactIntegrityError"]


class PriorsError(CxpError):
    """Root of the priors stage's errors."""


class PopulationError(PriorsError):
    """A population could not be resolved in the store (unknown field, empty selection, ...)."""


class ArtifactNotFoundError(PriorsError):
    """No artifact (or no such version) under the artifact root."""

    def __init__(self, message: str, *, name: str, version: str | None = None) -> None:
        self.name, self.version = name, version
        super().__init__(message)


class ArtifactIntegrityError(PriorsError):
    """An artifact's file is missing, changed or unlisted; ``path`` names it."""

    def __init__(self, message: str, *, path: str, expected: str | None = None,
                 found: str | None = None) -> None:
        self.path, self.expected, self.found = path, expected, found
        super().__init__(message)
