"""Datastack profiles: which table plays which role, and which of its columns holds which field.

A profile is a small TOML file (format fixed, so that profiles written elsewhere load)::

    datastack = "pinky100"            # recorded in the snapshot
    voxel_size_nm = [4, 4, 40]        # positions are voxels unless a role says position_unit = "nm"

    [nucleus]                         # required: one row per nucleus
    table = "soma_valence_v185"       # a CAVE table name, or a file stem in a `files` folder
    id = "id"
    root_id = "pt_root_id"
    position = "pt_position"          # one list / "[x y z]" column, or ["x_col", "y_col", "z_col"]
    cell_class = "cell_type"          # optional: the table's own class column ...
    cell_class_values = { e = "excitatory", i = "inhibitory", g = "glia", uncertain = "unknown" }

    [synapses]                        # optional; id and size optional too
    table = "soma_subgraph_synapses_spines_v185"
    pre_root_id = "pre_root_id"
    post_root_id = "post_root_id"
    size = "cleft_vx"
    position = ["ctr_pos_x_vx", "ctr_pos_y_vx", "ctr_pos_z_vx"]

Roles (:data:`ROLES`): ``nucleus``, ``cell_types``, ``coregistration``, ``functional``,
``synapses``, ``connections`` (an edge list by root ids or nucleus ids, with ``n_synapses`` and
optional ``sum_size``). ``table`` may also be a list of names sharing one column mapping, and a
role may be given several times as an array of tables (``[[cell_types]]``), for tables whose
columns differ; names are tried in order and the first one present is used. A field a role does not name takes its minnie65 CAVE column name
(:data:`DEFAULT_COLUMNS`) when the table has that column. Cell classes are ``excitatory``,
``inhibitory``, ``glia`` and ``unknown`` (:data:`CELL_CLASSES`); ``cell_class_values`` maps a
table's own values onto them, and a value it does not list is an error, never a silent
``unknown``. Keys a profile does not know are refused (a typo is not ignored).

Built-in profiles (:data:`BUILTIN`) ship beside this module: ``minnie65_public`` (the default:
today's table names, so the same snapshot ids), ``v1dd_public`` and ``pinky100_v185``.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal

from ..errors import SourceError

__all__ = ["BUILTIN", "CELL_CLASSES", "DEFAULT_COLUMNS", "REQUIRED", "ROLES", "CellClass",
           "Profile", "ProfileError", "Role", "RoleSpec", "load_profile", "parse_profile"]

#: The roles a table can play.
Role = Literal["nucleus", "cell_types", "coregistration", "functional", "synapses", "connections"]
ROLES: tuple[Role, ...] = ("nucleus", "cell_types", "coregistration", "functional", "synapses",
                           "connections")
#: The store's cell classes.
CellClass = Literal["excitatory", "inhibitory", "glia", "unknown"]
CELL_CLASSES: tuple[CellClass, ...] = ("excitatory", "inhibitory", "glia", "unknown")
#: Built-in profile names (``<name>.toml`` beside this module).
BUILTIN = ("minnie65_public", "v1dd_public", "pinky100_v185")

#: Role -> field -> the minnie65 CAVE column it defaults to (``None``: no default). ``position``
#: names a point: one column of that name, or its ``_x/_y/_z`` split columns.
DEFAULT_COLUMNS: dict[str, dict[str, str | None]] = {
    "nucleus": {"id": "id", "root_id": "pt_root_id", "position": "pt_position", "valid": "valid",
                "cell_class": None, "cell_type": None},
    "cell_types": {"id": "id", "nucleus_id": "target_id", "root_id": "pt_root_id",
                   "cell_class": "classification_system", "cell_type": "cell_type",
                   "valid": "valid"},
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
                    "pre_nucleus_id": None, "post_nucleus_id": None, "n_synapses": "n_syn",
                    "sum_size": "sum_size"},
}
#: Role -> groups of fields; each group needs at least one of its fields to resolve.
REQUIRED: dict[str, tuple[tuple[str, ...], ...]] = {
    "nucleus": (("id",), ("root_id",), ("position",)),
    "cell_types": (("nucleus_id", "root_id"), ("cell_class", "cell_type")),
    "coregistration": (("nucleus_id", "root_id"), ("session",), ("scan_idx",), ("field",),
                       ("unit_id",)),
    "functional": (("session",), ("scan_idx",), ("unit_id",), ("pref_ori",), ("pref_dir",),
                   ("osi",), ("dsi",)),
    "synapses": (("pre_root_id",), ("post_root_id",)),
    "connections": (("pre_root_id", "pre_nucleus_id"), ("post_root_id", "post_nucleus_id"),
                    ("n_synapses",)),
}
_ROLE_KEYS = {"table", "position_unit", "cell_class_values", "angle_unit"}


class ProfileError(SourceError):
    """A profile file is malformed, or names a table or column the data does not have."""


@dataclass(frozen=True)
class RoleSpec:
    """One role of a profile: the table(s) that play it and the columns of its fields."""

    role: Role
    """The role (``nucleus``, ``synapses``, ...)."""
    tables: tuple[str, ...]
    """Candidate table names / file stems, in order of preference."""
    columns: dict[str, str | tuple[str, str, str]] = field(default_factory=dict)
    """Field -> column the profile names (a point may name three columns)."""
    position_unit: Literal["voxel", "nm"] = "voxel"
    """Unit of the role's positions."""
    cell_class_values: dict[str, CellClass] | None = None
    """The table's class values -> the store's cell classes (``None``: the role's defaults)."""
    angle_unit: Literal["deg", "rad"] | None = None
    """``functional``: unit of ``pref_ori``/``pref_dir`` (``None``: known from the table name)."""

    def column(self, name: str) -> str | tuple[str, str, str] | None:
        """The column the profile names for field ``name``, else the minnie65 default."""
        return self.columns.get(name, DEFAULT_COLUMNS[self.role].get(name))

    def named(self, name: str) -> bool:
        """Whether the profile names field ``name`` explicitly (then it must exist)."""
        return name in self.columns


@dataclass(frozen=True)
class Profile:
    """A datastack profile (see the module docstring)."""

    name: str
    """Built-in name, or the file's stem."""
    origin: str
    """``built-in`` or the file's path."""
    sha256: str
    """sha256 of the profile's text (recorded on the snapshot)."""
    datastack: str | None
    """Datastack recorded on the snapshot."""
    voxel_size_nm: tuple[float, float, float]
    """Size of one voxel in nm (x, y, z)."""
    roles: dict[str, tuple[RoleSpec, ...]]
    """Role -> its specs, in order of preference (roles the profile does not declare are absent)."""

    def describe(self) -> str:
        """``minnie65_public (built-in)`` or ``pinky.toml (/path/pinky.toml)``."""
        return f"{self.name} ({self.origin})"

    def record(self) -> dict:
        """What the snapshot records of the profile."""
        return {"name": self.name, "origin": self.origin, "sha256": self.sha256}


def _fail(where: str, key: str, expected: str, found) -> ProfileError:
    return ProfileError(f"profile {where}: {key}: expected {expected}; found {found!r}", path=where)


def _column_value(where: str, key: str, value) -> str | tuple[str, str, str]:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, list) and len(value) == 3 and all(isinstance(v, str) and v for v in value):
        return (value[0], value[1], value[2])
    raise _fail(where, key, "a column name, or a list of three for a point's x, y, z", value)


def _role(where: str, role: Role, body) -> RoleSpec:
    if not isinstance(body, dict):
        raise _fail(where, f"[{role}]", "a table of keys", body)
    table = body.get("table")
    if isinstance(table, str) and table:
        tables = (table,)
    elif isinstance(table, list) and table and all(isinstance(t, str) and t for t in table):
        tables = tuple(table)
    else:
        raise _fail(where, f"{role}.table", "a table name or a list of names", table)
    known = set(DEFAULT_COLUMNS[role])
    unknown = sorted(set(body) - known - _ROLE_KEYS)
    if unknown:
        raise ProfileError(f"profile {where}: [{role}] has unknown key(s) {unknown}; expected "
                           f"table, position_unit, cell_class_values, angle_unit or a field of "
                           f"{role}: {', '.join(sorted(known))}", path=where)
    columns = {k: _column_value(where, f"{role}.{k}", v) for k, v in body.items() if k in known}
    for k, v in columns.items():
        if isinstance(v, tuple) and k != "position":
            raise _fail(where, f"{role}.{k}", "one column name (only position takes three)", list(v))
    unit = body.get("position_unit", "voxel")
    if unit not in ("voxel", "nm"):
        raise _fail(where, f"{role}.position_unit", "'voxel' or 'nm'", unit)
    values = body.get("cell_class_values")
    if values is not None:
        if not isinstance(values, dict) or not values:
            raise _fail(where, f"{role}.cell_class_values", "a table of value = class", values)
        for k, v in values.items():
            if v not in CELL_CLASSES:
                raise _fail(where, f"{role}.cell_class_values.{k}",
                            f"one of {', '.join(CELL_CLASSES)}", v)
    angle = body.get("angle_unit")
    if angle not in (None, "deg", "rad"):
        raise _fail(where, f"{role}.angle_unit", "'deg' or 'rad'", angle)
    return RoleSpec(role, tables, columns, unit, dict(values) if values else None, angle)


def parse_profile(text: str, *, name: str, origin: str) -> Profile:
    """Parse a profile's TOML text.

    Raises
    ------
    ProfileError
        Not TOML; an unknown key or role; a value of the wrong type; no ``[nucleus]`` role.
    """
    where = origin if origin != "built-in" else name
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ProfileError(f"profile {where} is not valid TOML: {err}", path=where) from err
    unknown = sorted(set(doc) - set(ROLES) - {"datastack", "voxel_size_nm"})
    if unknown:
        raise ProfileError(f"profile {where}: unknown key(s) {unknown}; expected datastack, "
                           f"voxel_size_nm and roles {', '.join(ROLES)}", path=where)
    datastack = doc.get("datastack")
    if datastack is not None and (not isinstance(datastack, str) or not datastack):
        raise _fail(where, "datastack", "a name", datastack)
    voxel = doc.get("voxel_size_nm", [4, 4, 40])
    if not (isinstance(voxel, list) and len(voxel) == 3
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in voxel)):
        raise _fail(where, "voxel_size_nm", "three positive numbers [x, y, z]", voxel)
    if "nucleus" not in doc:
        raise ProfileError(f"profile {where}: no [nucleus] role; expected the table with one row "
                           "per nucleus, which keys every cell", path=where)
    roles = {r: tuple(_role(where, r, body) for body in
                      (doc[r] if isinstance(doc[r], list) else [doc[r]]))
             for r in ROLES if r in doc}
    if any(not specs for specs in roles.values()):
        raise ProfileError(f"profile {where}: an empty array of tables for a role", path=where)
    return Profile(name=name, origin=origin, sha256=hashlib.sha256(text.encode()).hexdigest(),
                   datastack=datastack, voxel_size_nm=(float(voxel[0]), float(voxel[1]),
                                                       float(voxel[2])), roles=roles)


def load_profile(profile: str | Path | Profile | None = None) -> Profile:
    """A built-in profile by name, or a profile file by path (``None``: ``minnie65_public``).

    Raises
    ------
    ProfileError
        Neither a built-in name nor a readable file; or the file is malformed.

    Examples
    --------
    >>> load_profile().datastack
    'minnie65_public'
    >>> load_profile().roles["nucleus"][0].tables
    ('nucleus_detection_v0',)
    """
    if isinstance(profile, Profile):
        return profile
    if profile is None:
        profile = "minnie65_public"
    if str(profile) in BUILTIN:
        text = resources.files(__package__).joinpath(f"{profile}.toml").read_text(encoding="utf-8")
        return parse_profile(text, name=str(profile), origin="built-in")
    path = Path(profile)
    if not path.is_file():
        raise ProfileError(f"profile {profile!r} is neither a built-in profile "
                           f"({', '.join(BUILTIN)}) nor a file", path=str(profile))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ProfileError(f"cannot read profile {path}: {err}", path=str(path)) from err
    return parse_profile(text, name=path.stem, origin=str(path))
