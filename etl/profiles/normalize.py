"""A role's table in its own column names -> the minnie65 CAVE columns the shared transform reads.

:func:`resolve` checks a table's columns against its role's spec before anything is read in full
(a column the profile names but the table lacks is refused, naming both); :func:`normalize` then
renames, parses points (any of the three shapes, strictly: :mod:`etl.formats.points`), converts
nm to voxels, and maps class values onto the store's cell classes (a value the profile does not
map is an error). The result is keyed as :func:`etl.sources.cave.transform.canonical_tables`
expects: ``nucleus_detection_v0``, ``aibs_metamodel_celltypes_v661``, ... (:data:`CAVE_KEYS`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..formats.points import parse_points
from .profile import CELL_CLASSES, DEFAULT_COLUMNS, REQUIRED, Profile, ProfileError, RoleSpec

__all__ = ["CAVE_KEYS", "DEFAULT_CLASS_VALUES", "FUNCTIONAL_KEYS", "Resolved", "normalize",
           "nucleus_cell_types", "resolve"]

#: Role -> the table key the shared transform reads it under.
CAVE_KEYS = {"nucleus": "nucleus_detection_v0", "cell_types": "aibs_metamodel_celltypes_v661",
             "coregistration": "coregistration_manual_v4", "synapses": "synapses_pni_2",
             "connections": "connections"}
#: ``functional`` by angle unit (the transform converts by the table it reads).
FUNCTIONAL_KEYS = {"deg": "digital_twin_properties_bcm_coreg_v4", "rad": "functional_properties_v3_bcm"}
#: Class values of minnie65's cell-type tables (``classification_system``) -> cell classes.
DEFAULT_CLASS_VALUES = {"excitatory_neuron": "excitatory", "inhibitory_neuron": "inhibitory",
                        "nonneuron": "glia"}
#: CAVE column a field is renamed to, per role (points get ``_x/_y/_z``).
_CAVE = {
    "nucleus": {"id": "id", "root_id": "pt_root_id", "position": "pt_position", "valid": "valid",
                "cell_type": "cell_type"},
    "cell_types": {"id": "id", "nucleus_id": "target_id", "root_id": "pt_root_id",
                   "cell_type": "cell_type", "valid": "valid"},
    "coregistration": {"id": "id", "nucleus_id": "target_id", "root_id": "pt_root_id",
                       "session": "session", "scan_idx": "scan_idx", "field": "field",
                       "unit_id": "unit_id", "score": "score", "residual": "residual",
                       "valid": "valid"},
    "functional": {"session": "session", "scan_idx": "scan_idx", "unit_id": "unit_id",
                   "pref_ori": "pref_ori", "pref_dir": "pref_dir", "osi": "gOSI", "dsi": "gDSI",
                   "valid": "valid"},
    "synapses": {"id": "id", "pre_root_id": "pre_pt_root_id", "post_root_id": "post_pt_root_id",
                 "size": "size", "position": "ctr_pt_position"},
    "connections": {"pre_root_id": "pre_pt_root_id", "post_root_id": "post_pt_root_id",
                    "pre_nucleus_id": "pre_nucleus_id", "post_nucleus_id": "post_nucleus_id",
                    "n_synapses": "n_synapses", "sum_size": "sum_size"},
}
_FALLBACK = {("functional", "osi"): "OSI", ("functional", "dsi"): "DSI"}


@dataclass(frozen=True)
class Resolved:
    """A role's table checked against its spec: which column holds each field."""

    spec: RoleSpec
    """The spec the table was matched by."""
    table: str
    """The table's name (CAVE table or file stem)."""
    fields: dict[str, str | tuple[str, str, str]]
    """Field -> the table's column (a point: one column, or three split columns)."""

    @property
    def role(self) -> str:
        return self.spec.role

    def source_columns(self) -> list[str]:
        """The table's columns this role reads."""
        out: list[str] = []
        for col in self.fields.values():
            out += list(col) if isinstance(col, tuple) else [col]
        return out

    def key(self) -> str:
        """The key the shared transform reads this table under."""
        if self.role == "functional":
            return FUNCTIONAL_KEYS[self.angle_unit()]
        return CAVE_KEYS[self.role]

    def angle_unit(self) -> str:
        if self.spec.angle_unit:
            return self.spec.angle_unit
        for unit, key in FUNCTIONAL_KEYS.items():
            if self.table == key:
                return unit
        raise ProfileError(f"functional table {self.table!r}: the unit of pref_ori/pref_dir is not "
                           "known; expected angle_unit = 'deg' or 'rad' in the profile's "
                           "[functional] role")


def _point(name: str, available: set[str]) -> str | tuple[str, str, str] | None:
    if name in available:
        return name
    split = (f"{name}_x", f"{name}_y", f"{name}_z")
    return split if all(c in available for c in split) else None


def resolve(spec: RoleSpec, table: str, columns: list[str], *, profile: Profile,
            where: str) -> Resolved:
    """Match a table's columns to its role's fields (before reading it in full).

    Raises
    ------
    ProfileError
        A column the profile names is absent, or a required field has no column; naming the
        table (``where``), the field, the column looked for and the columns found.
    """
    available = set(columns)
    fields: dict[str, str | tuple[str, str, str]] = {}
    for name in DEFAULT_COLUMNS[spec.role]:
        col = spec.column(name)
        if col is None:
            continue
        if name == "position":
            found = (_point(col, available) if isinstance(col, str)
                     else col if all(c in available for c in col) else None)
        else:
            found = col if col in available else None
            if found is None and (spec.role, name) in _FALLBACK and not spec.named(name):
                alt = _FALLBACK[(spec.role, name)]
                found = alt if alt in available else None
        if found is not None:
            fields[name] = found
        elif spec.named(name):
            raise ProfileError(
                f"{where}: profile {profile.describe()} maps [{spec.role}] {name} to column "
                f"{col if isinstance(col, str) else list(col)!r}, which the table lacks; its "
                f"columns: {', '.join(columns)}", path=where)
    for group in REQUIRED[spec.role]:
        if not any(f in fields for f in group):
            looked = [spec.column(f) for f in group]
            raise ProfileError(
                f"{where}: no column for {' or '.join(group)} of role {spec.role} (looked for "
                f"{' / '.join(repr(c) for c in looked if c is not None) or 'nothing: no default'}); "
                f"its columns: {', '.join(columns)}. Name it in a profile's [{spec.role}] "
                f"(--profile FILE)", path=where)
    return Resolved(spec, table, fields)


def _classes(values: pd.Series, mapping: dict[str, str], *, where: str, column: str,
             role: str) -> np.ndarray:
    """Map a table's class values onto the store's classes; unknown -> None."""
    raw = values.astype(object).where(values.notna(), None)
    out = np.array([mapping.get(v) if v is not None else "unknown" for v in raw.map(
        lambda v: v if v is None else str(v))], dtype=object)
    bad = pd.Series([v for v, o in zip(raw, out) if o is None and v is not None], dtype=object)
    if len(bad):
        counts = bad.astype(str).value_counts()
        shown = ", ".join(f"{v!r} ({n} rows)" for v, n in counts.head(5).items())
        raise ProfileError(
            f"{where}: column {column}: class value(s) {shown} are not mapped; expected one of "
            f"{sorted(mapping)} (cell_class_values of [{role}] maps a table's values onto "
            f"{', '.join(CELL_CLASSES)})", path=where)
    return np.array([None if v == "unknown" else v for v in out], dtype=object)


def normalize(df: pd.DataFrame, resolved: Resolved, *, profile: Profile, where: str,
              row_offset: int = 0) -> pd.DataFrame:
    """One role's rows (the table's own columns) -> the CAVE columns of the shared transform.

    Points become ``<point>_x/_y/_z`` in voxels; ``cell_class`` becomes
    ``classification_system`` holding the store's class (``excitatory``, ``inhibitory``,
    ``glia``; ``None`` for unknown). ``row_offset``: rows of the file before ``df`` (errors name
    the file's row).
    """
    role = resolved.role
    out: dict[str, object] = {}
    cave = _CAVE[role]
    for name, col in resolved.fields.items():
        if name == "position":
            if isinstance(col, tuple):
                xyz = np.column_stack([pd.to_numeric(df[c], errors="raise").to_numpy(np.float64)
                                       for c in col]) if len(df) else np.empty((0, 3))
            else:
                xyz = parse_points(df[col].to_list() if df[col].dtype == object else df[col],
                                   origin=where, column=col, row_offset=row_offset)
            if resolved.spec.position_unit == "nm":
                xyz = xyz / np.asarray(profile.voxel_size_nm)
            for k, axis in enumerate("xyz"):
                out[f"{cave['position']}_{axis}"] = xyz[:, k]
        elif name == "cell_class":
            default = DEFAULT_CLASS_VALUES if role == "cell_types" else {c: c for c in CELL_CLASSES}
            mapping = resolved.spec.cell_class_values or default
            out["classification_system"] = _classes(df[col], mapping, where=where, column=col,
                                                    role=role)
        else:
            out[cave[name]] = df[col].to_numpy()
    frame = pd.DataFrame(out, index=range(len(df)))
    if role == "cell_types" and "cell_type" not in frame:
        frame["cell_type"] = None
    if role == "cell_types" and "classification_system" not in frame:
        frame["classification_system"] = None
    return frame


def nucleus_cell_types(nucleus: pd.DataFrame) -> pd.DataFrame | None:
    """A cell-types table from the nucleus table's own class column (``None`` when it has none).

    ``nucleus``: the normalized nucleus table (``classification_system`` present when the profile
    names the nucleus table's ``cell_class``).
    """
    if "classification_system" not in nucleus:
        return None
    return pd.DataFrame({"id": nucleus["id"].to_numpy(), "target_id": nucleus["id"].to_numpy(),
                         "classification_system": nucleus["classification_system"].to_numpy(),
                         "cell_type": (nucleus["cell_type"].to_numpy() if "cell_type" in nucleus
                                       else None)})
