"""A table of a given schema, built from column values the way the producers' schema defines it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .layouts import merged_layout
from .schemas import CREATED, table_columns

__all__ = ["schema_frame"]


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
            out[name] = np.full(n, CREATED)
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
