"""Pure derivations on bare NumPy / SciPy arrays: no store, no I/O.

One concept per module: :mod:`.distance`, :mod:`.wiring`, :mod:`.functional`, :mod:`.bio`,
:mod:`.communication`, :mod:`.partition`, :mod:`.signed`. Every matrix is indexed [pre, post] where direction
matters (rows presynaptic), like the connectome.
"""

from connectome_priors.kernel.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "bio": ("symmetrize_lower", "w_bio_modulation",),
    "communication": ("communicability", "node_strength",),
    "wiring": ("connectome", "synapse_size",),
    "distance": ("distance_um", "minmax_normalized",),
    "functional": ("binned_counts", "correlation", "default_t_end", "precision", "sttc",),
    "partition": ("modules", "modules_functional", "modules_wiring",),
    "signed": ("cell_signs", "signed_weight", "type_pairs",),
})
