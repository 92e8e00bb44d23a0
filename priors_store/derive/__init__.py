"""Pure derivations on bare NumPy / SciPy arrays: no store, no I/O.

One concept per module: :mod:`.distance`, :mod:`.connectome`, :mod:`.functional`, :mod:`.bio`,
:mod:`.communicability`, :mod:`.modules`, :mod:`.signed`. Every matrix is indexed [pre, post] where direction
matters (rows presynaptic), like the connectome.
"""

from connectome_priors.kernel.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "bio": ("symmetrize_lower", "w_bio_modulation",),
    "communicability": ("communicability", "node_strength",),
    "connectome": ("connectome", "synapse_size",),
    "distance": ("distance_um", "minmax_normalized",),
    "functional": ("binned_counts", "correlation", "default_t_end", "precision", "sttc", "sttc_pairwise_loop",),
    "modules": ("modules", "modules_functional", "modules_wiring",),
    "signed": ("cell_signs", "signed_weight", "type_pairs",),
})
