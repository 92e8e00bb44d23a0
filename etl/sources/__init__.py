"""Sources the ETL reads: ``synthetic`` (embedded default, generated) and ``blueprint`` (the study's
released per-field arrays). Each returns :class:`etl.tables.SourceTables`."""
