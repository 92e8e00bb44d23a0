"""Misbehaviours the stand-in can be told to show: HTTP errors and stalls."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Fault"]


@dataclass
class Fault:
    """A misbehaviour to inject into requests whose path contains ``match``.

    ``kind`` is ``"status"`` (answer ``status`` with a JSON error body) or ``"stall"`` (wait
    ``seconds`` before answering normally, or until the server stops). It fires on matching
    requests number ``after + 1`` to ``after + times`` (``times=None``: every one after ``after``).
    """

    kind: str
    match: str = "/query"
    status: int = 503
    times: int | None = 1
    after: int = 0
    seconds: float = 3600.0
    seen: int = 0
    fired: int = 0
