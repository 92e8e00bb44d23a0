"""Sources the ETL reads, each a config dataclass in :mod:`.registry` (``synthetic``, the embedded
default; ``blueprint``, the study's released arrays; ``cave``, live CAVE; ``files``, static CAVE
exports; ``nwb``, the NWB activity release). Each returns :class:`etl.tables.SourceTables`."""
