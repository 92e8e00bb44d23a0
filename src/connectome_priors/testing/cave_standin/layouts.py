"""How a materialization server lays a frozen table out (merged or split), and what its join query
(caveclient's ``merge_reference=True``) returns."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .schemas import CREATED, table_columns

__all__ = ["merge_reference", "merged_layout", "split_layout"]


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
        out["created"] = CREATED
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
