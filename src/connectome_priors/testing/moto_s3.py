"""A real S3 protocol server for tests: moto's server mode on 127.0.0.1.

:func:`start_s3` starts moto's threaded server behind an optional WSGI ``hook`` that sees every
request first (to count requests, or to answer some as a hostile server would), creates the
buckets, and returns the storage options that reach it. :func:`offline_aws` sets dummy credentials
and hides the user's AWS configuration, so nothing but 127.0.0.1 is ever contacted.
``moto[server]`` (the ``test`` extra) is imported only when a server starts.

Examples
--------
>>> with offline_aws(tempfile.mkdtemp()):                                  # doctest: +SKIP
...     server = start_s3("bucket", hook=RequestCounter())
...     push("tiny", "s3://bucket/priors", storage_options=server.options)
...     server.stop()
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["FAST", "Hook", "RequestCounter", "S3Server", "offline_aws", "start_s3"]

#: botocore options that fail fast once the server is stopped (it would otherwise retry for ~10 s).
FAST: dict[str, Any] = {"config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2}}

#: A WSGI application: ``app(environ, start_response)`` returns the body.
WSGIApp = Callable[[dict, Callable], Iterable[bytes]]
#: ``hook(environ, start_response, app)``: answers itself, or returns ``app(environ, start_response)``.
Hook = Callable[[dict, Callable, WSGIApp], Iterable[bytes]]

#: What :func:`offline_aws` removes from the environment, and what it sets.
_UNSET = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")
_DUMMY = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
          "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


class S3Server:
    """A started moto S3 server (see :func:`start_s3`).

    Attributes
    ----------
    options
        fsspec/s3fs storage options that reach it: ``endpoint_url`` plus :data:`FAST`.
    hook
        The hook given to :func:`start_s3` (e.g. a :class:`RequestCounter`), or None.
    """

    def __init__(self, server: Any, options: dict[str, Any], hook: Hook | None) -> None:
        self._server = server
        self.options = options
        self.hook = hook

    def get_host_and_port(self) -> tuple[str, int]:
        """Where it listens: ("127.0.0.1", port)."""
        host, port = self._server.get_host_and_port()
        return str(host), int(port)

    def stop(self) -> None:
        """Stop serving (requests then fail fast, see :data:`FAST`)."""
        self._server.stop()


def start_s3(*buckets: str, hook: Hook | None = None) -> S3Server:
    """Start moto's S3 server on 127.0.0.1 (a free port) and create ``buckets``.

    Parameters
    ----------
    buckets
        Bucket names to create.
    hook
        Sees each request before moto: ``hook(environ, start_response, app)``.

    Returns
    -------
    S3Server
        The running server; call :meth:`S3Server.stop` when done.
    """
    import fsspec
    from moto.server import ThreadedMotoServer

    class Hooked(ThreadedMotoServer):  # type: ignore[misc]
        def _server_entry(self) -> None:
            from moto.moto_server.werkzeug_app import (DomainDispatcherApplication,
                                                       MotoRequestHandler, create_backend_app)
            from werkzeug.serving import make_server

            app = DomainDispatcherApplication(create_backend_app)

            def serve(environ: dict, start_response: Callable) -> Iterable[bytes]:
                return hook(environ, start_response, app) if hook else app(environ, start_response)

            self._server = make_server(self._ip_address, self._port, serve, True,
                                       request_handler=MotoRequestHandler)
            self._server_ready_event.set()
            self._server.serve_forever()

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = Hooked(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    options = {"endpoint_url": f"http://{host}:{port}", **FAST}
    for bucket in buckets:
        fs, _ = fsspec.core.url_to_fs(f"s3://{bucket}", skip_instance_cache=True, **options)
        fs.mkdir(bucket)
    return S3Server(server, options, hook)


@contextmanager
def offline_aws(home: str | os.PathLike, *, unset: Iterable[str] = ()) -> Iterator[None]:
    """Dummy credentials and no user AWS configuration for the duration (restored afterwards).

    Parameters
    ----------
    home
        A folder for the (absent) AWS config and credentials files.
    unset
        More environment variables to remove meanwhile.
    """
    values: dict[str, str | None] = {name: None for name in (*_UNSET, *unset)}
    values.update(_DUMMY)
    values["AWS_CONFIG_FILE"] = os.path.join(home, "config")
    values["AWS_SHARED_CREDENTIALS_FILE"] = os.path.join(home, "credentials")
    saved = {name: os.environ.get(name) for name in values}
    try:
        _set(values)
        yield
    finally:
        _set(saved)


def _set(values: dict[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


class RequestCounter:
    """A :data:`Hook` that counts requests by (method, path), thread-safely."""

    WRITES = ("PUT", "POST", "DELETE")

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def __call__(self, environ: dict, start_response: Callable, app: WSGIApp) -> Iterable[bytes]:
        key = (environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""))
        with self._lock:
            self.requests[key] = self.requests.get(key, 0) + 1
        return app(environ, start_response)

    def writes(self) -> int:
        """How many PUT, POST and DELETE requests were served."""
        with self._lock:
            return sum(n for (method, _), n in self.requests.items() if method in self.WRITES)
