"""The endpoints ``caveclient`` calls (info and materialization), answered from a :class:`ServerState`."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlparse

import pandas as pd

from ...etl.sources.cave.transform import NUCLEUS_TABLE, SYNAPSE_TABLE
from .deployment import ALIGNED_VOLUME, MAT_SERVER_VERSION, VOXEL, version_timestamp
from .query import QueryError, answer_query
from .schemas import TABLE_SCHEMAS
from .state import ServerState

__all__ = ["Handler"]

_TABLE_Q = re.compile(r"^/materialize/api/v[23]/datastack/([^/]+)/version/(\d+)/table/([^/]+)/(query|metadata|count)$")
_JOIN_Q = re.compile(r"^/materialize/api/v[23]/datastack/([^/]+)/version/(\d+)/query$")
_VERSION = re.compile(r"^/materialize/api/v[23]/datastack/([^/]+)/version/(\d+)$")
_VERSIONS = re.compile(r"^/materialize/api/v[23]/datastack/([^/]+)/versions$")
_TABLES = re.compile(r"^/materialize/api/v[23]/datastack/([^/]+)/version/(\d+)/tables$")
_DS_INFO = re.compile(r"^/info/api/v2/datastack/full/([^/]+)$")


class Handler(BaseHTTPRequestHandler):
    """One request: routing, bearer token, injected faults, and the answers of each endpoint."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    state: ServerState

    def log_message(self, format, *args) -> None:  # stdlib signature
        pass  # quiet: tests read state.log instead

    # -- plumbing --
    def _send(self, status: int, body: bytes, ctype: str = "application/json",
              headers: list[tuple[str, str]] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers or ():
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

    def do_GET(self) -> None:  # stdlib name
        self._handle()

    def do_POST(self) -> None:
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
            if m[1] != st.datastack:
                return self._error(404, f"datastack {m[1]} not found")
            return self._json({
                "aligned_volume": {"name": ALIGNED_VOLUME, "id": 1, "description": "stand-in",
                                   "image_source": "precomputed://stand-in/em"},
                "datastack": st.datastack, "local_server": st.url, "synapse_table": SYNAPSE_TABLE,
                "soma_table": NUCLEUS_TABLE, "segmentation_source": "graphene://stand-in/seg",
                "viewer_resolution_x": VOXEL[0], "viewer_resolution_y": VOXEL[1],
                "viewer_resolution_z": VOXEL[2], "viewer_site": st.url, "description": "stand-in"})
        if m := _VERSIONS.match(path):
            return self._json(sorted(st.versions))
        if m := _VERSION.match(path):
            v = int(m[2])
            if v not in st.versions:
                return self._error(404, f"version {v} not found")
            ts = version_timestamp(v)
            return self._json({"version": v, "datastack": m[1], "valid": True, "status": "AVAILABLE",
                               "time_stamp": ts.strftime("%Y-%m-%dT%H:%M:%S.%f"),
                               "expires_on": (ts + timedelta(days=365)).strftime("%Y-%m-%dT%H:%M:%S.%f"),
                               "is_merged": not st.split_frozen, "parent_version": None, "id": v})
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
                return self._json(self._metadata(table, df, v))
            if what == "count":
                return self._json(int(len(st.served(df))))
            return self._query(v, [table], json.loads(body or b"{}"), query)
        if m := _JOIN_Q.match(path):
            v = int(m[2])
            if v not in st.versions:
                return self._error(404, f"version {v} not found")
            data = json.loads(body or b"{}")
            tables = [t[0] for t in data.get("tables", [])]
            missing = [t for t in tables if t not in st.versions[v]]
            if len(tables) != 2 or missing:
                return self._error(400 if not missing else 404,
                                   f"join query needs two tables of version {v}; found {tables}")
            return self._query(v, tables, data, query)
        return self._error(404, f"no such endpoint {path}")

    def _metadata(self, table: str, df: pd.DataFrame, version: int) -> dict:
        """Table metadata as the frozen-table metadata endpoint answers (analysis table +
        annotation metadata)."""
        schema, target = TABLE_SCHEMAS.get(table, (None, None))
        schema = df.attrs.get("schema_type", schema)
        target = df.attrs.get("reference_table", target) if "schema_type" in df.attrs else target
        ts = version_timestamp(version).strftime("%Y-%m-%dT%H:%M:%S.%f")
        return {"id": abs(hash(table)) % 10_000, "aligned_volume": ALIGNED_VOLUME, "schema": schema,
                "table_name": table, "valid": True, "created": ts, "analysisversion_id": version,
                "schema_type": schema, "reference_table": target, "user_id": "0",
                "description": "stand-in (synthetic)", "notice_text": self.state.notices.get(table),
                "flat_segmentation_source": None, "voxel_resolution_x": VOXEL[0],
                "voxel_resolution_y": VOXEL[1], "voxel_resolution_z": VOXEL[2],
                "write_permission": "PRIVATE", "read_permission": "PUBLIC", "last_modified": ts,
                "segmentation_source": "graphene://stand-in/seg"}

    def _query(self, version: int, tables: list[str], data: dict, args: dict) -> None:
        """Answer a simple (one table) or join (two tables, ``target_id`` = ``id``) query."""
        try:
            body, headers = answer_query(self.state, version, tables, data, args,
                                         accept_encoding=self.headers.get("Accept-Encoding", ""))
        except QueryError as err:
            return self._error(err.status, str(err))
        self._send(200, body, "data.arrow", headers)
