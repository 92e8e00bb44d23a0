"""Pure derivations on bare NumPy / SciPy arrays: no store, no I/O.

One concept per module: :mod:`.distance`, :mod:`.connectome`, :mod:`.functional`, :mod:`.bio`,
:mod:`.communicability`, :mod:`.modules`. Every matrix is indexed [pre, post] where direction
matters (rows presynaptic), like the connectome.
"""

from .bio import symmetrize_lower, w_bio_modulation
from .communicability import communicability, node_strength
from .connectome import connectome, synapse_size
from .distance import distance_um, minmax_normalized
from .functional import (binned_counts, correlation, default_t_end, precision, sttc,
                         sttc_pairwise_loop)
from .modules import modules, modules_functional, modules_wiring

__all__ = [
    "distance_um", "minmax_normalized",
    "connectome", "synapse_size",
    "binned_counts", "correlation", "sttc", "sttc_pairwise_loop", "precision", "default_t_end",
    "w_bio_modulation", "symmetrize_lower",
    "communicability", "node_strength",
    "modules", "modules_functional", "modules_wiring",
]
