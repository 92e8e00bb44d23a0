"""Another datastack through its profile: which CAVE table plays each role, which column each field.

Used by :func:`.source.read_cave` when a profile is given (``cxp etl --source cave --profile
NAME|FILE``). For each role the first of its profile tables that the materialization lists is
pulled whole (the synapse table: by chunks of the selected cells' root ids, in the profile's pre
/ post columns), its columns are matched to the role's fields (a column the profile names but the
table lacks is refused, naming both) and normalized to the CAVE columns of the shared transform
(:mod:`etl.profiles.normalize`). Cell-type and co-registration tables get their shape from the
server's metadata, as in the built-in pull.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from ...profiles import Profile
from ...profiles.normalize import Resolved, normalize, nucleus_cell_types, resolve
from .chunks import list_chunks, range_chunk
from .client import CaveConfig, CaveConnection, CaveRequestError
from .transform import CELLTYPES_TABLE, NUCLEUS_TABLE, TableShape, canonical_tables

__all__ = ["pull_by_profile"]

_SMALL = ("nucleus", "cell_types", "coregistration", "functional")


def _choose(profile: Profile, available: set[str]) -> dict[str, tuple]:
    chosen: dict[str, tuple] = {}
    for role, specs in profile.roles.items():
        for spec in specs:
            for table in spec.tables:
                if table in available and role not in chosen:
                    chosen[role] = (spec, table)
    return chosen


def pull_by_profile(config: CaveConfig, profile: Profile, conn: CaveConnection, version: int, *,
                    pull: Callable[[list], pd.DataFrame],
                    shape_of: Callable[[str], TableShape], common: dict) -> tuple[dict, dict, dict]:
    """Pull the profile's tables of one version; returns (raw, names, shapes) for
    :func:`canonical_tables` (keys as the transform reads them).

    Raises
    ------
    CaveRequestError
        The version lists none of the profile's nucleus tables, or a synapse table without ids.
    ProfileError
        A table lacks a column the profile names, or a required field has no column.
    """
    available = set(conn.tables(version))
    chosen = _choose(profile, available)
    if "nucleus" not in chosen:
        wanted = [t for s in profile.roles["nucleus"] for t in s.tables]
        raise CaveRequestError(
            f"{config.datastack} v{version} has no nucleus table of profile {profile.describe()} "
            f"(looked for {', '.join(wanted)}); its tables: {', '.join(sorted(available))}",
            server=config.server, path=wanted[0])
    raw: dict[str, pd.DataFrame] = {}
    names: dict[str, str] = {}
    shapes: dict[str, TableShape] = {}
    resolved: dict[str, Resolved] = {}
    for role in _SMALL:
        if role not in chosen:
            continue
        spec, table = chosen[role]
        shape = shape_of(table) if role in ("cell_types", "coregistration") else None
        df = pull([range_chunk(table)])
        res = resolve(spec, table, list(df.columns), profile=profile, where=f"CAVE table {table}")
        resolved[role] = res
        raw[res.key()] = normalize(df, res, profile=profile, where=f"CAVE table {table}")
        names[res.key()] = table
        if shape is not None:
            shapes[res.key()] = shape
    if "cell_types" not in chosen:
        ct = nucleus_cell_types(raw[NUCLEUS_TABLE])
        if ct is not None:
            raw[CELLTYPES_TABLE] = ct
            names[CELLTYPES_TABLE] = (f"{names[NUCLEUS_TABLE]}."
                                      f"{resolved['nucleus'].fields['cell_class']}")
            shapes[CELLTYPES_TABLE] = "reference"
    big = "synapses" if "synapses" in chosen else "connections" if "connections" in chosen else None
    if big is None:
        return raw, names, shapes
    cells = canonical_tables(raw, **common, shapes=shapes, names=names).tables["neurons"]
    roots = cells.column("root_id").drop_null().to_numpy()
    spec, table = chosen[big]
    pre, post = spec.column("pre_root_id"), spec.column("post_root_id")
    if big == "synapses" and len(roots):
        df = pull(list_chunks(table, pre, roots, config.chunk_size, other_column=post,
                              other_ids=roots))
    elif big == "connections":
        df = pull([range_chunk(table)])
    else:
        return raw, names, shapes
    where = f"CAVE table {table}"
    res = resolve(spec, table, list(df.columns), profile=profile, where=where)
    if big == "synapses" and "id" not in res.fields:
        raise CaveRequestError(f"{where}: no id column (profile field [synapses] id); a CAVE table "
                               "always has one, and without it synapses have no stable id",
                               server=config.server, path=table)
    raw[res.key()] = normalize(df, res, profile=profile, where=where)  # the transform counts drops
    names[res.key()] = table
    return raw, names, shapes
