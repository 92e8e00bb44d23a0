"""Fetch MICrONS scan files from the DANDI archive into a local cache: resumable, sha256-checked.

DANDI REST API calls made (``api_url`` defaults to ``https://api.dandiarchive.org/api``):

1. ``GET {api}/dandisets/{dandiset}/versions/{version}/assets/?glob=*ses-<s>-scan-<c>_*.nwb``
   (or ``?path=<asset path>`` for an explicit path): find the scan's asset (id, path, size);
   follows ``next`` for further pages.
2. ``GET {api}/assets/{asset_id}/``: the asset's metadata; its ``digest["dandi:sha2-256"]`` is the
   expected sha256 and ``contentSize`` the size.
3. ``GET {api}/assets/{asset_id}/download/`` (redirects to the file's storage): the bytes, with
   ``Range: bytes=<n>-`` when a partial download is present (HTTP 206 appends, 200 restarts).

Bytes go to ``<cache>/<dandiset>/<version>/<asset path>.part``; once complete the size and sha256
are checked and the file is renamed into place (with a ``.sha256`` note beside it, so a cached file
is not re-hashed on every run). A hash mismatch deletes the partial file and raises; nothing half
written ever sits at the final path. Connection failures and HTTP 5xx/429 are retried (resuming)
``retries`` times, then raise :class:`TransientDownloadError`. No credentials are needed or sent.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from connectome_priors.kernel.errors import TransientError
from connectome_priors.kernel.files import atomic_write_text, sha256_file
from connectome_priors.kernel.retry import Backoff, retry
from connectome_priors.kernel.settings import env_name, resolve

from ...errors import SourceError

__all__ = ["CACHE_ENV", "DandiConfig", "DownloadError", "TransientDownloadError", "download_scans",
           "parse_scan"]

CACHE_ENV = env_name("nwb_cache")
API_ENV = env_name("dandi_api")
_SCAN = re.compile(r"^(\d+)[-_](?:scan-)?(\d+)$")
_CHUNK = 1 << 16  # small blocks: a lost connection loses at most one block


class DownloadError(SourceError):
    """A scan file could not be fetched or failed its check (``url``, ``expected``, ``found`` where known)."""

    def __init__(self, message: str, *, url: str | None = None, path: str | None = None,
                 expected: str | None = None, found: str | None = None) -> None:
        self.url, self.expected, self.found = url, expected, found
        super().__init__(message, path=path)


class TransientDownloadError(DownloadError, TransientError):
    """A failure worth retrying later (connection lost, HTTP 5xx or 429) after the retries ran out."""


@dataclass(frozen=True)
class DandiConfig:
    """Where and how to fetch DANDI 000402 scan files."""

    api_url: str = "https://api.dandiarchive.org/api"
    """DANDI REST API root (``$CXP_DANDI_API`` overrides the default)."""
    dandiset: str = "000402"
    """Dandiset id (MICrONS Two Photon Functional Imaging)."""
    version: str = "0.230307.2132"
    """Published dandiset version (pinned, so a cache never mixes versions); 'draft' for the latest."""
    cache_dir: Path | None = None
    """Cache root; None: the ``nwb_cache`` setting (``$CXP_NWB_CACHE``, else
    ``$CXP_CACHE/dandi``, else ``~/.cache/connectome-priors/dandi``)."""
    timeout_s: float = 60.0
    """Connect/read timeout of each HTTP request (s)."""
    retries: int = 3
    """Retries (each resuming) after a transient failure."""
    backoff_s: float = 1.0
    """First retry delay (s); doubles per retry."""

    def resolved(self) -> DandiConfig:
        """This config with the API root and cache folder resolved from the environment."""
        cache = resolve("nwb_cache", self.cache_dir)
        api = resolve("dandi_api") if self.api_url == DandiConfig.api_url else self.api_url
        return DandiConfig(api_url=api.rstrip("/"), dandiset=self.dandiset, version=self.version,
                           cache_dir=Path(cache), timeout_s=self.timeout_s, retries=self.retries,
                           backoff_s=self.backoff_s)


def parse_scan(spec: str) -> tuple[int, int] | str:
    """``'4-7'``, ``'4_7'`` or ``'4-scan-7'`` -> (4, 7); anything ending in ``.nwb`` is an asset path."""
    if spec.endswith(".nwb"):
        return spec
    m = _SCAN.match(spec.strip())
    if not m:
        raise DownloadError(f"cannot parse scan {spec!r}: expected '<session>-<scan_idx>' (e.g. 4-7) "
                            "or an asset path ending in .nwb")
    return int(m.group(1)), int(m.group(2))


def _get(session, url: str, config: DandiConfig, **kwargs):
    import requests

    try:
        resp = session.get(url, timeout=config.timeout_s, **kwargs)
    except requests.RequestException as err:
        raise TransientDownloadError(f"GET {url} failed: {type(err).__name__}: {err}", url=url) from err
    if resp.status_code >= 500 or resp.status_code == 429:
        raise TransientDownloadError(f"GET {url}: HTTP {resp.status_code}", url=url,
                                     found=str(resp.status_code))
    return resp


def _json(session, url: str, config: DandiConfig, **params) -> dict:
    resp = _get(session, url, config, params=params or None)
    if resp.status_code != 200:
        raise DownloadError(f"GET {resp.url}: HTTP {resp.status_code} (expected 200): {resp.text[:200]}",
                            url=resp.url, expected="200", found=str(resp.status_code))
    try:
        return resp.json()
    except ValueError as err:
        raise DownloadError(f"GET {resp.url}: response is not JSON", url=resp.url) from err


def _find_asset(session, config: DandiConfig, scan: tuple[int, int] | str) -> dict:
    url = f"{config.api_url}/dandisets/{config.dandiset}/versions/{config.version}/assets/"
    params = {"path": scan} if isinstance(scan, str) else {"glob": f"*ses-{scan[0]}-scan-{scan[1]}_*.nwb"}
    found = []
    page = _json(session, url, config, **params, page_size=100)
    while True:
        found.extend(page.get("results", []))
        if not page.get("next"):
            break
        page = _json(session, page["next"], config)
    if isinstance(scan, str):
        found = [a for a in found if a.get("path") == scan]
    label = scan if isinstance(scan, str) else f"session {scan[0]} scan {scan[1]}"
    if len(found) != 1:
        raise DownloadError(f"dandiset {config.dandiset}@{config.version}: expected one asset for "
                            f"{label}; found {len(found)}"
                            + (f": {[a.get('path') for a in found][:5]}" if found else ""),
                            url=url, expected="1 asset", found=str(len(found)))
    return found[0]


def _fetch(session, url: str, part: Path, size: int, config: DandiConfig, bar) -> None:
    """Download ``url`` into ``part`` until it holds ``size`` bytes, resuming what is there."""
    have = part.stat().st_size if part.exists() else 0
    if have > size:
        part.unlink()
        have = 0
    if have == size:
        return
    headers = {"Range": f"bytes={have}-"} if have else {}
    resp = _get(session, url, config, headers=headers, stream=True)
    with resp:
        if resp.status_code == 416:  # our partial file does not fit what the server has: restart
            part.unlink(missing_ok=True)
            raise TransientDownloadError(f"GET {url}: HTTP 416 for bytes={have}-; restarting", url=url)
        if resp.status_code not in (200, 206):
            raise DownloadError(f"GET {url}: HTTP {resp.status_code} (expected 200 or 206)", url=url,
                                expected="200/206", found=str(resp.status_code))
        append = resp.status_code == 206 and have > 0
        if append and not resp.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
            raise DownloadError(f"GET {url}: asked for bytes {have}- but got Content-Range "
                                f"{resp.headers.get('Content-Range')!r}", url=url)
        if not append:
            bar.update(-have)
        import requests

        try:
            with open(part, "ab" if append else "wb") as fh:
                for block in resp.iter_content(_CHUNK):
                    fh.write(block)
                    bar.update(len(block))
        except requests.RequestException as err:
            raise TransientDownloadError(f"GET {url}: connection lost after {part.stat().st_size} of "
                                         f"{size} bytes ({type(err).__name__})", url=url) from err
    got = part.stat().st_size
    if got < size:
        raise TransientDownloadError(f"GET {url}: stream ended at {got} of {size} bytes", url=url)


def _one(session, config: DandiConfig, scan, progress: bool) -> Path:
    asset = _find_asset(session, config, scan)
    asset_id, rel = asset["asset_id"], asset["path"]
    meta = _json(session, f"{config.api_url}/assets/{asset_id}/", config)
    expected = (meta.get("digest") or {}).get("dandi:sha2-256")
    size = int(meta.get("contentSize", asset.get("size", -1)))
    if not expected or size < 0:
        raise DownloadError(f"asset {rel} ({asset_id}) has no sha256 digest or size in its DANDI "
                            "metadata; refusing an unverifiable download", path=rel,
                            expected="digest['dandi:sha2-256'] and contentSize", found=str(meta.get("digest")))
    final = config.cache_dir / config.dandiset / config.version / rel
    note = final.with_name(final.name + ".sha256")
    if final.is_file() and final.stat().st_size == size and note.is_file() \
            and note.read_text().strip() == expected:
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    part = final.with_name(final.name + ".part")
    url = f"{config.api_url}/assets/{asset_id}/download/"
    with tqdm(total=size, initial=part.stat().st_size if part.exists() else 0, unit="B",
              unit_scale=True, desc=Path(rel).name[:40], disable=not progress) as bar:
        retry(lambda: _fetch(session, url, part, size, config, bar),  # each attempt resumes
              backoff=Backoff(config.retries, config.backoff_s, max_s=3600.0),
              what=f"download of {rel}")
    found = sha256_file(part)
    if found != expected:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{rel}: sha256 {found} does not match DANDI's {expected}; the partial "
                            "download was deleted, run again to fetch it afresh", url=url, path=rel,
                            expected=expected, found=found)
    os.replace(part, final)
    atomic_write_text(note, expected + "\n")
    return final


def download_scans(scans: Sequence[str | tuple[int, int]], *, config: DandiConfig | None = None,
                   progress: bool = False) -> list[Path]:
    """Fetch the scan files of ``scans`` from DANDI into the cache; return their local paths.

    Parameters
    ----------
    scans
        ``'4-7'`` / ``(4, 7)`` (session, scan_idx) or asset paths (``sub-17797/...nwb``).
    config
        API root, dandiset, version, cache folder, timeouts and retries.

    Examples
    --------
    >>> paths = download_scans(["4-7"])                     # doctest: +SKIP
    >>> read_nwb(paths)                                       # doctest: +SKIP
    """
    import requests

    config = (config or DandiConfig()).resolved()
    wanted = [parse_scan(s) if isinstance(s, str) else (int(s[0]), int(s[1])) for s in scans]
    with requests.Session() as session:
        session.headers["User-Agent"] = "connectome-priors (nwb source)"
        return [_one(session, config, scan, progress) for scan in wanted]
