"""A local stand-in for a CAVE deployment: the info and materialization endpoints that
``caveclient`` calls, serving a small, seeded, minnie65-shaped fixture over loopback.

It exists so that the ``cave`` source can be proven, benchmarked and demonstrated offline with
the *unmodified* client: it answers with Arrow IPC bodies (``Content-Type: data.arrow``),
reports a materialization server version of 5.13, silently caps every query at ``row_cap`` rows
(sending only the ``Warning: 201 - "Limited query to N rows`` header, as the real engine does),
checks a bearer token, and can inject faults (HTTP errors, stalls). The data are **synthetic**.

Run one by hand (offline demo)::

    python -m connectome_priors.testing.cave_standin --port 8765 --cells 400
    cxp etl --source cave --server http://127.0.0.1:8765 --datastack minnie65_public --version latest

Examples
--------
>>> with StandinCave(minnie_fixture(n_cells=50, seed=0)) as cave:   # doctest: +SKIP
...     print(cave.url)
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd
import pyarrow as pa

from ..etl.sources.cave.transform import CELLTYPES_TABLE, NUCLEUS_TABLE, SYNAPSE_TABLE

__all__ = ["Fault", "StandinCave", "minnie_fixture", "main"]

DATASTACK = "minnie65_public"
ALIGNED_VOLUME = "minnie65_phase3"
MAT_SERVER_VERSION = "5.13.0"
DEFAULT_ROW_CAP = 200_000
VOXEL = [4.0, 4.0, 40.0]
_EXC = [("23P", 100_000, 130_000), ("4P", 130_000, 160_000), ("5P-IT", 160_000, 190_000),
        ("5P-ET", 160_000, 190_000), ("6P-IT", 190_000, 240_000)]
_INH = ["BC", "MC", "BPC", "NGC"]


# -- fixture -----------------------------------------------------------------------------------

def minnie_fixture(*, n_cells: int = 300, n_synapses: int = 6000, seed: int = 0,
                   versions: tuple[int, ...] = (1, 2), changed_fraction: float = 0.3,
                   coreg_fraction: float = 0.6) -> dict[int, dict[str, pd.DataFrame]]:
    """A seeded, minnie65-shaped set of CAVE tables per materialization version (synthetic).

    Cells: nuclei with voxel positions in the minnie65 volume, AIBS metamodel cell types
    (excitatory by depth, inhibitory, non-neuronal), two nuclei with root id 0 and one root id
    carrying two nuclei (a merge). Co-registration rows (session, scan_idx, field, unit_id, score,
    residual) for ``coreg_fraction`` of the neurons, digital-twin tuning in degrees and the same
    tuning in the older radians/clockwise table, and ``n_synapses`` synapses of which most join
    co-registered excitatory cells. Every later version changes the root ids of
    ``changed_fraction`` of the cells (synapses follow); nucleus ids never change. Rows are stored
    in shuffled order, as a database returns them.

    Returns
    -------
    dict
        version -> {CAVE table name -> DataFrame with split positions in voxels}.
    """
    rng = np.random.default_rng(seed)
    n = n_cells
    nucleus_id = 100_000 + np.sort(rng.choice(np.arange(1, 50 * n + 10), n, replace=False))
    roots = 864691135_000_000_000 + (1 + rng.choice(10**9, n, replace=False))
    roots[0] = roots[1] = 0  # nuclei without a segment
    roots[3] = roots[2]       # a merge: one root id, two nuclei
    kinds = rng.choice(3, n, p=[0.75, 0.17, 0.08])  # excitatory, inhibitory, non-neuronal
    cell_type = np.empty(n, dtype=object)
    cls = np.empty(n, dtype=object)
    y = rng.uniform(90_000, 250_000, n)
    for i in range(n):
        if kinds[i] == 0:
            label = _EXC[rng.integers(len(_EXC))]
            cell_type[i], cls[i] = label[0], "excitatory_neuron"
            y[i] = rng.uniform(label[1], label[2])
        elif kinds[i] == 1:
            cell_type[i], cls[i] = _INH[rng.integers(len(_INH))], "inhibitory_neuron"
        else:
            cell_type[i], cls[i] = "astrocyte", "nonneuron"
    pos = np.column_stack([rng.uniform(150_000, 250_000, n), y, rng.uniform(15_000, 27_000, n)])
    pos = np.round(pos)
    neuron = kinds < 2
    coreg_idx = np.flatnonzero(neuron & (rng.random(n) < coreg_fraction))
    m = len(coreg_idx)
    session = rng.choice([4, 5, 6], m)
    scan_idx = rng.choice([2, 7], m)
    field_ = rng.integers(1, 6, m)
    unit_id = rng.permutation(np.arange(1, 20 * m + 1))[:m]
    auto_idx = np.flatnonzero(neuron & ~np.isin(np.arange(n), coreg_idx) & (rng.random(n) < 0.3))
    pref_ori = rng.uniform(0, 180, m)
    pref_dir = np.mod(pref_ori + 180 * rng.integers(0, 2, m), 360)
    gosi, gdsi = rng.uniform(0, 1, m), rng.uniform(0, 1, m)

    # synapses: mostly among co-registered excitatory cells, some to other / unknown segments
    core = coreg_idx[cls[coreg_idx] == "excitatory_neuron"]
    core = core[roots[core] != 0]
    any_cell = np.arange(n)
    n_core = int(n_synapses * 0.8)
    pre_i = np.concatenate([rng.choice(core, n_core), rng.choice(any_cell, n_synapses - n_core)])
    post_i = np.concatenate([rng.choice(core, n_core), rng.choice(any_cell, n_synapses - n_core)])
    orphan = rng.random(n_synapses) < 0.05  # partner is a fragment without a nucleus
    syn_id = 1 + rng.permutation(np.arange(3 * n_synapses))[:n_synapses]
    size = rng.integers(40, 5000, n_synapses).astype(np.int64)
    ctr = pos[post_i] + rng.normal(0, [500, 500, 20], (n_synapses, 3))
    ctr = np.clip(np.round(ctr), 0, None)
    orphan_root = 864691136_000_000_000 + rng.integers(1, 10**9, n_synapses)

    out: dict[int, dict[str, pd.DataFrame]] = {}
    cur = roots.copy()
    for k, version in enumerate(sorted(versions)):
        if k > 0:
            change = rng.random(n) < changed_fraction
            change &= cur != 0
            change[2] = change[3] = False  # keep the merge as it is
            cur = cur.copy()
            cur[change] = 864691137_000_000_000 + 1 + rng.choice(10**9, int(change.sum()),
                                                                 replace=False)
        order = rng.permutation(n)
        sv = 88_000_000_000_000_000 + np.arange(n)
        nuc = pd.DataFrame({
            "id": nucleus_id, "created": pd.Timestamp("2020-09-28", tz="UTC"), "valid": True,
            "volume": np.round(rng.uniform(100, 400, n), 3), "pt_supervoxel_id": sv,
            "pt_root_id": cur, "pt_position_x": pos[:, 0], "pt_position_y": pos[:, 1],
            "pt_position_z": pos[:, 2]}).iloc[order].reset_index(drop=True)
        ct_rows = np.flatnonzero(cell_type != None)  # noqa: E711
        ct = pd.DataFrame({
            "id": np.arange(1, len(ct_rows) + 1), "valid": True, "target_id": nucleus_id[ct_rows],
            "classification_system": cls[ct_rows], "cell_type": cell_type[ct_rows],
            "pt_supervoxel_id": sv[ct_rows], "pt_root_id": cur[ct_rows],
            "pt_position_x": pos[ct_rows, 0], "pt_position_y": pos[ct_rows, 1],
            "pt_position_z": pos[ct_rows, 2]}).sample(frac=1, random_state=seed + k)
        coreg = pd.DataFrame({
            "id": np.arange(1, m + 1), "valid": True, "target_id": nucleus_id[coreg_idx],
            "session": session, "scan_idx": scan_idx, "field": field_, "unit_id": unit_id,
            "residual": np.round(rng.uniform(0, 8, m), 3), "score": np.round(rng.uniform(0, 20, m), 3),
            "pt_supervoxel_id": sv[coreg_idx], "pt_root_id": cur[coreg_idx],
            "pt_position_x": pos[coreg_idx, 0], "pt_position_y": pos[coreg_idx, 1],
            "pt_position_z": pos[coreg_idx, 2]})
        ma = len(auto_idx)
        auto = pd.DataFrame({
            "id": np.arange(1, ma + 1), "valid": True, "target_id": nucleus_id[auto_idx],
            "session": np.full(ma, 4), "scan_idx": np.full(ma, 7), "field": np.full(ma, 3),
            "unit_id": 10**6 + np.arange(ma), "residual": np.full(ma, 2.5), "score": np.full(ma, 1.5),
            "pt_supervoxel_id": sv[auto_idx], "pt_root_id": cur[auto_idx],
            "pt_position_x": pos[auto_idx, 0], "pt_position_y": pos[auto_idx, 1],
            "pt_position_z": pos[auto_idx, 2]})
        twin = pd.DataFrame({
            "id": np.arange(1, m + 1), "target_id": nucleus_id[coreg_idx], "session": session,
            "scan_idx": scan_idx, "unit_id": unit_id, "pref_ori": pref_ori, "pref_dir": pref_dir,
            "gOSI": gosi, "gDSI": gdsi, "pt_root_id": cur[coreg_idx]})
        older = twin.copy()  # the older table: radians, measured clockwise
        older["pref_ori"] = np.mod(-np.radians(pref_ori), np.pi)
        older["pref_dir"] = np.mod(-np.radians(pref_dir), 2 * np.pi)
        pre = np.where(orphan, orphan_root, cur[pre_i])
        post = cur[post_i]
        keep = (pre != 0) & (post != 0)
        syn = pd.DataFrame({
            "id": syn_id[keep], "valid": True, "pre_pt_supervoxel_id": 0, "pre_pt_root_id": pre[keep],
            "post_pt_supervoxel_id": 0, "post_pt_root_id": post[keep], "size": size[keep],
            "ctr_pt_position_x": ctr[keep, 0], "ctr_pt_position_y": ctr[keep, 1],
            "ctr_pt_position_z": ctr[keep, 2]})
        out[version] = {NUCLEUS_TABLE: nuc, CELLTYPES_TABLE: ct.reset_index(drop=True),
                        "coregistration_manual_v4": coreg,
                        "coregistration_auto_phase3_fwd_apl_vess_combined_v2": auto,
                        "digital_twin_properties_bcm_coreg_v4": twin,
                        "functional_properties_v3_bcm": older, SYNAPSE_TABLE: syn}
    return out


# -- faults ------------------------------------------------------------------------------------

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


@dataclass
class _State:
    versions: dict[int, dict[str, pd.DataFrame]]
    row_cap: int = DEFAULT_ROW_CAP
    token: str | None = None
    faults: list[Fault] = field(default_factory=list)
    log: list[tuple[str, str, int]] = field(default_factory=list)
    query_count: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    url: str = ""
    _arrow: dict = field(default_factory=dict)

    def arrow(self, df: pd.DataFrame) -> tuple[pa.Table, dict[str, np.ndarray]]:
        """``df`` as an Arrow table plus its columns as arrays (converted once, for filtering)."""
        key = id(df)
        with self.lock:
            if key not in self._arrow:
                self._arrow[key] = (df, pa.Table.from_pandas(df, preserve_index=False),
                                    {c: df[c].to_numpy() for c in df.columns})
            return self._arrow[key][1:]


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
    """

    def __init__(self, versions: dict[int, dict[str, pd.DataFrame]], *, row_cap: int = DEFAULT_ROW_CAP,
                 token: str | None = None, port: int = 0) -> None:
        self.state = _State(versions=versions, row_cap=row_cap, token=token)
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

        class Handler(_Handler):
            pass

        Handler.state = state
        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
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


_TABLE_Q = re.compile(r"^/materialize/api/v[23]/datastack/([^/]+)/version/(\d+)/table/([^/]+)/(query|metadata|count)$")
_VERSION = re.compile(r"^/materialize/api/v[23]/datastack/([^/]+)/version/(\d+)$")
_VERSIONS = re.compile(r"^/materialize/api/v[23]/datastack/([^/]+)/versions$")
_TABLES = re.compile(r"^/materialize/api/v[23]/datastack/([^/]+)/version/(\d+)/tables$")
_DS_INFO = re.compile(r"^/info/api/v2/datastack/full/([^/]+)$")


def _timestamp(version: int) -> datetime:
    return datetime(2024, 1, 1, tzinfo=timezone.utc) + timedelta(days=7 * version, microseconds=1)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    state: _State

    def log_message(self, format, *args) -> None:  # noqa: A002 (stdlib signature)
        pass  # quiet: tests read state.log instead

    # -- plumbing --
    def _send(self, status: int, body: bytes, ctype: str = "application/json",
              headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        self.state.log.append((self.command, urlparse(self.path).path, status))

    def _json(self, obj, status: int = 200) -> None:
        self._send(status, json.dumps(obj).encode())

    def _error(self, status: int, message: str) -> None:
        self._json({"error": "error", "message": message}, status)

    def _fault(self, path: str) -> bool:
        """Apply a matching fault; True when the request was answered by it."""
        chosen = None
        with self.state.lock:
            for f in self.state.faults:
                if f.match in path:
                    f.seen += 1
                    if f.seen > f.after and (f.times is None or f.fired < f.times):
                        f.fired += 1
                        chosen = f
                        break
        if chosen is None:
            return False
        if chosen.kind == "stall":
            self.state.stop.wait(chosen.seconds)
            return False
        self._error(chosen.status, f"injected fault: HTTP {chosen.status}")
        return True

    def _authorized(self) -> bool:
        token = self.state.token
        if token is None:
            return True
        if self.headers.get("Authorization", "") == f"Bearer {token}":
            return True
        self._json({"error": "invalid_token", "message": "the token is missing, invalid or expired"},
                   401)
        return False

    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        self._handle()

    def do_POST(self) -> None:  # noqa: N802
        self._handle()

    def _handle(self) -> None:
        url = urlparse(self.path)
        path = url.path.rstrip("/")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            if path.endswith("/query"):
                with self.state.lock:
                    self.state.query_count += 1
            if self._fault(path) or not self._authorized():
                return
            self._route(path, parse_qs(url.query), body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _route(self, path: str, query: dict, body: bytes) -> None:
        st = self.state
        if path == "/info/version":
            return self._json("4.3.1")
        if path == "/materialize/version":
            return self._json(MAT_SERVER_VERSION)
        if path == "/materialize/api/versions":
            return self._json([2, 3])
        if m := _DS_INFO.match(path):
            if m[1] != DATASTACK:
                return self._error(404, f"datastack {m[1]} not found")
            return self._json({
                "aligned_volume": {"name": ALIGNED_VOLUME, "id": 1, "description": "stand-in",
                                   "image_source": "precomputed://stand-in/em"},
                "datastack": DATASTACK, "local_server": st.url, "synapse_table": SYNAPSE_TABLE,
                "soma_table": NUCLEUS_TABLE, "segmentation_source": "graphene://stand-in/seg",
                "viewer_resolution_x": VOXEL[0], "viewer_resolution_y": VOXEL[1],
                "viewer_resolution_z": VOXEL[2], "viewer_site": st.url, "description": "stand-in"})
        if m := _VERSIONS.match(path):
            return self._json(sorted(st.versions))
        if m := _VERSION.match(path):
            v = int(m[2])
            if v not in st.versions:
                return self._error(404, f"version {v} not found")
            ts = _timestamp(v)
            return self._json({"version": v, "datastack": m[1], "valid": True, "status": "AVAILABLE",
                               "time_stamp": ts.strftime("%Y-%m-%dT%H:%M:%S.%f"),
                               "expires_on": (ts + timedelta(days=365)).strftime("%Y-%m-%dT%H:%M:%S.%f")})
        if m := _TABLES.match(path):
            return self._json(sorted(st.versions.get(int(m[2]), {})))
        if m := _TABLE_Q.match(path):
            v, table, what = int(m[2]), m[3], m[4]
            if v not in st.versions:
                return self._error(404, f"version {v} not found")
            if table not in st.versions[v]:
                return self._error(404, f"table {table} not found in version {v}")
            df = st.versions[v][table]
            if what == "metadata":
                return self._json({"table_name": table, "voxel_resolution_x": VOXEL[0],
                                   "voxel_resolution_y": VOXEL[1], "voxel_resolution_z": VOXEL[2],
                                   "reference_table": None, "schema_type": "stand-in",
                                   "description": "stand-in (synthetic)", "valid": True})
            if what == "count":
                return self._json(int(len(df)))
            return self._query(df, table, json.loads(body or b"{}"))
        return self._error(404, f"no such endpoint {path}")

    def _query(self, df: pd.DataFrame, table: str, data: dict) -> None:
        arrow, columns = self.state.arrow(df)
        mask = np.ones(len(df), dtype=bool)
        ops = {"filter_in_dict": lambda c, v: np.isin(c, np.asarray(v)),
               "filter_notin_dict": lambda c, v: ~np.isin(c, np.asarray(v)),
               "filter_equal_dict": lambda c, v: c == v,
               "filter_greater_dict": lambda c, v: c > v,
               "filter_less_dict": lambda c, v: c < v,
               "filter_greater_equal_dict": lambda c, v: c >= v,
               "filter_less_equal_dict": lambda c, v: c <= v}
        for key, op in ops.items():
            for col, value in (data.get(key) or {}).get(table, {}).items():
                if col not in columns:
                    return self._error(400, f"column {col} not in table {table}")
                mask &= op(columns[col], value)
        rows = np.flatnonzero(mask)
        out = arrow
        cols = data.get("select_columns")
        if cols:
            out = out.select([c for c in cols if c in out.column_names])
        offset = int(data.get("offset") or 0)
        limit = data.get("limit")
        cap = self.state.row_cap if limit is None else min(int(limit), self.state.row_cap)
        headers = {}
        total = len(rows) - offset
        out = out.take(pa.array(rows[offset: offset + cap]))
        if total > cap:
            headers["Warning"] = f'201 - "Limited query to {cap} rows'
        res = data.get("desired_resolution")
        if res is not None:
            scale = np.asarray(VOXEL) / np.asarray(res, dtype=np.float64)
            for i, axis in enumerate("xyz"):
                for j, col in enumerate(out.column_names):
                    if col.endswith(f"position_{axis}") and scale[i] != 1.0:
                        values = out.column(j).to_numpy().astype(np.float64) * scale[i]
                        out = out.set_column(j, col, pa.array(values))
            headers["dataframe_resolution"] = ", ".join(str(float(r)) for r in res)
        table_ = out
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table_.schema) as writer:
            writer.write_table(table_)
        self._send(200, sink.getvalue().to_pybytes(), "data.arrow", headers)


def main(argv: list[str] | None = None) -> int:
    """Serve a stand-in CAVE until interrupted (offline demos)."""
    p = argparse.ArgumentParser(prog="python -m connectome_priors.testing.cave_standin",
                                description="Serve a synthetic minnie65-shaped CAVE stand-in.")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--cells", type=int, default=400)
    p.add_argument("--synapses", type=int, default=20000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--row-cap", type=int, default=DEFAULT_ROW_CAP)
    args = p.parse_args(argv)
    server = StandinCave(minnie_fixture(n_cells=args.cells, n_synapses=args.synapses, seed=args.seed),
                         row_cap=args.row_cap, port=args.port).start()
    print(f"stand-in CAVE (synthetic data) at {server.url}, datastack {DATASTACK}, versions "
          f"{sorted(server.state.versions)}; Ctrl-C stops", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
