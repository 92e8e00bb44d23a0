"""Cell identity: the nucleus table's rows that name one cell each.

A nucleus whose ``pt_root_id`` is 0 (no segment), or whose root id carries several nuclei (a merge
error), is excluded and counted. Cells are keyed on the nucleus id, so a new materialization whose
root ids changed maps onto the same cells without duplicates.

Examples
--------
>>> nuc = pd.DataFrame({"id": [1, 2, 3], "pt_root_id": [7, 0, 7], "pt_position_x": 0,
...                     "pt_position_y": 0, "pt_position_z": 0})
>>> valid, cells = nuclei(nuc, "nucleus_detection_v0", {})
>>> len(valid), len(cells)
(3, 0)
"""

from __future__ import annotations

import pandas as pd

from .columns import need, valid_rows

__all__ = ["nuclei"]

_POSITION = ["pt_position_x", "pt_position_y", "pt_position_z"]


def nuclei(nuc: pd.DataFrame, table: str, report: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The valid nuclei, and the cells among them (one nucleus per root id, root id not 0).

    Parameters
    ----------
    nuc
        The nucleus table (``id``, ``pt_root_id``, ``pt_position_x/_y/_z`` in voxels; optional
        ``valid``).
    table
        Its real name (the report and messages).
    report
        Counts ``nuclei_total``, ``excluded_root_id_zero``, ``excluded_multi_nucleus_roots``,
        ``excluded_multi_nucleus_nuclei``, and invalid rows and duplicate ids where there are any.

    Returns
    -------
    valid : pandas.DataFrame
        ``id``, ``pt_root_id`` of every valid nucleus, before the exclusions (what cell tables
        are matched against).
    cells : pandas.DataFrame
        ``nucleus_id``, ``root_id``, ``x_vox``, ``y_vox``, ``z_vox`` of the cells, by nucleus id.
    """
    need(nuc, table, ["id", "pt_root_id", *_POSITION])
    nuc = valid_rows(nuc, table, report)
    dup = nuc.duplicated("id")
    if dup.any():
        report["nucleus_duplicate_ids_dropped"] = int(dup.sum())
    nuc = nuc[~dup].sort_values("id", kind="stable")
    valid = nuc[["id", "pt_root_id"]]
    zero = nuc["pt_root_id"].to_numpy() == 0
    report["nuclei_total"] = int(len(nuc))
    report["excluded_root_id_zero"] = int(zero.sum())
    nuc = nuc[~zero]
    per_root = nuc.groupby("pt_root_id")["id"].transform("size")
    multi = per_root.to_numpy() > 1
    report["excluded_multi_nucleus_roots"] = int(nuc.loc[multi, "pt_root_id"].nunique())
    report["excluded_multi_nucleus_nuclei"] = int(multi.sum())
    nuc = nuc[~multi]
    cells = nuc[["id", "pt_root_id", *_POSITION]].rename(
        columns={"id": "nucleus_id", "pt_root_id": "root_id", "pt_position_x": "x_vox",
                 "pt_position_y": "y_vox", "pt_position_z": "z_vox"})
    return valid, cells
