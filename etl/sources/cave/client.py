"""Talking to a CAVE server through the unmodified ``caveclient``: configuration, the token,
request timeouts, retries with backoff, and errors that say what to do.

``caveclient`` sets no request timeout of its own; here every request of its sessions gets one
(a transport adapter with a default timeout), the client is built under a deadline, and every call
is retried with exponential backoff on timeouts, dropped connections and 5xx answers. 4xx answers
are terminal; 401/403 and the client's auth redirect become :class:`CaveAuthError`.

The token is never printed, logged or stored: it comes from ``$CXP_CAVE_TOKEN`` or caveclient's
standard token file (``~/.cloudvolume/secrets/cave-secret.json``) and is handed to caveclient only.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from connectome_priors.kernel.errors import TransientError
from connectome_priors.kernel.retry import Backoff, retry
from connectome_priors.kernel.settings import resolve

from ...errors import SourceError

__all__ = [
    "TOKEN_ENV", "CaveAuthError", "CaveConfig", "CaveError", "CaveRequestError",
    "CaveTransientError", "CaveConnection", "connect", "public_url", "with_retries",
]


#: Environment variable holding a CAVE token (else caveclient's token file is used).
TOKEN_ENV = "CXP_CAVE_TOKEN"
T = TypeVar("T")


class CaveError(SourceError):
    """A CAVE server could not be used. ``server`` is its URL (never with credentials)."""

    def __init__(self, message: str, *, server: str | None = None, status: int | None = None,
                 path: str | None = None) -> None:
        self.server, self.status = server, status
        super().__init__(message, path=path)


class CaveTransientError(CaveError, TransientError):
    """Timeouts, dropped connections, 5xx: worth retrying (raised once retries are spent)."""


class CaveAuthError(CaveError):
    """The server refused the credentials (401/403 or a redirect to its login)."""


class CaveRequestError(CaveError):
    """The server refused the request itself (4xx other than auth): retrying will not help."""


@dataclass(frozen=True)
class CaveConfig:
    """How to reach one CAVE datastack and pull it."""

    server: str = "https://global.daf-apis.com"
    """Base URL of the CAVE deployment (info + materialization services)."""
    datastack: str = "minnie65_public"
    """Datastack name."""
    version: int | Literal["latest"] = "latest"
    """Materialization version to pin; ``latest`` resolves to the newest (recorded as a number)."""
    neurons: str = "coregistered_excitatory"
    """Which cells (see :data:`etl.sources.cave.transform.NeuronSelection`)."""
    functional_table: str = "digital_twin_properties_bcm_coreg_v4"
    """Tuning table: the digital twin (degrees) or ``functional_properties_v3_bcm`` (radians)."""
    auto_coregistration: bool = False
    """Also use the automated co-registration table where the manual one has no unit."""
    timeout_s: float = 60.0
    """Per-request timeout (connect and each read), seconds."""
    retries: int = 4
    """Retries per call after a transient failure (timeouts, 5xx)."""
    backoff_s: float = 1.0
    """First backoff, seconds; doubled each retry, capped at ``backoff_max_s``."""
    backoff_max_s: float = 60.0
    """Longest backoff, seconds."""
    chunk_size: int = 500
    """Root ids per synapse query (chunks are split further while the server caps them)."""
    voxel_nm: tuple[float, float, float] = (4.0, 4.0, 40.0)
    """Voxel size (nm) positions are requested in (``desired_resolution``); nm = voxels * this."""
    row_cap: int = 200_000
    """Row count at which a result is treated as capped even without the warning header."""
    profile: str | None = None
    """A datastack profile (built-in name or TOML file) naming each role's table and columns;
    ``None``: minnie65's tables, pulled as the built-in pull does."""
    token_file: str | None = None
    """caveclient token file; ``None``: ``$CXP_CAVE_TOKEN`` (the token itself), else the
    ``cave_token_file`` setting (``$CXP_CAVE_TOKEN_FILE`` or the config file), else caveclient's
    ``~/.cloudvolume/secrets/cave-secret.json``."""

    def public(self) -> dict:
        """The configuration as recorded on a snapshot (no credentials; URL without user info)."""
        return {"server": public_url(self.server), "datastack": self.datastack,
                "neurons": self.neurons, "functional_table": self.functional_table,
                "auto_coregistration": self.auto_coregistration, "chunk_size": self.chunk_size,
                "row_cap": self.row_cap, "voxel_nm": list(self.voxel_nm),
                **({"profile": self.profile} if self.profile is not None else {})}


def public_url(url: str) -> str:
    """``url`` without any ``user:password@`` part."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class _TimeoutAdapter(HTTPAdapter):
    """An HTTP adapter that gives every request a timeout and leaves retrying to the caller."""

    def __init__(self, timeout: float) -> None:
        super().__init__(max_retries=0, pool_maxsize=4)
        self.timeout = timeout

    def send(self, request, timeout=None, **kwargs):  # HTTPAdapter API
        return super().send(request, timeout=self.timeout if timeout is None else timeout, **kwargs)


def _classify(err: BaseException, server: str, what: str) -> CaveError | None:
    """Map an exception raised by caveclient/requests to a CaveError (None: not ours)."""
    from caveclient.base import AuthException  # heavy import, only when used

    where = f"{what} at {public_url(server)}"
    if isinstance(err, CaveError):
        return err
    if isinstance(err, AuthException):
        return CaveAuthError(f"{where}: the server redirected to its login, so no valid token was "
                             f"sent. Put a token in ${TOKEN_ENV} or in caveclient's token file "
                             "(~/.cloudvolume/secrets/cave-secret.json, key 'token').", server=server)
    if isinstance(err, requests.Timeout):
        return CaveTransientError(f"{where}: no answer within the request timeout ({err.__class__.__name__})",
                                  server=server)
    if isinstance(err, requests.ConnectionError):
        return CaveTransientError(f"{where}: connection failed ({err.__class__.__name__})", server=server)
    if isinstance(err, requests.HTTPError):
        status = err.response.status_code if err.response is not None else None
        if status in (401, 403):
            return CaveAuthError(
                f"{where}: HTTP {status}, the server refused the token (missing, invalid, expired, "
                f"or without access to this datastack). Set ${TOKEN_ENV} or caveclient's token "
                "file (~/.cloudvolume/secrets/cave-secret.json, key 'token') to a valid token.",
                server=server, status=status)
        if status is not None and status >= 500:
            return CaveTransientError(f"{where}: HTTP {status} (server error)", server=server,
                                      status=status)
        detail = ""
        if err.response is not None:
            detail = err.response.text[:300]
        return CaveRequestError(f"{where}: HTTP {status}; expected 200. Server said: {detail}",
                                server=server, status=status)
    if isinstance(err, ValueError):  # caveclient: unknown content type, bad JSON, bad version
        return CaveRequestError(f"{where}: unexpected answer ({err}); is this a CAVE server?",
                                server=server)
    return None


def with_retries(fn: Callable[[], T], *, what: str, config: CaveConfig,
                 sleep: Callable[[float], None] = time.sleep) -> T:
    """Call ``fn``; on a transient failure wait and retry (exponential backoff), up to
    ``config.retries`` times (:func:`connectome_priors.kernel.retry.retry`). Terminal failures
    raise at once.

    Raises
    ------
    CaveTransientError
        When every attempt failed transiently.
    CaveAuthError, CaveRequestError
        At the first terminal failure.
    """
    return retry(fn, backoff=Backoff(config.retries, config.backoff_s, config.backoff_max_s),
                 what=what, classify=lambda err: _classify(err, config.server, what), sleep=sleep)


class CaveConnection:
    """A connected caveclient plus what the pull needs from it.

    ``client`` is a ``caveclient.CAVEclient``; ``last_warning`` holds the ``Warning`` header of
    the latest response (how a capped result is recognized).
    """

    def __init__(self, client, config: CaveConfig) -> None:
        self.client, self.config = client, config
        self.last_warning: str | None = None
        for sub in (client.info, client.materialize):
            adapter = _TimeoutAdapter(config.timeout_s)
            sub.session.mount("http://", adapter)
            sub.session.mount("https://", adapter)
        client.materialize.session.hooks["response"].append(self._on_response)

    def _on_response(self, response, *args, **kwargs):
        self.last_warning = response.headers.get("Warning")
        return response

    def versions(self) -> list[int]:
        """Materialization versions the server offers (not expired)."""
        return sorted(int(v) for v in with_retries(
            lambda: self.client.materialize.get_versions(), what="listing versions", config=self.config))

    def resolve_version(self, version: int | str) -> int:
        """``latest`` -> the newest version number; a number is checked against the server's."""
        available = self.versions()
        if not available:
            raise CaveRequestError(f"datastack {self.config.datastack!r} at "
                                   f"{public_url(self.config.server)} offers no materialization version",
                                   server=self.config.server)
        if version == "latest":
            return available[-1]
        if int(version) not in available:
            raise CaveRequestError(f"materialization version {version} of {self.config.datastack!r} "
                                   f"is not available at {public_url(self.config.server)}; "
                                   f"available: {available}", server=self.config.server)
        return int(version)

    def timestamp(self, version: int) -> str:
        """ISO-8601 UTC time of a materialization version."""
        ts = with_retries(lambda: self.client.materialize.get_timestamp(version),
                          what=f"timestamp of version {version}", config=self.config)
        return ts.isoformat()

    def tables(self, version: int) -> list[str]:
        """Tables of a materialization version."""
        return list(with_retries(lambda: self.client.materialize.get_tables(version=version),
                                 what=f"tables of version {version}", config=self.config))

    def table_metadata(self, table: str, version: int) -> dict:
        """The server's metadata of ``table`` in ``version`` (``schema_type``,
        ``reference_table``, ``voxel_resolution``, ...), through caveclient's
        ``get_table_metadata`` (retried)."""
        md = with_retries(lambda: self.client.materialize.get_table_metadata(
            table, version=version, log_warning=False),
            what=f"metadata of {table} v{version}", config=self.config)
        if not isinstance(md, dict):
            raise CaveRequestError(f"metadata of {table} v{version} at {public_url(self.config.server)}: "
                                   f"expected a JSON object; found {type(md).__name__}",
                                   server=self.config.server, path=table)
        return md

    def query(self, table: str, version: int, **filters):
        """One ``query_table`` call (split positions, voxels); returns (DataFrame, capped).

        ``merge_reference=False``: a reference table comes with its own columns only
        (``target_id``, no root id or position of the target). Merging would ask the server for
        a join whose inner join silently drops rows naming a missing target and repeats every
        nucleus column per row; the transform instead joins ``target_id`` to the nucleus table
        pulled from the same version, and so counts what does not match (see
        :mod:`.transform`). Whatever shape arrives, the transform accepts it.
        """
        def call():
            self.last_warning = None
            df = self.client.materialize.query_table(
                table, materialization_version=version, split_positions=True,
                merge_reference=False, metadata=False,
                desired_resolution=list(self.config.voxel_nm),
                log_warning=False, **filters)
            return df, self.last_warning
        df, warning = with_retries(call, what=f"query of {table} v{version}", config=self.config)
        capped = bool(warning and "limited query" in warning.lower()) or len(df) >= self.config.row_cap
        return df, capped


def _token_kwargs(config: CaveConfig) -> dict:
    token = os.environ.get(TOKEN_ENV)
    if token:
        return {"auth_token": token}
    token_file = resolve("cave_token_file", config.token_file)
    if token_file:
        return {"auth_token_file": str(token_file)}
    return {}


def connect(config: CaveConfig) -> CaveConnection:
    """Build a caveclient for ``config`` (retried, under a deadline) and wrap it.

    Client construction issues several requests on sessions it creates itself, before a timeout
    can be attached; it therefore runs in a daemon thread and is abandoned after
    ``4 * timeout_s``.
    """
    def build():
        from caveclient import CAVEclient  # heavy import, only when used

        box: dict = {}

        def run():
            try:
                client = CAVEclient(config.datastack, server_address=config.server,
                                    write_server_cache=False, max_retries=0, **_token_kwargs(config))
                client.materialize  # noqa: B018 (constructs the materialization client now)
                box["client"] = client
            except BaseException as err:  # noqa: BLE001 (handed to the caller's thread)
                box["error"] = err

        worker = threading.Thread(target=run, daemon=True, name="cave-connect")
        worker.start()
        worker.join(4 * config.timeout_s)
        if worker.is_alive():
            raise requests.Timeout("connecting took longer than 4 request timeouts")
        if "error" in box:
            raise box["error"]
        return box["client"]

    client = with_retries(build, what=f"connecting to datastack {config.datastack!r}", config=config)
    return CaveConnection(client, config)
