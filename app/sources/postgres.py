"""PostgreSQL sources, through psycopg2.

The credentials' `schema` is a schema inside `database` (default "postgres").
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator

import psycopg2
import psycopg2.extensions

from app.contracts import artifact
from app.contracts.sql import quote_identifier as quote_for
from app.sources import values
from app.sources.base import (
    Source,
    SourceColumn,
    SourceCredentials,
    SourceError,
    SourceSchema,
    assemble_schema,
    converted_batches,
    scrub,
)

# Ordinary and partitioned tables; partitions are read through their parent.
_TABLES = "c.relkind IN ('r', 'p') AND NOT c.relispartition"

_AUTH_FAILED_TEXT = ("password authentication failed", "no pg_hba.conf entry", "role ",
                     "authentication failed", "no password supplied", "password is required")
_UNREACHABLE_TEXT = ("could not connect", "connection refused", "could not translate host name",
                     "timeout expired", "timed out", "no route to host", "network is unreachable",
                     "server closed the connection", "connection to server", "terminating connection")


# Errors a driver raises for the server, the network or the SQL.
_DRIVER_ERRORS = (psycopg2.Error, OSError)

# numeric read as a float by psycopg2's own C caster for float8 (the rows' cursor only):
# no Decimal is built per value.
_NUMERIC_OID = 1700
_NUMERIC_AS_FLOAT = psycopg2.extensions.new_type((_NUMERIC_OID,), "RX_NUMERIC_AS_FLOAT",
                                                 psycopg2.extensions.FLOAT)


def quote_identifier(name: str) -> str:
    """`name` as a PostgreSQL identifier (see app.contracts.sql: `%` is `%%`)."""
    return quote_for(name, "postgres")


_TYPES = {
    **dict.fromkeys(("int2", "int4", "int8", "oid"), "integer"),
    **dict.fromkeys(("numeric", "money"), "decimal"),
    **dict.fromkeys(("float4", "float8"), "float"),
    "bool": "boolean",
    **dict.fromkeys(("json", "jsonb"), "json"),
    "bytea": "binary",
    "date": "date",
    **dict.fromkeys(("timestamp", "timestamptz"), "datetime"),
    **dict.fromkeys(("time", "timetz"), "time"),
}


def logical_type(type_name: str, type_kind: str = "b", category: str = "") -> str:
    """The artifact column type of a PostgreSQL type (domains resolved to their base).

    `type_kind` is pg_type.typtype ('e' = enum), `category` pg_type.typcategory
    ('A' = array). Anything unknown (uuid, citext, enums, inet, interval...) is text.
    """
    if category == "A":
        return "json"
    if type_kind == "e":
        return "text"
    return _TYPES.get(type_name, "text")


# Columns with their domain-resolved base type: name, nullable, source type text,
# base type name, base typtype, base typcategory.
_COLUMNS_SQL = f"""
SELECT c.relname, a.attname, NOT a.attnotnull, format_type(a.atttypid, a.atttypmod),
       bt.typname, bt.typtype, bt.typcategory
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
WHERE c.relnamespace = %(namespace)s AND {_TABLES} AND a.attnum > 0 AND NOT a.attisdropped
  {{table_filter}}
ORDER BY c.relname, a.attnum
"""


class PostgresSource(Source):
    backend = "postgres"
    server = "PostgreSQL"
    driver_errors = _DRIVER_ERRORS
    read_ahead = True   # each FETCH waits for the server; psycopg2 decodes in C

    def __init__(self, credentials: SourceCredentials, *, connect_timeout: int = 10):
        super().__init__(credentials, connect_timeout=connect_timeout)
        self._active_cursor = None
        self._cursor_names = itertools.count(1)
        self._pinned = False     # inside consistent_read: keep the transaction open
        self._read_depth = 0     # nested consistent_read calls join the open one
        self._connect()

    # -- connection ----------------------------------------------------------

    def _connect(self) -> None:
        try:
            connection = psycopg2.connect(**self._login(), dbname=self.credentials.postgres_database,
                                          application_name="reflexdb-source")
        except _DRIVER_ERRORS as exc:
            raise self._translate(exc, "connecting") from None
        try:
            connection.set_session(readonly=True, autocommit=False)
            with connection.cursor() as cursor:
                # Temporal values are read as ISO text in UTC (see values.py).
                cursor.execute("SET TIME ZONE 'UTC'")
                cursor.execute("SET DateStyle = 'ISO, YMD'")
            connection.commit()
        except _DRIVER_ERRORS as exc:
            connection.close()
            raise self._translate(exc, "setting up the session") from None
        self._connection = connection

    @property
    def _conn(self):
        if self._connection is None or self._connection.closed:
            self._connect()
        return self._connection

    @contextlib.contextmanager
    def consistent_read(self, *, snapshot: str | None = None):
        """See Source.consistent_read; `snapshot` is the name of a snapshot another session
        exported (a logical replication slot's, see app/sources/cdc/logical.py): the reads
        then see exactly what that slot's stream continues from."""
        if self._read_depth:
            self._read_depth += 1
            try:
                yield self
            finally:
                self._read_depth -= 1
            return
        # One REPEATABLE READ transaction for every read inside: one snapshot.
        self._end_transaction()
        try:
            with self._conn.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                if snapshot is not None:
                    cursor.execute("SET TRANSACTION SNAPSHOT %s", [snapshot])
        except _DRIVER_ERRORS as exc:
            self._end_transaction()
            raise self._translate(exc, "starting a consistent read") from None
        self._pinned = True
        self._read_depth = 1
        try:
            yield self
        finally:
            self._read_depth = 0
            self._pinned = False
            self._end_transaction()

    # -- change data capture prerequisites ------------------------------------

    def cdc_prerequisites(self, tables=None) -> tuple[bool, list[str]]:
        """Whether changes can be streamed by logical decoding; else each missing prerequisite.

        Checks wal_level=logical, a free replication slot and WAL sender, the user's
        REPLICATION attribute (or superuser), its right to create a publication in the
        database, ownership of the tables (names; None = every table of the schema) and that
        each has a primary key or REPLICA IDENTITY FULL (without one, a publication would
        make UPDATE and DELETE on the table fail on the source).
        """
        c = self.credentials
        where = f"{c.host}:{c.port}"
        reasons = []
        (wal_level, slots, senders, used_slots, super_user, replication, create,
         rds_replication) = self._query(
            "SELECT current_setting('wal_level'), current_setting('max_replication_slots')::int, "
            "current_setting('max_wal_senders')::int, "
            "(SELECT count(*) FROM pg_replication_slots), r.rolsuper, r.rolreplication, "
            "has_database_privilege(current_database(), 'CREATE'), "
            "EXISTS (SELECT 1 FROM pg_roles g WHERE g.rolname = 'rds_replication' "
            "        AND pg_has_role(current_user, g.oid, 'MEMBER')) "
            "FROM pg_roles r WHERE r.rolname = current_user", (),
            "checking the replication settings")[0]
        if wal_level != "logical":
            reasons.append(f"wal_level is {wal_level!r} on {where}, not 'logical': run ALTER "
                           f"SYSTEM SET wal_level = logical (or set it in postgresql.conf) and "
                           f"restart the server")
        if slots <= used_slots:
            reasons.append(f"no free replication slot on {where} (max_replication_slots = "
                           f"{slots}, {used_slots} in use): raise max_replication_slots and "
                           f"restart the server")
        if senders < 1:
            reasons.append(f"max_wal_senders is 0 on {where}: raise it and restart the server")
        if not (super_user or replication or rds_replication):
            reasons.append(f"user {c.user!r} may not replicate: ALTER ROLE \"{c.user}\" WITH "
                           f"REPLICATION (on Amazon RDS: GRANT rds_replication TO \"{c.user}\")")
        if not (super_user or create):
            reasons.append(f"user {c.user!r} may not create a publication in database "
                           f"{c.postgres_database!r}: GRANT CREATE ON DATABASE "
                           f"\"{c.postgres_database}\" TO \"{c.user}\"")
        namespace = self._namespace()
        wanted = None if tables is None else sorted(set(tables))
        rows = self._query(
            f"SELECT c.relname, pg_has_role(current_user, c.relowner, 'USAGE'), "
            f"c.relreplident, EXISTS (SELECT 1 FROM pg_constraint k "
            f"WHERE k.conrelid = c.oid AND k.contype = 'p') "
            f"FROM pg_class c WHERE c.relnamespace = %s AND {_TABLES} "
            f"AND (%s::text[] IS NULL OR c.relname = ANY(%s::text[])) ORDER BY c.relname",
            [namespace, wanted, wanted], "checking the tables for logical decoding")
        if not super_user:
            reasons.extend(_named_tables(
                [name for name, owned, _, _ in rows if not owned],
                f"user {c.user!r} does not own table {{}} in schema {c.target!r}, so it may "
                f"not publish it: ALTER TABLE ... OWNER TO \"{c.user}\" (or a role it "
                f"belongs to)"))
        reasons.extend(_named_tables(
            [name for name, _, identity, has_key in rows
             if not (identity == "f" or (identity == "d" and has_key))],
            f"table {{}} in schema {c.target!r} has no primary key and no REPLICA IDENTITY "
            f"FULL, so its updates and deletes cannot be streamed: add a primary key or run "
            f"ALTER TABLE ... REPLICA IDENTITY FULL"))
        return not reasons, reasons

    def _end_transaction(self) -> None:
        if self._pinned:
            return  # inside consistent_read: the transaction ends with it
        if self._connection is not None and not self._connection.closed:
            try:
                self._connection.rollback()
            except _DRIVER_ERRORS:
                self.close()

    def _translate(self, exc: Exception, doing: str) -> SourceError:
        c = self.credentials
        where = f"{c.host}:{c.port}"
        pgcode = getattr(exc, "pgcode", None) or ""
        detail = scrub(getattr(exc, "pgerror", None) or exc, c.password)
        text = detail.lower()
        if pgcode == "42501" or "permission denied" in text:
            return SourceError("access_denied", f"user {c.user!r} may not read schema "
                               f"{c.target!r} while {doing}: grant it CONNECT on the database, "
                               f"USAGE on the schema and SELECT on its tables ({detail})")
        if pgcode == "3D000" or (not pgcode and "database" in text and "does not exist" in text):
            return SourceError("schema_missing", f"database {c.postgres_database!r} does not "
                               f"exist on the PostgreSQL server at {where}")
        if pgcode == "3F000":
            return SourceError("schema_missing", f"schema {c.schema!r} does not exist in "
                               f"database {c.postgres_database!r}")
        if pgcode.startswith("28") or (
                not pgcode and any(marker in text for marker in _AUTH_FAILED_TEXT)):
            return self._rejected("the server's pg_hba.conf lets the user connect from this "
                                  "service's address")
        if pgcode.startswith("08") or pgcode in ("57P01", "57P02", "57P03") or (
                not pgcode and (isinstance(exc, psycopg2.OperationalError)
                                or any(marker in text for marker in _UNREACHABLE_TEXT))):
            return self._unreachable(doing, detail)
        return self._failed(doing, detail)

    def _query(self, sql: str, params=(), doing: str = "reading the schema") -> list[tuple]:
        """The rows of `sql`; always %-formatted (see quote_identifier), so `%` is `%%`."""
        try:
            with self._conn.cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.fetchall()
        except _DRIVER_ERRORS as exc:
            raise self._translate(exc, doing) from None
        finally:
            self._end_transaction()

    # -- schema --------------------------------------------------------------

    def _namespace(self) -> int:
        rows = self._query("SELECT oid, has_schema_privilege(oid, 'USAGE') FROM pg_namespace "
                           "WHERE nspname = %s", [self.credentials.schema],
                           "checking the schema")
        if not rows:
            c = self.credentials
            raise SourceError("schema_missing", f"schema {c.schema!r} does not exist in "
                              f"database {c.postgres_database!r} on the PostgreSQL server at "
                              f"{c.host}:{c.port}")
        oid, usable = rows[0]
        if not usable:
            raise SourceError("access_denied", f"user {self.credentials.user!r} may not use "
                              f"schema {self.credentials.target!r}: grant it USAGE on the schema "
                              f"and SELECT on its tables")
        return oid

    def check_access(self) -> None:
        namespace = self._namespace()
        denied = [row[0] for row in self._query(
            f"SELECT c.relname FROM pg_class c WHERE c.relnamespace = %s AND {_TABLES} "
            f"AND NOT has_any_column_privilege(c.oid, 'SELECT') ORDER BY c.relname",
            [namespace], "checking that its tables are readable")]
        if denied:
            raise self._tables_denied(denied, f"schema {self.credentials.target!r}",
                                      "the schema's tables")

    def introspect(self) -> SourceSchema:
        namespace = self._namespace()
        names = sorted(row[0] for row in self._query(
            f"SELECT c.relname FROM pg_class c WHERE c.relnamespace = %s AND {_TABLES}",
            [namespace]))
        columns = {name: [] for name in names}
        for table, column, nullable, source_type, type_name, type_kind, category in self._query(
                _COLUMNS_SQL.format(table_filter=""), {"namespace": namespace}):
            if table in columns:
                columns[table].append(SourceColumn(
                    name=column, type=logical_type(type_name, type_kind, category),
                    source_type=source_type, nullable=nullable))
        primary_keys = {name: [] for name in names}
        for table, column in self._query(
                "SELECT c.relname, a.attname FROM pg_constraint k "
                "JOIN pg_class c ON c.oid = k.conrelid "
                "CROSS JOIN LATERAL unnest(k.conkey) WITH ORDINALITY AS u(attnum, ord) "
                "JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.attnum "
                "WHERE k.contype = 'p' AND c.relnamespace = %s "
                "ORDER BY c.relname, u.ord", [namespace]):
            if table in primary_keys:
                primary_keys[table].append(column)
        key_columns = self._query(
                "SELECT c.relname, k.conname, a.attname, tc.relname, ta.attname "
                "FROM pg_constraint k "
                "JOIN pg_class c ON c.oid = k.conrelid "
                "JOIN pg_class tc ON tc.oid = k.confrelid "
                "CROSS JOIN LATERAL unnest(k.conkey, k.confkey) WITH ORDINALITY "
                "    AS u(attnum, target_attnum, ord) "
                "JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.attnum "
                "JOIN pg_attribute ta ON ta.attrelid = k.confrelid AND ta.attnum = u.target_attnum "
                "WHERE k.contype = 'f' AND c.relnamespace = %s AND tc.relnamespace = %s "
                "ORDER BY c.relname, k.conname, u.ord", [namespace, namespace])
        return assemble_schema(self.backend, self.credentials.schema, names, columns, primary_keys, key_columns)

    def row_count_estimates(self) -> dict[str, int | None]:
        rows = self._query(
            f"SELECT c.relname, c.reltuples FROM pg_class c "
            f"JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND {_TABLES}",
            [self.credentials.schema])
        # reltuples is -1 until the table is first vacuumed or analysed.
        return {name: (None if count is None or count < 0 else int(count))
                for name, count in rows}

    # -- rows ----------------------------------------------------------------

    def _select(self, table: artifact.Table):
        """The SELECT list and the per-column converters for `table`."""
        namespace = self._namespace()
        base_types = {
            column: (type_name, category)
            for _, column, _, _, type_name, _, category in self._query(
                _COLUMNS_SQL.format(table_filter="AND c.relname = %(table)s"),
                {"namespace": namespace, "table": table.name}, f"reading table {table.name!r}")}
        found = self._columns_found(table, base_types, f"schema {self.credentials.target!r}")
        expressions, converters = [], []
        for column, (type_name, category) in zip(table.columns, found, strict=True):
            expression, converter = _read(quote_identifier(column.name), column.type,
                                          type_name, category)
            expressions.append(expression)
            converters.append(converter)
        return expressions, values.row_converter(converters)

    def stream_rows(self, table: artifact.Table, where: tuple[str, list] | None = None, *,
                    batch_size: int = 5000) -> Iterator[list[tuple]]:
        expressions, convert = self._select(table)
        sql, params = self._select_rows(table, expressions, where)
        cursor = None
        try:
            # A named cursor is a server-side cursor: only one batch is in memory.
            cursor = self._conn.cursor(name=f"rx_stream_{next(self._cursor_names)}")
            cursor.itersize = batch_size
            psycopg2.extensions.register_type(_NUMERIC_AS_FLOAT, cursor)
            self._active_cursor = cursor
            cursor.execute(sql, params)
            yield from converted_batches(cursor, batch_size, convert)
        except _DRIVER_ERRORS as exc:
            raise self._translate(exc, f"reading table {table.name!r}") from None
        finally:
            self._active_cursor = None
            if cursor is not None:
                with contextlib.suppress(*_DRIVER_ERRORS):
                    cursor.close()
            self._end_transaction()


def _named_tables(names: list[str], template: str) -> list[str]:
    """One reason naming the first few of `names` (none when empty)."""
    if not names:
        return []
    shown = ", ".join(repr(name) for name in names[:5])
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    return [template.format(shown + more)]


def _read(quoted: str, kind: str, type_name: str, category: str):
    """The SELECT expression and the storage conversion of one column (None: the value
    arrives in storage form, so no Python runs per row for it).

    Conversions are done in SQL where PostgreSQL can do them exactly like
    app/sources/values.py: booleans as 0/1, infinite and BC dates and timestamps as NULL,
    timestamps as ISO text with 'T' (and 'Z', in UTC, when zoned). Numerics arrive as
    their text and become floats in psycopg2's C caster (`_NUMERIC_AS_FLOAT`), as
    `float(Decimal)` would (NaN, and infinity past the float range, included).
    """
    if kind == "boolean":
        return f"{quoted}::int", None
    if kind == "binary":
        return quoted, values.to_bytes
    if kind == "decimal":
        return f"{quoted}::numeric", None   # money and domains too: the caster keys on numeric
    if kind in ("integer", "float"):
        return quoted, None
    if kind == "json":
        if category == "A" or type_name not in ("json", "jsonb"):
            return f"to_json({quoted})::text", None
        return f"{quoted}::text", None
    if kind == "date":
        return (f"CASE WHEN isfinite({quoted}) AND {quoted} >= DATE '0001-01-01' "
                f"THEN {quoted}::text END"), None
    if kind == "datetime":
        if type_name == "timestamptz":
            return (f"CASE WHEN isfinite({quoted}) AND {quoted} >= TIMESTAMPTZ "
                    f"'0001-01-01 00:00:00+00' THEN replace(({quoted} AT TIME ZONE 'UTC')::text, "
                    f"' ', 'T') || 'Z' END"), None
        return (f"CASE WHEN isfinite({quoted}) AND {quoted} >= TIMESTAMP '0001-01-01' "
                f"THEN replace({quoted}::text, ' ', 'T') END"), None
    if kind == "time":
        # A time's text is already its storage form; a zoned one is moved to UTC in Python.
        return f"{quoted}::text", (values.zoned_time_text if type_name == "timetz" else None)
    return f"{quoted}::text", None
