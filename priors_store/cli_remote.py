"""``cxp priors push|pull``: a thin layer over :mod:`.remote` (priors that travel)."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable

from connectome_priors.etl.store import Store
from connectome_priors.kernel.settings import env_name

from .config import artifact_root
from .errors import PriorsError

__all__ = ["parse_storage_options", "register"]

#: Option names that would carry a credential on the command line (and so in shell history).
_SECRET = re.compile(r"key|secret|token|password|passwd|credential", re.IGNORECASE)
#: A URL carrying ``user[:password]@``.
_USERINFO = re.compile(r"://[^/?#\s]*@")


def register(psub: argparse._SubParsersAction, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``push`` and ``pull`` to the ``cxp priors`` command group."""
    def remote(p: argparse.ArgumentParser) -> None:
        p.add_argument("--storage-option", "-o", action="append", default=[], metavar="KEY=VALUE",
                       help="fsspec option of the remote, repeatable, e.g. "
                            "endpoint_url=http://127.0.0.1:9000 or profile=NAME (VALUE is read as "
                            "JSON when it parses, else as text). Credentials are not accepted here: "
                            "they come from the backend's own configuration (AWS_* variables, "
                            "~/.aws profiles)")

    push = psub.add_parser("push", help="upload an artifact version to a URL (file://, s3://, ...)")
    push.add_argument("ref", help="NAME[@VERSION] of a local artifact")
    push.add_argument("url", help="base URL, e.g. s3://bucket/priors or file:///shared/priors")
    remote(push)
    common(push)
    push.set_defaults(handler=run)

    pull = psub.add_parser("pull", help="download a version from a URL into the local cache, verified")
    pull.add_argument("url", help="BASE_URL/NAME[@VERSION], e.g. s3://bucket/priors/field_6_6_2@25349cb7")
    pull.add_argument("--cache", metavar="DIR", default=None,
                      help=f"cache folder (default: ${env_name('cache')}, else ~/.cache/connectome-priors);"
                           " the artifact lands in <cache>/priors/...")
    remote(pull)
    pull.set_defaults(handler=run)


def _refused(value, path: str) -> str | None:
    """Where in an option's value a credential hides: a key named like one (at any depth of
    a JSON object), or a URL with ``user:password@``; ``None`` when nowhere."""
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}"
            if _SECRET.search(str(key)):
                return f"{where} (a credential's name)"
            found = _refused(item, where)
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _refused(item, f"{path}[{i}]")
            if found:
                return found
    elif isinstance(value, str) and _USERINFO.search(value):
        return f"{path} (a URL with a user name or password)"
    return None


def parse_storage_options(pairs: list[str]) -> dict:
    """``["endpoint_url=http://...", "anon=true"]`` -> ``{"endpoint_url": "http://...", "anon": True}``.

    Refuses, without echoing the value, any option that carries a credential: one named like
    key/secret/token/password/credential, at any depth of a JSON value
    (``client_kwargs={"aws_secret_access_key": ...}``), or a URL with ``user:password@``.
    """
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            shown = key if _SECRET.search(key) is None and not _USERINFO.search(pair) else "..."
            raise PriorsError(f"--storage-option {shown!r}: expected KEY=VALUE, e.g. "
                              "endpoint_url=http://127.0.0.1:9000")
        try:
            parsed = json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            parsed = value
        where = f"{key} (a credential's name)" if _SECRET.search(key) else _refused(parsed, key)
        if where:
            raise PriorsError(f"--storage-option {key}=...: {where} is a credential; credentials "
                              "are not taken from the command line (the value is not shown); use "
                              "the backend's configuration (for S3: AWS_ACCESS_KEY_ID / "
                              "AWS_SECRET_ACCESS_KEY, or a ~/.aws profile with --storage-option "
                              "profile=NAME)")
        options[key] = parsed
    return options


def run(args: argparse.Namespace) -> None:
    """Execute ``cxp priors push`` or ``cxp priors pull``."""
    from . import remote  # fsspec only for these commands

    options = parse_storage_options(args.storage_option)
    if args.priors_command == "push":
        root = artifact_root(args.artifacts, store=Store(args.store).directory)
        result = remote.push(args.ref, args.url, root=root, storage_options=options)
        repaired = " (index repaired)" if result.index_written else ""
        if result.published:
            print(f"pushed {result.name}@{result.version} to {result.url}: {len(result.uploaded)} "
                  f"files, {result.bytes / 2**20:.2f} MiB")
        elif result.same_build:
            print(f"{result.name}@{result.version} is already at {result.url}: nothing uploaded"
                  f"{repaired}")
        else:
            print(f"{result.name}@{result.version} is already at {result.url} from another build of "
                  "the same recipe (other file hashes): the remote's build is kept, nothing of this "
                  f"one is published{repaired}")
    else:
        result = remote.pull(args.url, cache=args.cache, storage_options=options)
        if result.repaired:
            print(f"repaired {result.name}@{result.version} in {result.directory}: the cached copy "
                  f"was damaged ({'; '.join(result.repaired[:3])}); what was wrong was downloaded "
                  "again and verified against its manifest")
        else:
            state = "pulled" if result.downloaded else "already cached:"
            print(f"{state} {result.name}@{result.version} in {result.directory} (verified against "
                  "its manifest)")
        print(f"  load it with connectome_priors.load({result.url + '@' + result.version!r})")
