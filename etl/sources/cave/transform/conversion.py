"""What one call of :func:`~.canonical.canonical_tables` carries from table to table.

Examples
--------
>>> conv = Conversion(names={"nucleus_detection_v0": "nuclei"})
>>> conv.named("nucleus_detection_v0"), conv.named("synapses_pni_2")
('nuclei', 'synapses_pni_2')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from .names import TableShape
from .shapes import infer_shape

__all__ = ["Conversion"]


@dataclass
class Conversion:
    """The report being written, and the real name and shape of each table read."""

    names: Mapping[str, str] = field(default_factory=dict)
    """Key of ``raw`` -> the name of the table it really is (a profile's table)."""
    shapes: Mapping[str, TableShape] = field(default_factory=dict)
    """Key of ``raw`` -> its shape, where the caller knows it (else inferred from the columns)."""
    report: dict = field(default_factory=dict)
    """Counts of what was left out, and why (recorded on the snapshot)."""
    shape_of: dict[str, TableShape] = field(default_factory=dict)
    """Real table name -> the shape it was read as (``report["shapes"]``)."""

    def named(self, key: str) -> str:
        """The real name of the table read under ``key``."""
        return self.names.get(key, key)

    def shape(self, key: str, df: pd.DataFrame) -> TableShape:
        """The shape of the table read under ``key`` (given, else inferred), recorded."""
        name = self.named(key)
        self.shape_of[name] = self.shapes.get(key) or infer_shape(df, name)
        return self.shape_of[name]
