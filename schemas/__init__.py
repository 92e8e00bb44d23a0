"""Machine-readable contracts of connectome-priors.

``schemas/store/<table>.json`` defines each store table: columns (name, type, unit, nullability,
bounds), primary key and foreign keys. The ETL validates every incoming table against these files;
nothing else defines the store's shape.
"""

from __future__ import annotations

import json
from importlib import resources

__all__ = ["STORE_TABLES", "store_contract"]

#: Store tables in load order (a table's foreign keys point only at tables before it).
STORE_TABLES: tuple[str, ...] = (
    "neurons",
    "functional_units",
    "connections",
    "synapses",
    "spikes",
    "tuning",
    "study_functional",
)


def store_contract(name: str) -> dict:
    """Return the parsed JSON contract of store table ``name`` (also ``"snapshots"``)."""
    path = resources.files(__name__).joinpath("store", f"{name}.json")
    if not path.is_file():
        known = ", ".join(("snapshots",) + STORE_TABLES)
        raise KeyError(f"no contract for table {name!r}; known tables: {known}")
    return json.loads(path.read_text(encoding="utf-8"))
