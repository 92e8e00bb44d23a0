"""Which cells become ``neurons``: cell types and classes, co-registration, the selection.

Examples
--------
>>> layer_of("23P"), layer_of("BC")
('L2/3', None)
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import pyarrow as pa

from ....errors import SourceError
from .columns import first_present, need, none_left, root_ids, valid_rows
from .conversion import Conversion
from .names import CELL_CLASS, CELLTYPES_TABLE, COREG_TABLES, NeuronSelection
from .shapes import attach_nucleus

__all__ = ["add_cell_types", "coregistration", "layer_of", "neurons_table", "select"]


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


def _naming_cells(conv: Conversion, key: str, df: pd.DataFrame,
                  valid_nuclei: pd.DataFrame) -> pd.DataFrame:
    """The valid rows of a cell table that name one valid nucleus, with ``nucleus_id``."""
    name = conv.named(key)
    n_rows = len(df)
    out = attach_nucleus(valid_rows(df, name, conv.report), name, conv.shape(key, df),
                         valid_nuclei, conv.report)
    if n_rows and len(valid_nuclei) and out.empty:
        raise none_left(name, n_rows, "invalid, or naming no nucleus")
    return out


def add_cell_types(cells: pd.DataFrame, ct: pd.DataFrame | None, valid_nuclei: pd.DataFrame,
                   conv: Conversion) -> pd.DataFrame:
    """``cells`` with ``cell_type``, ``cell_class`` (None where unknown) and ``layer``.

    ``ct`` is the cell-type table (``classification_system``, ``cell_type``), or None when there
    is none; of several rows naming one nucleus the lowest ``id`` is kept, the others counted
    (``celltype_duplicates_dropped``).
    """
    if ct is not None:
        need(ct, conv.named(CELLTYPES_TABLE), ["classification_system", "cell_type"])
        ct = _naming_cells(conv, CELLTYPES_TABLE, ct, valid_nuclei)
        ct = ct.sort_values(["nucleus_id", "id"] if "id" in ct.columns else ["nucleus_id"],
                            kind="stable")
        dup = ct.duplicated("nucleus_id")
        conv.report["celltype_duplicates_dropped"] = int(dup.sum())
        ct = ct[~dup]
        ct = pd.DataFrame({"nucleus_id": ct["nucleus_id"].to_numpy(),
                           "cell_type": ct["cell_type"].to_numpy(),
                           "cell_class": ct["classification_system"].map(CELL_CLASS).to_numpy()})
        cells = cells.merge(ct, on="nucleus_id", how="left")
    else:
        cells["cell_type"] = None
        cells["cell_class"] = None
    cells["cell_type"] = cells["cell_type"].astype(object).where(cells["cell_type"].notna(), None)
    cells["cell_class"] = cells["cell_class"].astype(object).where(cells["cell_class"].notna(), None)
    cells["layer"] = [layer_of(t) if c == "excitatory" else None
                      for t, c in zip(cells["cell_type"], cells["cell_class"])]
    return cells


def coregistration(raw: Mapping[str, pd.DataFrame], valid_nuclei: pd.DataFrame,
                   conv: Conversion) -> tuple[str | None, pd.DataFrame | None]:
    """The preferred co-registration table present (its key), its rows naming one valid nucleus."""
    key, coreg = first_present(raw, COREG_TABLES)
    if key is None or coreg is None:
        return None, None
    need(coreg, conv.named(key), ["session", "scan_idx", "field", "unit_id"])
    return key, _naming_cells(conv, key, coreg, valid_nuclei)


def select(cells: pd.DataFrame, neurons: NeuronSelection, *, has_cell_types: bool,
           coreg: pd.DataFrame | None, report: dict) -> pd.DataFrame:
    """The cells that ``neurons`` selects, by nucleus id (``glia``, ``neurons_selected`` counted).

    Raises
    ------
    SourceError
        The selection needs cell classes or a co-registration table that is absent.
    """
    if coreg is not None:
        coregistered = np.isin(cells["nucleus_id"].to_numpy(), coreg["nucleus_id"].to_numpy())
    else:
        coregistered = np.zeros(len(cells), dtype=bool)
    if neurons not in ("all", "coregistered") and not has_cell_types:
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
    return cells


def neurons_table(cells: pd.DataFrame, voxel_nm: tuple[float, ...]) -> pa.Table:
    """The canonical ``neurons`` table of the selected cells (positions in voxels and nm)."""
    xv, yv, zv = (cells[c].to_numpy(np.float64) for c in ("x_vox", "y_vox", "z_vox"))
    return pa.table({
        "nucleus_id": pa.array(cells["nucleus_id"].to_numpy(np.int64)),
        "root_id": root_ids(cells["root_id"]),
        "x_vox": xv, "y_vox": yv, "z_vox": zv,
        "x_nm": xv * voxel_nm[0], "y_nm": yv * voxel_nm[1], "z_nm": zv * voxel_nm[2],
        "cell_type": pa.array(list(cells["cell_type"]), pa.string()),
        "cell_class": pa.array(list(cells["cell_class"]), pa.string()),
        "layer": pa.array(list(cells["layer"]), pa.string()),
    })
