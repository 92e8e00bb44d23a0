"""What a running stand-in holds and counts, shared by its request handlers."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import pandas as pd

from .deployment import DATASTACK, DEFAULT_ROW_CAP
from .faults import Fault
from .layouts import merged_layout, split_layout

__all__ = ["ServerState"]


@dataclass
class ServerState:
    """The served versions and options, and the faults, log and counters of a running stand-in."""

    versions: dict[int, dict[str, pd.DataFrame]]
    row_cap: int = DEFAULT_ROW_CAP
    token: str | None = None
    faults: list[Fault] = field(default_factory=list)
    log: list[tuple[str, str, int]] = field(default_factory=list)
    query_count: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    url: str = ""
    split_frozen: bool = False
    notices: dict[str, str] = field(default_factory=dict)
    datastack: str = DATASTACK
    codecs: list[str | None] = field(default_factory=list)
    _served: dict = field(default_factory=dict)

    def served(self, df: pd.DataFrame) -> pd.DataFrame:
        """``df`` in the frozen layout of this server, valid rows only (computed once)."""
        key = id(df)
        with self.lock:
            if key not in self._served:
                out = split_layout(df) if self.split_frozen else merged_layout(df)
                if "valid" in out.columns:
                    out = out[out["valid"].astype(bool).to_numpy()]
                self._served[key] = (df, out.reset_index(drop=True))
            return self._served[key][1]
