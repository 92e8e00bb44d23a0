"""The ``cave`` source: pull the MICrONS tables of one pinned materialization version and turn
them into canonical tables.

Order of the pull: nucleus, cell types and co-registration tables (id ranges), then the
functional table (id ranges), then the synapses among the selected neurons (lists of presynaptic
root ids, postsynaptic root ids restricted to the selection).

Before its rows, the metadata of each cell-type and co-registration table is read from the
server: a ``reference_table`` makes it a reference table (``target_id`` joined to the nucleus
table of the same version), none a bound point table (``pt_root_id`` matched to the nucleus
table's root ids); the shape is passed to the transform, never guessed from the columns. Every chunk is checkpointed under
``cache_dir`` (see :mod:`.chunks`); :func:`clear_checkpoints` removes them once the snapshot is
stored.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

import pandas as pd

from ...config import StoreConfig
from ...tables import SourceTables
from .chunks import ChunkCache, list_chunks, pull_table, range_chunk
from ...profiles import load_profile
from .client import CaveConfig, CaveConnection, CaveRequestError, connect, public_url
from .profiled import pull_by_profile
from .transform import (CELLTYPES_TABLE, COREG_TABLES, FUNCTIONAL_TABLES, NUCLEUS_TABLE,
                        SYNAPSE_TABLE, TableShape, canonical_tables)

__all__ = ["CACHE_DIRNAME", "checkpoint_dir", "clear_checkpoints", "read_cave", "table_shape"]

log = logging.getLogger(__name__)

#: Folder of a store that holds in-progress CAVE pulls (never part of a snapshot).
CACHE_DIRNAME = ".cave-cache"


def checkpoint_dir(store_dir: str | os.PathLike | None, config: CaveConfig, version: int) -> Path:
    """Where the chunks of one pull are checkpointed:
    ``<store>/.cave-cache/<datastack>/v<version>-<server hash>/``."""
    root = StoreConfig.resolve(store_dir).directory / CACHE_DIRNAME
    server = hashlib.sha256(public_url(config.server).encode()).hexdigest()[:8]
    return root / config.datastack / f"v{version}-{server}"


def clear_checkpoints(store_dir: str | os.PathLike | None, config: CaveConfig | None,
                      version: int) -> None:
    """Delete the checkpoints of one pull (after its snapshot is stored)."""
    config = config or CaveConfig()
    ChunkCache(checkpoint_dir(store_dir, config, version)).clear()


def table_shape(metadata: dict, table: str, *, server: str | None = None) -> TableShape:
    """The shape of a cell-type or co-registration table from its server metadata.

    ``reference_table`` set: ``reference`` (it must be the nucleus table, whose ids the
    transform joins ``target_id`` to); empty or absent: ``bound_point``.

    Raises
    ------
    CaveRequestError
        The table references a table other than ``nucleus_detection_v0``.

    Examples
    --------
    >>> table_shape({"reference_table": "nucleus_detection_v0"}, "coregistration_manual_v4")
    'reference'
    >>> table_shape({"reference_table": None}, "coregistration_manual_v4")
    'bound_point'
    """
    target = metadata.get("reference_table") or None
    if target is None:
        return "bound_point"
    if target != NUCLEUS_TABLE:
        raise CaveRequestError(f"CAVE table {table!r} references {target!r}; expected "
                               f"{NUCLEUS_TABLE!r} (its target_id must be a nucleus id)",
                               server=server, path=table)
    return "reference"


def read_cave(config: CaveConfig, *, store_dir: str | os.PathLike | None = None,
              connection: CaveConnection | None = None, progress: bool = False) -> SourceTables:
    """Pull one materialization version of ``config.datastack`` and return canonical tables.

    Parameters
    ----------
    config
        Server, datastack, version (``latest`` is resolved and recorded as a number), neuron
        selection, timeouts, retries, chunking.
    store_dir
        The store the snapshot is for; chunk checkpoints live in its ``.cave-cache`` folder.
    connection
        An existing connection (else one is made).

    Returns
    -------
    SourceTables
        ``source="cave"`` with datastack, version and timestamp; ``parameters`` hold the
        configuration (no credentials) and the pull's query statistics are in ``report``.
    """
    if config.functional_table not in FUNCTIONAL_TABLES:
        raise CaveRequestError(f"functional table must be one of {list(FUNCTIONAL_TABLES)}; "
                               f"found {config.functional_table!r}", server=config.server)
    started = time.perf_counter()
    conn = connection or connect(config)
    version = conn.resolve_version(config.version)
    timestamp = conn.timestamp(version)
    cache = ChunkCache(checkpoint_dir(store_dir, config, version))
    stats: dict[str, dict] = {}

    def fetch(chunk):
        return conn.query(chunk.table, version, **chunk.filters())

    def pull(chunks) -> pd.DataFrame:
        s = stats.setdefault(chunks[0].table, {})
        return pull_table(chunks, fetch, cache, progress=progress, stats=s)

    raw: dict[str, pd.DataFrame] = {}
    shapes: dict[str, TableShape] = {}

    def shape_of(name: str) -> TableShape:
        shapes[name] = table_shape(conn.table_metadata(name, version), name, server=config.server)
        return shapes[name]

    if config.profile is not None:
        profile = load_profile(config.profile)
        common = dict(datastack=config.datastack, materialization_version=version,
                      materialization_timestamp=timestamp, neurons=config.neurons)
        raw, names, shapes = pull_by_profile(config, profile, conn, version, pull=pull,
                                             shape_of=shape_of, common=common)
        params = {**config.public(), "profile": profile.record(), "version": version,
                  "requested_version": config.version, "tables": sorted(names.values()),
                  "voxel_resolution_nm": list(config.voxel_nm)}
        out = canonical_tables(raw, **common, shapes=shapes, names=names, parameters=params)
        out.report["queries"] = stats
        out.report["pull_seconds"] = round(time.perf_counter() - started, 3)
        return out

    for name in (NUCLEUS_TABLE, CELLTYPES_TABLE, COREG_TABLES[0]):
        if name != NUCLEUS_TABLE:
            shape_of(name)
        raw[name] = pull([range_chunk(name)])
    if config.auto_coregistration and COREG_TABLES[1] in conn.tables(version):
        if shape_of(COREG_TABLES[1]) != shapes[COREG_TABLES[0]]:
            raise CaveRequestError(
                f"{COREG_TABLES[1]} is a {shapes[COREG_TABLES[1]]} table but {COREG_TABLES[0]} a "
                f"{shapes[COREG_TABLES[0]]} table; expected the same shape to combine them",
                server=config.server, path=COREG_TABLES[1])
        auto = pull([range_chunk(COREG_TABLES[1])])
        manual = raw[COREG_TABLES[0]]
        known = set(zip(manual["session"], manual["scan_idx"], manual["unit_id"]))
        extra = auto[[k not in known for k in zip(auto["session"], auto["scan_idx"], auto["unit_id"])]]
        extra = extra.assign(id=extra["id"] + (int(manual["id"].max()) if len(manual) else 0))
        raw[COREG_TABLES[0]] = pd.concat([manual, extra], ignore_index=True)
    raw[config.functional_table] = pull([range_chunk(config.functional_table)])

    common = dict(datastack=config.datastack, materialization_version=version,
                  materialization_timestamp=timestamp, neurons=config.neurons, shapes=shapes)
    cells = canonical_tables(raw, **common)
    roots = cells.tables["neurons"].column("root_id").drop_null().to_numpy()
    if len(roots):
        raw[SYNAPSE_TABLE] = pull(list_chunks(SYNAPSE_TABLE, "pre_pt_root_id", roots, config.chunk_size,
                                              other_column="post_pt_root_id", other_ids=roots))
    else:
        raw[SYNAPSE_TABLE] = pd.DataFrame({c: pd.Series(dtype="int64") for c in
                                           ("id", "pre_pt_root_id", "post_pt_root_id", "size")})
    params = {**config.public(), "version": version, "requested_version": config.version,
              "tables": sorted(raw), "voxel_resolution_nm": list(config.voxel_nm)}
    out = canonical_tables(raw, **common, parameters=params)
    out.report["queries"] = stats
    out.report["pull_seconds"] = round(time.perf_counter() - started, 3)
    return out
