"""The stand-in CAVE server: a threaded HTTP server on loopback, started and stopped by tests."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer

import pandas as pd

from .deployment import DATASTACK, DEFAULT_ROW_CAP
from .faults import Fault
from .handler import Handler
from .state import ServerState

__all__ = ["StandinCave"]


class StandinCave:
    """A stand-in CAVE server on ``127.0.0.1`` (a free port unless given), in a daemon thread.

    Parameters
    ----------
    versions
        version -> {table -> DataFrame}, e.g. from :func:`minnie_fixture`.
    row_cap
        Rows one query returns at most; larger results are cut silently (warning header only).
    token
        If set, every request must carry ``Authorization: Bearer <token>``; otherwise 401.
    split_frozen
        Serve frozen tables split (``id, created, superceded_id``, annotation columns, then
        segmentation columns) instead of merged (``id`` and the schema's columns in order);
        the version metadata's ``is_merged`` says which.
    notices
        Table -> owner notice, sent as an extra ``Warning`` with every query of that table.
    datastack
        The datastack it serves (default ``minnie65_public``); another name is 404.
    """

    def __init__(self, versions: dict[int, dict[str, pd.DataFrame]], *, row_cap: int = DEFAULT_ROW_CAP,
                 token: str | None = None, port: int = 0, split_frozen: bool = False,
                 notices: dict[str, str] | None = None, datastack: str = DATASTACK) -> None:
        self.state = ServerState(versions=versions, row_cap=row_cap, token=token,
                            split_frozen=split_frozen, notices=dict(notices or {}),
                            datastack=datastack)
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:43121``."""
        return self.state.url

    @property
    def row_cap(self) -> int:
        """The query row cap."""
        return self.state.row_cap

    @row_cap.setter
    def row_cap(self, value: int) -> None:
        self.state.row_cap = int(value)

    @property
    def query_count(self) -> int:
        """Number of table queries answered (or faulted) so far."""
        return self.state.query_count

    @property
    def log(self) -> list[tuple[str, str, int]]:
        """(method, path, status) of every request, in order."""
        return self.state.log

    def add_fault(self, fault: Fault) -> Fault:
        """Inject ``fault`` into later requests; returns it (its ``fired`` counts firings)."""
        with self.state.lock:
            self.state.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Remove every fault."""
        with self.state.lock:
            self.state.faults.clear()

    def start(self) -> StandinCave:
        """Start serving; returns self."""
        state = self.state

        bound = type("BoundHandler", (Handler,), {"state": state})
        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), bound)
        self._server.daemon_threads = True
        state.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="cave-standin")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (stalled requests are released)."""
        self.state.stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> StandinCave:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
