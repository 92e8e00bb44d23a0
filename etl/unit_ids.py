"""Scan-wide unit ids of the MICrONS NWB release, and their check against a co-registration table.

The release stores ROIs per imaging field (``PlaneSegmentation<field>``) under the pipeline's *mask
ids*, which restart at 1 in every field. The scan-wide ``unit_id`` that co-registration tables
(CAVE ``coregistration_manual_v4`` / ``functional_coreg``) use is not stored. The pipeline
numbered units through the scan's fields one field at a time (``meso.ScanSet``: the next field's
units start at the largest unit id so far + 1, one unit per segmented mask, soma or artifact), so

    unit_id = (number of ROIs, all mask types, of the fields before it) + mask_id

with fields in ascending order. The field order is what the pipeline's populate order gave (the
key order, ascending); that part is an assumption, which :func:`field_agreement` checks against a
co-registration table whenever one is at hand: the table must place (nearly) every derived unit id
in the same field. :data:`MIN_AGREEMENT` is the share below which a mapping is refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["MIN_AGREEMENT", "unit_offsets", "field_agreement", "implausible", "describe_agreement"]

MIN_AGREEMENT = 0.99
"""Least share of a field's co-registered derived unit ids that must lie in that same field.

With the right convention the share is 1 by construction (the table's field and our unit ids come
from the same pipeline table); 1% leaves room for stray curation errors in a manual table. A wrong
offset of k units moves about k of a field's n units into the next field (share ~ 1 - k/n, so with
~500-1000 ROIs per field any offset of 10 or more is refused), and a wrong field order moves whole
fields (share near 0)."""


def unit_offsets(rois_per_field: Mapping[int, int]) -> dict[int, int]:
    """Unit-id offset of each field: the number of ROIs (all mask types) of the fields before it.

    Parameters
    ----------
    rois_per_field
        Field number -> number of ROIs in its plane segmentation (soma and artifact).

    Returns
    -------
    dict
        Field number -> offset; ``unit_id = offset + mask_id``.

    Examples
    --------
    >>> unit_offsets({2: 452, 1: 643, 3: 10})
    {1: 0, 2: 643, 3: 1095}
    """
    out, total = {}, 0
    for k in sorted(rois_per_field):
        out[k] = total
        total += int(rois_per_field[k])
    return out


def field_agreement(derived: pd.DataFrame, coreg: pd.DataFrame) -> list[dict]:
    """Per field: how many derived unit ids the co-registration table places in that same field.

    Parameters
    ----------
    derived
        Units as read (columns session, scan_idx, field, unit_id), e.g. an ``nwb`` snapshot's.
    coreg
        The co-registration table's units (same columns), e.g. a ``cave`` snapshot's
        ``functional_units``. Units it does not list are no evidence either way.

    Returns
    -------
    list of dict
        One per (session, scan_idx, field) of ``derived``, sorted: ``units`` (derived),
        ``coregistered`` (listed by the table), ``same_field``, ``share`` (same_field /
        coregistered; None without evidence) and ``elsewhere`` ({other field: count}).

    Examples
    --------
    >>> d = pd.DataFrame({"session": 4, "scan_idx": 7, "field": [1, 1, 2], "unit_id": [1, 2, 3]})
    >>> c = pd.DataFrame({"session": 4, "scan_idx": 7, "field": [1, 1, 1], "unit_id": [1, 2, 3]})
    >>> [(r["field"], r["share"]) for r in field_agreement(d, c)]
    [(1, 1.0), (2, 0.0)]
    """
    keys = ["session", "scan_idx", "unit_id"]
    d = derived[keys + ["field"]].astype(np.int64)
    c = coreg[keys + ["field"]].dropna().astype(np.int64).drop_duplicates(keys)
    joined = d.merge(c, on=keys, how="left", suffixes=("", "_coreg"))
    out = []
    for (session, scan_idx, field_idx), grp in joined.groupby(["session", "scan_idx", "field"], sort=True):
        listed = grp.dropna(subset=["field_coreg"])
        placed = listed.field_coreg.astype(np.int64)
        same = int((placed == field_idx).sum())
        other = placed[placed != field_idx].value_counts().sort_index()
        out.append({"session": int(session), "scan_idx": int(scan_idx), "field": int(field_idx),
                    "units": int(len(grp)), "coregistered": int(len(listed)), "same_field": same,
                    "share": same / len(listed) if len(listed) else None,
                    "elsewhere": {int(k): int(v) for k, v in other.items()}})
    return out


def implausible(rows: Sequence[dict], *, threshold: float = MIN_AGREEMENT) -> list[dict]:
    """The rows of :func:`field_agreement` whose share is below ``threshold`` (no evidence passes)."""
    return [r for r in rows if r["share"] is not None and r["share"] < threshold]


def describe_agreement(row: dict) -> str:
    """One line for a row of :func:`field_agreement`, e.g. for reports and error messages."""
    name = f"field {row['session']}_{row['scan_idx']}_{row['field']}"
    if row["share"] is None:
        return f"{name}: {row['units']} units, none listed by the co-registration table (no evidence)"
    text = (f"{name}: {row['same_field']} of {row['coregistered']} co-registered units "
            f"({100 * row['share']:.1f}%) lie in the same field")
    if row["elsewhere"]:
        text += "; elsewhere: " + ", ".join(f"{n} in field {k}" for k, n in row["elsewhere"].items())
    return text
