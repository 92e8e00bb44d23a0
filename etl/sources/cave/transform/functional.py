"""Functional units (co-registered scan units) and their tuning, in the store's angle convention."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from .columns import need, none_left, nullable_floats, root_ids, valid_rows
from .names import AngleUnit

__all__ = ["functional_units", "normalize_angles", "tuning"]

_UNIT = ["session", "scan_idx", "unit_id"]


def normalize_angles(pref_ori, pref_dir, *, unit: AngleUnit):
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


def functional_units(coreg: pd.DataFrame, cells: pd.DataFrame, report: dict) -> pa.Table:
    """The canonical ``functional_units`` table: co-registration rows of the selected cells.

    A (session, scan_idx, unit_id) named by several rows is ambiguous: all its rows are dropped
    and counted (``units_ambiguous_dropped``). ``root_id`` is the root of the co-registered
    nucleus in this version (whatever the table's shape); a missing score or residual is null.
    """
    fu = coreg[np.isin(coreg["nucleus_id"].to_numpy(), cells["nucleus_id"].to_numpy(np.int64))]
    fu = fu.sort_values([*_UNIT, "nucleus_id"], kind="stable")
    root_of = pd.Series(cells["root_id"].to_numpy(np.int64),
                        index=cells["nucleus_id"].to_numpy(np.int64))
    dup = fu.duplicated(_UNIT, keep=False)
    report["units_ambiguous_dropped"] = int(dup.sum())
    fu = fu[~dup]
    n = len(fu)
    return pa.table({
        "session": fu["session"].to_numpy(np.int64), "scan_idx": fu["scan_idx"].to_numpy(np.int64),
        "field": fu["field"].to_numpy(np.int64), "unit_id": fu["unit_id"].to_numpy(np.int64),
        "nucleus_id": fu["nucleus_id"].to_numpy(np.int64),
        "root_id": root_ids(root_of.reindex(fu["nucleus_id"].to_numpy(np.int64)).to_numpy()),
        "score": nullable_floats(fu["score"].to_numpy(np.float64) if "score" in fu
                                 else np.full(n, np.nan)),
        "residual": nullable_floats(fu["residual"].to_numpy(np.float64) if "residual" in fu
                                    else np.full(n, np.nan)),
    })


def tuning(func: pd.DataFrame, table: str, units: pa.Table, *, unit: AngleUnit,
           report: dict) -> pa.Table:
    """The canonical ``tuning`` table: a functional-property table's rows of ``units``.

    Parameters
    ----------
    func
        ``session``, ``scan_idx``, ``unit_id``, ``pref_ori``, ``pref_dir``, and ``gOSI``/``gDSI``
        (or ``OSI``/``DSI``); optional ``valid``.
    table
        Its real name (the report and messages).
    units
        The canonical ``functional_units``; rows of other units are counted
        (``<table>_rows_of_no_selected_unit``) and left out.
    unit
        The unit of the table's angles (see :func:`normalize_angles`).
    """
    osi = "gOSI" if "gOSI" in func.columns else "OSI"
    dsi = "gDSI" if "gDSI" in func.columns else "DSI"
    need(func, table, [*_UNIT, "pref_ori", "pref_dir", osi, dsi])
    func = valid_rows(func, table, report).sort_values(_UNIT, kind="stable")
    func = func.drop_duplicates(_UNIT)
    known = pd.DataFrame({k: units.column(k).to_numpy() for k in _UNIT})
    n_rows = len(func)
    func = func.merge(known, on=_UNIT, how="inner")
    if n_rows and len(known) and func.empty:
        raise none_left(table, n_rows, "no (session, scan_idx, unit_id) of the co-registered units")
    if n_rows - len(func):
        report[f"{table}_rows_of_no_selected_unit"] = int(n_rows - len(func))
    ori, drn = normalize_angles(func["pref_ori"], func["pref_dir"], unit=unit)
    return pa.table({
        "session": func["session"].to_numpy(np.int64), "scan_idx": func["scan_idx"].to_numpy(np.int64),
        "unit_id": func["unit_id"].to_numpy(np.int64),
        "pref_ori_deg": nullable_floats(ori), "pref_dir_deg": nullable_floats(drn),
        "osi": nullable_floats(func[osi]), "dsi": nullable_floats(func[dsi]),
    })
