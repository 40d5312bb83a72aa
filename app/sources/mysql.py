"""MySQL and MariaDB sources, through PyMySQL."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import pymysql
import pymysql.cursors
import pymysql.protocol
from pymysql.constants import FIELD_TYPE
from pymysql.converters import conversions, through

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
    scrub,
)

# Server-side wait for a slow consumer of a streamed result (seconds). The
# default (60) is too short when the loader writes a large batch.
NET_WRITE_TIMEOUT = 600

# Tables checked per probe statement in check_access.
PROBE_CHUNK = 100

_UNREACHABLE = {2002, 2003, 2005, 2006, 2013, 2055}
_AUTH_FAILED = {1045, 1130, 1251, 1698}
_ACCESS_DENIED = {1044, 1142, 1143, 1227}


# Errors a driver raises for the server, the network or the SQL.
_DRIVER_ERRORS = (pymysql.MySQLError, OSError)


def quote_identifier(name: str) -> str:
    """`name` as a MySQL identifier (see app.contracts.sql: `%` is `%%`)."""
    return quote_for(name, "mysql")


def logical_type(data_type: str, column_type: str) -> str:
    """The artifact column type of a MySQL column."""
    data_type = data_type.lower()
    column_type = column_type.lower()
    if data_type == "tinyint":
        return "boolean" if column_type.startswith("tinyint(1)") else "integer"
    if data_type == "bit":
        return "boolean" if column_type == "bit(1)" else "integer"
    return _TYPES.get(data_type, "text")


_TYPES = {
    **dict.fromkeys(("smallint", "mediumint", "int", "integer", "bigint", "year"), "integer"),
    **dict.fromkeys(("decimal", "numeric", "dec", "fixed"), "decimal"),
    **dict.fromkeys(("float", "double", "real", "double precision"), "float"),
    **dict.fromkeys(("char", "varchar", "tinytext", "text", "mediumtext", "longtext",
                     "enum", "set", "uuid", "inet4", "inet6"), "text"),
    "json": "json",
    **dict.fromkeys(("binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob",
                     "geometry", "point", "linestring", "polygon", "multipoint",
                     "multilinestring", "multipolygon", "geometrycollection"), "binary"),
    "date": "date",
    "datetime": "datetime",
    "timestamp": "datetime",
    "time": "time",
}

# Types PyMySQL already returns as str; others mapped to text (e.g. a future
# type) go through values.to_text.
_NATIVE_TEXT = {"char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set",
                "json"}

# Temporal values arrive as the server's text; decimals straight as float.
_CONVERSIONS = {**conversions, FIELD_TYPE.DATE: through, FIELD_TYPE.DATETIME: through,
                FIELD_TYPE.TIMESTAMP: through, FIELD_TYPE.TIME: through,
                FIELD_TYPE.DECIMAL: float, FIELD_TYPE.NEWDECIMAL: float}


def _error_code(exc: Exception) -> int | None:
    if exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    return None


class MySQLSource(Source):
    backend = "mysql"
    server = "MySQL"
    driver_errors = _DRIVER_ERRORS

    def __init__(self, credentials: SourceCredentials, *, connect_timeout: int = 10):
        super().__init__(credentials, connect_timeout=connect_timeout)
        self._active_cursor = None
        self._read_depth = 0       # nested consistent_read calls join the open one
        # The binlog position of the open consistent read's snapshot, when asked for.
        self.read_position: str | None = None
        self._connect()

    # -- connection ----------------------------------------------------------

    def _connect(self) -> None:
        try:
            connection = pymysql.connect(**self._login(), charset="utf8mb4", autocommit=True,
                                         conv=_CONVERSIONS, local_infile=False)
        except _DRIVER_ERRORS as exc:
            raise self._translate(exc, "connecting") from None
        try:
            with connection.cursor() as cursor:
                # UTC so TIMESTAMP values (stored in UTC) come back unshifted.
                cursor.execute("SET SESSION time_zone = '+00:00'")
                cursor.execute(f"SET SESSION net_write_timeout = {NET_WRITE_TIMEOUT}")
                cursor.execute("SET SESSION TRANSACTION READ ONLY")
        except _DRIVER_ERRORS as exc:
            connection.close()
            raise self._translate(exc, "setting up the session") from None
        self._connection = connection

    @property
    def _conn(self):
        if self._connection is None:
            self._connect()
        return self._connection

    def _abandon(self, cursor=None) -> None:
        # A half-read unbuffered result can only be skipped by reading it to the
        # end; dropping the connection is cheaper. The next call reconnects.
        for result in (getattr(cursor, "_result", None),
                       getattr(self._connection, "_result", None)):
            if result is not None:
                result.unbuffered_active = False   # nothing left to drain on a closed socket
        if self._connection is not None:
            with contextlib.suppress(*_DRIVER_ERRORS):
                self._connection._force_close()
            self._connection = None

    def _translate(self, exc: Exception, doing: str) -> SourceError:
        c = self.credentials
        code = _error_code(exc)
        detail = scrub(exc.args[1] if len(exc.args) > 1 else exc, c.password)
        if code in _UNREACHABLE:
            return self._unreachable(doing, detail)
        if code in _AUTH_FAILED:
            return self._rejected("the user may connect from this service's address")
        if code == 1049:
            return SourceError("schema_missing", f"database {c.schema!r} does not exist on "
                               f"the MySQL server at {c.host}:{c.port}")
        if code in _ACCESS_DENIED:
            return SourceError("access_denied", f"user {c.user!r} may not read database "
                               f"{c.schema!r} while {doing}: grant it SELECT on the database "
                               f"({detail})")
        return self._failed(doing, detail)

    def _query(self, sql: str, params=(), doing: str = "reading the schema") -> list[tuple]:
        """The rows of `sql`; always %-formatted (see quote_identifier), so `%` is `%%`."""
        try:
            with self._conn.cursor() as cursor:
                cursor.execute(sql, params)
                return [tuple(values.to_text(v) if isinstance(v, bytes) else v for v in row)
                        for row in cursor.fetchall()]
        except _DRIVER_ERRORS as exc:
            raise self._translate(exc, doing) from None

    # -- schema --------------------------------------------------------------

    def _table_names(self) -> list[str]:
        rows = self._query("SELECT TABLE_NAME FROM information_schema.TABLES "
                           "WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'BASE TABLE' "
                           "ORDER BY TABLE_NAME", [self.credentials.schema])
        return [row[0] for row in rows]

    def check_access(self) -> None:
        schema = self.credentials.schema
        found = self._query("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA "
                            "WHERE SCHEMA_NAME = %s", [schema], "checking the database")
        if not found:
            # Not listed: missing, or invisible to this user. USE tells which.
            try:
                self._conn.select_db(schema)
            except _DRIVER_ERRORS as exc:
                raise self._translate(exc, "opening the database") from None
        names = self._table_names()
        denied = []
        for start in range(0, len(names), PROBE_CHUNK):
            chunk = names[start:start + PROBE_CHUNK]
            if self._readable(chunk):
                continue
            # Some table in the chunk is not readable: find which, one by one.
            denied.extend(name for name in chunk if not self._readable([name]))
        if denied:
            raise self._tables_denied(denied, f"database {schema!r}", "the database's tables")

    def _readable(self, names: list[str]) -> bool:
        """Whether the user may SELECT from every table in `names` (one round trip)."""
        schema = quote_identifier(self.credentials.schema)
        probe = " UNION ALL ".join(f"SELECT 1 FROM {schema}.{quote_identifier(name)} WHERE 1 = 0"
                                   for name in names)
        try:
            self._query(probe, (), "checking that its tables are readable")
        except SourceError as error:
            if error.code == "access_denied":
                return False
            raise
        return True

    def introspect(self) -> SourceSchema:
        schema = self.credentials.schema
        names = self._table_names()
        columns = {name: [] for name in names}
        json_columns = self._mariadb_json_columns()
        for table, column, nullable, data_type, column_type in self._query(
                "SELECT TABLE_NAME, COLUMN_NAME, IS_NULLABLE, DATA_TYPE, COLUMN_TYPE "
                "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s "
                "ORDER BY TABLE_NAME, ORDINAL_POSITION", [schema]):
            if table not in columns:
                continue
            if (table, column) in json_columns:
                kind, column_type = "json", "json"
            else:
                kind = logical_type(data_type, column_type)
            columns[table].append(SourceColumn(name=column, type=kind, source_type=column_type,
                                               nullable=nullable == "YES"))
        primary_keys = {name: [] for name in names}
        for table, column in self._query(
                "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE "
                "WHERE TABLE_SCHEMA = %s AND CONSTRAINT_NAME = 'PRIMARY' "
                "ORDER BY TABLE_NAME, ORDINAL_POSITION", [schema]):
            if table in primary_keys:
                primary_keys[table].append(column)
        key_columns = self._query(
                "SELECT TABLE_NAME, CONSTRAINT_NAME, COLUMN_NAME, REFERENCED_TABLE_NAME, "
                "REFERENCED_COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE "
                "WHERE TABLE_SCHEMA = %s AND REFERENCED_TABLE_SCHEMA = %s "
                "AND REFERENCED_TABLE_NAME IS NOT NULL "
                "ORDER BY TABLE_NAME, CONSTRAINT_NAME, ORDINAL_POSITION", [schema, schema])
        return assemble_schema(self.backend, schema, names, columns, primary_keys, key_columns)

    def _mariadb_json_columns(self) -> set[tuple[str, str]]:
        # MariaDB's JSON is LONGTEXT plus a CHECK (json_valid(`col`)) constraint.
        if "mariadb" not in (self._conn.server_version or "").lower():
            return set()
        found = set()
        for table, clause in self._query(
                "SELECT TABLE_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
                "WHERE CONSTRAINT_SCHEMA = %s", [self.credentials.schema]):
            match = re.fullmatch(r"json_valid\(`((?:[^`]|``)+)`\)", clause or "")
            if match:
                found.add((table, match.group(1).replace("``", "`")))
        return found

    def _source_types(self, table: str) -> dict[str, tuple[str, str]]:
        rows = self._query("SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE "
                           "FROM information_schema.COLUMNS "
                           "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                           [self.credentials.schema, table], f"reading table {table!r}")
        return {name: (data_type.lower(), column_type.lower())
                for name, data_type, column_type in rows}

    def row_count_estimates(self) -> dict[str, int | None]:
        rows = self._query("SELECT TABLE_NAME, TABLE_ROWS FROM information_schema.TABLES "
                           "WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'BASE TABLE'",
                           [self.credentials.schema])
        return {name: (None if count is None else int(count)) for name, count in rows}

    # -- rows ----------------------------------------------------------------

    def _select(self, table: artifact.Table):
        """The SELECT list and the per-column converters for `table`."""
        found = self._columns_found(table, self._source_types(table.name),
                                    f"database {self.credentials.schema!r}")
        expressions, converters = [], []
        for column, (data_type, _) in zip(table.columns, found, strict=True):
            expression = quote_identifier(column.name)
            if column.type == "boolean":   # 0/1 from the server: no conversion per row here
                expression = f"({expression} <> 0)"
            elif data_type == "bit":   # BIT arrives as raw bytes; + 0 makes it a number
                expression = f"({expression} + 0)"
            expressions.append(expression)
            converters.append(_converter(column.type, data_type))
        return expressions, values.row_converter(converters)

    @property
    def is_mariadb(self) -> bool:
        return "mariadb" in (self._conn.server_version or "").lower()

    @contextlib.contextmanager
    def consistent_read(self, *, position: bool = False):
        """See Source.consistent_read; with `position`, `read_position` is the binlog position
        (`file:pos`) of the very snapshot read, where a change stream continues it.

        MariaDB reports it for the transaction itself (`binlog_snapshot_file/position`);
        MySQL holds a global read lock for the instant between starting the snapshot and
        reading the position (it needs the RELOAD privilege). A consistent_read inside
        another one joins it.
        """
        if self._read_depth:
            if position and self.read_position is None:
                raise RuntimeError("the open consistent read was started without a position")
            self._read_depth += 1
            try:
                yield self
            finally:
                self._read_depth -= 1
            return
        self.read_position = None
        # InnoDB: every read of this transaction sees the snapshot taken here.
        try:
            with self._conn.cursor() as cursor:
                if position and not self.is_mariadb:
                    self.read_position = self._locked_snapshot(cursor)
                else:
                    cursor.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                    if position:
                        self.read_position = self._mariadb_snapshot_position(cursor)
        except _DRIVER_ERRORS as exc:
            self._abandon()
            raise self._translate(exc, "starting a consistent read") from None
        except SourceError:
            self._abandon()
            raise
        self._read_depth = 1
        try:
            yield self
        finally:
            self._read_depth = 0
            if self._connection is not None:
                try:
                    self._connection.commit()
                except _DRIVER_ERRORS:
                    self._abandon()

    def _mariadb_snapshot_position(self, cursor) -> str:
        cursor.execute("SHOW STATUS LIKE 'binlog_snapshot_%%'", ())
        status = {name.lower(): values.to_text(value) for name, value in cursor.fetchall()}
        binlog_file = status.get("binlog_snapshot_file") or ""
        if not binlog_file:
            raise SourceError("source_error", self._binlog_off_message())
        return f"{binlog_file}:{status['binlog_snapshot_position']}"

    def _locked_snapshot(self, cursor) -> str:
        # MySQL has no per-transaction binlog position: block commits for the instant between
        # starting the snapshot and reading the position, so the two agree.
        cursor.execute("FLUSH TABLES WITH READ LOCK")
        try:
            cursor.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            row = self._binary_log_status(cursor)
        finally:
            cursor.execute("UNLOCK TABLES")
        if not row or not row[0]:
            raise SourceError("source_error", self._binlog_off_message())
        return f"{values.to_text(row[0])}:{row[1]}"

    @staticmethod
    def _binary_log_status(cursor):
        try:
            cursor.execute("SHOW BINARY LOG STATUS")      # MySQL 8.4 and later
        except pymysql.err.ProgrammingError:
            cursor.execute("SHOW MASTER STATUS")
        return cursor.fetchone()

    def _binlog_off_message(self) -> str:
        c = self.credentials
        return (f"binary logging is off on the MySQL server at {c.host}:{c.port}, so changes "
                f"cannot be streamed: start the server with log_bin enabled (see docs/cdc.md)")

    # -- change data capture prerequisites ------------------------------------

    def cdc_prerequisites(self, tables=None) -> tuple[bool, list[str]]:
        """Whether changes can be streamed from the binlog; else each missing prerequisite.

        Checks the server settings (log_bin, binlog_format=ROW, binlog_row_image=FULL,
        binlog_row_metadata=FULL), the user's REPLICATION SLAVE and REPLICATION CLIENT
        grants (and RELOAD on MySQL, for the snapshot position), and that the tables (by
        name; None = every table of the database) are transactional, so one snapshot holds.
        """
        reasons = []
        where = f"{self.credentials.host}:{self.credentials.port}"
        settings = self._server_settings()
        if settings.get("log_bin") not in ("1", "ON"):
            reasons.append(f"binary logging is off (log_bin=OFF) on {where}: start the server "
                           f"with log_bin enabled, e.g. log_bin = mysql-bin in [mysqld] of "
                           f"my.cnf, and restart it")
        for name, wanted in (("binlog_format", "ROW"), ("binlog_row_image", "FULL"),
                             ("binlog_row_metadata", "FULL")):
            value = settings.get(name)
            if value is None and name == "binlog_row_metadata":
                reasons.append(f"the server at {where} is too old to log column names in the "
                               f"binlog (binlog_row_metadata needs MariaDB 10.5 or MySQL "
                               f"8.0.14): upgrade it or use poll")
            elif value is not None and value.upper() != wanted:
                reasons.append(f"{name} is {value} on {where}, not {wanted}: run SET GLOBAL "
                               f"{name} = '{wanted}' and set {name} = {wanted} in my.cnf")
        partial = settings.get("binlog_row_value_options")
        if partial:
            reasons.append(f"binlog_row_value_options is {partial} on {where}: partial JSON "
                           f"updates cannot be streamed; SET GLOBAL binlog_row_value_options = ''")
        privileges = self._global_privileges()
        user = self.credentials.user
        if not privileges & {"ALL PRIVILEGES", "REPLICATION SLAVE", "REPLICATION REPLICA"}:
            reasons.append(f"user {user!r} lacks the REPLICATION SLAVE privilege: "
                           f"GRANT REPLICATION SLAVE ON *.* TO '{user}'@'%'")
        if not privileges & {"ALL PRIVILEGES", "REPLICATION CLIENT", "BINLOG MONITOR", "SUPER"}:
            reasons.append(f"user {user!r} lacks the REPLICATION CLIENT privilege: "
                           f"GRANT REPLICATION CLIENT ON *.* TO '{user}'@'%'")
        if not self.is_mariadb and not privileges & {"ALL PRIVILEGES", "RELOAD"}:
            reasons.append(f"user {user!r} lacks the RELOAD privilege, which MySQL needs to "
                           f"find the binlog position of the first snapshot: "
                           f"GRANT RELOAD ON *.* TO '{user}'@'%'")
        engines = self._query("SELECT TABLE_NAME, ENGINE FROM information_schema.TABLES "
                              "WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'BASE TABLE' "
                              "ORDER BY TABLE_NAME", [self.credentials.schema],
                              "checking the table engines")
        wanted_tables = None if tables is None else set(tables)
        other = [name for name, engine in engines
                 if (wanted_tables is None or name in wanted_tables)
                 and (engine or "").upper() != "INNODB"]
        if other:
            shown = ", ".join(repr(name) for name in other[:5])
            more = f" and {len(other) - 5} more" if len(other) > 5 else ""
            reasons.append(f"table {shown}{more} in database {self.credentials.schema!r} is not "
                           f"InnoDB, so no consistent snapshot holds it: ALTER TABLE ... "
                           f"ENGINE = InnoDB, or use poll")
        return not reasons, reasons

    def _server_settings(self) -> dict[str, str]:
        names = ("log_bin", "binlog_format", "binlog_row_image", "binlog_row_metadata",
                 "binlog_row_value_options")
        rows = self._query("SHOW GLOBAL VARIABLES WHERE Variable_name IN (%s, %s, %s, %s, %s)",
                           names, "checking the binlog settings")
        return {name.lower(): values.to_text(value) for name, value in rows}

    def _global_privileges(self) -> set[str]:
        """The privileges granted directly to the current user on *.* (roles are not expanded)."""
        privileges = set()
        for (grant,) in self._query("SHOW GRANTS", (), "reading the user's grants"):
            match = re.match(r"GRANT (.+?) ON \*\.\* TO ", grant or "")
            if match:
                privileges.update(part.strip().upper() for part in match.group(1).split(","))
        return privileges

    def stream_rows(self, table: artifact.Table, where: tuple[str, list] | None = None, *,
                    batch_size: int = 5000) -> Iterator[list[tuple]]:
        expressions, convert = self._select(table)
        sql, params = self._select_rows(table, expressions, where)
        finished = False
        cursor = None
        try:
            cursor = self._conn.cursor(pymysql.cursors.SSCursor)
            self._active_cursor = cursor
            cursor.execute(sql, params)
            yield from _streamed_batches(cursor, batch_size, convert)
            finished = True
        except _DRIVER_ERRORS as exc:
            finished = True  # the connection is unusable after a failed read anyway
            self._abandon(cursor)
            raise self._translate(exc, f"reading table {table.name!r}") from None
        finally:
            self._active_cursor = None
            if finished and cursor is not None and self._connection is not None:
                cursor.close()
            elif not finished:
                self._abandon(cursor)


_NULL_FIELD = 0xFB           # a field's length byte for NULL
_LONG_PACKET = 0xFFFFFF      # a payload this long continues in the next packet
_LOST = 2013                 # CR_SERVER_LOST, as PyMySQL raises it
_READ_SIZE = 256 * 1024      # bytes taken from the socket at a time


def _streamed_batches(cursor, batch_size: int, convert) -> Iterator[list[tuple]]:
    """The rows of an executed unbuffered query (`SSCursor`), `batch_size` at a time, each
    through `convert`; every value decoded exactly as PyMySQL decodes it (its per-column
    `(encoding, converter)` pairs).

    PyMySQL builds a packet object per row and makes four calls per field, which was most of
    a MariaDB load; this reads the socket in large blocks and splits the row packets and their
    fields in one loop (the text protocol: a 4-byte header, then length-prefixed fields). The
    end of the rows and an error are handed to PyMySQL's own packet code, so the connection's
    state after the result is the one PyMySQL leaves.
    """
    result = cursor._result
    connection = result.connection
    # int() and float() read ASCII bytes as they read the decoded text: no decode for numbers.
    fields = [(None if converter in (int, float) else encoding, converter)
              for encoding, converter in result.converters]
    rfile = connection._rfile
    seq = connection._next_seq_id
    buffer, at = b"", 0
    rows = []
    try:
        while True:
            # One whole packet at `at`, reading more of the socket when it is not all there.
            if len(buffer) - at < 4:
                buffer, at = _more(rfile, buffer[at:], 4), 0
            length = buffer[at] | buffer[at + 1] << 8 | buffer[at + 2] << 16
            if buffer[at + 3] != seq:
                raise _out_of_sequence(connection, buffer[at + 3], seq)
            seq = (seq + 1) % 256
            end = at + 4 + length
            if end > len(buffer):
                buffer, at = _more(rfile, buffer[at:], 4 + length), 0
                end = 4 + length
            first = buffer[at + 4] if length else 0
            if length >= _LONG_PACKET or first == 0xFF or (first == 0xFE and length < 9):
                # A payload of 16 MiB or more, an error, or the end of the rows.
                payload = buffer[at + 4:end]
                while length >= _LONG_PACKET:   # the payload goes on in the next packet
                    at = end
                    if len(buffer) - at < 4:
                        buffer, at = _more(rfile, buffer[at:], 4), 0
                    length = buffer[at] | buffer[at + 1] << 8 | buffer[at + 2] << 16
                    if buffer[at + 3] != seq:
                        raise _out_of_sequence(connection, buffer[at + 3], seq)
                    seq = (seq + 1) % 256
                    end = at + 4 + length
                    if end > len(buffer):
                        buffer, at = _more(rfile, buffer[at:], 4 + length), 0
                        end = 4 + length
                    payload += buffer[at + 4:end]
                connection._next_seq_id = seq
                packet = pymysql.protocol.MysqlPacket(payload, connection.encoding)
                if packet.is_error_packet():
                    result.unbuffered_active = False
                    packet.raise_for_error()
                if result._check_packet_is_eof(packet):
                    if end != len(buffer) or result.has_next:
                        # Nothing may follow one SELECT's rows; what did would be lost.
                        connection._force_close()
                        raise pymysql.err.InternalError("unexpected data after the rows")
                    result.unbuffered_active = False
                    result.connection = None
                    result.rows = None
                    break
                rows.append(_row(payload, 0, len(payload), fields))
            else:
                rows.append(_row(buffer, at + 4, end, fields))
            at = end
            if len(rows) >= batch_size:
                connection._next_seq_id = seq
                yield rows if convert is tuple else [convert(row) for row in rows]
                rows = []
        connection._next_seq_id = seq
        if rows:
            yield rows if convert is tuple else [convert(row) for row in rows]
    except OSError as exc:
        connection._force_close()
        raise pymysql.err.OperationalError(_LOST, f"Lost connection to MySQL server during "
                                                  f"query ({exc})") from None


def _out_of_sequence(connection, got: int, expected: int) -> pymysql.MySQLError:
    """What PyMySQL raises for a packet out of sequence; the connection is closed."""
    connection._force_close()
    if got == 0:   # MariaDB's error packet when it shuts down
        return pymysql.err.OperationalError(_LOST, "Lost connection to MySQL server during query")
    return pymysql.err.InternalError(f"Packet sequence number wrong - got {got} expected "
                                     f"{expected}")


def _more(rfile, kept: bytes, wanted: int) -> bytes:
    """`kept` followed by what the socket has next, at least `wanted` bytes in all."""
    parts = [kept]
    have = len(kept)
    while have < wanted:
        data = rfile.read1(max(_READ_SIZE, wanted - have))
        if not data:
            raise OSError("the server closed the connection")
        parts.append(data)
        have += len(data)
    return b"".join(parts)


def _row(data: bytes, position: int, end: int, fields) -> tuple:
    """The fields of one text-protocol row (`data[position:end]`), as PyMySQL decodes them."""
    row = []
    for encoding, converter in fields:
        if position >= end:
            break   # fewer fields than columns: PyMySQL stops there too
        size = data[position]
        position += 1
        if size >= _NULL_FIELD:
            if size == _NULL_FIELD:
                row.append(None)
                continue
            width = (2, 3, 8)[size - 0xFC]
            size = int.from_bytes(data[position:position + width], "little")
            position += width
        value = data[position:position + size]
        position += size
        if encoding is not None:
            value = value.decode(encoding)
        if converter is not None:
            value = converter(value)
        row.append(value)
    return tuple(row)


def _converter(kind: str, data_type: str):
    """The storage conversion of one column, or None when none is needed."""
    if kind == "boolean":
        return None   # read as (column <> 0): already 0, 1 or NULL
    if kind == "date":
        return values.date_text
    if kind == "datetime":
        if data_type == "timestamp":
            return values.zoned_datetime_text
        return values.datetime_text
    if kind == "time":
        return values.time_text
    if kind in ("text", "json") and data_type not in _NATIVE_TEXT:
        return values.to_text
    return None

