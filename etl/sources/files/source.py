"""The ``files`` source: a folder of table exports -> canonical tables, through the shared transform.

Which file plays which role, and which column holds which field, comes from a datastack profile
(:mod:`etl.profiles`; default the built-in ``minnie65_public``, the MICrONS tables by their
published names). Every entry of the folder is accounted for (:func:`.layout.inventory`): read
(with its role and row count), not used (another file plays its role), or not recognized; the
report carries all three and ``cxp etl`` prints them. Small tables are read whole; the synapse
table (337M rows at minnie65 v1412) and an edge list (``connections``) are streamed, keeping only
rows between the selected cells, and counting the rest. A table whose rows are all dropped is an
error. With ``stream`` (``cxp etl --stream`` / ``--connections-only``) the synapse export is read
by :mod:`.stream` instead: checkpointed chunks, bounded memory, results handed to the store as
Parquet (``SourceTables.streamed``). Everything then goes through :func:`etl.sources.cave.transform.canonical_tables`, so
``files`` and ``cave`` produce the same canonical tables.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ...aggregate.mapping import root_map
from ...errors import SourceError
from ...profiles import Profile, load_profile
from ...profiles.normalize import Resolved, normalize, nucleus_cell_types, resolve
from ...tables import ParquetRows, SourceTables
from ..cave.transform import CELLTYPES_TABLE, NUCLEUS_TABLE, canonical_tables
from .layout import ExportFile, inventory
from .read import check_header, columns_of, read_export, stream_export
from .stream import CHUNK_BYTES, stream_connections, work_key

__all__ = ["STREAM_DIRNAME", "find_exports", "read_files"]

#: Folder of a store holding in-progress streamed loads (never part of a snapshot).
STREAM_DIRNAME = ".files-stream"

_SMALL = ("nucleus", "cell_types", "coregistration", "functional")
_ID_FIELDS = ("id", "root_id", "nucleus_id", "pre_root_id", "post_root_id", "pre_nucleus_id",
              "post_nucleus_id")


def find_exports(directory: str | Path, profile: str | Path | Profile | None = None
                 ) -> dict[str, ExportFile]:
    """Table name -> export, for every table of ``profile`` present in ``directory``."""
    inv = inventory(directory, load_profile(profile))
    found = [e for _, e in inv.chosen.values()] + [e for e, _ in inv.unused]
    return {e.table: e for e in found}


def _ids(res: Resolved) -> list[str]:
    return [c for f, c in res.fields.items() if f in _ID_FIELDS and isinstance(c, str)]


def _stream_among(export: ExportFile, res: Resolved, profile: Profile, keep: np.ndarray, *,
                  by: str, progress: bool) -> tuple[pd.DataFrame, dict]:
    """The rows of a large export whose pre and post (root or nucleus ids, ``by``) are in ``keep``,
    normalized; with counts of rows read and dropped."""
    where = export.describe()
    pre, post = ("pre_pt_root_id", "post_pt_root_id") if by == "root" else ("pre_nucleus_id",
                                                                             "post_nucleus_id")
    kept, total = [], 0
    bar = tqdm(desc=f"{export.name()}", unit=" rows", unit_scale=True, disable=not progress)
    for batch in stream_export(export, res.source_columns(), ids=_ids(res)):
        norm = normalize(batch, res, profile=profile, where=where, row_offset=total)
        if res.role == "synapses" and "id" not in res.fields:
            norm["id"] = np.arange(total, total + len(norm), dtype=np.int64)
        mask = (np.isin(norm[pre].to_numpy(np.int64), keep)
                & np.isin(norm[post].to_numpy(np.int64), keep))
        kept.append(norm[mask])
        total += len(norm)
        bar.update(len(norm))
    bar.close()
    rows = pd.concat(kept, ignore_index=True) if kept else pd.DataFrame()
    if total == 0:
        raise SourceError(f"{where}: the {res.role} table has no rows; expected at least one "
                          "(or remove the file)", path=str(export.paths[0]))
    if len(rows) == 0:
        raise SourceError(
            f"{where}: none of its {total:,} {res.role} rows is between two of the {len(keep):,} "
            f"selected cells ({'root' if by == 'root' else 'nucleus'} ids); expected the export of "
            "the same materialization as the nucleus table (root ids change between versions) "
            "and a --neurons selection that includes its cells", path=str(export.paths[0]))
    return rows, {"rows": total, "kept": len(rows), "not_between_selected_cells": total - len(rows)}


def read_files(directory: str | Path, *, profile: str | Path | Profile | None = None,
               neurons: str = "coregistered_excitatory", datastack: str | None = None,
               materialization_version: int | None = None, synapses: bool = True,
               stream: bool = False, work_dir: str | Path | None = None,
               progress: bool = False) -> SourceTables:
    """Extract canonical tables from a folder of table exports.

    Parameters
    ----------
    directory
        Holds the exports (:mod:`.layout` lists the forms). A name ``v<N>`` sets the
        materialization version unless ``materialization_version`` is given.
    profile
        A built-in profile name or a profile file (default ``minnie65_public``).
    neurons
        Which cells become ``neurons`` (as for the ``cave`` source; ``all``: every class but
        glia). Only synapses between them are kept.
    datastack
        Recorded on the snapshot (default: the profile's, when a profile is given; else none: a
        folder does not say which datastack it is of, so it is never guessed).
    materialization_version
        The version the exports were made of (default: from a ``v<N>`` folder name).
    synapses
        Store the synapses between the selected cells (default), not only their ``connections``.
        False implies ``stream``.
    stream
        Read the synapse export (one ``.csv(.gz)`` file with a ``_header.csv`` sidecar, as the
        static release publishes it) in checkpointed chunks with bounded memory (:mod:`.stream`):
        no step holds the synapse table, the store copies the results from Parquet
        (:class:`~etl.tables.ParquetRows`), and an interrupted load resumes from its last chunk.
        A repeated synapse id is dropped (the first row in file order kept) and counted, as the held
        path does.
    work_dir
        Where a streamed load keeps its chunks and checkpoint (default: ``.files-stream`` in the
        current folder; ``cxp etl`` uses the store's, removed once the snapshot is stored).

    Returns
    -------
    SourceTables
        ``source="files"``; the report lists every file read (role, rows), not used and not
        recognized, and the rows each step left out, with the reason.

    Examples
    --------
    >>> st = read_files("exports/v1300")                           # doctest: +SKIP
    >>> st = read_files("pinky", profile="pinky.toml", neurons="all")  # doctest: +SKIP
    """
    prof = load_profile(profile)
    directory = Path(directory)
    inv = inventory(directory, prof)
    if "nucleus" not in inv.chosen:
        tables = [t for s in prof.roles["nucleus"] for t in s.tables]
        found = ", ".join(p.name for p in inv.unrecognized) or "nothing"
        raise SourceError(f"files source: {directory} has no nucleus table ({' or '.join(tables)} "
                          f"as <table>.csv(.gz), with a _header.csv sidecar, _merged.csv.gz, "
                          f".parquet or a folder of partitions; profile {prof.describe()}), which "
                          f"keys every cell; found {found}", path=str(directory))
    if materialization_version is None:
        m = re.fullmatch(r"v(\d+)", directory.resolve().name)
        materialization_version = int(m.group(1)) if m else None
    if datastack is None and profile is not None:
        datastack = prof.datastack
    raw: dict[str, pd.DataFrame] = {}
    names: dict[str, str] = {}
    files: list[dict] = []
    resolved: dict[str, tuple[ExportFile, Resolved]] = {}
    for role, (spec, export) in inv.chosen.items():  # every header and column checked first
        export = check_header(export)
        resolved[role] = export, resolve(spec, export.table, columns_of(export), profile=prof,
                                         where=export.describe())
    for role in tqdm([r for r in _SMALL if r in resolved], desc="tables", unit="table",
                     disable=not progress):
        export, res = resolved[role]
        df = read_export(export, ids=_ids(res))
        raw[res.key()] = normalize(df, res, profile=prof, where=export.describe())
        names[res.key()] = export.table
        files.append({"file": export.name(), "role": role, "table": export.table, "rows": len(df)})
    if "cell_types" not in resolved:
        ct = nucleus_cell_types(raw[NUCLEUS_TABLE])
        if ct is not None:
            raw[CELLTYPES_TABLE] = ct
            names[CELLTYPES_TABLE] = f"{names[NUCLEUS_TABLE]}.{resolved['nucleus'][1].fields['cell_class']}"
    parameters = {"path": str(directory), "profile": prof.record(),
                  "voxel_resolution_nm": list(prof.voxel_size_nm),
                  "exports": {res.role: e.describe() for e, res in resolved.values()}}
    kwargs = dict(datastack=datastack, materialization_version=materialization_version,
                  materialization_timestamp=None, neurons=neurons, names=names)
    unused = [(e, why) for e, why in inv.unused]
    streamed: dict[str, dict] = {}
    cells = (canonical_tables(raw, **kwargs, parameters=dict(parameters)).tables["neurons"]
             if "synapses" in resolved or "connections" in resolved else None)
    streamed_files = None
    stream = stream or not synapses
    if cells is not None and cells.num_rows and stream and "synapses" in resolved:
        export, res = resolved["synapses"]
        rmap = root_map(cells)
        members = cells.column("root_id").drop_null().to_numpy() if synapses else None
        work = Path(work_dir if work_dir is not None else STREAM_DIRNAME)
        key = work_key(export, rmap, synapses_of=members, keep_self=False, chunk_bytes=CHUNK_BYTES)
        run = stream_connections(export, rmap, work / key, synapses_of=members,
                                 chunk_bytes=CHUNK_BYTES, progress=progress)
        streamed_files = run
        # rows between cells, as the held path counts them: autapses and repeated ids included
        # (each then reported as left out)
        between = run.counted + run.autapses + run.duplicates_between_cells
        outside = run.rows - between
        files.append({"file": export.name(), "role": "synapses", "table": export.table,
                      "rows": run.rows, "kept": between, "not_between_selected_cells": outside})
        streamed["synapses"] = {"not_between_selected_cells": outside}
        stream_report = {"chunks": run.chunks, "resumed_chunks": run.resumed,
                         "text_bytes": run.text_bytes, "seconds": run.seconds}
        if not synapses:
            parameters["synapses"] = "not stored; connections streamed from the synapse export"
        if "connections" in resolved:
            unused.append((resolved["connections"][0],
                           f"connections are counted from {export.name()}"))
        if run.counted == 0:
            raise SourceError(
                f"{export.describe()}: none of its {run.rows:,} synapse rows is between two of the "
                f"{len(rmap.root_ids):,} selected cells (root ids); expected the export of the same "
                "materialization as the nucleus table and a --neurons selection that includes its "
                "cells", path=str(export.paths[0]))
    elif cells is not None and cells.num_rows:  # none: the store's contract says so, naming the table
        role = "synapses" if "synapses" in resolved else "connections"
        export, res = resolved[role]
        by = "root" if role == "synapses" or "pre_root_id" in res.fields else "nucleus"
        keep = (cells.column("root_id").drop_null() if by == "root"
                else cells.column("nucleus_id")).to_numpy()
        raw[res.key()], streamed[role] = _stream_among(export, res, prof, keep, by=by,
                                                       progress=progress)
        names[res.key()] = export.table
        files.append({"file": export.name(), "role": role, "table": export.table,
                      **streamed[role]})
        if role == "synapses" and "id" not in res.fields:
            parameters["synapse_ids"] = f"row numbers of {export.name()} (it has no id column)"
        if role == "synapses" and "connections" in resolved:
            unused.append((resolved["connections"][0],
                           f"connections are counted from {export.name()}"))
    out = canonical_tables(raw, **kwargs, parameters=parameters, origins={
        store: f"files {resolved[role][0].describe()}"
        for store, role in (("neurons", "nucleus"), ("functional_units", "coregistration"),
                            ("tuning", "functional"), ("synapses", "synapses"),
                            ("connections", "synapses" if "synapses" in resolved else "connections"))
        if role in resolved})
    if streamed_files is not None:
        where = f"files {resolved['synapses'][0].describe()}"
        out.streamed["connections"] = ParquetRows(streamed_files.connections)
        out.origins["connections"] = where
        if streamed_files.synapses is not None:
            out.streamed["synapses"] = ParquetRows(streamed_files.synapses)
            out.origins["synapses"] = where
        out.report["files_stream"] = stream_report
        out.report["synapses_in_connections"] = streamed_files.counted
        out.report["autapses_not_counted"] = streamed_files.autapses  # as the held path reports them
        if streamed_files.duplicates:
            out.report["synapse_duplicate_ids_dropped"] = streamed_files.duplicates
    out.source = "files"
    out.report["files"] = files
    out.report["files_not_used"] = [{"file": e.name(), "why": why} for e, why in unused]
    out.report["files_not_recognized"] = [p.name + ("/" if p.is_dir() else "")
                                          for p in inv.unrecognized]
    for role, counts in streamed.items():
        out.report[f"{role}_rows_not_between_selected_cells"] = counts["not_between_selected_cells"]
    return out
