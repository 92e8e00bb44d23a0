"""The source registry: one config dataclass per source, and :func:`extract` that reads any of them.

Each config says everything one extraction needs and nothing another source takes, so a mistyped
option is an error, not silently ignored. :func:`source_config` builds one from a source name, an
optional path and keyword options (what ``run_etl("blueprint", path, fields=[...])`` and the CLI
use). Readers are imported only when their source is read (caveclient, pynwb).

Examples
--------
>>> cfg = BlueprintSource("../shared/data/cortical-blueprint", fields=("6_6_2",))
>>> extract(cfg)                                               # doctest: +SKIP
>>> source_config("synthetic", seed=3)
SyntheticSource(config=None, seed=3)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from ..errors import EtlError
from ..tables import SourceTables

if TYPE_CHECKING:  # only for annotations: the readers load lazily
    from .blueprint import Mode
    from .cave.client import CaveConfig, CaveConnection
    from .nwb.events import EventRule
    from .synthetic import SyntheticConfig

__all__ = ["BlueprintSource", "CaveSource", "FilesSource", "NwbSource", "SOURCES", "SourceConfig",
           "SyntheticSource", "extract", "source_config"]


@dataclass(frozen=True)
class SyntheticSource:
    """The embedded synthetic generator (MICrONS-like, seeded; no path)."""

    config: SyntheticConfig | None = None
    """The full generator configuration; ``None``: full size with :attr:`seed`."""
    seed: int = 0
    """Generator seed (ignored when :attr:`config` is given)."""


@dataclass(frozen=True)
class BlueprintSource:
    """The study's released per-field arrays."""

    path: str | os.PathLike
    """The release's root (e.g. ``../shared/data/cortical-blueprint``)."""
    mode: Mode = "strict"
    """``"strict"`` aborts on a field that fails a check; ``"lenient"`` skips and reports it."""
    fields: tuple[str, ...] | None = None
    """Only these fields (``"6_6_2"``); ``None``: every field."""


@dataclass(frozen=True)
class CaveSource:
    """A live CAVE materialization through caveclient."""

    config: CaveConfig | None = None
    """Server, datastack, version, neuron selection, timeouts; ``None``: the defaults."""
    connection: CaveConnection | None = field(default=None, compare=False)
    """An open connection to reuse (e.g. the refresh's)."""


@dataclass(frozen=True)
class FilesSource:
    """Static CAVE table exports in one folder."""

    path: str | os.PathLike
    """The folder (a name ``v<N>`` sets the materialization version)."""
    neurons: str = "coregistered_excitatory"
    """Which cells become ``neurons`` (as for ``cave``; ``all`` for exports without cell types)."""
    datastack: str | None = None
    """Recorded on the snapshot as given (never guessed)."""
    materialization_version: int | None = None
    """Overrides the folder name's version."""
    profile: str | None = None
    """A built-in datastack profile's name or a profile file (default ``minnie65_public``)."""
    synapses: bool = True
    """Store the synapses among the cells; False: only their ``connections`` (implies ``stream``)."""
    stream: bool = False
    """Stream the synapse export in checkpointed chunks: bounded memory, resumable (the
    whole-volume release)."""


@dataclass(frozen=True)
class NwbSource:
    """Scan files of the NWB release (DANDI 000402)."""

    paths: tuple[str | os.PathLike, ...]
    """``.nwb`` files, or folders of them."""
    events: EventRule | None = None
    """Event detection; ``None``: the default rule (OASIS, peaks above 0.01)."""


SourceConfig = Union[SyntheticSource, BlueprintSource, CaveSource, FilesSource, NwbSource]


def _read_synthetic(cfg: SyntheticSource, progress: bool, store_dir) -> SourceTables:
    from .synthetic import SyntheticConfig, generate

    return generate(cfg.config or SyntheticConfig(seed=cfg.seed), progress=progress)


def _read_blueprint(cfg: BlueprintSource, progress: bool, store_dir) -> SourceTables:
    from .blueprint import read_blueprint

    return read_blueprint(Path(cfg.path), mode=cfg.mode,
                          fields=list(cfg.fields) if cfg.fields is not None else None,
                          progress=progress)


def _read_cave(cfg: CaveSource, progress: bool, store_dir) -> SourceTables:
    from .cave.client import CaveConfig  # caveclient only for CAVE
    from .cave.source import read_cave

    return read_cave(cfg.config or CaveConfig(), store_dir=store_dir, connection=cfg.connection,
                     progress=progress)


def _read_files(cfg: FilesSource, progress: bool, store_dir) -> SourceTables:
    from .files import read_files

    from ..config import StoreConfig
    from .files.source import STREAM_DIRNAME

    return read_files(Path(cfg.path), profile=cfg.profile, neurons=cfg.neurons, datastack=cfg.datastack,
                      materialization_version=cfg.materialization_version, synapses=cfg.synapses,
                      stream=cfg.stream,
                      work_dir=StoreConfig.resolve(store_dir).directory / STREAM_DIRNAME, progress=progress)


def _read_nwb(cfg: NwbSource, progress: bool, store_dir) -> SourceTables:
    from .nwb import read_nwb  # pynwb only when reading NWB

    return read_nwb(list(cfg.paths), rule=cfg.events, progress=progress, store_dir=store_dir)


#: Source name -> (config class, reader, what PATH means or None when it takes none).
SOURCES: dict[str, tuple[type, Callable[..., SourceTables], str | None]] = {
    "synthetic": (SyntheticSource, _read_synthetic, None),
    "blueprint": (BlueprintSource, _read_blueprint,
                  "the release's root (e.g. ../shared/data/cortical-blueprint)"),
    "cave": (CaveSource, _read_cave, None),
    "files": (FilesSource, _read_files, "a directory of CAVE table exports (e.g. "
              "nucleus_detection_v0_merged.csv.gz + _merged_header.csv)"),
    "nwb": (NwbSource, _read_nwb, "NWB scan files of DANDI 000402 (or folders of them; `cxp etl "
            "--source nwb --download 4-7` fetches them first)"),
}

#: Keyword options of the flat ``run_etl`` call -> (source, field of its config).
_ALIASES = {("synthetic", "synthetic"): "config", ("cave", "cave"): "config",
            ("cave", "cave_connection"): "connection"}


def name_of(config: SourceConfig) -> str:
    """The source name of a config (``"blueprint"`` for a :class:`BlueprintSource`)."""
    for name, (cls, _, _) in SOURCES.items():
        if isinstance(config, cls):
            return name
    raise EtlError(f"not a source config: {config!r}; expected one of "
                   f"{', '.join(cls.__name__ for cls, _, _ in SOURCES.values())}")


def source_config(source: str, path: str | os.PathLike | Sequence | None = None,
                  **options: Any) -> SourceConfig:
    """The config of ``source`` from a path and keyword options; options left at ``None`` count as
    not given.

    Raises
    ------
    EtlError
        Unknown source; a PATH missing or given where the source takes none; an option the
        source does not take (naming the options it does).
    """
    if source not in SOURCES:
        raise EtlError(f"unknown source {source!r}; expected {', '.join(SOURCES)}")
    cls, _, path_means = SOURCES[source]
    given = {k: v for k, v in options.items() if v is not None}
    if source == "files" and "cave" in given:  # run_etl("files", cave=CaveConfig(...)) as before
        cave = given.pop("cave")
        given.setdefault("neurons", cave.neurons)
        given.setdefault("datastack", cave.datastack)
        if isinstance(cave.version, int):
            given.setdefault("materialization_version", cave.version)
    if path_means is None:
        if path is not None:
            raise EtlError(f"source {source!r} takes no PATH" + (
                " (it generates its data)" if source == "synthetic" else ""))
    elif not path:
        raise EtlError(f"source {source!r} needs PATH" + ("..." if source == "nwb" else "")
                       + f", {path_means}")
    else:
        key = "paths" if source == "nwb" else "path"
        if source == "nwb":
            path = tuple([path] if isinstance(path, (str, os.PathLike)) else path)
        given[key] = path
    names = {f.name for f in fields(cls)}
    kwargs = {}
    for key, value in given.items():
        target = _ALIASES.get((source, key), key)
        if target not in names:
            raise EtlError(f"source {source!r} takes no option {key!r}; its options: "
                           f"{', '.join(sorted(n for n in names if n not in ('path', 'paths')))}")
        kwargs[target] = tuple(value) if target == "fields" else value
    return cls(**kwargs)


def extract(source: SourceConfig, *, progress: bool = False,
            store_dir: str | os.PathLike | None = None) -> SourceTables:
    """Extract canonical tables from one source without storing them.

    ``store_dir`` is the store the extraction is for: the ``cave`` source checkpoints its chunks
    there, and the ``nwb`` source compares its unit ids with the store's co-registration.
    """
    _, reader, _ = SOURCES[name_of(source)]
    return reader(source, progress, store_dir)
