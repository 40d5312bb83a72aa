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
)
from app.sources.mysql import MySQLSource
from app.sources.postgres import PostgresSource

_ADAPTERS = {"mysql": MySQLSource, "postgres": PostgresSource}


def open_source(credentials: SourceCredentials, *, connect_timeout: int = 10) -> Source:
    """Connect to the source; raises SourceError (unreachable, auth_failed...)."""
    return _ADAPTERS[credentials.backend](credentials, connect_timeout=connect_timeout)


__all__ = ["BACKENDS", "DEFAULT_POSTGRES_DATABASE", "ERROR_CODES", "ForeignKey", "MySQLSource",
           "PostgresSource", "Source", "SourceColumn", "SourceCredentials", "SourceError",
           "SourceSchema", "SourceTable", "open_source"]
