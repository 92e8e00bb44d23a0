"""File formats the sources read, kept apart from the sources themselves: the static CAVE export's
``column,type`` header (:mod:`.export_header`) and a restricted reader of the study's numeric
``.npy``/pickled object arrays that never unpickles code (:mod:`.safe_npy`)."""
