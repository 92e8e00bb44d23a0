"""What may name an artifact and its versions: one rule, used by the builder, the loader, the cache
and the remote alike.

A name is a plain folder name: 1 to :data:`MAX_NAME` letters, digits, ``_``, ``.``, ``-``,
starting with a letter or digit (no ``/``, no ``..``, no glob characters). A version id is 16 hex
digits (:data:`VERSION_ID`); a reference may give a unique prefix of one (:data:`VERSION_PREFIX`)
or ``latest``. The patterns end in ``\\Z``, not ``$``: ``$`` also matches before a final newline.

Examples
--------
>>> parse_ref("field_6_6_2@25349cb7")
('field_6_6_2', '25349cb7')
>>> check_name("field_6_6_2")
'field_6_6_2'
"""

from __future__ import annotations

import os
import re

from .config import artifact_root
from .errors import PriorsError

__all__ = ["LATEST", "MAX_NAME", "NAME", "VERSION_ID", "VERSION_PREFIX", "check_name", "check_ref",
           "parse_ref", "shown"]

#: The version a reference means when it gives none; also the pointer file naming it.
LATEST = "latest"
#: The longest artifact name (a folder name; :data:`NAME` allows no more).
MAX_NAME = 100
#: An artifact name.
NAME = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9_.-]{{0,{MAX_NAME - 1}}}\Z")
#: A full version id: the first 16 hex digits of a sha256.
VERSION_ID = re.compile(r"^[0-9a-f]{16}\Z")
#: A version as a reference may give it: a version id or a prefix of one.
VERSION_PREFIX = re.compile(r"^[0-9a-f]{1,16}\Z")


def shown(text: str, limit: int = 40) -> str:
    """``text`` for a one-line message: quoted, cut after ``limit`` characters with its length."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text)} characters)"


def check_name(name: str, *, what: str = "artifact name") -> str:
    """Return ``name`` if it can name an artifact folder, else raise :class:`PriorsError`.

    A name is 1 to :data:`MAX_NAME` letters, digits, ``_``, ``.``, ``-``, starting with a letter or
    digit: no ``/``, no glob characters (``*?[]``), no leading ``.``. Checked before anything is
    read or written.

    >>> check_name("field_6_6_2")
    'field_6_6_2'
    """
    if not isinstance(name, str) or not NAME.match(name):
        why = (f"{len(name)} characters; at most {MAX_NAME}"
               if isinstance(name, str) and len(name) > MAX_NAME and NAME.match(name[:MAX_NAME])
               else "use letters, digits, '_', '.', '-', starting with a letter or digit (no '/', "
                    f"no glob characters, at most {MAX_NAME} characters)")
        raise PriorsError(f"{what} {shown(str(name))} is not allowed: {why}")
    return name


def parse_ref(ref: str) -> tuple[str, str]:
    """Split ``NAME[@VERSION]`` into (name, version); version defaults to ``latest``.

    >>> parse_ref("field_6_6_2")
    ('field_6_6_2', 'latest')
    """
    name, _, version = ref.partition("@")
    return name, version or LATEST


def check_ref(name: str, version: str = LATEST, *, root: str | os.PathLike | None = None) -> None:
    """Refuse a name or version that is no plain artifact folder name (``/``, ``..``, glob
    characters, more than :data:`MAX_NAME` characters, a version not 1 to 16 hex digits) before
    anything is read. ``root`` only names the artifact root in the message."""
    if not NAME.match(name) or not (version == LATEST or VERSION_PREFIX.match(version)):
        bad = ("name", name) if not NAME.match(name) else ("version", version)
        raise PriorsError(f"artifact {bad[0]} {shown(bad[1])} is not allowed: a name is at most "
                          f"{MAX_NAME} letters, digits, '_', '.', '-' (no '/', no glob characters, "
                          "not starting with '.'), a version 1 to 16 hex digits; refs read only "
                          f"inside the artifact root"
                          + (f" {artifact_root(root)}" if root is not None else ""))
