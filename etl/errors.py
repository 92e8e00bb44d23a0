"""Exceptions of the ETL stage.

Every exception of the package derives from the kernel's :class:`CxpError`; each carries the facts of the failure
as attributes so callers can branch on them without parsing messages.
"""

from __future__ import annotations

from connectome_priors.kernel.errors import CxpError

__all__ = [
    "CxpError",
    "EtlError",
    "ValidationError",
    "SourceError",
    "FieldCheckError",
    "UnsafeFileError",
    "StoreError",
    "ReadOnlyError",
]


class EtlError(CxpError):
    """Root of the ETL stage's errors."""


class ValidationError(EtlError):
    """An incoming table broke its contract (``schemas/store/<table>.json``).

    Attributes name the table, the column (or key), where the data came from, what the contract
    expected and what was found.
    """

    def __init__(self, *, table: str, column: str | None, origin: str, expected: str, found: str,
                 hint: str = "") -> None:
        self.table, self.column, self.origin = table, column, origin
        self.expected, self.found = expected, found
        where = f"{table}.{column}" if column else table
        msg = f"{where} (from {origin}): expected {expected}; found {found}"
        if hint:
            msg += f". {hint}"
        super().__init__(msg)


class SourceError(EtlError):
    """A source's input could not be read (missing file, bad format, wrong layout)."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.path = path
        super().__init__(message)


class FieldCheckError(SourceError):
    """One imaging field of a per-field source failed a consistency check.

    ``field`` is the field's name ('6_6_2'); ``check`` is the check's short name.
    """

    def __init__(self, message: str, *, field: str, check: str, path: str | None = None) -> None:
        self.field, self.check = field, check
        super().__init__(message, path=path)


class UnsafeFileError(SourceError):
    """A file asked for something a restricted reader refuses (e.g. a pickle naming a callable)."""


class StoreError(CxpError):
    """The neuron store could not be opened, read or written."""


class ReadOnlyError(StoreError):
    """A statement that would modify the store (or reach outside it) was sent to read-only SQL."""
