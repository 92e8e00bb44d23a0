"""Settings, resolved in one place: argument > environment variable > config file > default.

Every setting that more than one command or module needs lives here, under one name:

==================  ======================  =============================================
setting             environment variable    default
==================  ======================  =============================================
``store``           ``CXP_STORE``           ``$XDG_DATA_HOME/connectome-priors/store``
``artifacts``       ``CXP_ARTIFACTS``       ``<store>/artifacts``
``dask_scheduler``  ``CXP_DASK_SCHEDULER``  none (no cluster; see :mod:`.dask`)
``cache``           ``CXP_CACHE``           ``$XDG_CACHE_HOME/connectome-priors``
``nwb_cache``       ``CXP_NWB_CACHE``       ``<cache>/dandi``
``dandi_api``       ``CXP_DANDI_API``       ``https://api.dandiarchive.org/api``
``cave_token_file`` ``CXP_CAVE_TOKEN_FILE`` none (caveclient's own token file)
``store_lock_timeout`` ``CXP_STORE_LOCK_TIMEOUT`` ``300`` (seconds a writer waits for another)
``recipes``         ``CXP_RECIPES``         ``$XDG_CONFIG_HOME/connectome-priors/priors.toml``
==================  ======================  =============================================

The config file is TOML, ``$CXP_CONFIG`` or ``$XDG_CONFIG_HOME/connectome-priors/config.toml``,
with the settings as top-level keys (``store = "/data/cxp"``). ``$CXP_CONFIG`` must name a file
that exists (a missing one is an error, not an empty config); the default location may be absent.

Values are checked where they are read, naming the setting and where its value came from: a path
setting given as an empty value (an empty argument, ``CXP_STORE=""``, ``store = ""``) is refused
instead of meaning the current folder; ``store_lock_timeout`` must be a finite number of seconds
>= 0 (``nan``, ``inf`` and negative values are refused). An empty environment variable of another
setting counts as unset. A CAVE token itself is a credential:
it is read only from ``$CXP_CAVE_TOKEN`` or a token file, never from the config file, and never
logged or stored.

Examples
--------
>>> resolve("store", "/tmp/s")        # an argument wins
PosixPath('/tmp/s')
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import CxpError

__all__ = ["CONFIG_ENV", "SETTINGS", "Setting", "SettingsError", "config_file", "env_name", "resolve"]

#: Environment variable naming the config file.
CONFIG_ENV = "CXP_CONFIG"


class SettingsError(CxpError):
    """The config file could not be read, or a setting has a value of the wrong kind."""


def _xdg(var: str, *fallback: str) -> Path:
    return Path(os.environ.get(var) or Path.home().joinpath(*fallback))


@dataclass(frozen=True)
class Setting:
    """One setting: its environment variable, its default and how its value is read."""

    env: str
    """Environment variable that sets it."""
    default: Callable[[], Any]
    """Default when neither an argument, the environment nor the config file sets it."""
    path: bool = True
    """A filesystem path (``~`` expanded, returned as ``Path``); else a string."""
    check: Callable[[str, Any, str], None] | None = None
    """Called as ``check(name, value, source)``; raises :class:`SettingsError` on a bad value."""


def _seconds(name: str, value: Any, source: str) -> None:
    """A finite number of seconds >= 0 (a timeout of ``nan`` or ``inf`` would wait forever)."""
    text = str(value).strip()
    try:
        seconds = float(text)
    except ValueError:
        raise SettingsError(f"setting {name!r} from {source} must be a number of seconds; "
                            f"found {text!r}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise SettingsError(f"setting {name!r} from {source} must be a finite number of seconds "
                            f">= 0; found {text!r}")


SETTINGS: dict[str, Setting] = {
    "store": Setting("CXP_STORE", lambda: _xdg("XDG_DATA_HOME", ".local", "share")
                     / "connectome-priors" / "store"),
    "artifacts": Setting("CXP_ARTIFACTS", lambda: resolve("store") / "artifacts"),
    "dask_scheduler": Setting("CXP_DASK_SCHEDULER", lambda: None, path=False),
    "cache": Setting("CXP_CACHE", lambda: _xdg("XDG_CACHE_HOME", ".cache") / "connectome-priors"),
    "nwb_cache": Setting("CXP_NWB_CACHE", lambda: resolve("cache") / "dandi"),
    "dandi_api": Setting("CXP_DANDI_API", lambda: "https://api.dandiarchive.org/api", path=False),
    "cave_token_file": Setting("CXP_CAVE_TOKEN_FILE", lambda: None),
    "store_lock_timeout": Setting("CXP_STORE_LOCK_TIMEOUT", lambda: "300", path=False,
                                  check=_seconds),
    # the prior recipes `cxp priors rebuild` builds (priors_store/recipes.py)
    "recipes": Setting("CXP_RECIPES", lambda: _xdg("XDG_CONFIG_HOME", ".config")
                       / "connectome-priors" / "priors.toml"),
}


def env_name(name: str) -> str:
    """The environment variable of setting ``name``."""
    return _setting(name).env


def config_file() -> Path:
    """Where the config file is looked for: ``$CXP_CONFIG`` (which must then exist, see
    :func:`resolve`), else the default location (which need not)."""
    env = os.environ.get(CONFIG_ENV)
    if env is not None:
        return Path(env).expanduser()
    return _xdg("XDG_CONFIG_HOME", ".config") / "connectome-priors" / "config.toml"


def _from_file(name: str) -> Any:
    path = config_file()
    explicit = os.environ.get(CONFIG_ENV)
    if explicit is not None:
        if not explicit.strip():
            raise SettingsError(f"${CONFIG_ENV} is set but empty; set it to a TOML config file, or "
                                "unset it to use the default location")
        if not path.exists():
            raise SettingsError(f"${CONFIG_ENV} names {path}, which does not exist; create it, "
                                "point the variable at the config file, or unset it")
        if path.is_dir():
            raise SettingsError(f"${CONFIG_ENV} names {path}, which is a folder; expected a TOML "
                                "config file")
    elif not path.is_file():
        return None
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise SettingsError(f"config file {path} could not be read as UTF-8 TOML: {err}") from err
    unknown = sorted(set(data) - set(SETTINGS))
    if unknown:
        raise SettingsError(f"config file {path} has unknown setting(s) {unknown}; "
                            f"known: {sorted(SETTINGS)}")
    value = data.get(name)
    kinds = (str,) if SETTINGS[name].path else (str, int, float)
    if value is not None and (not isinstance(value, kinds) or isinstance(value, bool)):
        raise SettingsError(f"config file {path}: setting {name!r} must be a "
                            f"{'string' if SETTINGS[name].path else 'string or number'}; "
                            f"found {type(value).__name__} {value!r}")
    return value


def _setting(name: str) -> Setting:
    try:
        return SETTINGS[name]
    except KeyError:
        raise SettingsError(f"unknown setting {name!r}; known: {sorted(SETTINGS)}") from None


def resolve(name: str, value: Any = None, *, default: Callable[[], Any] | None = None) -> Any:
    """Setting ``name``: ``value`` if given, else its environment variable, else the config file,
    else ``default()`` (when given) or the setting's own default. Paths come back as ``Path`` with
    ``~`` expanded; unset optional settings as ``None``."""
    spec = _setting(name)
    strict = spec.path or spec.check is not None  # "" is an error, not "unset" (see module doc)
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    source = "the argument"
    if value is None or (value == "" and not strict):
        value = os.environ.get(spec.env)
        source = f"${spec.env}"
        if value == "" and not strict:
            value = None
    if value is None:
        value = _from_file(name)
        source = f"config file {config_file()}"
    if value is None:
        value = (default or spec.default)()
        source = "its default"
    if value is None:
        return None
    if spec.path and isinstance(value, str) and not value.strip():
        raise SettingsError(f"setting {name!r} is empty in {source}; expected a path (an empty "
                            "one is not taken to mean the current folder): give a folder, or "
                            "leave the setting out to use its default")
    if spec.check is not None:
        spec.check(name, value, source)
    if spec.path:
        return Path(value).expanduser()
    return str(value)
