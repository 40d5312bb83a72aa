"""What every source adapter shares: credentials, errors and the introspected schema.

A source is the customer's database server. An adapter connects to it with the
connection's credentials, checks that one schema is readable, describes that
schema (`SourceSchema`) and streams table rows already converted to the
snapshot storage types of `app.contracts.artifact`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Self

from app.contracts import artifact
from app.contracts.backends import READABLE_BACKENDS as BACKENDS
from app.contracts.sql import quote_identifier

# Default PostgreSQL database when the credentials name none. The contract's
# connection has no database field, so `SourceCredentials.for_target` also
# accepts "<database>.<schema>" in the database's `mysqlDb`.
DEFAULT_POSTGRES_DATABASE = "postgres"

ERROR_CODES = ("unreachable", "auth_failed", "schema_missing", "access_denied", "source_error")


@dataclass(frozen=True)
class SourceCredentials:
    """How to reach one schema on a source server."""

    backend: str
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    # MySQL: the database name. PostgreSQL: a schema inside `database`.
    schema: str
    # PostgreSQL only: the database to connect to (None = "postgres").
    database: str | None = None

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"unsupported source backend {self.backend!r}; "
                             f"expected one of {', '.join(BACKENDS)}")
        if not self.schema:
            raise ValueError("a source schema name is required")

    @property
    def postgres_database(self) -> str:
        """The PostgreSQL database the adapter connects to."""
        return self.database or DEFAULT_POSTGRES_DATABASE

    @property
    def target(self) -> str:
        """Where the data lives, for messages: `db` (MySQL) or `db.schema` (PostgreSQL)."""
        if self.backend == "postgres":
            return f"{self.postgres_database}.{self.schema}"
        return self.schema

    @classmethod
    def for_target(cls, *, backend: str, host: str, port: int, user: str, password: str,
                   target: str) -> SourceCredentials:
        """Credentials from a connection plus a database's `mysqlDb`.

        For PostgreSQL, `target` is `schema` (in the "postgres" database) or
        `database.schema`; the first dot separates the two.
        """
        database = None
        schema = target
        if backend == "postgres" and "." in target:
            database, schema = target.split(".", 1)
        return cls(backend=backend, host=host, port=port, user=user, password=password,
                   schema=schema, database=database)


class SourceError(Exception):
    """A source could not be used; the message says what to fix.

    `code` is one of ERROR_CODES. The message never contains the password.
    """

    def __init__(self, code: str, message: str):
        if code not in ERROR_CODES:
            raise ValueError(f"unknown source error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message


def scrub(text: str, password: str) -> str:
    """`text` on one line, with every occurrence of `password` masked."""
    text = " ".join(str(text).split())
    if password:
        text = text.replace(password, "***")
    return text


# -- the introspected schema -------------------------------------------------

@dataclass(frozen=True)
class SourceColumn:
    name: str
    type: str            # one of artifact.COLUMN_TYPES
    source_type: str     # the type as the source spells it, e.g. "tinyint(1)"
    nullable: bool


@dataclass(frozen=True)
class ForeignKey:
    name: str                         # constraint name
    columns: tuple[str, ...]          # on the referencing table, in key order
    target_table: str                 # in the same schema
    target_columns: tuple[str, ...]   # on the target table, matching `columns`

    def __post_init__(self):
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "target_columns", tuple(self.target_columns))


@dataclass(frozen=True)
class SourceTable:
    name: str
    columns: tuple[SourceColumn, ...]           # ordinal order
    primary_key: tuple[str, ...] = ()           # key order; empty when none
    foreign_keys: tuple[ForeignKey, ...] = ()   # sorted by constraint name

    def __post_init__(self):
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "primary_key", tuple(self.primary_key))
        object.__setattr__(self, "foreign_keys", tuple(self.foreign_keys))

    def column(self, name: str) -> SourceColumn | None:
        return next((column for column in self.columns if column.name == name), None)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)


@dataclass(frozen=True)
class SourceSchema:
    backend: str
    schema: str
    tables: tuple[SourceTable, ...]   # sorted by name

    def __post_init__(self):
        object.__setattr__(self, "tables", tuple(self.tables))

    def table(self, name: str) -> SourceTable | None:
        return next((table for table in self.tables if table.name == name), None)


# -- the adapter interface ---------------------------------------------------

class Source:
    """An open connection to one source schema. Use as a context manager."""

    backend = ""
    server = ""                  # the server's name in messages: "MySQL", "PostgreSQL"
    driver_errors: tuple = ()    # what the driver raises for the server, the network or the SQL
    # Whether a load should read the next batch on a helper thread while it stores one: true
    # when the driver waits for the server once per batch with the GIL released and decodes
    # in C (psycopg2's server-side cursor); false when decoding is Python work that would only
    # compete for the GIL with the inserts (PyMySQL, whose server streams ahead anyway).
    read_ahead = False
    _connection = None           # the driver's connection; None when closed

    def __init__(self, credentials: SourceCredentials, *, connect_timeout: int = 10):
        self.credentials = credentials
        self.connect_timeout = connect_timeout

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        c = self.credentials
        return f"<{type(self).__name__} {c.user}@{c.host}:{c.port}/{c.target}>"

    def check_access(self) -> None:
        """Raise SourceError unless the schema exists and every table in it is readable."""
        raise NotImplementedError

    def introspect(self) -> SourceSchema:
        """Tables, columns, primary keys and foreign keys of the schema."""
        raise NotImplementedError

    def stream_rows(self, table: artifact.Table, where: tuple[str, list] | None = None, *,
                    batch_size: int = 5000) -> Iterator[list[tuple]]:
        """Batches of `table.columns` values, converted to snapshot storage types.

        `where` is `(sql, params)` in the driver's `%s` parameter style; the
        statement is always %-formatted, so a literal `%` in `sql` (as in an
        identifier from `quote_identifier`) is written `%%`.
        """
        raise NotImplementedError

    def row_count_estimates(self) -> dict[str, int | None]:
        """A cheap estimate of the row count of every table, by table name."""
        raise NotImplementedError

    def consistent_read(self):
        """A context in which every `stream_rows` reads one point-in-time view of the source.

        A snapshot loaded inside it never mixes rows from before and after a
        change that committed while the load ran. A consistent_read inside another
        one joins it. Each adapter also takes what a change stream needs to continue the
        snapshot (MySQL: `position=True`, PostgreSQL: `snapshot=`; see app/sources/cdc).
        """
        raise NotImplementedError

    def cdc_prerequisites(self, tables=None) -> tuple[bool, list[str]]:
        """(ok, reasons): whether changes can be streamed from this source (binlog, logical
        decoding) for `tables` (names; None = every table of the schema); each reason names
        one missing prerequisite and how to add it."""
        raise NotImplementedError

    def row_count_estimate(self, table: artifact.Table | SourceTable | str) -> int | None:
        """A cheap estimate of one table's row count, or None when unknown."""
        name = table if isinstance(table, str) else table.name
        return self.row_count_estimates().get(name)

    def close(self) -> None:
        """Close the connection; a driver error on the way out is ignored (it is gone either way)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(*self.driver_errors):
                connection.close()

    # -- what every adapter says and reads the same way ------------------------

    def _login(self) -> dict:
        """The driver's keyword arguments to log in with. Never a DSN string: the password
        stays out of every text the driver or its C library might echo."""
        c = self.credentials
        return {"host": c.host, "port": int(c.port), "user": c.user, "password": c.password,
                "connect_timeout": self.connect_timeout}

    def _unreachable(self, doing: str, detail: str) -> SourceError:
        c = self.credentials
        return SourceError("unreachable", f"cannot reach the {self.server} server at {c.host}:{c.port} "
                           f"while {doing}: check the host, the port and that the server accepts "
                           f"connections from this service ({detail})")

    def _rejected(self, who_may_connect: str) -> SourceError:
        c = self.credentials
        return SourceError("auth_failed", f"the {self.server} server at {c.host}:{c.port} rejected user "
                           f"{c.user!r}: check the user name and password, and that {who_may_connect}")

    def _failed(self, doing: str, detail: str) -> SourceError:
        c = self.credentials
        return SourceError("source_error", f"the {self.server} server at {c.host}:{c.port} failed "
                           f"while {doing}: {detail}")

    def _tables_denied(self, denied: list[str], where: str, grant: str) -> SourceError:
        """`denied`: the tables the user may not read, `where` they are (`database 'shop'`)."""
        shown = ", ".join(repr(name) for name in denied[:5])
        more = f" and {len(denied) - 5} more" if len(denied) > 5 else ""
        return SourceError("access_denied", f"user {self.credentials.user!r} may not read table "
                           f"{shown}{more} in {where}: grant it SELECT on {grant}")

    @staticmethod
    def _columns_found(table: artifact.Table, found: dict, where: str) -> list:
        """`found[name]` for each of `table`'s columns, in order; a table or column that left
        the source since the build is an error that says to rebuild."""
        if not found:
            raise SourceError("source_error", f"table {table.name!r} no longer exists in {where}: "
                              f"rebuild the database")
        for column in table.columns:
            if column.name not in found:
                raise SourceError("source_error", f"column {column.name!r} no longer exists on "
                                  f"table {table.name!r}: rebuild the database")
        return [found[column.name] for column in table.columns]

    def _select_rows(self, table: artifact.Table, expressions: list[str],
                     where: tuple[str, list] | None) -> tuple[str, list]:
        """The statement `stream_rows` runs and its parameters (a list even when empty: the
        statement is always %-formatted, see quote_identifier)."""
        schema, name = (quote_identifier(part, self.backend) for part in (self.credentials.schema, table.name))
        sql = f"SELECT {', '.join(expressions)} FROM {schema}.{name}"
        if where is None:
            return sql, []
        return f"{sql} WHERE ({where[0]})", list(where[1])


def assemble_schema(backend: str, schema: str, names, columns: dict, primary_keys: dict,
                    key_columns) -> SourceSchema:
    """A SourceSchema from introspection rows; `key_columns` yields
    (table, constraint, column, target table, target column) in key column order.
    Keys that leave the listed tables are dropped."""
    foreign_keys = {name: {} for name in names}
    for table, constraint, column, target, target_column in key_columns:
        if table not in foreign_keys or target not in foreign_keys:
            continue
        key = foreign_keys[table].setdefault(constraint, (target, [], []))
        key[1].append(column)
        key[2].append(target_column)
    tables = tuple(
        SourceTable(
            name=name, columns=tuple(columns[name]), primary_key=tuple(primary_keys[name]),
            foreign_keys=tuple(
                ForeignKey(name=constraint, columns=cols, target_table=target,
                           target_columns=target_cols)
                for constraint, (target, cols, target_cols) in sorted(foreign_keys[name].items())))
        for name in names)
    return SourceSchema(backend=backend, schema=schema, tables=tables)


def converted_batches(cursor, batch_size: int, convert) -> Iterator[list[tuple]]:
    """The rows of an executed `cursor`, `batch_size` at a time, each through `convert`
    (`tuple`, from `values.row_converter` when no column needs one: the rows as fetched)."""
    if convert is tuple:
        while rows := cursor.fetchmany(batch_size):
            yield rows
        return
    while rows := cursor.fetchmany(batch_size):
        yield [convert(row) for row in rows]
