"""A local stand-in for a CAVE deployment: the info and materialization endpoints that
``caveclient`` calls, serving a small, seeded, minnie65-shaped fixture over loopback.

It exists so that the ``cave`` source can be proven, benchmarked and demonstrated offline with
the *unmodified* client. Every table's columns are derived from the producers' schema package
(``emannotationschemas``) by the schema the real table uses (:data:`TABLE_SCHEMAS`), never shaped
to what our reader wants; the answers follow the MaterializationEngine's client API
(``materializationengine/blueprints/client/api2.py``, ``common.py``, ``query_manager.py``,
``utils.py`` in CAVEconnectome/MaterializationEngine):

- a frozen table is ``merged`` (``id`` and the flattened fields in schema order, as
  ``merge_tables`` in ``workflows/create_frozen_database.py`` writes it) or, with
  ``split_frozen=True``, ``split`` (annotation and segmentation tables apart: ``id, created,
  superceded_id, valid``, the annotation fields, then ``*_supervoxel_id, *_root_id``);
  a reference table carries ``target_id`` and none of its target's columns;
- only ``valid`` rows are returned; at most ``row_cap`` (``QUERY_LIMIT_SIZE``) rows, or the
  request's smaller ``limit``; a result of exactly that many rows carries the warning
  ``201 - "Limited query to N rows``; a table's ``notice_text`` is another ``Warning`` (each
  message its own header line);
- Arrow IPC bodies (``Content-Type: data.arrow``), compressed inside with ZSTD (or LZ4) when
  the client's ``Accept-Encoding`` names it (caveclient sends ``zstd``), the whole body gzipped
  when it names ``gzip``; headers ``dataframe_resolution`` and ``column_names``; positions
  are integers in the table's voxels, scaled to ``desired_resolution``;
- the join query caveclient sends for ``merge_reference=True`` (suffix ``_ref`` on the
  columns both tables have, see :func:`merge_reference`), and the table metadata
  (``schema_type``, ``reference_table``, voxel resolution) at the endpoint
  ``get_table_metadata`` calls.

It also reports a materialization server version of 5.13, checks a bearer token, and can inject
faults (HTTP errors, stalls). The data are **synthetic**.

Run one by hand (offline demo)::

    python -m connectome_priors.testing.cave_standin --port 8765 --cells 400
    cxp etl --source cave --server http://127.0.0.1:8765 --datastack minnie65_public --version latest

Examples
--------
>>> with StandinCave(minnie_fixture(n_cells=50, seed=0)) as cave:   # doctest: +SKIP
...     print(cave.url)
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd
import pyarrow as pa

from ..etl.sources.cave.transform import CELLTYPES_TABLE, COREG_TABLES, NUCLEUS_TABLE, SYNAPSE_TABLE

__all__ = ["Fault", "StandinCave", "minnie_fixture", "main"]

DATASTACK = "minnie65_public"
ALIGNED_VOLUME = "minnie65_phase3"
MAT_SERVER_VERSION = "5.13.0"
DEFAULT_ROW_CAP = 200_000
VOXEL = [4.0, 4.0, 40.0]
_EXC = [("23P", 100_000, 130_000), ("4P", 130_000, 160_000), ("5P-IT", 160_000, 190_000),
        ("5P-ET", 160_000, 190_000), ("6P-IT", 190_000, 240_000)]
_INH = ["BC", "MC", "BPC", "NGC"]


# -- table shapes, from the producers' schema package ------------------------------------------

#: The real tables' schema (``emannotationschemas`` name) and reference target. The functional
#: tables' schemas (``digital_twin_properties``, ``func_properties_bcm``) and their target are
#: assumed from the table names: the package holds them, the MICrONS docs do not name them.
TABLE_SCHEMAS: dict[str, tuple[str, str | None]] = {
    NUCLEUS_TABLE: ("nucleus_detection", None),
    CELLTYPES_TABLE: ("cell_type_reference", NUCLEUS_TABLE),
    COREG_TABLES[0]: ("func_unit_ext_coreg", NUCLEUS_TABLE),
    COREG_TABLES[1]: ("func_unit_ext_coreg", NUCLEUS_TABLE),
    "digital_twin_properties_bcm_coreg_v4": ("digital_twin_properties", NUCLEUS_TABLE),
    "functional_properties_v3_bcm": ("func_properties_bcm", NUCLEUS_TABLE),
    SYNAPSE_TABLE: ("synapse", None),
}
#: Schema of the bound-point co-registration the stand-in can serve instead (an assumption: the
#: fields of ``func_unit_ext_coreg`` with a bound point ``pt`` in place of ``target_id``, as the
#: MICrONS docs describe co-registration matched by root id; no such schema is registered).
BOUND_COREG_SCHEMA = "func_unit_ext_coreg_bound"
#: Columns every annotation table has before its schema's fields (split frozen tables; the
#: query drops ``deleted``).
_CRUD = ("created", "superceded_id")
_CREATED = pd.Timestamp("2020-09-28 12:00:00")


def _schema(schema_type: str):
    """The marshmallow schema class of ``schema_type`` (from ``emannotationschemas``)."""
    from emannotationschemas import get_schema  # noqa: PLC0415 (only the stand-in needs it)

    if schema_type == BOUND_COREG_SCHEMA:
        import marshmallow as mm  # noqa: PLC0415
        from emannotationschemas.schemas.base import AnnotationSchema, BoundSpatialPoint  # noqa: PLC0415

        ext = get_schema("func_unit_ext_coreg")
        fields = {k: f for k, f in ext._declared_fields.items() if k not in ("target_id", "valid")}
        return type("FuncUnitExtCoregBound", (AnnotationSchema,),
                    {"pt": mm.fields.Nested(BoundSpatialPoint, required=True), **fields})
    return get_schema(schema_type)


def table_columns(schema_type: str, *, layout: str = "split") -> list[tuple[str, str, bool]]:
    """Columns a frozen table of ``schema_type`` is queried with: (name, kind, required).

    Derived from the schema package as the materialization engine builds its tables: ``id``, then
    (``split`` frozen databases, annotation and segmentation tables apart) ``created`` and
    ``superceded_id``, the annotation fields, and the segmentation fields (``*_supervoxel_id``,
    ``*_root_id``) last; ``merged`` frozen tables hold ``id`` and the flattened fields in schema
    order, without those bookkeeping columns. A bound spatial point ``pt`` gives
    ``pt_position_x/_y/_z``, ``pt_supervoxel_id`` and ``pt_root_id``; a reference annotation
    gives ``target_id`` and no column of its target.

    ``kind`` is one of ``id``, ``timestamp``, ``bool``, ``int``, ``float``, ``str``,
    ``position``, ``segment``, ``target``.
    """
    from emannotationschemas.flatten import create_flattened_schema  # noqa: PLC0415
    from emannotationschemas.schemas.base import (  # noqa: PLC0415
        PostGISField, ReferenceTableField, SegmentationField)
    import marshmallow as mm  # noqa: PLC0415

    ann: list[tuple[str, str, bool]] = []
    seg: list[tuple[str, str, bool]] = []
    for key, f in create_flattened_schema(_schema(schema_type))._declared_fields.items():
        req = bool(f.required)
        if isinstance(f, PostGISField):
            ann += [(f"{key}_{a}", "position", req) for a in "xyz"]
        elif isinstance(f, SegmentationField):
            (seg if layout == "split" else ann).append((key, "segment", False))
        elif isinstance(f, ReferenceTableField):
            ann.append((key, "target", True))
        elif isinstance(f, mm.fields.Boolean):
            ann.append((key, "bool", req))
        elif isinstance(f, mm.fields.Integer):
            ann.append((key, "int", req))
        elif isinstance(f, mm.fields.Float):
            ann.append((key, "float", req))
        else:
            ann.append((key, "str", req))
    head = [("id", "id", True)]
    if layout == "split":
        head += [("created", "timestamp", True), ("superceded_id", "int", False)]
    elif layout != "merged":
        raise ValueError(f"layout must be 'split' or 'merged', not {layout!r}")
    return head + ann + seg


def schema_frame(schema_type: str, values: dict, *, table: str,
                 reference_table: str | None = None) -> pd.DataFrame:
    """A table of ``schema_type`` in the merged frozen layout (as the static ``_merged``
    exports hold it), from the given column values.

    ``values`` maps column names (a position as ``<point>_position``, an ``(n, 3)`` array) to
    arrays; ``id`` defaults to ``1..n``, ``created`` and ``valid`` to constants,
    ``superceded_id`` and optional fields to nulls, root and supervoxel ids to 0. The schema's
    required fields must all be given, and nothing the schema lacks.
    ``attrs`` records ``schema_type`` and ``reference_table`` (served as table metadata).
    """
    cols = table_columns(schema_type, layout="split")
    values = dict(values)
    for key in [k for k in values if k.endswith("_position")]:
        arr = np.asarray(values.pop(key))
        for i, a in enumerate("xyz"):
            values[f"{key}_{a}"] = arr[:, i]
    n = len(next(iter(values.values())))
    names = {c for c, _, _ in cols}
    extra = sorted(set(values) - names)
    if extra:
        raise ValueError(f"schema {schema_type!r} ({table}) has no column(s) {extra}; "
                         f"its columns: {[c for c, _, _ in cols]}")
    out: dict[str, object] = {}
    for name, kind, required in cols:
        if name in values:
            out[name] = np.asarray(values[name])
        elif name == "id":
            out[name] = np.arange(1, n + 1, dtype=np.int64)
        elif name == "created":
            out[name] = np.full(n, _CREATED)
        elif name == "valid":
            out[name] = np.ones(n, dtype=bool)
        elif kind == "segment":
            out[name] = np.zeros(n, dtype=np.int64)
        elif required:
            raise ValueError(f"schema {schema_type!r} ({table}) requires column {name!r}")
        elif kind == "str":
            out[name] = np.full(n, None, dtype=object)
        else:
            out[name] = np.full(n, np.nan)
    df = pd.DataFrame(out)
    df.attrs.update(schema_type=schema_type, reference_table=reference_table, table=table)
    return merged_layout(df)


def merged_layout(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` as a merged frozen database holds it: no ``created`` / ``superceded_id``, columns
    in the flattened schema's order (``attrs["schema_type"]`` names the schema)."""
    schema = df.attrs.get("schema_type")
    if schema is None:
        return df
    order = [c for c, _, _ in table_columns(schema, layout="merged")]
    out = df[[c for c in order if c in df.columns]]
    out.attrs.update(df.attrs)
    return out


def split_layout(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` as a query of a split frozen database returns it: ``id, created, superceded_id``,
    the annotation columns, the segmentation columns last (``deleted`` is dropped by the query)."""
    schema = df.attrs.get("schema_type")
    if schema is None:
        return df
    out = df.copy()
    if "created" not in out.columns:
        out["created"] = _CREATED
    if "superceded_id" not in out.columns:
        out["superceded_id"] = np.nan
    order = [c for c, _, _ in table_columns(schema, layout="split")]
    out = out[[c for c in order if c in out.columns]]
    out.attrs.update(df.attrs)
    return out


def merge_reference(df: pd.DataFrame, target: pd.DataFrame, *, suffix: str = "_ref") -> pd.DataFrame:
    """What a join query (caveclient's ``merge_reference=True``) returns for reference table
    ``df`` and its ``target``: valid rows of both, inner-joined on ``target_id`` = ``id``; a column
    both tables have is named with the table's suffix (``""`` for ``df``, ``suffix`` for the
    target: ``id_ref``, ``valid_ref``, ``created_ref``); ``deleted`` and ``superceded_id`` (with
    their suffixes) are dropped."""
    left = df[df["valid"].astype(bool)] if "valid" in df else df
    right = target[target["valid"].astype(bool)] if "valid" in target else target
    dup = set(left.columns) & set(right.columns)
    right = right.rename(columns={c: c + suffix for c in dup})
    out = left.merge(right, left_on="target_id", right_on="id" + suffix, how="inner", sort=False)
    crud = [c for c in out.columns if c in ("deleted", "superceded_id", "deleted" + suffix,
                                            "superceded_id" + suffix)]
    return out.drop(columns=crud)


def _pipeline_unit_ids(session, scan_idx, field_, order) -> np.ndarray:
    """Unit ids as the MICrONS pipeline numbers them: through each scan's fields in order, every
    field holding ``per_field`` ROIs (masks 1..per_field), so ``unit_id = (field - 1) * per_field +
    mask_id``. ``order`` (distinct numbers) decides which mask each co-registered unit gets."""
    keys = pd.DataFrame({"s": session, "c": scan_idx, "f": field_, "o": order})
    mask = keys.groupby(["s", "c", "f"])["o"].rank(method="first").to_numpy(np.int64)
    per_field = int(mask.max()) + 5 if len(mask) else 1  # a few ROIs without a cell per field
    return (np.asarray(field_, dtype=np.int64) - 1) * per_field + mask


# -- fixture -----------------------------------------------------------------------------------

def minnie_fixture(*, n_cells: int = 300, n_synapses: int = 6000, seed: int = 0,
                   versions: tuple[int, ...] = (1, 2), changed_fraction: float = 0.3,
                   coreg_fraction: float = 0.6,
                   coregistration: str = "reference") -> dict[int, dict[str, pd.DataFrame]]:
    """A seeded, minnie65-shaped set of CAVE tables per materialization version (synthetic).

    Every table's columns come from its schema (:data:`TABLE_SCHEMAS`, :func:`schema_frame`):
    the cell types and co-registration are reference tables (``target_id`` -> nucleus id, no
    root id or position of their own), as a real server answers them.

    Cells: nuclei with voxel positions in the minnie65 volume, AIBS metamodel cell types
    (excitatory by depth, inhibitory, non-neuronal), two nuclei with root id 0 and one root id
    carrying two nuclei (a merge). Co-registration rows (session, scan_idx, field, unit_id, score,
    residual) for ``coreg_fraction`` of the neurons, digital-twin tuning in degrees and the same
    tuning in the older radians/clockwise table, and ``n_synapses`` synapses of which most join
    co-registered excitatory cells. Every later version changes the root ids of
    ``changed_fraction`` of the cells (synapses follow); nucleus ids never change. Rows are stored
    in shuffled order, as a database returns them.

    Parameters
    ----------
    coregistration
        ``reference`` (schema ``func_unit_ext_coreg``, as MICrONS serves it) or ``bound_point``
        (:data:`BOUND_COREG_SCHEMA`: the soma's bound point instead of ``target_id``, its root id
        that of the nucleus in the same version).

    Returns
    -------
    dict
        version -> {CAVE table name -> DataFrame, split positions in voxels}.
    """
    if coregistration not in ("reference", "bound_point"):
        raise ValueError(f"coregistration must be 'reference' or 'bound_point', not {coregistration!r}")
    rng = np.random.default_rng(seed)
    n = n_cells
    nucleus_id = 100_000 + np.sort(rng.choice(np.arange(1, 50 * n + 10), n, replace=False))
    roots = 864691135_000_000_000 + (1 + rng.choice(10**9, n, replace=False))
    roots[0] = roots[1] = 0  # nuclei without a segment
    roots[3] = roots[2]       # a merge: one root id, two nuclei
    kinds = rng.choice(3, n, p=[0.75, 0.17, 0.08])  # excitatory, inhibitory, non-neuronal
    cell_type = np.empty(n, dtype=object)
    cls = np.empty(n, dtype=object)
    y = rng.uniform(90_000, 250_000, n)
    for i in range(n):
        if kinds[i] == 0:
            label = _EXC[rng.integers(len(_EXC))]
            cell_type[i], cls[i] = label[0], "excitatory_neuron"
            y[i] = rng.uniform(label[1], label[2])
        elif kinds[i] == 1:
            cell_type[i], cls[i] = _INH[rng.integers(len(_INH))], "inhibitory_neuron"
        else:
            cell_type[i], cls[i] = "astrocyte", "nonneuron"
    pos = np.column_stack([rng.uniform(150_000, 250_000, n), y, rng.uniform(15_000, 27_000, n)])
    pos = np.round(pos).astype(np.int64)  # the server casts positions to integers
    neuron = kinds < 2
    coreg_idx = np.flatnonzero(neuron & (rng.random(n) < coreg_fraction))
    m = len(coreg_idx)
    session = rng.choice([4, 5, 6], m)
    scan_idx = rng.choice([2, 7], m)
    field_ = rng.integers(1, 6, m)
    unit_id = _pipeline_unit_ids(session, scan_idx, field_, rng.permutation(np.arange(1, 20 * m + 1))[:m])
    auto_idx = np.flatnonzero(neuron & ~np.isin(np.arange(n), coreg_idx) & (rng.random(n) < 0.3))
    pref_ori = rng.uniform(0, 180, m)
    pref_dir = np.mod(pref_ori + 180 * rng.integers(0, 2, m), 360)
    gosi, gdsi = rng.uniform(0, 1, m), rng.uniform(0, 1, m)
    cc = rng.uniform(0.1, 0.9, (m, 3))
    readout = rng.uniform(-1, 1, (m, 2))

    # synapses: mostly among co-registered excitatory cells, some to other / unknown segments
    core = coreg_idx[cls[coreg_idx] == "excitatory_neuron"]
    core = core[roots[core] != 0]
    any_cell = np.arange(n)
    n_core = int(n_synapses * 0.8)
    pre_i = np.concatenate([rng.choice(core, n_core), rng.choice(any_cell, n_synapses - n_core)])
    post_i = np.concatenate([rng.choice(core, n_core), rng.choice(any_cell, n_synapses - n_core)])
    orphan = rng.random(n_synapses) < 0.05  # partner is a fragment without a nucleus
    syn_id = 1 + rng.permutation(np.arange(3 * n_synapses))[:n_synapses]
    size = rng.integers(40, 5000, n_synapses).astype(np.float64)
    ctr = pos[post_i] + rng.normal(0, [500, 500, 20], (n_synapses, 3))
    ctr = np.clip(np.round(ctr), 0, None).astype(np.int64)
    orphan_root = 864691136_000_000_000 + rng.integers(1, 10**9, n_synapses)
    sv = 88_000_000_000_000_000 + np.arange(n)
    ct_rows = np.flatnonzero(cell_type != None)  # noqa: E711

    def frame(table: str, values: dict, *, schema: str | None = None) -> pd.DataFrame:
        schema_type, target = TABLE_SCHEMAS[table]
        if schema is not None:
            schema_type, target = schema, None
        df = schema_frame(schema_type, values, table=table, reference_table=target)
        shuffled = df.sample(frac=1, random_state=int(rng.integers(2**31))).reset_index(drop=True)
        shuffled.attrs.update(df.attrs)
        return shuffled

    def coreg_frame(table: str, idx: np.ndarray, values: dict, cur: np.ndarray) -> pd.DataFrame:
        if coregistration == "reference":
            return frame(table, {"target_id": nucleus_id[idx], **values})
        return frame(table, {"pt_position": pos[idx], "pt_supervoxel_id": sv[idx],
                             "pt_root_id": cur[idx], **values}, schema=BOUND_COREG_SCHEMA)

    out: dict[int, dict[str, pd.DataFrame]] = {}
    cur = roots.copy()
    for k, version in enumerate(sorted(versions)):
        if k > 0:
            change = rng.random(n) < changed_fraction
            change &= cur != 0
            change[2] = change[3] = False  # keep the merge as it is
            cur = cur.copy()
            cur[change] = 864691137_000_000_000 + 1 + rng.choice(10**9, int(change.sum()),
                                                                 replace=False)
        nuc = frame(NUCLEUS_TABLE, {
            "id": nucleus_id, "volume": np.round(rng.uniform(100, 400, n), 3), "pt_position": pos,
            "pt_supervoxel_id": sv, "pt_root_id": cur})
        ct = frame(CELLTYPES_TABLE, {
            "target_id": nucleus_id[ct_rows], "classification_system": cls[ct_rows].astype(str),
            "cell_type": cell_type[ct_rows].astype(str)})
        coreg = coreg_frame(COREG_TABLES[0], coreg_idx, {
            "session": session, "scan_idx": scan_idx, "field": field_, "unit_id": unit_id,
            "residual": np.round(rng.uniform(0, 8, m), 3), "score": np.round(rng.uniform(0, 20, m), 3)},
            cur)
        ma = len(auto_idx)
        auto = coreg_frame(COREG_TABLES[1], auto_idx, {
            "session": np.full(ma, 4), "scan_idx": np.full(ma, 7), "field": np.full(ma, 3),
            "unit_id": 10**6 + np.arange(ma), "residual": np.full(ma, 2.5), "score": np.full(ma, 1.5)},
            cur)
        tuning = {"target_id": nucleus_id[coreg_idx], "session": session, "scan_idx": scan_idx,
                  "unit_id": unit_id, "gOSI": gosi, "gDSI": gdsi, "cc_abs": cc[:, 0]}
        twin = frame("digital_twin_properties_bcm_coreg_v4", {
            **tuning, "pref_ori": pref_ori, "pref_dir": pref_dir, "cc_max": cc[:, 1],
            "cc_norm": cc[:, 2], "OSI": gosi, "DSI": gdsi, "readout_loc_x": readout[:, 0],
            "readout_loc_y": readout[:, 1]})
        older = frame("functional_properties_v3_bcm", {  # radians, measured clockwise
            **tuning, "pref_ori": np.mod(-np.radians(pref_ori), np.pi),
            "pref_dir": np.mod(-np.radians(pref_dir), 2 * np.pi)})
        pre = np.where(orphan, orphan_root, cur[pre_i])
        post = cur[post_i]
        keep = (pre != 0) & (post != 0)
        pre_pos = np.where(orphan[keep, None], ctr[keep], pos[pre_i[keep]])
        syn = frame(SYNAPSE_TABLE, {
            "id": syn_id[keep], "pre_pt_position": pre_pos, "pre_pt_root_id": pre[keep],
            "post_pt_position": pos[post_i[keep]], "post_pt_root_id": post[keep],
            "ctr_pt_position": ctr[keep], "size": size[keep]})
        out[version] = {NUCLEUS_TABLE: nuc, CELLTYPES_TABLE: ct, COREG_TABLES[0]: coreg,
                        COREG_TABLES[1]: auto, "digital_twin_properties_bcm_coreg_v4": twin,
                        "functional_properties_v3_bcm": older, SYNAPSE_TABLE: syn}
    return out


# -- faults ------------------------------------------------------------------------------------

@dataclass
class Fault:
    """A misbehaviour to inject into requests whose path contains ``match``.

    ``kind`` is ``"status"`` (answer ``status`` with a JSON error body) or ``"stall"`` (wait
    ``seconds`` before answering normally, or until the server stops). It fires on matching
    requests number ``after + 1`` to ``after + times`` (``times=None``: every one after ``after``).
    """

    kind: str
    match: str = "/query"
    status: int = 503
    times: int | None = 1
    after: int = 0
    seconds: float = 3600.0
    seen: int = 0
    fired: int = 0


@dataclass
class _State:
    versions: dict[int, dict[str, pd.DataFrame]]
    row_cap: int = DEFAULT_ROW_CAP
    token: str | None = None
    faults: list[Fault] = field(default_factory=list)
    log: list[tuple[str, str, int]] = field(default_factory=list)
    query_count: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    url: str = ""
    split_frozen: bool = False
    notices: dict[str, str] = field(default_factory=dict)
    datastack: str = DATASTACK
    codecs: list[str | None] = field(default_factory=list)
    _served: dict = field(default_factory=dict)

    def served(self, df: pd.DataFrame) -> pd.DataFrame:
        """``df`` in the frozen layout of this server, valid rows only (computed once)."""
        key = id(df)
        with self.lock:
            if key not in self._served:
                out = split_layout(df) if self.split_frozen else merged_layout(df)
                if "valid" in out.columns:
                    out = out[out["valid"].astype(bool).to_numpy()]
                self._served[key] = (df, out.reset_index(drop=True))
            return self._served[key][1]


class StandinCave:
    """A stand-in CAVE server on ``127.0.0.1`` (a free port unless given), in a daemon thread.

    Parameters
    ----------
    versions
        version -> {table -> DataFrame}, e.g. from :func:`minnie_fixture`.
    row_cap
        Rows one query returns at most; larger results are cut silently (warning header only).
    token
        If set, every request must carry ``Authorization: Bearer <token>``; otherwise 401.
    split_frozen
        Serve frozen tables split (``id, created, superceded_id``, annotation columns, then
        segmentation columns) instead of merged (``id`` and the schema's columns in order);
        the version metadata's ``is_merged`` says which.
    notices
        Table -> owner notice, sent as an extra ``Warning`` with every query of that table.
    datastack
        The datastack it serves (default ``minnie65_public``); another name is 404.
    """

    def __init__(self, versions: dict[int, dict[str, pd.DataFrame]], *, row_cap: int = DEFAULT_ROW_CAP,
                 token: str | None = None, port: int = 0, split_frozen: bool = False,
                 notices: dict[str, str] | None = None, datastack: str = DATASTACK) -> None:
        self.state = _State(versions=versions, row_cap=row_cap, token=token,
                            split_frozen=split_frozen, notices=dict(notices or {}),
                            datastack=datastack)
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:43121``."""
        return self.state.url

    @property
    def row_cap(self) -> int:
        """The query row cap."""
        return self.state.row_cap

    @row_cap.setter
    def row_cap(self, value: int) -> None:
        self.state.row_cap = int(value)

    @property
    def query_count(self) -> int:
        """Number of table queries answered (or faulted) so far."""
        return self.state.query_count

    @property
    def log(self) -> list[tuple[str, str, int]]:
        """(method, path, status) of every request, in order."""
        return self.state.log

    def add_fault(self, fault: Fault) -> Fault:
        """Inject ``fault`` into later requests; returns it (its ``fired`` counts firings)."""
        with self.state.lock:
            self.state.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Remove every fault."""
        with self.state.lock:
            self.state.faults.clear()

    def start(self) -> StandinCave:
        """Start serving; returns self."""
        state = self.state

        class Handler(_Handler):
            pass

        Handler.state = state
        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        self._server.daemon_threads = True
        state.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="cave-standin")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (stalled requests are released)."""
        self.state.stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> StandinCave:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


_TABLE_Q = re.compile(r"^/materialize/api/v[23]/datastack/([^/]+)/version/(\d+)/table/([^/]+)/(query|metadata|count)$")
_JOIN_Q = re.compile(r"^/materialize/api/v[23]/datastack/([^/]+)/version/(\d+)/query$")
_VERSION = re.compile(r"^/materialize/api/v[23]/datastack/([^/]+)/version/(\d+)$")
_VERSIONS = re.compile(r"^/materialize/api/v[23]/datastack/([^/]+)/versions$")
_TABLES = re.compile(r"^/materialize/api/v[23]/datastack/([^/]+)/version/(\d+)/tables$")
_DS_INFO = re.compile(r"^/info/api/v2/datastack/full/([^/]+)$")


def _timestamp(version: int) -> datetime:
    return datetime(2024, 1, 1, tzinfo=timezone.utc) + timedelta(days=7 * version, microseconds=1)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    state: _State

    def log_message(self, format, *args) -> None:  # noqa: A002 (stdlib signature)
        pass  # quiet: tests read state.log instead

    # -- plumbing --
    def _send(self, status: int, body: bytes, ctype: str = "application/json",
              headers: list[tuple[str, str]] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers or ():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        self.state.log.append((self.command, urlparse(self.path).path, status))

    def _json(self, obj, status: int = 200) -> None:
        self._send(status, json.dumps(obj).encode())

    def _error(self, status: int, message: str) -> None:
        self._json({"error": "error", "message": message}, status)

    def _fault(self, path: str) -> bool:
        """Apply a matching fault; True when the request was answered by it."""
        chosen = None
        with self.state.lock:
            for f in self.state.faults:
                if f.match in path:
                    f.seen += 1
                    if f.seen > f.after and (f.times is None or f.fired < f.times):
                        f.fired += 1
                        chosen = f
                        break
        if chosen is None:
            return False
        if chosen.kind == "stall":
            self.state.stop.wait(chosen.seconds)
            return False
        self._error(chosen.status, f"injected fault: HTTP {chosen.status}")
        return True

    def _authorized(self) -> bool:
        token = self.state.token
        if token is None:
            return True
        if self.headers.get("Authorization", "") == f"Bearer {token}":
            return True
        self._json({"error": "invalid_token", "message": "the token is missing, invalid or expired"},
                   401)
        return False

    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        self._handle()

    def do_POST(self) -> None:  # noqa: N802
        self._handle()

    def _handle(self) -> None:
        url = urlparse(self.path)
        path = url.path.rstrip("/")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            if path.endswith("/query"):
                with self.state.lock:
                    self.state.query_count += 1
            if self._fault(path) or not self._authorized():
                return
            self._route(path, parse_qs(url.query), body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _route(self, path: str, query: dict, body: bytes) -> None:
        st = self.state
        if path == "/info/version":
            return self._json("4.3.1")
        if path == "/materialize/version":
            return self._json(MAT_SERVER_VERSION)
        if path == "/materialize/api/versions":
            return self._json([2, 3])
        if m := _DS_INFO.match(path):
            if m[1] != st.datastack:
                return self._error(404, f"datastack {m[1]} not found")
            return self._json({
                "aligned_volume": {"name": ALIGNED_VOLUME, "id": 1, "description": "stand-in",
                                   "image_source": "precomputed://stand-in/em"},
                "datastack": st.datastack, "local_server": st.url, "synapse_table": SYNAPSE_TABLE,
                "soma_table": NUCLEUS_TABLE, "segmentation_source": "graphene://stand-in/seg",
                "viewer_resolution_x": VOXEL[0], "viewer_resolution_y": VOXEL[1],
                "viewer_resolution_z": VOXEL[2], "viewer_site": st.url, "description": "stand-in"})
        if m := _VERSIONS.match(path):
            return self._json(sorted(st.versions))
        if m := _VERSION.match(path):
            v = int(m[2])
            if v not in st.versions:
                return self._error(404, f"version {v} not found")
            ts = _timestamp(v)
            return self._json({"version": v, "datastack": m[1], "valid": True, "status": "AVAILABLE",
                               "time_stamp": ts.strftime("%Y-%m-%dT%H:%M:%S.%f"),
                               "expires_on": (ts + timedelta(days=365)).strftime("%Y-%m-%dT%H:%M:%S.%f"),
                               "is_merged": not st.split_frozen, "parent_version": None, "id": v})
        if m := _TABLES.match(path):
            return self._json(sorted(st.versions.get(int(m[2]), {})))
        if m := _TABLE_Q.match(path):
            v, table, what = int(m[2]), m[3], m[4]
            if v not in st.versions:
                return self._error(404, f"version {v} not found")
            if table not in st.versions[v]:
                return self._error(404, f"table {table} not found in version {v}")
            df = st.versions[v][table]
            if what == "metadata":
                return self._json(self._metadata(table, df, v))
            if what == "count":
                return self._json(int(len(st.served(df))))
            return self._query(v, [table], json.loads(body or b"{}"), query)
        if m := _JOIN_Q.match(path):
            v = int(m[2])
            if v not in st.versions:
                return self._error(404, f"version {v} not found")
            data = json.loads(body or b"{}")
            tables = [t[0] for t in data.get("tables", [])]
            missing = [t for t in tables if t not in st.versions[v]]
            if len(tables) != 2 or missing:
                return self._error(400 if not missing else 404,
                                   f"join query needs two tables of version {v}; found {tables}")
            return self._query(v, tables, data, query)
        return self._error(404, f"no such endpoint {path}")

    def _metadata(self, table: str, df: pd.DataFrame, version: int) -> dict:
        """Table metadata as the frozen-table metadata endpoint answers (analysis table +
        annotation metadata)."""
        schema, target = TABLE_SCHEMAS.get(table, (None, None))
        schema = df.attrs.get("schema_type", schema)
        target = df.attrs.get("reference_table", target) if "schema_type" in df.attrs else target
        ts = _timestamp(version).strftime("%Y-%m-%dT%H:%M:%S.%f")
        return {"id": abs(hash(table)) % 10_000, "aligned_volume": ALIGNED_VOLUME, "schema": schema,
                "table_name": table, "valid": True, "created": ts, "analysisversion_id": version,
                "schema_type": schema, "reference_table": target, "user_id": "0",
                "description": "stand-in (synthetic)", "notice_text": self.state.notices.get(table),
                "flat_segmentation_source": None, "voxel_resolution_x": VOXEL[0],
                "voxel_resolution_y": VOXEL[1], "voxel_resolution_z": VOXEL[2],
                "write_permission": "PRIVATE", "read_permission": "PUBLIC", "last_modified": ts,
                "segmentation_source": "graphene://stand-in/seg"}

    def _query(self, version: int, tables: list[str], data: dict, args: dict) -> None:
        """Answer a simple (one table) or join (two tables, ``target_id`` = ``id``) query."""
        st = self.state
        frames = {}
        ops = {"filter_in_dict": lambda c, v: np.isin(c, np.asarray(v)),
               "filter_notin_dict": lambda c, v: ~np.isin(c, np.asarray(v)),
               "filter_out_dict": lambda c, v: ~np.isin(c, np.asarray(v)),
               "filter_equal_dict": lambda c, v: c == v,
               "filter_greater_dict": lambda c, v: c > v,
               "filter_less_dict": lambda c, v: c < v,
               "filter_greater_equal_dict": lambda c, v: c >= v,
               "filter_less_equal_dict": lambda c, v: c <= v}
        for table in tables:
            df = st.served(st.versions[version][table])
            mask = np.ones(len(df), dtype=bool)
            for key, op in ops.items():
                for col, value in (data.get(key) or {}).get(table, {}).items():
                    if col not in df.columns:
                        return self._error(400, f"column {col} not in table {table}")
                    mask &= op(df[col].to_numpy(), value)
            frames[table] = df if mask.all() else df[mask]
        warnings = []
        if len(tables) == 1:
            table = tables[0]
            out = frames[table]
            names = {table: {c: c for c in out.columns}}
            cols = data.get("select_columns")
            if cols:
                missing = [c for c in cols if c not in out.columns]
                if missing:
                    return self._error(400, f"column {missing[0]} not in table {table}")
                out = out[list(cols)]
        else:
            table, ref = tables
            suffixes = data.get("suffix_map") or {table: "", ref: "_ref"}
            if suffixes.get(table, ""):
                return self._error(400, "the stand-in joins with no suffix on the first table")
            out = merge_reference(frames[table], frames[ref], suffix=suffixes.get(ref, "_ref"))
            names = {t: {c: c for c in frames[t].columns} for t in tables}
        max_limit = st.row_cap
        limit = min(int(data.get("limit") or max_limit), max_limit)
        offset = int(data.get("offset") or 0)
        out = out.iloc[offset: offset + limit]
        if len(out) == limit:
            warnings.append(f'201 - "Limited query to {limit} rows')
        for t in tables:
            if st.notices.get(t):
                warnings.append(f"Table Owner Notice on {t}: {st.notices[t]}")
        if not (args.get("arrow_format", ["False"])[0].lower() == "true"):
            warnings.append("Response is in pyarrow IPC format. If you encounter a parsing error, "
                            "please upgrade CAVEClient to >=5.9.0 with: pip install --upgrade "
                            "caveclient. To suppress this warning, pass arrow_format=True in your "
                            "query parameters.")
        res = data.get("desired_resolution") or VOXEL
        scale = np.asarray(VOXEL, dtype=np.float64) / np.asarray(res, dtype=np.float64)
        table_ = pa.Table.from_pandas(out, preserve_index=False)
        for i, axis in enumerate("xyz"):
            if scale[i] == 1.0:
                continue
            for j, col in enumerate(table_.column_names):
                if col.endswith(f"position_{axis}"):
                    values = table_.column(j).to_numpy(zero_copy_only=False).astype(np.float64)
                    table_ = table_.set_column(j, col, pa.array(values * scale[i]))
        encoding = self.headers.get("Accept-Encoding", "").lower()
        compress = args.get("ipc_compress", ["True"])[0].lower() != "false"
        codec = None
        if compress and "lz4" in encoding:
            codec = "lz4"
        elif compress and "zstd" in encoding:
            codec = "zstd"
        st.codecs.append(codec)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table_.schema,
                               options=pa.ipc.IpcWriteOptions(compression=codec)) as writer:
            writer.write_table(table_)
        body = sink.getvalue().to_pybytes()
        headers: list[tuple[str, str]] = [("Warning", w.replace("\n", " ")) for w in warnings]
        headers += [("dataframe_resolution", str(float(r))) for r in res]  # a list: one line each
        headers.append(("column_names", str(names)))
        if "gzip" in encoding:
            body = gzip.compress(body)
            headers += [("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")]
        self._send(200, body, "data.arrow", headers)


def main(argv: list[str] | None = None) -> int:
    """Serve a stand-in CAVE until interrupted (offline demos)."""
    p = argparse.ArgumentParser(prog="python -m connectome_priors.testing.cave_standin",
                                description="Serve a synthetic minnie65-shaped CAVE stand-in.")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--cells", type=int, default=400)
    p.add_argument("--synapses", type=int, default=20000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--row-cap", type=int, default=DEFAULT_ROW_CAP)
    p.add_argument("--coregistration", choices=["reference", "bound_point"], default="reference",
                   help="serve co-registration as a reference table (as MICrONS) or a bound point table")
    p.add_argument("--split-frozen", action="store_true",
                   help="serve frozen tables split (annotation + segmentation) instead of merged")
    args = p.parse_args(argv)
    fixture = minnie_fixture(n_cells=args.cells, n_synapses=args.synapses, seed=args.seed,
                             coregistration=args.coregistration)
    server = StandinCave(fixture, row_cap=args.row_cap, port=args.port,
                         split_frozen=args.split_frozen).start()
    print(f"stand-in CAVE (synthetic data) at {server.url}, datastack {DATASTACK}, versions "
          f"{sorted(server.state.versions)}; Ctrl-C stops", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
