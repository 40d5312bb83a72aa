"""Where a stream starts and what the source keeps for it: snapshot positions, lost positions,
replication slots and the feedback that lets PostgreSQL recycle WAL."""

from __future__ import annotations

import time
import uuid

import psycopg2
import pytest

from app.sources import open_source
from app.sources.cdc import PositionLost, change_capture, release_all, slot_name
from tests.cdc.conftest import read, read_quiet


def ids(source, schema_artifact, table="items") -> list[int]:
    return sorted(row[0] for batch in source.stream_rows(schema_artifact.table(table))
                  for row in batch)


def test_a_change_committed_during_the_load_shows_up_exactly_once(case):
    schema_artifact = case.artifact()
    capture = case.capture(schema_artifact)
    case.execute("INSERT INTO {s}.items VALUES (1, 'before', 1)")
    with open_source(case.credentials) as source:
        with capture.snapshot_start(source) as position:
            case.execute("INSERT INTO {s}.items VALUES (2, 'during', 1)")
            # A load's own consistent_read (Snapshot.load opens one) joins the open one.
            with source.consistent_read():
                loaded = ids(source, schema_artifact)
        assert ids(source, schema_artifact) == [1, 2]   # afterwards, a new view
    assert loaded == [1]
    with capture.open_reader(position) as reader:
        (item,) = read(reader, 1)
        assert read_quiet(reader) == []
    assert [(c.kind, c.after["id"]) for c in item.changes] == [("insert", 2)]


def test_a_consistent_read_without_cdc_reports_no_position(mysql_case):
    with open_source(mysql_case.credentials) as source:
        with source.consistent_read():
            assert source.read_position is None
        with source.consistent_read(position=True):
            assert source.read_position.startswith("binlog.")


def test_a_purged_binlog_position_is_lost(mysql_case, binlog_server):
    capture, position = mysql_case.start()
    mysql_case.execute("INSERT INTO {s}.items VALUES (1, 'a', 1)")
    connection = mysql_case.connect()
    with connection.cursor() as cursor:
        cursor.execute("FLUSH BINARY LOGS")
        cursor.execute("SHOW MASTER STATUS")
        current = cursor.fetchone()[0]
        # A log that a replica still reads (an earlier test's, until the server notices it
        # left) is not purged: try until it is gone.
        deadline = time.monotonic() + 20
        while True:
            cursor.execute("PURGE BINARY LOGS TO %s", [current])
            cursor.execute("SHOW BINARY LOGS")
            if position.split(":")[0] not in [row[0] for row in cursor.fetchall()]:
                break
            assert time.monotonic() < deadline, "the binlog was not purged"
            time.sleep(0.5)
    connection.close()
    with capture.open_reader(position) as reader:
        with pytest.raises(PositionLost, match="no longer has binlog position"):
            reader.poll(timeout=5)


def _slots(case) -> list[tuple]:
    connection = case.connect()
    with connection.cursor() as cursor:
        cursor.execute("SELECT slot_name, confirmed_flush_lsn FROM pg_replication_slots "
                       "WHERE slot_name LIKE %s ORDER BY 1", [slot_name(case.database_id) + "%"])
        slots = cursor.fetchall()
        cursor.execute("SELECT pubname FROM pg_publication WHERE pubname LIKE %s ORDER BY 1",
                       [slot_name(case.database_id) + "%"])
        publications = [row[0] for row in cursor.fetchall()]
    connection.close()
    return slots, publications


def wait_for(condition, reader, timeout: float = 15.0) -> None:
    """Poll `reader` (handing out nothing) until `condition()` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true"
        assert reader.poll(timeout=0.2) is None


def _lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def test_a_dropped_slot_is_a_lost_position(postgres_case):
    case = postgres_case
    capture, position = case.start()
    case.execute("INSERT INTO {s}.items VALUES (1, 'a', 1)")
    with capture.open_reader(position) as reader:
        (item,) = read(reader, 1)
    case.execute(f"SELECT pg_drop_replication_slot('{capture.slot}')")
    with capture.open_reader(item.position) as reader:
        with pytest.raises(PositionLost, match="is gone"):
            reader.poll(timeout=5)


def test_release_drops_the_slot_and_the_publication(postgres_case):
    case = postgres_case
    capture, _ = case.start()
    name = slot_name(case.database_id)
    slots, publications = _slots(case)
    assert [slot for slot, _ in slots] == [name] and publications == [name]
    capture.release()
    assert _slots(case) == ([], [])
    capture.release()   # again: nothing left, no error


def test_cleanup_drops_every_instance_slot_even_one_streaming(postgres_case):
    case = postgres_case
    old = case.capture(instance_id=uuid.uuid4())
    new = case.capture(instance_id=uuid.uuid4())
    with open_source(case.credentials) as source:
        with old.snapshot_start(source) as old_position:
            pass
        with new.snapshot_start(source):
            pass
    assert old.slot != new.slot and len(old.slot) <= 63
    reader = old.open_reader(old_position)
    assert reader.poll(timeout=0.5) is None      # streaming: the slot is active
    dropped = release_all(case.credentials, case.database_id)
    assert dropped == sorted([old.slot, new.slot])
    assert _slots(case) == ([], [])
    with pytest.raises(PositionLost):
        for _ in range(50):
            reader.poll(timeout=0.2)
    reader.close()


def test_confirmed_positions_are_fed_back_so_wal_is_released(postgres_case):
    case = postgres_case
    capture, position = case.start()
    case.execute("INSERT INTO {s}.items VALUES (1, 'a', 1)")
    with capture.open_reader(position) as reader:
        (item,) = read(reader, 1)
        assert _lsn(_slots(case)[0][0][1]) < _lsn(item.position)   # not applied yet
        reader.confirm(item.position)
        wait_for(lambda: _lsn(_slots(case)[0][0][1]) >= _lsn(item.position), reader)
        # Writes to tables outside the publication: nothing to hand out, yet the slot moves
        # past them once everything handed out is confirmed.
        case.execute("INSERT INTO {s}.ignored SELECT i, i FROM generate_series(1, 1000) i")
        connection = case.connect()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_current_wal_lsn()")
            written = _lsn(cursor.fetchone()[0])
        connection.close()
        wait_for(lambda: _lsn(_slots(case)[0][0][1]) >= written, reader)
        assert _lsn(reader.position) >= written


def test_a_slot_needs_keys_to_publish(postgres_case):
    case = postgres_case
    case.execute("ALTER TABLE {s}.notes DROP CONSTRAINT notes_pkey")
    capture = case.capture()
    with open_source(case.credentials) as source:
        with pytest.raises(Exception, match="'notes' .* has no primary key"):
            with capture.snapshot_start(source):
                pass
    # With REPLICA IDENTITY FULL, updates and deletes carry the whole old row.
    case.execute("ALTER TABLE {s}.notes REPLICA IDENTITY FULL",
                 "INSERT INTO {s}.notes VALUES (1, 'x')")
    capture, position = case.start()
    case.execute("UPDATE {s}.notes SET body = 'y'", "DELETE FROM {s}.notes")
    with capture.open_reader(position) as reader:
        update, delete = read(reader, 2)
    assert (update.changes[0].before, update.changes[0].after) == (
        {"id": 1, "body": "x"}, {"id": 1, "body": "y"})
    assert delete.changes[0].before == {"id": 1, "body": "y"}


def test_a_binlog_replica_needs_a_server_id(mysql_case):
    with pytest.raises(ValueError, match="server id"):
        change_capture(mysql_case.credentials, mysql_case.artifact(), server_id=0)


def test_logical_decoding_needs_a_database_id(postgres_case):
    with pytest.raises(ValueError, match="database id"):
        change_capture(postgres_case.credentials, postgres_case.artifact())


def test_unchanged_toasted_values_are_left_out_of_the_update(postgres_case):
    case = postgres_case
    big = "x" * 100_000   # stored out of line (TOAST), not re-sent when unchanged
    case.execute("ALTER TABLE {s}.notes ALTER COLUMN body SET STORAGE EXTERNAL")
    case.execute("INSERT INTO {s}.notes VALUES (1, %s)", params=[big])
    capture, position = case.start()
    case.execute("UPDATE {s}.notes SET id = 2")
    with capture.open_reader(position) as reader:
        (item,) = read(reader, 1)
    assert item.changes[0].before == {"id": 1}
    assert item.changes[0].after == {"id": 2}


def test_readers_report_psycopg_errors_as_source_errors(postgres_case):
    case = postgres_case
    capture, position = case.start()
    case.execute("CREATE ROLE rx_cdc_nobody LOGIN")
    try:
        credentials = case.credentials
        bad = type(credentials)(**{**credentials.__dict__, "user": "rx_cdc_nobody"})
        reader = type(capture)(bad, case.artifact(), database_id=case.database_id
                               ).open_reader(position)
        with pytest.raises(Exception) as raised:
            reader.poll(timeout=5)
        assert not isinstance(raised.value, psycopg2.Error)
        assert "rx_cdc_nobody" in str(raised.value)
        reader.close()
    finally:
        case.execute("DROP ROLE rx_cdc_nobody")
