"""ETL stage: extract MICrONS tables from a source, validate them against ``schemas/``, and load
them as one atomic snapshot into the neuron store (DuckDB file + Parquet raw layer)."""

from .config import STORE_ENV, StoreConfig, default_store_dir
from .contracts import validate_table, validate_tables
from .errors import (CxpError, EtlError, FieldCheckError, ReadOnlyError, SourceError, StoreError,
                     UnsafeFileError, ValidationError)
from .pipeline import extract, run_etl
from .store import Store, content_hash
from .tables import Source, SourceTables

__all__ = [
    "CxpError", "EtlError", "FieldCheckError", "ReadOnlyError", "SourceError", "StoreError",
    "UnsafeFileError", "ValidationError",
    "STORE_ENV", "StoreConfig", "default_store_dir",
    "Source", "SourceTables",
    "Store", "content_hash",
    "extract", "run_etl",
    "validate_table", "validate_tables",
]
