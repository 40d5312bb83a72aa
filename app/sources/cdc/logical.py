"""PostgreSQL change data capture: logical decoding with pgoutput, through psycopg2.

Per database (and instance) the source holds a replication slot and a publication of the
artifact's tables, both named `slot_name(database_id, instance_id)`. The slot is created with an
exported snapshot that the initial load reads (`SET TRANSACTION SNAPSHOT`), so the stream
starts exactly where the load's view ends. The reader confirms what the instance applied
(flush feedback) so the server can recycle its WAL; `release` / `drop_replication_state` drop
the slot and publication: a slot left behind makes the source keep WAL forever.
"""

from __future__ import annotations

import contextlib
import re
import select
import time
import uuid
from dataclasses import dataclass

import psycopg2
import psycopg2.errors
import psycopg2.extras
from psycopg2.extras import LogicalReplicationConnection

from app.contracts import artifact
from app.contracts.changes import RowChange
from app.sources import values
from app.sources.base import SourceCredentials, SourceError, scrub
from app.sources.cdc import pgoutput
from app.sources.cdc.base import (
    DEFAULT_MAX_TRANSACTION_CHANGES,
    Backoff,
    ChangeReader,
    Position,
    PositionLost,
    Unit,
)
from app.sources.postgres import logical_type, quote_identifier

SLOT_PREFIX = "reflexdb_"

# The same session settings as a full load (app/sources/postgres.py), plus those that make
# the text of money and bytea values fixed, so values convert exactly as a load's do.
_SESSION_OPTIONS = ("-c TimeZone=UTC -c DateStyle=ISO,YMD -c lc_monetary=C "
                    "-c bytea_output=hex -c client_encoding=UTF8")

_POSITION_LOST = ("42704",)                      # slot or publication does not exist
_TRANSIENT_CODES = ("55006", "57P01", "57P02", "57P03", "53300")   # slot busy, restarts


def slot_name(database_id, instance_id=None) -> str:
    """The replication slot (and publication) name of a database, optionally per instance:
    lowercase letters, digits and underscores, at most 63 characters."""
    name = SLOT_PREFIX + uuid.UUID(str(database_id)).hex
    if instance_id is not None:
        name += "_" + uuid.UUID(str(instance_id)).hex[:12]
    return name


def _connect(credentials: SourceCredentials, connect_timeout: int, *, replication: bool):
    c = credentials
    kwargs = {"connection_factory": LogicalReplicationConnection} if replication else {}
    connection = psycopg2.connect(host=c.host, port=int(c.port), user=c.user,
                                  password=c.password, dbname=c.postgres_database,
                                  connect_timeout=connect_timeout, options=_SESSION_OPTIONS,
                                  application_name="reflexdb-cdc", **kwargs)
    if not replication:
        connection.autocommit = True
    return connection


# Refusals that arrive before a session exists, hence without an SQLSTATE.
_REFUSED_TEXT = ("must be superuser", "must be a superuser", "replication role",
                 "permission denied", "authentication failed", "no pg_hba.conf entry",
                 "does not exist", "no password supplied", "password is required")
_AUTH_TEXT = ("authentication failed", "no pg_hba.conf entry", "no password supplied",
              "password is required")


def _refused(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(marker in text for marker in _REFUSED_TEXT)


def _translate(credentials: SourceCredentials, exc: Exception, doing: str) -> Exception:
    c = credentials
    pgcode = getattr(exc, "pgcode", None) or ""
    detail = scrub(getattr(exc, "pgerror", None) or exc, c.password)
    text = detail.lower()
    where = f"{c.host}:{c.port}"
    if pgcode.startswith("28") or (not pgcode and any(m in text for m in _AUTH_TEXT)):
        return SourceError("auth_failed", f"the PostgreSQL server at {where} rejected user "
                           f"{c.user!r} while {doing}: check the user name, the password and "
                           f"pg_hba.conf")
    if pgcode == "42501" or (not pgcode and ("superuser" in text or "replication role" in text
                                             or "permission denied" in text)):
        return SourceError("access_denied", f"user {c.user!r} may not {doing} on the "
                           f"PostgreSQL server at {where}: it needs the REPLICATION attribute "
                           f"and to own the tables (see docs/cdc.md) ({detail})")
    if pgcode == "55000" and "replication slot" in detail:
        return PositionLost(f"the replication slot on {where} can no longer be read "
                            f"({detail}): reload the snapshot")
    return SourceError("source_error", f"the PostgreSQL server at {where} failed while "
                       f"{doing}: {detail}")


def _quoted_tables(schema_artifact: artifact.SchemaArtifact, schema: str) -> str:
    return ", ".join(f"{quote_identifier(schema)}.{quote_identifier(table.name)}"
                     for table in schema_artifact.tables)


class LogicalCapture:
    """Change data capture for one PostgreSQL schema and its artifact."""

    backend = "postgres"

    def __init__(self, credentials: SourceCredentials, schema_artifact: artifact.SchemaArtifact,
                 *, database_id, instance_id=None, connect_timeout: int = 10,
                 max_transaction_changes: int = DEFAULT_MAX_TRANSACTION_CHANGES):
        self.credentials = credentials
        self.artifact = schema_artifact
        self.slot = slot_name(database_id, instance_id)
        self.publication = self.slot
        self.connect_timeout = connect_timeout
        self.max_transaction_changes = max_transaction_changes

    def prepare_publication(self) -> None:
        """Create the publication of the artifact's tables, or make an existing one list them.

        Refuses (SourceError) a table without a primary key or REPLICA IDENTITY FULL: in a
        publication, UPDATE and DELETE on such a table would fail on the source.
        """
        schema = self.credentials.schema
        names = [table.name for table in self.artifact.tables]
        try:
            with contextlib.closing(_connect(self.credentials, self.connect_timeout,
                                             replication=False)) as connection:
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT c.relname FROM pg_class c JOIN pg_namespace n "
                        "ON n.oid = c.relnamespace WHERE n.nspname = %s "
                        "AND c.relname = ANY(%s) AND NOT (c.relreplident = 'f' OR "
                        "(c.relreplident = 'd' AND EXISTS (SELECT 1 FROM pg_constraint k "
                        "WHERE k.conrelid = c.oid AND k.contype = 'p'))) ORDER BY 1",
                        [schema, names])
                    unkeyed = [row[0] for row in cursor.fetchall()]
                    if unkeyed:
                        raise SourceError("source_error", f"table {unkeyed[0]!r} in schema "
                                          f"{schema!r} has no primary key and no REPLICA "
                                          f"IDENTITY FULL, so its changes cannot be streamed: "
                                          f"add a primary key or use poll")
                    cursor.execute("SELECT 1 FROM pg_publication WHERE pubname = %s",
                                   [self.publication])
                    exists = cursor.fetchone() is not None
                    publication = quote_identifier(self.publication)
                    tables = _quoted_tables(self.artifact, schema)
                    by_root = connection.server_version >= 130000
                    # Quoted names double `%`: always %-format (an empty parameter list).
                    if exists:
                        cursor.execute(f"ALTER PUBLICATION {publication} SET TABLE {tables}", ())
                    else:
                        with_root = " WITH (publish_via_partition_root = true)" if by_root else ""
                        cursor.execute(f"CREATE PUBLICATION {publication} FOR TABLE "
                                       f"{tables}{with_root}", ())
        except psycopg2.Error as exc:
            raise _translate(self.credentials, exc, "creating the publication") from None

    @contextlib.contextmanager
    def snapshot_start(self, source):
        """Make the publication and a new slot; open `source`'s consistent read on the slot's
        exported snapshot for the initial load, and yield the slot's LSN, where the stream
        continues that very snapshot. An older slot of the same name is dropped first."""
        self.prepare_publication()
        self._drop(slot_only=True)
        try:
            connection = _connect(self.credentials, self.connect_timeout, replication=True)
            cursor = connection.cursor()
            # Without options, CREATE_REPLICATION_SLOT exports a snapshot (every version
            # from 10 on); it lives until this connection runs another command or closes.
            cursor.execute(f"CREATE_REPLICATION_SLOT {quote_identifier(self.slot)} "
                           f"LOGICAL pgoutput")
            _, consistent_point, snapshot, _ = cursor.fetchone()
        except psycopg2.Error as exc:
            raise _translate(self.credentials, exc, "creating the replication slot") from None
        try:
            with source.consistent_read(snapshot=snapshot):
                yield consistent_point
        finally:
            with contextlib.suppress(psycopg2.Error):
                connection.close()

    def open_reader(self, position: str, **options) -> LogicalReader:
        """A reader of the changes after `position` (an LSN) from this capture's slot."""
        return LogicalReader(self.credentials, self.artifact, position, slot=self.slot,
                             publication=self.publication, connect_timeout=self.connect_timeout,
                             max_transaction_changes=self.max_transaction_changes, **options)

    def release(self) -> None:
        """Drop this capture's slot and publication (the source stops keeping WAL for it)."""
        self._drop(slot_only=False)

    def _drop(self, *, slot_only: bool) -> None:
        try:
            with contextlib.closing(_connect(self.credentials, self.connect_timeout,
                                             replication=False)) as connection:
                _drop_state(connection, [self.slot], [] if slot_only else [self.publication])
        except psycopg2.Error as exc:
            raise _translate(self.credentials, exc, "dropping the replication slot") from None


def drop_replication_state(credentials: SourceCredentials, database_id, *,
                           connect_timeout: int = 10) -> list[str]:
    """Drop every replication slot and publication of `database_id` (all its instances') in
    the credentials' database; the names dropped. Terminate and delete call this."""
    prefix = slot_name(database_id)
    pattern = re.escape(prefix).replace("_", "\\_") + "%"
    try:
        with contextlib.closing(_connect(credentials, connect_timeout,
                                         replication=False)) as connection:
            with connection.cursor() as cursor:
                cursor.execute("SELECT slot_name FROM pg_replication_slots "
                               "WHERE database = current_database() AND slot_name LIKE %s",
                               [pattern])
                slots = [row[0] for row in cursor.fetchall()]
                cursor.execute("SELECT pubname FROM pg_publication WHERE pubname LIKE %s",
                               [pattern])
                publications = [row[0] for row in cursor.fetchall()]
            _drop_state(connection, slots, publications)
            return sorted(set(slots) | set(publications))
    except psycopg2.Error as exc:
        raise _translate(credentials, exc, "dropping the replication slots") from None


def _drop_state(connection, slots: list[str], publications: list[str]) -> None:
    with connection.cursor() as cursor:
        for slot in slots:
            for _ in range(50):
                # A slot still streaming to a stopped instance's connection is in use until
                # the server notices; end that connection, then drop.
                cursor.execute("SELECT active_pid FROM pg_replication_slots "
                               "WHERE slot_name = %s", [slot])
                row = cursor.fetchone()
                if row is None:
                    break
                if row[0] is not None:
                    cursor.execute("SELECT pg_terminate_backend(%s)", [row[0]])
                try:
                    cursor.execute("SELECT pg_drop_replication_slot(%s)", [slot])
                    break
                except (psycopg2.errors.ObjectInUse, psycopg2.errors.UndefinedObject):
                    time.sleep(0.1)
        for publication in publications:
            cursor.execute(f"DROP PUBLICATION IF EXISTS {quote_identifier(publication)}", ())


# -- the reader --------------------------------------------------------------------------

@dataclass
class _Table:
    """How one relation's tuples become an artifact table's rows (None: not replicated)."""

    name: str
    # (tuple index, artifact column name, converter, cast type for to_json or None)
    columns: list
    key_indexes: list[int]          # replica identity columns, by tuple index


class LogicalReader(ChangeReader):
    """The artifact's tables' changes from a logical replication slot, from an LSN."""

    backend = "postgres"

    def __init__(self, credentials: SourceCredentials, schema_artifact: artifact.SchemaArtifact,
                 position: str, *, slot: str, publication: str, connect_timeout: int = 10,
                 status_interval: float = 10.0,
                 max_transaction_changes: int = DEFAULT_MAX_TRANSACTION_CHANGES,
                 backoff: Backoff | None = None):
        super().__init__(position, max_transaction_changes=max_transaction_changes,
                         backoff=backoff)
        pgoutput.parse_lsn(self._boundary)
        self.credentials = credentials
        self.schema = schema_artifact.schema
        self.tables = {table.name: table for table in schema_artifact.tables}
        self.slot = slot
        self.publication = publication
        self.connect_timeout = connect_timeout
        self.status_interval = status_interval
        self._connection = None
        self._cursor = None
        self._side = None                       # a plain connection: type names, to_json
        self._relations: dict[int, _Table | None] = {}
        self._table_oids: dict[int, str] = {}   # artifact tables by oid, found at connect
        self._types: dict[tuple[int, int], tuple] = {}
        self._unit: Unit | None = None
        self._deferred: list = []               # (row dict, column, text, cast type)
        self._confirmed = pgoutput.parse_lsn(self._boundary)
        self._sent = 0
        self._queued_lsn = self._confirmed      # boundary of the last item queued

    # -- connection --------------------------------------------------------------

    def _connect(self) -> None:
        self._unit = None
        self._deferred = []
        self._relations = {}
        side = self._side_connection()
        with side.cursor() as cursor:
            cursor.execute("SELECT c.oid, c.relname FROM pg_class c JOIN pg_namespace n "
                           "ON n.oid = c.relnamespace WHERE n.nspname = %s "
                           "AND c.relname = ANY(%s)", [self.schema, list(self.tables)])
            for oid, name in cursor.fetchall():
                self._table_oids.setdefault(oid, name)
        self._connection = _connect(self.credentials, self.connect_timeout, replication=True)
        self._cursor = self._connection.cursor()
        self._cursor.start_replication(
            slot_name=self.slot, decode=False, start_lsn=self._boundary,
            options={"proto_version": "1", "publication_names": self.publication},
            status_interval=self.status_interval)
        self._sent = 0
        self._send_feedback()

    def _side_connection(self):
        if self._side is None or self._side.closed:
            self._side = _connect(self.credentials, self.connect_timeout, replication=False)
        return self._side

    def _disconnect(self) -> None:
        for connection in (self._connection, self._side):
            if connection is not None:
                with contextlib.suppress(Exception):
                    connection.close()
        self._connection = self._cursor = self._side = None
        self._unit = None
        self._deferred = []

    def _transient(self, exc: Exception) -> bool:
        if isinstance(exc, OSError):
            return True
        if isinstance(exc, psycopg2.Error):
            code = exc.pgcode or ""
            if code in _TRANSIENT_CODES or code.startswith("08"):
                return True
            return not code and not _refused(exc) and isinstance(exc, (
                                                 psycopg2.OperationalError,
                                                 psycopg2.InterfaceError,
                                                 psycopg2.DatabaseError))
        return False

    def _translate(self, exc: Exception, doing: str) -> Exception:
        code = getattr(exc, "pgcode", None) or ""
        if code in _POSITION_LOST:
            detail = scrub(getattr(exc, "pgerror", None) or exc, self.credentials.password)
            return PositionLost(f"the replication slot {self.slot!r} or its publication is "
                                f"gone ({detail}): reload the snapshot")
        return _translate(self.credentials, exc, doing)

    # -- feedback ----------------------------------------------------------------

    def confirm(self, position: str) -> None:
        lsn = pgoutput.parse_lsn(Position.parse(position).boundary)
        if lsn > self._confirmed:
            self._confirmed = lsn
        with contextlib.suppress(psycopg2.Error, AttributeError):
            self._send_feedback()

    def _send_feedback(self) -> None:
        if self._cursor is not None and self._confirmed > self._sent:
            self._cursor.send_feedback(write_lsn=self._confirmed, flush_lsn=self._confirmed,
                                       apply_lsn=self._confirmed)
            self._sent = self._confirmed

    def _idle(self) -> None:
        """Nothing to read: move past what the server skipped (other tables, empty
        transactions), and, once the caller confirmed all it was handed, release it."""
        if self._unit is not None or self._ready or self._skip:
            return
        wal_end = self._cursor.wal_end or 0
        if wal_end > pgoutput.parse_lsn(self._boundary):
            self._boundary = pgoutput.lsn_text(wal_end)
        if self._confirmed >= self._queued_lsn and wal_end > self._confirmed:
            self._confirmed = self._queued_lsn = wal_end
        self._send_feedback()

    # -- reading -----------------------------------------------------------------

    def _read(self, deadline: float) -> None:
        cursor = self._cursor
        while True:
            message = cursor.read_message()
            if message is None:
                self._idle()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                select.select([cursor], [], [], min(remaining, 1.0))
                continue
            if self._handle(pgoutput.parse(message.payload)):
                return
            if time.monotonic() >= deadline:
                return

    def _handle(self, message) -> bool:
        if isinstance(message, pgoutput.Begin):
            self._unit = Unit(committed_at=message.committed_at)
            return False
        unit = self._unit
        if isinstance(message, pgoutput.Commit):
            self._unit = None
            self._resolve_deferred()
            before = len(self._ready)
            self._finish_unit(unit or Unit(), pgoutput.lsn_text(message.end_lsn))
            if len(self._ready) > before:
                self._queued_lsn = message.end_lsn
            return len(self._ready) > before
        if unit is None:
            return False
        if isinstance(message, pgoutput.Relation):
            self._relations[message.oid] = self._relation(message, unit)
        elif isinstance(message, (pgoutput.Insert, pgoutput.Update, pgoutput.Delete)):
            table = self._relations.get(message.oid)
            if table is not None:
                unit.add_change(self._change(table, message))
                self._check_size(unit)
        elif isinstance(message, pgoutput.Truncate):
            for oid in message.oids:
                table = self._relations.get(oid)
                if table is not None:
                    unit.add_schema_change(
                        table.name, "truncate",
                        f"TRUNCATE {quote_identifier(self.schema)}."
                        f"{quote_identifier(table.name)}".replace("%%", "%"))
        return False

    def _relation(self, message: pgoutput.Relation, unit: Unit) -> _Table | None:
        """How the relation's rows map to its artifact table; a shape change is reported."""
        known = self._table_oids.get(message.oid)
        if message.namespace != self.schema or message.name not in self.tables:
            if known is not None:   # an artifact table, renamed or moved to another schema
                unit.add_schema_change(known, "rename", f"-- table {known} is now "
                                       f"{message.namespace}.{message.name}")
            return None
        table = self.tables[message.name]
        self._table_oids.setdefault(message.oid, table.name)
        by_name = {column.name: (index, column) for index, column in enumerate(message.columns)}
        columns, changed = [], []
        for column in table.columns:
            if column.name not in by_name:
                changed.append(f"{column.name} is gone")
                continue
            index, source_column = by_name[column.name]
            type_name, type_kind, category, cast = self._type(source_column)
            if logical_type(type_name, type_kind, category) != column.type:
                changed.append(f"{column.name} is now {cast}")
                continue
            convert, needs_json = _text_converter(column.type, type_name, category)
            columns.append((index, column.name, convert, cast if needs_json else None))
        if changed:
            unit.add_schema_change(table.name, "alter", f"-- table {table.name}: "
                                   f"{', '.join(changed)}")
            return None
        keys = [index for index, column in enumerate(message.columns) if column.key]
        return _Table(name=table.name, columns=columns, key_indexes=keys)

    def _type(self, column: pgoutput.RelationColumn) -> tuple:
        """(base type name, its typtype, its typcategory, the column's type in SQL)."""
        key = (column.type_oid, column.type_modifier)
        if key not in self._types:
            with self._side_connection().cursor() as cursor:
                cursor.execute(
                    "SELECT bt.typname, bt.typtype, bt.typcategory, format_type(t.oid, %s) "
                    "FROM pg_type t JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' "
                    "THEN t.typbasetype ELSE t.oid END WHERE t.oid = %s",
                    [column.type_modifier, column.type_oid])
                # A type dropped since: nothing to compare, so the column reads as text.
                self._types[key] = cursor.fetchone() or ("", "b", "", f"oid {column.type_oid}")
        return self._types[key]

    def _row(self, table: _Table, data: tuple, *, only=None) -> dict:
        row = {}
        for index, name, convert, cast in table.columns:
            if only is not None and index not in only:
                continue
            value = data[index]
            if value is pgoutput.UNCHANGED:
                continue   # an unchanged TOASTed value: the applier keeps what it has
            if value is not None:
                if cast is not None:
                    self._deferred.append((row, name, value, cast))
                elif convert is not None:
                    value = convert(value)
            row[name] = value
        return row

    def _change(self, table: _Table, message) -> RowChange:
        if isinstance(message, pgoutput.Insert):
            return RowChange(table.name, "insert", after=self._row(table, message.new))
        keys = set(table.key_indexes)
        if isinstance(message, pgoutput.Delete):
            only = keys if message.old_kind == "K" else None
            return RowChange(table.name, "delete", before=self._row(table, message.old, only=only))
        after = self._row(table, message.new)
        if message.old is None:       # the key did not change: it is in the new row
            before = self._row(table, message.new, only=keys)
        else:
            before = self._row(table, message.old,
                               only=keys if message.old_kind == "K" else None)
        return RowChange(table.name, "update", before=before, after=after)

    def _resolve_deferred(self) -> None:
        """Arrays become JSON as a full load makes them: the server's to_json, in batches."""
        if not self._deferred:
            return
        by_cast: dict[str, list] = {}
        for entry in self._deferred:
            by_cast.setdefault(entry[3], []).append(entry)
        with self._side_connection().cursor() as cursor:
            for cast, entries in by_cast.items():
                for start in range(0, len(entries), 10_000):
                    batch = entries[start:start + 10_000]
                    type_sql = cast.replace("%", "%%")
                    cursor.execute(f"SELECT to_json(v::{type_sql})::text FROM unnest(%s::text[]) "
                                   f"WITH ORDINALITY AS u(v, n) ORDER BY n",
                                   [[text for _, _, text, _ in batch]])
                    for (row, name, _, _), (converted,) in zip(batch, cursor.fetchall(),
                                                               strict=True):
                        row[name] = converted
        self._deferred = []


def _text_converter(kind: str, type_name: str, category: str):
    """(converter of the type's text output to the stored value, needs the server's to_json).

    Mirrors app/sources/postgres.py `_read`: what a full load selects and converts."""
    if kind == "boolean":
        return (lambda text: 1 if text == "t" else 0), False
    if kind == "binary":
        return (lambda text: bytes.fromhex(text[2:])), False
    if kind == "decimal":
        return (_money if type_name == "money" else float), False
    if kind == "integer":
        return int, False
    if kind == "float":
        return float, False
    if kind == "json":
        return None, category == "A" or type_name not in ("json", "jsonb")
    if kind == "date":
        return values.date_text, False
    if kind == "datetime":
        if type_name == "timestamptz":
            return (lambda text: values.datetime_text(text, zoned=True)), False
        return values.datetime_text, False
    if kind == "time":
        if type_name == "timetz":
            return (lambda text: values.time_text(text, zoned=True)), False
        return values.time_text, False
    # The casts to text a load makes (`col::text`) differ from the type's output for two types.
    if type_name == "bpchar":
        return (lambda text: text.rstrip(" ")), False
    if type_name == "inet":
        return _inet_with_mask, False
    return None, False


def _inet_with_mask(text: str) -> str:
    # inet's text cast always writes the netmask; its output leaves out a full one.
    if "/" in text:
        return text
    return text + ("/128" if ":" in text else "/32")


def _money(text: str) -> float:
    # lc_monetary=C: '$1,234.56' or '-$1,234.56'.
    return float(text.replace("$", "").replace(",", ""))
