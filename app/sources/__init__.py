"""Source adapters: reading the customer's database (MySQL/MariaDB, PostgreSQL).

    with open_source(credentials) as source:
        source.check_access()
        schema = source.introspect()
        for batch in source.stream_rows(artifact_table):
            ...
"""

import importlib

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

# Each adapter's module is imported when a source of its backend is first opened: an
# instance's writer needs one driver, and PyMySQL (with cryptography) and psycopg2 are
# about 50 ms of its start together.
_ADAPTERS = {"mysql": ("app.sources.mysql", "MySQLSource"),
             "postgres": ("app.sources.postgres", "PostgresSource")}


def adapter(backend: str) -> type[Source]:
    """The Source class of `backend`."""
    module, name = _ADAPTERS[backend]
    return getattr(importlib.import_module(module), name)


def open_source(credentials: SourceCredentials, *, connect_timeout: int = 10) -> Source:
    """Connect to the source; raises SourceError (unreachable, auth_failed...)."""
    return adapter(credentials.backend)(credentials, connect_timeout=connect_timeout)


__all__ = ["BACKENDS", "DEFAULT_POSTGRES_DATABASE", "ERROR_CODES", "ForeignKey", "Source",
           "SourceColumn", "SourceCredentials", "SourceError", "SourceSchema", "SourceTable",
           "adapter", "open_source"]
