"""Load a published prior artifact, local or remote: the library's entry point to a prior."""

from __future__ import annotations

import os

from .catalog import resolve_version
from .names import LATEST
from .prior import Prior

__all__ = ["load"]


def load(name: str, version: str = LATEST, *, root: str | os.PathLike | None = None,
         storage_options: dict | None = None) -> Prior:
    """Load artifact ``name`` at ``version`` (``latest``, a version id or a unique prefix).

    ``name`` may be a URL ``BASE/NAME[@VERSION]`` (``s3://...``, ``file://...``; fsspec
    ``storage_options``): it is downloaded into the local cache once and verified first
    (:mod:`.remote`).

    The manifest is validated and every file's presence and size checked at once; each file's
    sha256 is checked the first time its data is read, before it is returned. A tampered or
    incomplete artifact is refused with the failing file named.

    Examples
    --------
    >>> prior = load("field_6_6_2")                     # doctest: +SKIP
    >>> prior["distance_um"].shape                       # doctest: +SKIP
    (312, 312)
    """
    if "://" in name:  # a remote artifact: fetched into the cache and verified (remote.py)
        from .remote import load_url  # fsspec only for remote artifacts

        return load_url(name, version, storage_options=storage_options)
    return Prior.open(resolve_version(name, version, root=root))
