"""Datastack profiles: which table plays which role and which column holds which field
(:mod:`.profile`), and tables in a profile's names -> the CAVE column names the shared transform
reads (:mod:`.normalize`)."""

from .profile import (BUILTIN, CELL_CLASSES, DEFAULT_COLUMNS, REQUIRED, ROLES, CellClass, Profile,
                      ProfileError, Role, RoleSpec, load_profile, parse_profile)

__all__ = ["BUILTIN", "CELL_CLASSES", "DEFAULT_COLUMNS", "REQUIRED", "ROLES", "CellClass", "Profile",
           "ProfileError", "Role", "RoleSpec", "load_profile", "parse_profile"]
