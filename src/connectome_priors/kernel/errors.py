"""The root of every connectome-priors error, and the markers retry code branches on.

Each stage subclasses :class:`CxpError` (``EtlError``, ``PriorsError``, ``TrainingError``); errors
carry their facts as attributes. :class:`TransientError` marks failures worth retrying (timeouts,
dropped connections, HTTP 5xx/429); every other ``CxpError`` is terminal. The CLI turns any
``CxpError`` into its message and exit status 2.
"""

from __future__ import annotations

__all__ = ["CxpError", "TransientError", "is_transient"]


class CxpError(Exception):
    """Root of every connectome-priors error."""


class TransientError(CxpError):
    """A failure that may pass if the same call is made again later (a marker: stage errors such
    as ``CaveTransientError`` derive from it beside their stage's root)."""


def is_transient(err: BaseException) -> bool:
    """Whether retrying ``err``'s call may help (it is a :class:`TransientError`)."""
    return isinstance(err, TransientError)
