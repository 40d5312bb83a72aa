"""MySQL/MariaDB change data capture: the binlog, read as a replica (python-mysql-replication).

The reader registers as a replica with the database's `binlogServerId` and reads row events
(binlog_format=ROW, binlog_row_image=FULL, binlog_row_metadata=FULL: every column, named)
from a `file:pos` position. Events are grouped by source transaction (BEGIN .. XID, or
.. COMMIT for non-transactional tables); DDL and TRUNCATE arrive as statements and become
SchemaChanges (app/sources/cdc/ddl.py). Values are converted to what a full load of the same
row stores (app/sources/mysql.py reads the server's text; the binlog carries binary values).
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import logging
import time
import uuid
from collections.abc import Callable

import pymysql
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.constants import FIELD_TYPE
from pymysqlreplication.event import (
    HeartbeatLogEvent,
    QueryEvent,
    RotateEvent,
    XAPrepareEvent,
    XidEvent,
)
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

from app.contracts import artifact
from app.contracts.changes import RowChange
from app.sources import values
from app.sources.base import SourceCredentials, SourceError, scrub
from app.sources.cdc import ddl
from app.sources.cdc.base import (
    DEFAULT_MAX_TRANSACTION_CHANGES,
    Backoff,
    ChangeReader,
    PositionLost,
    Unit,
)

log = logging.getLogger(__name__)

_EVENTS = [QueryEvent, XidEvent, XAPrepareEvent, RotateEvent, HeartbeatLogEvent,
           WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent]

# Errors that mean the network or a restarting server: reconnect and go on.
_TRANSIENT_CODES = {2002, 2003, 2005, 2006, 2013, 2055, 1053, 1927}
_AUTH_FAILED = {1045, 1130, 1251, 1698}
_ACCESS_DENIED = {1044, 1142, 1227}
_BINLOG_DUMP_ERROR = 1236
_TRANSACTION_END = {"COMMIT", "ROLLBACK"}    # a logged ROLLBACK keeps non-transactional rows
_IGNORED_STATEMENTS = ("SAVEPOINT", "ROLLBACK TO", "XA ", "RELEASE SAVEPOINT")


def parse_position(boundary: str) -> tuple[str, int]:
    """`file:pos` as (file, pos)."""
    binlog_file, _, pos = boundary.rpartition(":")
    if not binlog_file or not pos.isdigit():
        raise ValueError(f"not a binlog position: {boundary!r}")
    return binlog_file, int(pos)


class BinlogCapture:
    """Change data capture for one MySQL/MariaDB schema and its artifact."""

    backend = "mysql"

    def __init__(self, credentials: SourceCredentials, schema_artifact: artifact.SchemaArtifact,
                 *, server_id: int, connect_timeout: int = 10, heartbeat: float = 1.0,
                 max_transaction_changes: int = DEFAULT_MAX_TRANSACTION_CHANGES):
        if not server_id or server_id < 1:
            raise ValueError("a binlog replica needs a server id of 1 or more (binlogServerId)")
        self.credentials = credentials
        self.artifact = schema_artifact
        self.server_id = server_id
        self.connect_timeout = connect_timeout
        self.heartbeat = heartbeat
        self.max_transaction_changes = max_transaction_changes

    @contextlib.contextmanager
    def snapshot_start(self, source):
        """Open `source`'s consistent read for the initial load; yield the binlog position of
        that very snapshot (the stream started there misses and repeats nothing)."""
        with source.consistent_read(position=True):
            yield source.read_position

    def open_reader(self, position: str) -> BinlogReader:
        """A reader of the changes after `position`."""
        return BinlogReader(self.credentials, self.artifact, position, server_id=self.server_id,
                            connect_timeout=self.connect_timeout, heartbeat=self.heartbeat,
                            max_transaction_changes=self.max_transaction_changes)

    def release(self) -> None:
        """Nothing to release: a binlog replica leaves no state on the source."""


class BinlogReader(ChangeReader):
    """The artifact's tables' changes from the binlog, from `position` (`file:pos`)."""

    backend = "mysql"

    def __init__(self, credentials: SourceCredentials, schema_artifact: artifact.SchemaArtifact,
                 position: str, *, server_id: int, connect_timeout: int = 10,
                 heartbeat: float = 1.0,
                 max_transaction_changes: int = DEFAULT_MAX_TRANSACTION_CHANGES,
                 backoff: Backoff | None = None):
        super().__init__(position, max_transaction_changes=max_transaction_changes,
                         backoff=backoff)
        parse_position(self._boundary)
        self.credentials = credentials
        self.schema = schema_artifact.schema
        self.tables = {table.name: table for table in schema_artifact.tables}
        self.server_id = server_id
        self.connect_timeout = connect_timeout
        self.heartbeat = heartbeat
        self._stream: BinLogStreamReader | None = None
        self._file = ""
        self._unit: Unit | None = None
        self._data_types: dict[str, dict[str, str]] | None = None
        self._decoders: dict[tuple, _RowDecoder | None] = {}

    # -- connection --------------------------------------------------------------

    def _settings(self) -> dict:
        c = self.credentials
        # Heartbeats arrive every `heartbeat` s when idle, so a silent link is a dead one.
        return {"host": c.host, "port": int(c.port), "user": c.user, "password": c.password,
                "connect_timeout": self.connect_timeout,
                "read_timeout": max(30, int(self.heartbeat * 10)), "charset": "utf8mb4"}

    def _connect(self) -> None:
        binlog_file, pos = parse_position(self._boundary)
        self._data_types = None
        self._decoders = {}
        self._file = binlog_file
        self._unit = None
        self._stream = BinLogStreamReader(
            connection_settings=self._settings(), server_id=self.server_id,
            log_file=binlog_file, log_pos=pos, resume_stream=True, blocking=True,
            only_events=_EVENTS, slave_heartbeat=self.heartbeat, enable_logging=False,
            pymysql_wrapper=self._open_connection)
        self._stream_opens = 0

    def _open_connection(self, **settings):
        # The library reconnects by itself once when the stream drops (from the event it
        # had reached); count that as a reconnect too. A failure comes back to `_try`.
        if "db" not in settings:   # the stream, not the library's information_schema one
            self._stream_opens += 1
            if self._stream_opens > 1:
                self.reconnects += 1
                self.last_error = "reading the stream: the connection dropped"
                log.warning("binlog connection dropped; reconnecting from %s:%s",
                            self._stream.log_file, self._stream.log_pos)
        return pymysql.connect(**settings)

    def _read_data_types(self) -> dict[str, dict[str, str]]:
        """The source DATA_TYPE of each column of the replicated tables (uuid, bit, year...)."""
        c = self.credentials
        connection = pymysql.connect(host=c.host, port=int(c.port), user=c.user,
                                     password=c.password, connect_timeout=self.connect_timeout,
                                     charset="utf8mb4", autocommit=True)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE "
                               "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s",
                               [self.schema])
                found: dict[str, dict[str, str]] = {}
                for table, column, data_type in cursor.fetchall():
                    if table in self.tables:
                        found.setdefault(table, {})[column] = values.to_text(data_type).lower()
                return found
        finally:
            connection.close()

    def _disconnect(self) -> None:
        if self._stream is not None:
            with contextlib.suppress(Exception):
                self._stream.close()
            self._stream = None
        self._unit = None

    def _transient(self, exc: Exception) -> bool:
        if isinstance(exc, (OSError, EOFError, _StreamEnded)):
            return True
        if isinstance(exc, pymysql.MySQLError):
            code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
            return code in _TRANSIENT_CODES
        return False

    def _translate(self, exc: Exception, doing: str) -> Exception:
        c = self.credentials
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        detail = scrub(exc.args[1] if len(exc.args) > 1 else exc, c.password)
        where = f"{c.host}:{c.port}"
        if code == _BINLOG_DUMP_ERROR:
            text = detail.lower()
            if "server id" in text or "server_id" in text or "server_uuid" in text:
                return SourceError("source_error", f"the MySQL server at {where} refused the "
                                   f"binlog replica with server id {self.server_id}: {detail}; "
                                   f"choose another binlogServerId")
            return PositionLost(f"the MySQL server at {where} no longer has binlog position "
                                f"{self._boundary} ({detail}): reload the snapshot")
        if code in _AUTH_FAILED:
            return SourceError("auth_failed", f"the MySQL server at {where} rejected user "
                               f"{c.user!r} while {doing}")
        if code in _ACCESS_DENIED:
            return SourceError("access_denied", f"user {c.user!r} may not read the binlog of "
                               f"the MySQL server at {where}: GRANT REPLICATION SLAVE, "
                               f"REPLICATION CLIENT ON *.* ({detail})")
        return SourceError("source_error", f"the MySQL server at {where} failed while "
                           f"{doing}: {detail}")

    # -- reading -----------------------------------------------------------------

    def _read(self, deadline: float) -> None:
        stream = self._stream
        while True:
            event = stream.fetchone()
            if event is None:
                raise _StreamEnded("the server ended the binlog stream")
            if self._handle(event):
                return
            if time.monotonic() >= deadline:
                return

    def _handle(self, event) -> bool:
        """Take one event; True when `poll` should return (a unit ended, or a heartbeat)."""
        if isinstance(event, (WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent)):
            if event.schema == self.schema and event.table in self.tables:
                self._add_rows(event)
            return False
        if isinstance(event, (XidEvent, XAPrepareEvent)):
            # An XA transaction is logged whole at XA PREPARE (its XA COMMIT comes later as a
            # statement): it is handed out when prepared.
            return self._end_unit(event)
        if isinstance(event, QueryEvent):
            return self._statement(event)
        if isinstance(event, RotateEvent):
            self._file = event.next_binlog
            if self._unit is None and not self._skip:
                self._boundary = f"{event.next_binlog}:{event.position}"
            return False
        return isinstance(event, HeartbeatLogEvent)

    def _statement(self, event) -> bool:
        statement = event.query if isinstance(event.query, str) else values.to_text(event.query)
        keyword = statement.strip().upper()
        if keyword == "BEGIN":
            self._unit = Unit()
            return False
        if keyword in _TRANSACTION_END:
            return self._end_unit(event)
        if keyword.startswith(_IGNORED_STATEMENTS):
            return False
        default_schema = values.to_text(event.schema) or None
        changes = [(schema, table, kind)
                   for schema, table, kind in ddl.classify(statement, default_schema)
                   if schema == self.schema
                   and (table is None or table in self.tables or kind == "create")]
        unit = self._unit or Unit()
        for _, table, kind in changes:
            unit.add_schema_change(table, kind, statement)
        if changes:   # the tables' column types are read again for their next rows
            self._data_types = None
            self._decoders = {}
        self._unit = unit
        # DDL commits implicitly: it is a unit of its own.
        return self._end_unit(event)

    def _end_unit(self, event) -> bool:
        unit = self._unit or Unit()
        self._unit = None
        unit.committed_at = float(event.timestamp) if event.timestamp else None
        before = len(self._ready)
        self._finish_unit(unit, f"{self._file}:{event.packet.log_pos}")
        return len(self._ready) > before

    def _add_rows(self, event) -> None:
        if self._unit is None:
            self._unit = Unit()
        unit = self._unit
        table = event.table
        decoder = self._decoder(event)
        if decoder is None:
            return
        if isinstance(event, WriteRowsEvent):
            for row in event.rows:
                unit.add_change(RowChange(table, "insert", after=decoder(row["values"],
                                                                           row["none_sources"])))
        elif isinstance(event, UpdateRowsEvent):
            for row in event.rows:
                unit.add_change(RowChange(
                    table, "update",
                    before=decoder(row["before_values"], row["before_none_sources"]),
                    after=decoder(row["after_values"], row["after_none_sources"])))
        else:
            for row in event.rows:
                unit.add_change(RowChange(table, "delete", before=decoder(row["values"],
                                                                            row["none_sources"])))
        self._check_size(unit)

    def _decoder(self, event) -> _RowDecoder | None:
        """The row converter for the event's table map (None: rows no longer fit the artifact)."""
        columns = event.columns
        key = (event.table, tuple((column.name, column.type) for column in columns))
        if key in self._decoders:
            return self._decoders[key]
        table = self.tables[event.table]
        by_name = {column.name: column for column in columns}
        if any(column.name is None for column in columns):
            raise SourceError("source_error", "the binlog does not name the columns of table "
                              f"{event.table!r}: set binlog_row_metadata = FULL on the server")
        missing = [column.name for column in table.columns if column.name not in by_name]
        if missing:
            self._unit.add_schema_change(
                table.name, "alter", f"-- columns {', '.join(missing)} of table {table.name} "
                f"are not in the binlog rows any more")
            decoder = None
        else:
            if self._data_types is None:
                self._data_types = self._read_data_types()
            decoder = _RowDecoder(table, by_name, self._data_types.get(table.name, {}))
        self._decoders[key] = decoder
        return decoder


class _StreamEnded(Exception):
    """The server closed the binlog stream (another replica took the server id, a restart)."""


class _RowDecoder:
    """A binlog row (column name -> decoded value) as the artifact table's stored values."""

    def __init__(self, table: artifact.Table, binlog_columns: dict, data_types: dict[str, str]):
        self.converters = []
        self.sets = []
        for column in table.columns:
            binlog_column = binlog_columns[column.name]
            data_type = data_types.get(column.name, "")
            self.converters.append((column.name, _converter(column.type, data_type,
                                                            binlog_column)))
            if binlog_column.type == FIELD_TYPE.SET:
                self.sets.append(column.name)

    def __call__(self, row: dict, none_sources: dict) -> dict:
        converted = {name: (value if convert is None or value is None else convert(value))
                     for name, convert in self.converters
                     for value in (row.get(name),)}
        for name in self.sets:   # the library reads an empty SET as None
            if converted[name] is None and none_sources.get(name) == "empty set":
                converted[name] = ""
        return converted


def _converter(kind: str, data_type: str, column) -> Callable | None:
    """How one decoded binlog value becomes the value a full load stores (None: as is)."""
    field = column.type
    if kind == "boolean":
        if field == FIELD_TYPE.BIT:
            return lambda bits: 1 if int(bits, 2) else 0
        return values.to_bool
    if kind == "integer":
        if field == FIELD_TYPE.BIT:
            return lambda bits: int(bits, 2)
        if field == FIELD_TYPE.YEAR:
            return lambda year: 0 if year == 1900 else year   # YEAR 0000 decodes as 1900
        return None
    if kind == "decimal":
        return float
    if kind == "float":
        if field == FIELD_TYPE.FLOAT:
            # The server prints FLOAT with 6 significant digits; a load reads that text.
            return lambda number: float(format(number, ".6g"))
        return None
    if kind == "date":
        return _date_text
    if kind == "datetime":
        fsp = getattr(column, "fsp", 0) or 0
        if field in (FIELD_TYPE.TIMESTAMP, FIELD_TYPE.TIMESTAMP2):
            return lambda moment: _timestamp_text(moment, fsp)
        return lambda moment: _datetime_text(moment, fsp)
    if kind == "time":
        fsp = getattr(column, "fsp", 0) or 0
        return lambda duration: _time_text(duration, fsp)
    if kind == "binary":
        if field == FIELD_TYPE.STRING:   # BINARY(n) comes without its trailing zero bytes
            length = getattr(column, "max_length", 0) or 0
            return lambda data: bytes(data).ljust(length, b"\0")
        return bytes
    if kind == "json" and field == FIELD_TYPE.JSON:
        return _mysql_json_text
    if data_type == "uuid":
        return lambda data: str(uuid.UUID(bytes=bytes(data).ljust(16, b"\0")))
    if data_type == "inet4":
        return lambda data: str(ipaddress.IPv4Address(bytes(data).ljust(4, b"\0")))
    if data_type == "inet6":
        return _inet6_text
    if field == FIELD_TYPE.SET:
        order = list(getattr(column, "set_values", None) or ())
        return lambda members: ",".join(member for member in order if member in members)
    return values.to_text


def _date_text(day):
    return values.date_text(day.isoformat()) if isinstance(day, datetime.date) else None


def _fraction(microseconds: int, fsp: int) -> str:
    return f".{microseconds:06d}"[:fsp + 1] if fsp else ""


def _datetime_text(moment, fsp: int):
    if not isinstance(moment, datetime.datetime):
        return None
    return moment.isoformat(timespec="seconds")[:19] + _fraction(moment.microsecond, fsp)


def _timestamp_text(moment, fsp: int):
    if not isinstance(moment, datetime.datetime):
        return None
    if moment == datetime.datetime(1970, 1, 1):   # the zero TIMESTAMP '0000-00-00 00:00:00'
        return None
    return _datetime_text(moment, fsp) + "Z"


def _time_text(duration: datetime.timedelta, fsp: int) -> str:
    total = (duration.days * 86_400 + duration.seconds) * 1_000_000 + duration.microseconds
    sign = "-" if total < 0 else ""
    seconds, microseconds = divmod(abs(total), 1_000_000)
    hours, rest = divmod(seconds, 3600)
    return f"{sign}{hours:02d}:{rest // 60:02d}:{rest % 60:02d}{_fraction(microseconds, fsp)}"


def _inet6_text(data) -> str:
    address = ipaddress.IPv6Address(bytes(data).ljust(16, b"\0"))
    if address.ipv4_mapped is not None:
        return f"::ffff:{address.ipv4_mapped}"
    return str(address)


def _mysql_json_text(value) -> str:
    """MySQL's binary JSON, as the server prints it (`{"a": [1, 2]}`)."""
    def plain(node):
        if isinstance(node, bytes):
            return node.decode("utf-8", "replace")
        if isinstance(node, dict):
            return {plain(key): plain(item) for key, item in node.items()}
        if isinstance(node, list):
            return [plain(item) for item in node]
        return node
    if isinstance(value, str):
        return value
    return json.dumps(plain(value), ensure_ascii=False, separators=(", ", ": "))
