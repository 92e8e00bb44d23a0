"""The CAVE tables the transform reads, and the fixed sets of values it takes.

Examples
--------
>>> CELL_TABLES[0]
'aibs_metamodel_celltypes_v661'
"""

from __future__ import annotations

from typing import Literal

__all__ = ["AngleUnit", "CELLTYPES_TABLE", "CELL_CLASS", "CELL_TABLES", "CONNECTIONS_KEY",
           "COREG_TABLES", "DEFAULT_VOXEL_NM", "FUNCTIONAL_TABLES", "NUCLEUS_TABLE",
           "NeuronSelection", "SELECTIONS", "SHAPES", "SYNAPSE_TABLE", "TableShape"]

#: The unit of a functional-property table's angles.
AngleUnit = Literal["deg", "rad"]

NUCLEUS_TABLE = "nucleus_detection_v0"
CELLTYPES_TABLE = "aibs_metamodel_celltypes_v661"
#: Co-registration tables, in order of preference (manual first).
COREG_TABLES = ("coregistration_manual_v4", "coregistration_auto_phase3_fwd_apl_vess_combined_v2")
#: Functional-property tables, in order of preference; the value is the unit of their angles.
FUNCTIONAL_TABLES: dict[str, AngleUnit] = {"digital_twin_properties_bcm_coreg_v4": "deg",
                                           "functional_properties_v3_bcm": "rad"}
SYNAPSE_TABLE = "synapses_pni_2"
#: Key of an edge list (``connections`` role): pre/post root ids or nucleus ids, ``n_synapses``,
#: optional ``sum_size``.
CONNECTIONS_KEY = "connections"

#: How a cell-type or co-registration table refers to its cell (see :mod:`.shapes`).
TableShape = Literal["reference", "merged", "bound_point"]
SHAPES: tuple[TableShape, ...] = ("reference", "merged", "bound_point")
#: Tables whose rows name a cell (through ``target_id`` or a bound point).
CELL_TABLES = (CELLTYPES_TABLE, *COREG_TABLES)

#: Which cells become ``neurons`` (and so whose synapses count).
NeuronSelection = Literal["coregistered_excitatory", "coregistered", "excitatory", "neurons", "all"]
SELECTIONS: tuple[NeuronSelection, ...] = ("coregistered_excitatory", "coregistered", "excitatory",
                                           "neurons", "all")

#: minnie65 voxel size (nm) of positions given in voxels, unless ``parameters`` says otherwise.
DEFAULT_VOXEL_NM = (4.0, 4.0, 40.0)

#: Class values -> the store's cell classes (CAVE's, and the profiles' already mapped ones);
#: anything else (``unknown``) is no class.
CELL_CLASS = {"excitatory_neuron": "excitatory", "excitatory": "excitatory",
              "inhibitory_neuron": "inhibitory", "inhibitory": "inhibitory",
              "nonneuron": "glia", "glia": "glia"}
