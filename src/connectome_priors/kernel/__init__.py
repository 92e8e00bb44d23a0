"""The kernel every stage shares: errors, settings, atomic files and hashing, the Dask client and
the code version. It imports no stage (checked by the import-linter contracts in pyproject.toml).

Import from the modules (``connectome_priors.kernel.errors`` ...); this package's ``__init__``
loads nothing.
"""
