"""How a cell-type or co-registration table names its cell, and the join that follows from it.

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

import numpy as np
import pandas as pd

from ....errors import SourceError
from .columns import need
from .names import NUCLEUS_TABLE, SHAPES, TableShape

__all__ = ["attach_nucleus", "infer_shape"]


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


def attach_nucleus(df: pd.DataFrame, table: str, shape: TableShape, nuclei: pd.DataFrame,
                   report: dict) -> pd.DataFrame:
    """``df`` with a ``nucleus_id`` column, its rows limited to those naming one valid nucleus.

    ``nuclei``: the valid nucleus rows of the same version (``id``, ``pt_root_id``), before any
    exclusion. Reference shapes join ``target_id`` to ``id``; bound points match ``pt_root_id``
    to the nuclei's root ids. Dropped rows are counted in ``report``
    (``<table>_unmatched_rows``, and ``<table>_ambiguous_rows`` for bound points).
    """
    if shape not in SHAPES:
        raise SourceError(f"shape of CAVE table {table!r} must be one of {', '.join(SHAPES)}; "
                          f"found {shape!r}", path=table)
    if shape == "bound_point":
        return _match_bound_point(df, table, nuclei, report)
    need(df, table, ["target_id"])
    known = np.isin(df["target_id"].to_numpy(np.int64), nuclei["id"].to_numpy(np.int64))
    report[f"{table}_unmatched_rows"] = int((~known).sum())
    out = df[known].copy()
    out["nucleus_id"] = out["target_id"].to_numpy(np.int64)
    return out


def _match_bound_point(df: pd.DataFrame, table: str, nuclei: pd.DataFrame,
                       report: dict) -> pd.DataFrame:
    """Bound-point rows matched to the one nucleus their ``pt_root_id`` carries."""
    if "target_id" in df.columns:
        raise SourceError(f"CAVE table {table!r} was declared a bound point table but has a "
                          "'target_id' column; expected no reference (metadata "
                          "reference_table empty)", path=table)
    need(df, table, ["pt_root_id"])
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
