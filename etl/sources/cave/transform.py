"""CAVE tables (as the materialization engine returns them) -> the store's canonical tables.

A pure function shared by the ``cave`` source (live queries) and the ``files`` source (static
exports of the same tables): no I/O, no network.

Table shapes
------------
The cell-type and co-registration tables reach us in one of three shapes (:data:`TableShape`):

``reference``
    A reference annotation (``emannotationschemas`` ``ReferenceAnnotation``, e.g. schemas
    ``cell_type_reference``, ``func_unit_ext_coreg``) as a materialization server returns it
    without ``merge_reference``: its own columns only (``id``, ``created``, ``superceded_id``,
    ``valid``, ``target_id`` + the schema's fields), no root id or position of the target.
    ``target_id`` is joined to ``nucleus_detection_v0.id``; root id and position come from that
    nucleus row of the same materialization version.
``merged``
    The same rows with the target's columns beside them: the static ``<table>_merged`` exports
    (``volume``, ``pt_*``) or caveclient's ``merge_reference=True``, where columns both tables
    have get the reference table's suffix (``id_ref``, ``valid_ref``, ``created_ref``; the table's
    own ``id``/``valid`` keep their names). Treated exactly as ``reference``: the target columns
    are ignored, so every shape gives the same canonical tables.
``bound_point``
    A table with its own bound spatial point and no ``target_id`` (e.g. schema
    ``microns_func_unit_coreg``): ``pt_root_id`` is matched to the root id of the nucleus table of
    the same version. Rows whose root carries several nuclei (ambiguous), and rows whose root is 0
    or carries no nucleus (unmatched), are dropped and counted in the report.

A caller that knows the shape (the live source reads ``reference_table`` from the server's table
metadata) passes it in ``shapes``; otherwise it is decided from the columns (static exports):
a ``target_id`` column means ``reference``/``merged`` (``merged`` if target columns such as
``pt_root_id`` or ``*_ref`` are present too), else a ``pt_root_id`` column means ``bound_point``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from ...aggregate import synapses_to_connections
from ...errors import SourceError
from ...tables import SourceTables

__all__ = [
    "CELLTYPES_TABLE", "CELL_TABLES", "CONNECTIONS_KEY", "COREG_TABLES", "FUNCTIONAL_TABLES", "NUCLEUS_TABLE",
    "SYNAPSE_TABLE", "NeuronSelection", "TableShape", "canonical_tables", "infer_shape", "layer_of",
    "normalize_angles",
]

NUCLEUS_TABLE = "nucleus_detection_v0"
CELLTYPES_TABLE = "aibs_metamodel_celltypes_v661"
#: Co-registration tables, in order of preference (manual first).
COREG_TABLES = ("coregistration_manual_v4", "coregistration_auto_phase3_fwd_apl_vess_combined_v2")
#: Functional-property tables, in order of preference; the value is the unit of their angles.
FUNCTIONAL_TABLES = {"digital_twin_properties_bcm_coreg_v4": "deg", "functional_properties_v3_bcm": "rad"}
SYNAPSE_TABLE = "synapses_pni_2"

#: How a cell-type or co-registration table refers to its cell (see the module docstring).
TableShape = Literal["reference", "merged", "bound_point"]
_SHAPES = ("reference", "merged", "bound_point")
#: Tables whose rows name a cell (through ``target_id`` or a bound point).
CELL_TABLES = (CELLTYPES_TABLE, *COREG_TABLES)

#: Which cells become ``neurons`` (and so whose synapses count).
NeuronSelection = Literal["coregistered_excitatory", "coregistered", "excitatory", "neurons", "all"]
_SELECTIONS = ("coregistered_excitatory", "coregistered", "excitatory", "neurons", "all")

#: minnie65 voxel size (nm) of positions given in voxels, unless ``parameters`` says otherwise.
DEFAULT_VOXEL_NM = (4.0, 4.0, 40.0)

#: Class values -> the store's cell classes (CAVE's, and the profiles' already mapped ones);
#: anything else (``unknown``) is no class.
_CLASS = {"excitatory_neuron": "excitatory", "excitatory": "excitatory",
          "inhibitory_neuron": "inhibitory", "inhibitory": "inhibitory",
          "nonneuron": "glia", "glia": "glia"}
#: Key of an edge list (``connections`` role): pre/post root ids or nucleus ids, ``n_synapses``,
#: optional ``sum_size``.
CONNECTIONS_KEY = "connections"


def layer_of(cell_type: str | None) -> str | None:
    """Cortical layer implied by an excitatory AIBS metamodel label (``23P`` -> ``L2/3``).

    Inhibitory and non-neuronal labels imply no layer (``None``).
    """
    if not isinstance(cell_type, str):
        return None
    for prefix, layer in (("23P", "L2/3"), ("4P", "L4"), ("5P", "L5"), ("6P", "L6")):
        if cell_type.startswith(prefix):
            return layer
    return None


def normalize_angles(pref_ori, pref_dir, *, unit: Literal["deg", "rad"]):
    """Preferred orientation/direction -> the store's convention (degrees, 0 = horizontal drift,
    counter-clockwise; orientation in [0, 180), direction in [0, 360)).

    ``"deg"`` (``digital_twin_properties_bcm_coreg_v4``) is already in that convention and is only
    wrapped. ``"rad"`` (``functional_properties_v3_bcm``) is in radians measured clockwise (screen
    coordinates, y pointing down), so it is converted and its sign flipped.

    Examples
    --------
    >>> normalize_angles([np.pi / 4], [np.pi / 2], unit="rad")
    (array([135.]), array([270.]))
    """
    ori = np.asarray(pref_ori, dtype=np.float64)
    drn = np.asarray(pref_dir, dtype=np.float64)
    if unit == "rad":
        ori, drn = -np.degrees(ori), -np.degrees(drn)
    elif unit != "deg":
        raise ValueError(f"unit must be 'deg' or 'rad', not {unit!r}")
    ori = np.mod(ori, 180.0)
    drn = np.mod(drn, 360.0)
    ori[ori >= 180.0] = 0.0  # np.mod(-1e-17, 180) rounds to 180.0
    drn[drn >= 360.0] = 0.0
    return ori, drn


def _need(df: pd.DataFrame, table: str, columns: list[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SourceError(f"CAVE table {table!r} lacks column(s) {missing}; expected at least "
                          f"{columns} (positions split into _x/_y/_z, in voxels); found "
                          f"{list(df.columns)}", path=table)


def _valid(df: pd.DataFrame, table: str, report: dict) -> pd.DataFrame:
    """Rows whose ``valid`` is true; the others are counted (``<table>_invalid_rows``)."""
    if "valid" in df.columns:
        keep = df["valid"].astype(bool)
        if (~keep).any():
            report[f"{table}_invalid_rows"] = int((~keep).sum())
        df = df[keep]
    return df


def _none_left(table: str, n: int, why: str) -> SourceError:
    return SourceError(f"{table}: none of its {n:,} rows is usable ({why}); expected rows naming "
                       "cells of the nucleus table of the same materialization", path=table)


def _root(values) -> pa.Array:
    arr = np.asarray(values, dtype=np.int64)
    return pa.array(arr, pa.int64(), mask=arr == 0)


def _pick(raw: Mapping[str, pd.DataFrame], names) -> tuple[str | None, pd.DataFrame | None]:
    for name in names:
        if name in raw and raw[name] is not None:
            return name, raw[name]
    return None, None


def infer_shape(df: pd.DataFrame, table: str) -> TableShape:
    """The shape of a cell-type or co-registration table, decided from its columns.

    ``target_id`` present: ``merged`` when target columns sit beside it (``pt_root_id``, or a
    column ending in ``_ref`` as caveclient's ``merge_reference=True`` names them), else
    ``reference``. No ``target_id`` but ``pt_root_id``: ``bound_point``.

    Raises
    ------
    SourceError
        Neither ``target_id`` nor ``pt_root_id`` is present.

    Examples
    --------
    >>> infer_shape(pd.DataFrame(columns=["id", "valid", "target_id", "cell_type"]), "t")
    'reference'
    """
    cols = set(df.columns)
    if "target_id" in cols:
        if "pt_root_id" in cols or any(c.endswith("_ref") for c in cols):
            return "merged"
        return "reference"
    if "pt_root_id" in cols:
        return "bound_point"
    raise SourceError(f"CAVE table {table!r} names no cell: expected a 'target_id' column (a "
                      f"reference to {NUCLEUS_TABLE}) or a bound point 'pt_root_id'; found "
                      f"{list(df.columns)}", path=table)


def _attach_nucleus(df: pd.DataFrame, table: str, shape: TableShape, nuclei: pd.DataFrame,
                    report: dict) -> pd.DataFrame:
    """``df`` with a ``nucleus_id`` column, its rows limited to those naming one valid nucleus.

    ``nuclei``: the valid nucleus rows of the same version (``id``, ``pt_root_id``), before any
    exclusion. Reference shapes join ``target_id`` to ``id``; bound points match ``pt_root_id``
    to the nuclei's root ids. Dropped rows are counted in ``report``
    (``<table>_unmatched_rows``, and ``<table>_ambiguous_rows`` for bound points).
    """
    if shape not in _SHAPES:
        raise SourceError(f"shape of CAVE table {table!r} must be one of {', '.join(_SHAPES)}; "
                          f"found {shape!r}", path=table)
    if shape == "bound_point":
        if "target_id" in df.columns:
            raise SourceError(f"CAVE table {table!r} was declared a bound point table but has a "
                              "'target_id' column; expected no reference (metadata "
                              "reference_table empty)", path=table)
        _need(df, table, ["pt_root_id"])
        roots = nuclei.loc[nuclei["pt_root_id"].to_numpy() != 0, ["id", "pt_root_id"]]
        count = roots.groupby("pt_root_id")["id"].agg(["size", "min"])
        root = df["pt_root_id"].to_numpy(np.int64)
        size = count["size"].reindex(root).fillna(0).to_numpy(np.int64)
        ambiguous = size > 1
        unmatched = size == 0
        report[f"{table}_ambiguous_rows"] = int(ambiguous.sum())
        report[f"{table}_unmatched_rows"] = int(unmatched.sum())
        keep = size == 1
        out = df[keep].copy()
        out["nucleus_id"] = count["min"].reindex(root[keep]).to_numpy(np.int64)
        return out
    _need(df, table, ["target_id"])
    known = np.isin(df["target_id"].to_numpy(np.int64), nuclei["id"].to_numpy(np.int64))
    report[f"{table}_unmatched_rows"] = int((~known).sum())
    out = df[known].copy()
    out["nucleus_id"] = out["target_id"].to_numpy(np.int64)
    return out


def canonical_tables(raw: Mapping[str, pd.DataFrame], *, datastack: str | None,
                     materialization_version: int | None, materialization_timestamp: str | None,
                     neurons: NeuronSelection = "coregistered_excitatory",
                     origins: Mapping[str, str] | None = None,
                     parameters: dict | None = None,
                     shapes: Mapping[str, TableShape] | None = None,
                     names: Mapping[str, str] | None = None) -> SourceTables:
    """Turn CAVE tables into the store's canonical tables, keyed on nucleus id.

    Parameters
    ----------
    raw
        CAVE table name -> DataFrame with the columns CAVE returns (``split_positions=True``,
        positions in **voxels**). Used columns:

        ``nucleus_detection_v0`` (required)
            ``id`` (nucleus id), ``pt_root_id``, ``pt_position_x/_y/_z``; optional ``valid``.
        ``aibs_metamodel_celltypes_v661``
            ``target_id`` (nucleus id; or ``pt_root_id`` for a bound point table),
            ``classification_system`` (``excitatory_neuron``, ``inhibitory_neuron``, ...),
            ``cell_type`` (``23P``, ``BC``, ...); optional ``id``, ``valid``.
        ``coregistration_manual_v4`` (or ``coregistration_auto_phase3_fwd_apl_vess_combined_v2``)
            ``target_id`` (or ``pt_root_id`` for a bound point table), ``session``,
            ``scan_idx``, ``field``, ``unit_id``; optional ``score``, ``residual``, ``valid``.
        ``digital_twin_properties_bcm_coreg_v4`` (degrees) or ``functional_properties_v3_bcm``
        (radians, clockwise)
            ``session``, ``scan_idx``, ``unit_id``, ``pref_ori``, ``pref_dir``, and ``gOSI``/``gDSI``
            (or ``OSI``/``DSI``).
        ``synapses_pni_2``
            ``id``, ``pre_pt_root_id``, ``post_pt_root_id``; optional ``size``,
            ``ctr_pt_position_x/_y/_z``.
        ``connections`` (an edge list; used when there is no synapse table)
            ``pre_pt_root_id``/``post_pt_root_id`` or ``pre_nucleus_id``/``post_nucleus_id``,
            ``n_synapses``; optional ``sum_size``.

        Tables other than the nucleus table may be absent; their store tables are then absent.
        Any further columns (target columns of a merged shape, ``created``, ...) are ignored.
    datastack, materialization_version, materialization_timestamp
        Provenance recorded on the snapshot (timestamp ISO-8601 UTC).
    neurons
        Which cells become ``neurons``: ``coregistered_excitatory`` (default: co-registered cells
        of class excitatory), ``coregistered``, ``excitatory``, ``neurons`` (excitatory or
        inhibitory), or ``all`` (every nucleus that passes the identity checks, but glia).
    origins
        Store table -> description of where it came from (error messages); defaults name the CAVE
        tables.
    parameters
        Recorded on the snapshot; ``voxel_resolution_nm`` (default ``[4, 4, 40]``) converts
        voxels to nm.
    shapes
        CAVE table -> :data:`TableShape` of the cell-type and co-registration tables, where the
        caller knows it (the live source: from the server's table metadata). Tables not named
        here get :func:`infer_shape` (from the columns).
    names
        Key of ``raw`` -> the name of the table it really is (a profile's table read under the
        minnie65 key), for the report, origins and messages.

    Returns
    -------
    SourceTables
        ``source="cave"`` (callers such as the ``files`` source override it). ``report`` counts
        the nuclei excluded for root id 0, for sharing a root id with another nucleus, the
        duplicates dropped, the shape of each cell table (``shapes``), and per cell table the
        rows naming no valid nucleus (``<table>_unmatched_rows``) and, for bound points, the rows
        whose root carries several nuclei (``<table>_ambiguous_rows``).

    Notes
    -----
    Identity: a nucleus whose ``pt_root_id`` is 0 (no segment), or whose root id carries several
    nuclei (a merge error), is excluded and counted. Cells are keyed on the nucleus id, so a new
    materialization whose root ids changed maps onto the same cells without duplicates.

    Examples
    --------
    >>> st = canonical_tables(raw, datastack="minnie65_public", materialization_version=1300,
    ...                       materialization_timestamp=None)   # doctest: +SKIP
    """
    if neurons not in _SELECTIONS:
        raise SourceError(f"neuron selection must be one of {', '.join(_SELECTIONS)}; "
                          f"found {neurons!r}")
    parameters = dict(parameters or {})
    voxel = tuple(float(v) for v in parameters.get("voxel_resolution_nm", DEFAULT_VOXEL_NM))
    parameters.setdefault("voxel_resolution_nm", list(voxel))
    parameters.setdefault("neurons", neurons)
    report: dict = {}
    tables: dict[str, pa.Table] = {}
    used: dict[str, str] = {}
    names = dict(names or {})

    def named(key: str) -> str:
        return names.get(key, key)

    if NUCLEUS_TABLE not in raw:
        raise SourceError(f"CAVE tables lack {NUCLEUS_TABLE!r}, which keys every cell; "
                          f"found {sorted(raw)}", path=NUCLEUS_TABLE)
    nuc = raw[NUCLEUS_TABLE]
    _need(nuc, NUCLEUS_TABLE, ["id", "pt_root_id", "pt_position_x", "pt_position_y", "pt_position_z"])
    nuc = _valid(nuc, named(NUCLEUS_TABLE), report)
    dup = nuc.duplicated("id")
    if dup.any():
        report["nucleus_duplicate_ids_dropped"] = int(dup.sum())
    nuc = nuc[~dup].sort_values("id", kind="stable")
    valid_nuclei = nuc[["id", "pt_root_id"]]
    used["neurons"] = named(NUCLEUS_TABLE)
    shape_of: dict[str, TableShape] = {}

    def shape(name: str, df: pd.DataFrame) -> TableShape:
        shape_of[named(name)] = (shapes or {}).get(name) or infer_shape(df, named(name))
        return shape_of[named(name)]
    zero = nuc["pt_root_id"].to_numpy() == 0
    report["nuclei_total"] = int(len(nuc))
    report["excluded_root_id_zero"] = int(zero.sum())
    nuc = nuc[~zero]
    per_root = nuc.groupby("pt_root_id")["id"].transform("size")
    multi = per_root.to_numpy() > 1
    report["excluded_multi_nucleus_roots"] = int(nuc.loc[multi, "pt_root_id"].nunique())
    report["excluded_multi_nucleus_nuclei"] = int(multi.sum())
    nuc = nuc[~multi]

    cells = nuc[["id", "pt_root_id", "pt_position_x", "pt_position_y", "pt_position_z"]].rename(
        columns={"id": "nucleus_id", "pt_root_id": "root_id", "pt_position_x": "x_vox",
                 "pt_position_y": "y_vox", "pt_position_z": "z_vox"})
    ct = raw.get(CELLTYPES_TABLE)
    if ct is not None:
        _need(ct, named(CELLTYPES_TABLE), ["classification_system", "cell_type"])
        n_rows = len(ct)
        ct = _attach_nucleus(_valid(ct, named(CELLTYPES_TABLE), report), named(CELLTYPES_TABLE),
                             shape(CELLTYPES_TABLE, ct), valid_nuclei, report)
        if n_rows and len(valid_nuclei) and ct.empty:
            raise _none_left(named(CELLTYPES_TABLE), n_rows, "invalid, or naming no nucleus")
        ct = ct.sort_values(["nucleus_id", "id"] if "id" in ct.columns else ["nucleus_id"],
                            kind="stable")
        dup = ct.duplicated("nucleus_id")
        report["celltype_duplicates_dropped"] = int(dup.sum())
        ct = ct[~dup]
        ct = pd.DataFrame({"nucleus_id": ct["nucleus_id"].to_numpy(),
                           "cell_type": ct["cell_type"].to_numpy(),
                           "cell_class": ct["classification_system"].map(_CLASS).to_numpy()})
        cells = cells.merge(ct, on="nucleus_id", how="left")
        used["neurons"] += f" + {named(CELLTYPES_TABLE)}"
    else:
        cells["cell_type"] = None
        cells["cell_class"] = None
    cells["cell_type"] = cells["cell_type"].astype(object).where(cells["cell_type"].notna(), None)
    cells["cell_class"] = cells["cell_class"].astype(object).where(cells["cell_class"].notna(), None)
    cells["layer"] = [layer_of(t) if c == "excitatory" else None
                      for t, c in zip(cells["cell_type"], cells["cell_class"])]

    coreg_name, coreg = _pick(raw, COREG_TABLES)
    if coreg is not None:
        _need(coreg, named(coreg_name), ["session", "scan_idx", "field", "unit_id"])
        n_rows = len(coreg)
        coreg = _attach_nucleus(_valid(coreg, named(coreg_name), report), named(coreg_name),
                                shape(coreg_name, coreg), valid_nuclei, report)
        if n_rows and len(valid_nuclei) and coreg.empty:
            raise _none_left(named(coreg_name), n_rows, "invalid, or naming no nucleus")
        coregistered = np.isin(cells["nucleus_id"].to_numpy(), coreg["nucleus_id"].to_numpy())
    else:
        coregistered = np.zeros(len(cells), dtype=bool)
    if neurons not in ("all", "coregistered") and ct is None:
        raise SourceError(f"neuron selection {neurons!r} needs cell classes ({CELLTYPES_TABLE!r} or a "
                          "profile's cell_types / nucleus cell_class), which are absent")
    if neurons.startswith("coregistered") and coreg is None:
        raise SourceError(f"neuron selection {neurons!r} needs a co-registration table "
                          f"({' or '.join(COREG_TABLES)}), which is absent")
    excit = (cells["cell_class"] == "excitatory").to_numpy()
    keep = {"coregistered_excitatory": coregistered & excit, "coregistered": coregistered,
            "excitatory": excit, "neurons": cells["cell_class"].notna().to_numpy(),
            "all": (cells["cell_class"] != "glia").to_numpy()}[neurons]
    glia = int((cells["cell_class"] == "glia").sum())
    if glia:
        report["glia"] = glia
    cells = cells[keep].sort_values("nucleus_id", kind="stable")
    report["neurons_selected"] = int(len(cells))
    xv, yv, zv = (cells[c].to_numpy(np.float64) for c in ("x_vox", "y_vox", "z_vox"))
    tables["neurons"] = pa.table({
        "nucleus_id": pa.array(cells["nucleus_id"].to_numpy(np.int64)),
        "root_id": _root(cells["root_id"]),
        "x_vox": xv, "y_vox": yv, "z_vox": zv,
        "x_nm": xv * voxel[0], "y_nm": yv * voxel[1], "z_nm": zv * voxel[2],
        "cell_type": pa.array(list(cells["cell_type"]), pa.string()),
        "cell_class": pa.array(list(cells["cell_class"]), pa.string()),
        "layer": pa.array(list(cells["layer"]), pa.string()),
    })
    selected = cells["nucleus_id"].to_numpy(np.int64)

    units = None
    if coreg is not None:
        fu = coreg[np.isin(coreg["nucleus_id"].to_numpy(), selected)]
        fu = fu.sort_values(["session", "scan_idx", "unit_id", "nucleus_id"], kind="stable")
        root_of = pd.Series(cells["root_id"].to_numpy(np.int64),
                            index=cells["nucleus_id"].to_numpy(np.int64))
        key = ["session", "scan_idx", "unit_id"]
        dup = fu.duplicated(key, keep=False)
        report["units_ambiguous_dropped"] = int(dup.sum())
        fu = fu[~dup]
        n = len(fu)
        units = pa.table({
            "session": fu["session"].to_numpy(np.int64), "scan_idx": fu["scan_idx"].to_numpy(np.int64),
            "field": fu["field"].to_numpy(np.int64), "unit_id": fu["unit_id"].to_numpy(np.int64),
            "nucleus_id": fu["nucleus_id"].to_numpy(np.int64),
            # root id of the co-registered nucleus in this version (whatever the table's shape)
            "root_id": _root(root_of.reindex(fu["nucleus_id"].to_numpy(np.int64)).to_numpy()),
            "score": (fu["score"].to_numpy(np.float64) if "score" in fu else np.full(n, np.nan)),
            "residual": (fu["residual"].to_numpy(np.float64) if "residual" in fu
                         else np.full(n, np.nan)),
        })
        for col in ("score", "residual"):  # NaN -> null
            arr = units.column(col).to_numpy()
            units = units.set_column(units.schema.get_field_index(col), col,
                                     pa.array(arr, pa.float64(), mask=np.isnan(arr)))
        tables["functional_units"] = units
        used["functional_units"] = named(coreg_name)

    func_name, func = _pick(raw, FUNCTIONAL_TABLES)
    if func is not None and units is not None:
        osi = "gOSI" if "gOSI" in func.columns else "OSI"
        dsi = "gDSI" if "gDSI" in func.columns else "DSI"
        _need(func, named(func_name), ["session", "scan_idx", "unit_id", "pref_ori", "pref_dir", osi, dsi])
        func = _valid(func, named(func_name), report).sort_values(["session", "scan_idx", "unit_id"], kind="stable")
        func = func.drop_duplicates(["session", "scan_idx", "unit_id"])
        known = pd.DataFrame({k: units.column(k).to_numpy() for k in ("session", "scan_idx", "unit_id")})
        n_rows = len(func)
        func = func.merge(known, on=["session", "scan_idx", "unit_id"], how="inner")
        if n_rows and len(known) and func.empty:
            raise _none_left(named(func_name), n_rows, "no (session, scan_idx, unit_id) of the "
                             "co-registered units")
        if n_rows - len(func):
            report[f"{named(func_name)}_rows_of_no_selected_unit"] = int(n_rows - len(func))
        ori, drn = normalize_angles(func["pref_ori"], func["pref_dir"], unit=FUNCTIONAL_TABLES[func_name])

        def nullable(values) -> pa.Array:
            arr = np.asarray(values, dtype=np.float64)
            return pa.array(arr, pa.float64(), mask=np.isnan(arr))

        tables["tuning"] = pa.table({
            "session": func["session"].to_numpy(np.int64), "scan_idx": func["scan_idx"].to_numpy(np.int64),
            "unit_id": func["unit_id"].to_numpy(np.int64),
            "pref_ori_deg": nullable(ori), "pref_dir_deg": nullable(drn),
            "osi": nullable(func[osi]), "dsi": nullable(func[dsi]),
        })
        used["tuning"] = f"{named(func_name)} (angles {FUNCTIONAL_TABLES[func_name]})"
        parameters.setdefault("functional_table", named(func_name))

    syn = raw.get(SYNAPSE_TABLE)
    if syn is not None:
        _need(syn, named(SYNAPSE_TABLE), ["id", "pre_pt_root_id", "post_pt_root_id"])
        roots = tables["neurons"].column("root_id").drop_null().to_numpy()
        among = np.isin(syn["pre_pt_root_id"].to_numpy(), roots) & np.isin(
            syn["post_pt_root_id"].to_numpy(), roots)
        syn = syn[among]
        dup = syn.duplicated("id")
        if dup.any():
            report["synapse_duplicate_ids_dropped"] = int(dup.sum())
        syn = syn[~dup].sort_values("id", kind="stable")
        n = len(syn)

        def col(name: str) -> pa.Array:
            arr = syn[name].to_numpy(np.float64) if name in syn else np.full(n, np.nan)
            return pa.array(arr, pa.float64(), mask=np.isnan(arr))  # missing is null, never NaN

        synapses = pa.table({
            "synapse_id": syn["id"].to_numpy(np.int64),
            "pre_root_id": syn["pre_pt_root_id"].to_numpy(np.int64),
            "post_root_id": syn["post_pt_root_id"].to_numpy(np.int64),
            "size": col("size"),
            "x_vox": col("ctr_pt_position_x"), "y_vox": col("ctr_pt_position_y"),
            "z_vox": col("ctr_pt_position_z"),
        })
        tables["synapses"] = synapses
        tables["connections"] = _connections(synapses, tables["neurons"])
        used["synapses"] = named(SYNAPSE_TABLE)
        used["connections"] = f"{named(SYNAPSE_TABLE)} aggregated by nucleus id"
        report["synapses_among_neurons"] = int(n)
        report["autapses_not_counted"] = int((syn["pre_pt_root_id"].to_numpy()
                                              == syn["post_pt_root_id"].to_numpy()).sum())
    elif raw.get(CONNECTIONS_KEY) is not None:
        tables["connections"] = _edge_list(raw[CONNECTIONS_KEY], tables["neurons"],
                                           named(CONNECTIONS_KEY), report)
        used["connections"] = f"{named(CONNECTIONS_KEY)} (an edge list)"

    report["shapes"] = dict(sorted(shape_of.items()))
    all_origins = {name: f"CAVE {datastack or '?'} v{materialization_version} {desc}"
                   for name, desc in used.items()}
    all_origins.update(origins or {})
    return SourceTables(source="cave", tables=tables, parameters=parameters, report=report,
                        origins=all_origins, datastack=datastack,
                        materialization_version=materialization_version,
                        materialization_timestamp=materialization_timestamp)


def _edge_list(edges: pd.DataFrame, neurons: pa.Table, table: str, report: dict) -> pa.Table:
    """An edge list (root ids or nucleus ids, ``n_synapses``, optional ``sum_size``) -> the
    ``connections`` table among ``neurons``: rows naming other cells and autapses are counted
    and left out, rows of one pair (two root ids of one cell across a merge) summed.
    """
    if "pre_nucleus_id" in edges and "post_nucleus_id" in edges:
        pre = edges["pre_nucleus_id"].to_numpy(np.int64)
        post = edges["post_nucleus_id"].to_numpy(np.int64)
        known = np.isin(pre, neurons.column("nucleus_id").to_numpy())
        known &= np.isin(post, neurons.column("nucleus_id").to_numpy())
    else:
        _need(edges, table, ["pre_pt_root_id", "post_pt_root_id"])
        rooted = neurons.filter(neurons.column("root_id").is_valid())
        by_root = pd.Series(rooted.column("nucleus_id").to_numpy(),
                            index=rooted.column("root_id").to_numpy())
        pre = by_root.reindex(edges["pre_pt_root_id"].to_numpy(np.int64)).to_numpy()
        post = by_root.reindex(edges["post_pt_root_id"].to_numpy(np.int64)).to_numpy()
        known = ~(np.isnan(pre.astype(np.float64)) | np.isnan(post.astype(np.float64)))
        pre = np.where(known, pre, 0).astype(np.int64)
        post = np.where(known, post, 0).astype(np.int64)
    _need(edges, table, ["n_synapses"])
    n = pd.to_numeric(edges["n_synapses"], errors="raise").to_numpy()
    if len(n) and (np.any(n != np.floor(n)) or np.any(n < 1)):
        raise SourceError(f"{table}: column n_synapses: expected whole numbers >= 1; found "
                          f"{n[(n != np.floor(n)) | (n < 1)][0]!r}", path=table)
    size = (edges["sum_size"].to_numpy(np.float64) if "sum_size" in edges
            else np.full(len(edges), np.nan))
    self_loop = known & (pre == post)
    report[f"{table}_rows_not_between_selected_cells"] = int((~known).sum())
    report["autapses_not_counted"] = int(n[self_loop].sum())  # synapses, as from a synapse table
    keep = known & ~self_loop
    df = pd.DataFrame({"pre_nucleus_id": pre[keep], "post_nucleus_id": post[keep],
                       "n_synapses": n[keep].astype(np.int64), "sum_size": size[keep]})
    pairs = df.groupby(["pre_nucleus_id", "post_nucleus_id"], sort=True).agg(
        n_synapses=("n_synapses", "sum"), sum_size=("sum_size", lambda v: v.sum(min_count=len(v))),
        rows=("n_synapses", "size")).reset_index()
    merged = int((pairs["rows"] - 1).sum())
    if merged:
        report[f"{table}_rows_summed_into_one_pair"] = merged
    s = pairs["sum_size"].to_numpy(np.float64)
    return pa.table({"pre_nucleus_id": pairs["pre_nucleus_id"].to_numpy(np.int64),
                     "post_nucleus_id": pairs["post_nucleus_id"].to_numpy(np.int64),
                     "n_synapses": pairs["n_synapses"].to_numpy(np.int64),
                     "sum_size": pa.array(s, pa.float64(), mask=np.isnan(s))})


def _connections(synapses: pa.Table, neurons: pa.Table) -> pa.Table:
    """Synapses -> connections by nucleus id (the shared aggregator, :mod:`etl.aggregate`).

    Parameters
    ----------
    synapses
        The canonical ``synapses`` table (``pre_root_id``, ``post_root_id``, ``size``).
    neurons
        The canonical ``neurons`` table (``nucleus_id``, ``root_id``).

    Returns
    -------
    pyarrow.Table
        ``pre_nucleus_id``, ``post_nucleus_id``, ``n_synapses``, ``sum_size``.
    """
    return synapses_to_connections(synapses, neurons.select(["nucleus_id", "root_id"]))
