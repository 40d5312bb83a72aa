"""Source adapters: reading the customer's database (MySQL/MariaDB, PostgreSQL).

    with open_source(credentials) as source:
        source.check_access()
        schema = source.introspect()
        for batch in source.stream_rows(artifact_table):
            ...
"""

from app.sources.base import (
                              BACKENDS,
                              DEFAULT_POSTGRES_DATABASE,
                              ERROR_CODES,
                              ForeignKey,
                              Source,
                              SourceColumn,
                              SourceCredentials,
                              SourceError,
                              SourceSchema,
                              SourceTable,
                              open_source,
)

__all__ = ["BACKENDS", "DEFAULT_POSTGRES_DATABASE", "ERROR_CODES", "ForeignKey", "Source",
           "SourceColumn", "SourceCredentials", "SourceError", "SourceSchema", "SourceTable",
           "open_source"]
