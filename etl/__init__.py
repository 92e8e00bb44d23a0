"""ETL stage: extract MICrONS tables from a source, validate them against ``schemas/``, and load
them as one atomic snapshot into the neuron store (DuckDB file + Parquet raw layer)."""

from connectome_priors.kernel.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "config": ("STORE_ENV", "StoreConfig", "default_store_dir",),
    "contracts": ("validate_table", "validate_tables",),
    "errors": ("CxpError", "EtlError", "FieldCheckError", "ReadOnlyError", "SourceError", "StoreError", "UnsafeFileError", "ValidationError",),
    "pipeline": ("run_etl",),
    "sources.registry": ("extract", "source_config", "SourceConfig", "SyntheticSource",
                         "BlueprintSource", "CaveSource", "FilesSource", "NwbSource",),
    "store": ("Store", "content_hash",),
    "tables": ("Source", "SourceTables",),
})
