"""``--download``: DANDI REST API shape, served by a local HTTP server with Range support."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from connectome_priors.etl.sources.nwb.download import (DandiConfig, DownloadError, TransientDownloadError,
                                      download_scans, parse_scan)

VERSION = "0.230307.2132"
ASSET_PATH = "sub-17797/sub-17797_ses-4-scan-7_behavior+image+ophys.nwb"
OTHER_PATH = "sub-17797/sub-17797_ses-5-scan-3_behavior+image+ophys.nwb"


class FakeDandi:
    """State of the fake archive: assets, what was requested, and failures to inject."""

    def __init__(self) -> None:
        self.blobs = {"a-1": (ASSET_PATH, bytes(range(256)) * 4000),      # ~1 MB
                      "a-2": (OTHER_PATH, b"second scan file " * 5000)}
        self.digest_override: dict[str, str] = {}
        self.cut_after: int | None = None   # drop the connection after this many bytes, once
        self.fail_5xx = 0                   # answer the next N downloads with 503
        self.ignore_range = False           # answer Range requests with the whole file (200)
        self.requests: list[tuple[str, str | None]] = []
        self.bytes_sent = 0

    def digest(self, asset_id: str) -> str:
        return self.digest_override.get(asset_id, hashlib.sha256(self.blobs[asset_id][1]).hexdigest())


def make_handler(state: FakeDandi):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

        def _json(self, obj, status=200):
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):  # http.server's name
            url = urlparse(self.path)
            query = parse_qs(url.query)
            state.requests.append((url.path, self.headers.get("Range")))
            parts = url.path.strip("/").split("/")
            if url.path == f"/api/dandisets/000402/versions/{VERSION}/assets/":
                glob = query.get("glob", [None])[0]
                path = query.get("path", [None])[0]
                hits = []
                for aid, (p, blob) in state.blobs.items():
                    if path is not None and p.startswith(path):
                        hits.append({"asset_id": aid, "path": p, "size": len(blob)})
                    elif glob is not None and glob.strip("*").split("*")[0] in p:
                        hits.append({"asset_id": aid, "path": p, "size": len(blob)})
                return self._json({"count": len(hits), "next": None, "results": hits})
            if len(parts) == 3 and parts[:2] == ["api", "assets"] and parts[2] in state.blobs:
                aid = parts[2]
                return self._json({"contentSize": len(state.blobs[aid][1]),
                                   "digest": {"dandi:sha2-256": state.digest(aid),
                                              "dandi:dandi-etag": "x-1"}})
            if len(parts) == 4 and parts[3] == "download":
                self.send_response(302)
                self.send_header("Location", f"/blobs/{parts[2]}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            if parts[0] == "blobs" and parts[1] in state.blobs:
                return self._blob(state.blobs[parts[1]][1])
            return self._json({"detail": "not found"}, status=404)

        def _blob(self, blob: bytes):
            if state.fail_5xx:
                state.fail_5xx -= 1
                return self._json({"detail": "try later"}, status=503)
            start = 0
            rng = None if state.ignore_range else self.headers.get("Range")
            if rng:
                start = int(rng.removeprefix("bytes=").split("-")[0])
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(blob) - 1}/{len(blob)}")
            else:
                self.send_response(200)
            body = blob[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if state.cut_after is not None:
                n, state.cut_after = state.cut_after, None
                state.bytes_sent += n  # counted before sending: the client may finish first
                self.wfile.write(body[:n])
                self.wfile.flush()
                self.close_connection = True
                return None
            state.bytes_sent += len(body)  # counted before sending: the client may finish first
            self.wfile.write(body)
            return None

    return Handler


@pytest.fixture
def dandi():
    state = FakeDandi()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.api = f"http://127.0.0.1:{server.server_address[1]}/api"
    yield state
    server.shutdown()
    server.server_close()


def config(state, tmp_path, **kw) -> DandiConfig:
    return DandiConfig(api_url=state.api, version=VERSION, cache_dir=tmp_path / "cache", timeout_s=5,
                       backoff_s=0.01, **kw)


def test_fetches_by_session_and_scan_into_the_cache(dandi, tmp_path):
    [path] = download_scans(["4-7"], config=config(dandi, tmp_path))
    assert path == tmp_path / "cache" / "000402" / VERSION / ASSET_PATH
    assert path.read_bytes() == dandi.blobs["a-1"][1]
    assert path.with_name(path.name + ".sha256").read_text().strip() == dandi.digest("a-1")
    assert not list(path.parent.glob("*.part"))
    calls = [p for p, _ in dandi.requests]
    assert calls == [f"/api/dandisets/000402/versions/{VERSION}/assets/", "/api/assets/a-1/",
                     "/api/assets/a-1/download/", "/blobs/a-1"]
    dandi.requests.clear()  # a second call finds it in the cache: no bytes move
    assert download_scans([(4, 7)], config=config(dandi, tmp_path)) == [path]
    assert all(not p.startswith("/blobs") for p, _ in dandi.requests)


def test_an_interrupted_download_resumes_with_a_range_request(dandi, tmp_path):
    size = len(dandi.blobs["a-1"][1])
    dandi.cut_after = 300_000
    [path] = download_scans(["4-7"], config=config(dandi, tmp_path))
    assert path.read_bytes() == dandi.blobs["a-1"][1]
    ranges = [r for p, r in dandi.requests if p == "/blobs/a-1"]
    assert ranges[0] is None and len(ranges) == 2
    resumed_at = int(ranges[1].removeprefix("bytes=").rstrip("-"))
    assert 300_000 - (1 << 16) <= resumed_at <= 300_000  # at most the last block was lost
    assert dandi.bytes_sent == size + 300_000 - resumed_at  # the rest was not fetched again


def test_a_partial_file_from_an_earlier_run_is_resumed(dandi, tmp_path):
    blob = dandi.blobs["a-2"][1]
    part = tmp_path / "cache" / "000402" / VERSION / (OTHER_PATH + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(blob[:1000])
    [path] = download_scans([OTHER_PATH], config=config(dandi, tmp_path))
    assert path.read_bytes() == blob
    assert [r for p, r in dandi.requests if p == "/blobs/a-2"] == ["bytes=1000-"]
    assert dandi.bytes_sent == len(blob) - 1000


def test_a_server_that_ignores_range_restarts_the_file(dandi, tmp_path):
    blob = dandi.blobs["a-2"][1]
    part = tmp_path / "cache" / "000402" / VERSION / (OTHER_PATH + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"stale bytes from elsewhere")
    dandi.ignore_range = True
    [path] = download_scans(["5-3"], config=config(dandi, tmp_path))
    assert path.read_bytes() == blob  # written afresh, not appended to the partial file


def test_a_hash_mismatch_deletes_the_download_and_names_both_hashes(dandi, tmp_path):
    dandi.digest_override["a-1"] = "0" * 64
    with pytest.raises(DownloadError, match=r"sha256 [0-9a-f]{64} does not match DANDI's 0{64}") as err:
        download_scans(["4-7"], config=config(dandi, tmp_path))
    assert err.value.expected == "0" * 64
    assert err.value.found == hashlib.sha256(dandi.blobs["a-1"][1]).hexdigest()
    folder = tmp_path / "cache" / "000402" / VERSION / "sub-17797"
    assert not any(folder.iterdir())  # neither the file nor its partial download


def test_transient_failures_are_retried_then_reported_as_transient(dandi, tmp_path):
    dandi.fail_5xx = 2
    [path] = download_scans(["4-7"], config=config(dandi, tmp_path, retries=2))
    assert path.is_file()
    dandi.fail_5xx = 5
    with pytest.raises(TransientDownloadError, match="HTTP 503"):
        download_scans(["5-3"], config=config(dandi, tmp_path, retries=1))


def test_unknown_scan_and_bad_spec(dandi, tmp_path):
    with pytest.raises(DownloadError, match=r"expected one asset for session 9 scan 9; found 0"):
        download_scans(["9-9"], config=config(dandi, tmp_path))
    with pytest.raises(DownloadError, match="cannot parse scan 'four'"):
        parse_scan("four")
    assert parse_scan("4_7") == (4, 7) and parse_scan("4-scan-7") == (4, 7)


def test_cli_downloads_then_reads(dandi, tmp_path, capsys):
    """`cxp etl --source nwb --download 4-7` fetches the file and loads it (a real small NWB file)."""
    import numpy as np

    from connectome_priors.cli import main
    from connectome_priors.testing.nwb_writer import SynthField, write_scan_file

    nwb = write_scan_file(tmp_path / "src" / "f.nwb", [SynthField(1, [np.array([4])] * 5)],
                          session=4, scan_idx=7, n_frames=30)
    dandi.blobs["a-1"] = (ASSET_PATH, nwb.read_bytes())
    code = main(["etl", "--source", "nwb", "--download", "4-7", "--cache", str(tmp_path / "cache"),
                 "--dandi-api", dandi.api, "--store", str(tmp_path / "store"), "--no-progress"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "from source 'nwb'" in out.out and "functional_units 5, spikes 5" in out.out
