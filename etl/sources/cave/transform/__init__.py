"""CAVE tables (as the materialization engine returns them) -> the store's canonical tables.

Pure functions shared by the ``cave`` source (live queries) and the ``files`` source (static
exports of the same tables): no I/O, no network. :func:`canonical_tables` runs the steps, one
module each:

:mod:`.nuclei`
    cell identity: the nucleus rows that name one cell each (root id 0 and merges excluded);
:mod:`.shapes`
    how a cell-type or co-registration table names its cell (``reference``, ``merged``,
    ``bound_point``) and the join to the nucleus table that follows from it;
:mod:`.cells`
    cell types, classes and layers, co-registration, and which cells become ``neurons``;
:mod:`.functional`
    functional units and their tuning, angles in the store's convention;
:mod:`.connectivity`
    synapses among the neurons and their connections (or an edge list's).

:mod:`.names` holds the CAVE table names and the fixed sets of values, :mod:`.columns` the
column checks and nullable Arrow columns, :mod:`.conversion` the report and table names one call
carries from step to step.
"""

from .canonical import canonical_tables
from .cells import layer_of
from .functional import normalize_angles
from .names import (CELL_TABLES, CELLTYPES_TABLE, CONNECTIONS_KEY, COREG_TABLES, DEFAULT_VOXEL_NM,
                    FUNCTIONAL_TABLES, NUCLEUS_TABLE, SYNAPSE_TABLE, AngleUnit, NeuronSelection,
                    TableShape)
from .shapes import infer_shape

__all__ = [
    "AngleUnit", "CELLTYPES_TABLE", "CELL_TABLES", "CONNECTIONS_KEY", "COREG_TABLES",
    "DEFAULT_VOXEL_NM", "FUNCTIONAL_TABLES", "NUCLEUS_TABLE", "SYNAPSE_TABLE", "NeuronSelection",
    "TableShape", "canonical_tables", "infer_shape", "layer_of", "normalize_angles",
]
