"""The change readers against real servers: what comes out of the stream, and where it resumes.

Each test runs on MariaDB (binlog) and PostgreSQL (logical decoding) unless it names one.
"""

from __future__ import annotations

import threading
import tracemalloc

import pytest

from app.contracts.changes import RowChange, SchemaChange, SourceTransaction
from app.sources import open_source
from app.sources.cdc import TransactionTooLarge
from tests.cdc.conftest import read, read_quiet


def rows(item: SourceTransaction) -> list[tuple]:
    """(table, kind, before, after) of each change, to compare whole transactions."""
    return [(c.table, c.kind, c.before, c.after) for c in item.changes]


def test_insert_update_key_update_and_delete_come_out_as_committed(case):
    capture, position = case.start()
    case.execute("INSERT INTO {s}.items VALUES (1, 'apple', 3)",
                 "UPDATE {s}.items SET qty = 4 WHERE id = 1",
                 "UPDATE {s}.items SET id = 2 WHERE id = 1",
                 "DELETE FROM {s}.items WHERE id = 2")
    with capture.open_reader(position) as reader:
        items = read(reader, 4)
        assert read_quiet(reader) == []
    assert all(isinstance(item, SourceTransaction) for item in items)
    apple = {"id": 1, "name": "apple", "qty": 3}
    # PostgreSQL's `before` holds the replica identity (the key); MySQL's the whole row.
    full = case.backend == "mysql"
    assert [rows(item) for item in items] == [
        [("items", "insert", None, apple)],
        [("items", "update", apple if full else {"id": 1}, {**apple, "qty": 4})],
        [("items", "update", {**apple, "qty": 4} if full else {"id": 1},
          {"id": 2, "name": "apple", "qty": 4})],
        [("items", "delete", {"id": 2, "name": "apple", "qty": 4} if full else {"id": 2},
          None)],
    ]
    positions = [item.position for item in items]
    assert len(set(positions)) == 4 and all("#" not in p for p in positions)
    assert all(item.committed_at is not None for item in items)


def test_a_multi_statement_transaction_is_one_item_and_a_rollback_none(case):
    capture, position = case.start()
    case.transaction("INSERT INTO {s}.items VALUES (1, 'a', 1)",
                     "INSERT INTO {s}.notes VALUES (1, 'n')",
                     "UPDATE {s}.items SET qty = 2 WHERE id = 1",
                     "INSERT INTO {s}.ignored VALUES (1, 1)")
    case.transaction("INSERT INTO {s}.items VALUES (9, 'never', 9)",
                     "DELETE FROM {s}.notes", rollback=True)
    case.execute("INSERT INTO {s}.items VALUES (2, 'b', 1)")
    with capture.open_reader(position) as reader:
        first, second = read(reader, 2)
        assert read_quiet(reader) == []
    before = {"id": 1, "name": "a", "qty": 1} if case.backend == "mysql" else {"id": 1}
    assert rows(first) == [
        ("items", "insert", None, {"id": 1, "name": "a", "qty": 1}),
        ("notes", "insert", None, {"id": 1, "body": "n"}),
        ("items", "update", before, {"id": 1, "name": "a", "qty": 2}),
    ]
    assert rows(second) == [("items", "insert", None, {"id": 2, "name": "b", "qty": 1})]


def test_only_the_artifact_tables_of_the_schema_are_read(case):
    capture, position = case.start()
    other = f"rx_cdc_other_{case.schema[-8:]}"
    if case.backend == "mysql":
        case.execute(f"CREATE DATABASE `{other}`",
                     f"CREATE TABLE `{other}`.items (id INT PRIMARY KEY, name TEXT, qty INT)",
                     f"INSERT INTO `{other}`.items VALUES (1, 'elsewhere', 1)")
    else:
        case.execute(f'CREATE SCHEMA "{other}"',
                     f'CREATE TABLE "{other}".items (id int PRIMARY KEY, name text, qty int)',
                     f'INSERT INTO "{other}".items VALUES (1, \'elsewhere\', 1)')
    try:
        case.execute("INSERT INTO {s}.ignored VALUES (1, 1)",
                     "INSERT INTO {s}.notes VALUES (5, 'here')")
        with capture.open_reader(position) as reader:
            (item,) = read(reader, 1)
            assert read_quiet(reader) == []
        assert rows(item) == [("notes", "insert", None, {"id": 5, "body": "here"})]
    finally:
        drop = "DATABASE" if case.backend == "mysql" else "SCHEMA"
        case.execute(f"DROP {drop} {case.q(other)}" + (" CASCADE" if drop == "SCHEMA" else ""))


def _all_types_case(case):
    """Create all_types (every mapped type); the statements that fill it, to run as given."""
    if case.backend == "mysql":
        from tests.sources import mysql_data
        case.execute(*[s for s in mysql_data.DDL if "all_types" in s])
        # Zero dates are part of the rows.
        return ["SET SESSION sql_mode = ''", *mysql_data._ALL_TYPES_ROWS]
    from tests.sources import postgres_data
    schema = case.q(case.schema)
    case.execute(*[s for s in postgres_data.DDL if s.lstrip().startswith("CREATE")
                   and ("mood" in s or "positive_int" in s or "all_types" in s)])
    return [s.format(s=schema) for s in postgres_data.DDL
            if s.lstrip().startswith("INSERT") and "all_types" in s]


def test_values_are_converted_exactly_as_a_full_load_stores_them(case):
    inserts = _all_types_case(case)
    schema_artifact = case.artifact(tables=("all_types",))
    capture, position = case.start(schema_artifact)
    connection = case.connect()
    with connection.cursor() as cursor:
        for statement in inserts:
            cursor.execute(statement, ())
    connection.close()
    table = schema_artifact.table("all_types")
    names = [column.name for column in table.columns]
    with capture.open_reader(position) as reader:
        streamed = [tuple(change.after[name] for name in names)
                    for item in read(reader, len(inserts) - (case.backend == "mysql"))
                    for change in item.changes]
    with open_source(case.credentials) as source:
        loaded = [row for batch in source.stream_rows(table) for row in batch]
    assert sorted(streamed) == sorted(loaded)
    assert len(loaded) == 3


def test_a_100000_row_transaction_is_streamed_whole_within_bounded_memory(case):
    capture, position = case.start()
    if case.backend == "mysql":   # MariaDB's sequence engine: seq_1_to_N
        case.execute("INSERT INTO {s}.items SELECT seq, CONCAT('item ', seq), seq "
                     "FROM seq_1_to_100000")
    else:
        case.execute("INSERT INTO {s}.items SELECT i, 'item ' || i, i "
                     "FROM generate_series(1, 100000) AS i")
    with capture.open_reader(position) as reader:
        tracemalloc.start()
        try:
            (item,) = read(reader, 1, timeout=120)
            held, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert len(item.changes) == 100_000
    assert item.changes[0] == RowChange("items", "insert",
                                        after={"id": 1, "name": "item 1", "qty": 1})
    assert item.changes[-1].after == {"id": 100000, "name": "item 100000", "qty": 100000}
    # The transaction is held once: the peak while reading it stays well under twice what
    # the finished transaction holds (no second copy of the rows, no raw events kept).
    assert peak < 1.5 * held, (held, peak)


def test_a_transaction_past_the_limit_asks_for_a_reload(case):
    capture, position = case.start(max_transaction_changes=10)
    case.transaction(*[f"INSERT INTO {{s}}.items VALUES ({i}, 'x', 1)" for i in range(11)])
    with capture.open_reader(position) as reader:
        with pytest.raises(TransactionTooLarge, match="more than 10 rows"):
            read(reader, 1)


def test_resuming_from_a_saved_position_loses_and_repeats_nothing(case):
    capture, position = case.start()
    for i in range(1, 4):
        case.execute(f"INSERT INTO {{s}}.items VALUES ({i}, 'n{i}', {i})")
    with capture.open_reader(position) as reader:
        first = read(reader, 1)[0]
        reader.confirm(first.position)
    case.execute("INSERT INTO {s}.items VALUES (4, 'n4', 4)")
    with capture.open_reader(first.position) as reader:
        rest = read(reader, 3)
        assert read_quiet(reader) == []
        end = reader.position
    # An idle reader's position may move past the last item (past what the server skipped:
    # writes to other databases of a shared server), so resume from it: nothing repeats,
    # nothing written after it is lost.
    case.execute("INSERT INTO {s}.items VALUES (5, 'n5', 5)")
    with capture.open_reader(end) as reader:
        after = read(reader, 1)
        assert read_quiet(reader) == []
    assert [item.changes[0].after["id"] for item in [first, *rest, *after]] == [1, 2, 3, 4, 5]


def test_a_source_restart_mid_stream_reconnects_from_the_last_position(case):
    capture, position = case.start()
    case.execute("INSERT INTO {s}.items VALUES (1, 'before', 1)")
    with capture.open_reader(position) as reader:
        (first,) = read(reader, 1)
        assert first.changes[0].after["id"] == 1
        reader.confirm(first.position)
        # The reader is polled while the server restarts, as an instance's apply loop does
        # (a PostgreSQL server waits at shutdown for its WAL senders' clients to confirm).
        restart = threading.Thread(target=case.local.restart)
        restart.start()
        while restart.is_alive():
            assert reader.poll(timeout=0.2) is None
        restart.join()
        case.execute("INSERT INTO {s}.items VALUES (2, 'after', 1)")
        after = read(reader, 1, timeout=60)
        assert [c.after["id"] for c in after[0].changes] == [2]
        assert read_quiet(reader) == []
        assert reader.reconnects >= 1
        assert reader.status == "streaming"


def test_ddl_and_truncate_come_out_as_schema_changes_in_order(mysql_case):
    case = mysql_case
    capture, position = case.start()
    case.execute("INSERT INTO {s}.items VALUES (1, 'a', 1)",
                 "TRUNCATE TABLE {s}.items",
                 "ALTER TABLE {s}.notes ADD COLUMN extra INT",
                 "ALTER TABLE {s}.ignored ADD COLUMN extra INT",
                 "CREATE TABLE {s}.fresh (id INT PRIMARY KEY)",
                 "RENAME TABLE {s}.notes TO {s}.notes_old, {s}.notes_old TO {s}.notes",
                 "DROP TABLE {s}.items, {s}.notes, {s}.fresh")
    with capture.open_reader(position) as reader:
        items = read(reader, 8)
        assert read_quiet(reader) == []
    assert rows(items[0]) == [("items", "insert", None, {"id": 1, "name": "a", "qty": 1})]
    assert [(i.table, i.kind) for i in items[1:]] == [
        ("items", "truncate"), ("notes", "alter"), ("fresh", "create"), ("notes", "rename"),
        ("notes", "rename"), ("items", "drop"), ("notes", "drop")]
    assert all(isinstance(i, SchemaChange) for i in items[1:])
    assert items[2].statement == f"ALTER TABLE `{case.schema}`.notes ADD COLUMN extra INT"
    # Several items of one statement: those before the last resume inside it.
    drop_items, drop_notes = items[6], items[7]
    assert drop_items.position == f"{items[5].position}#1"
    assert items[4].position == f"{items[3].position}#1"
    with capture.open_reader(drop_items.position) as reader:
        assert read(reader, 1) == [drop_notes]


def test_truncate_and_shape_changes_on_postgres(postgres_case):
    case = postgres_case
    capture, position = case.start()
    case.execute("INSERT INTO {s}.items VALUES (1, 'a', 1)", "TRUNCATE {s}.notes")
    case.transaction("INSERT INTO {s}.notes VALUES (1, 'x')", "TRUNCATE {s}.items",
                     "INSERT INTO {s}.items VALUES (2, 'b', 2)")
    case.execute("ALTER TABLE {s}.notes ALTER COLUMN body TYPE int USING 0",
                 "INSERT INTO {s}.notes VALUES (2, 5)",
                 "ALTER TABLE {s}.items RENAME TO items_old",
                 "INSERT INTO {s}.items_old VALUES (3, 'c', 3)")
    with capture.open_reader(position) as reader:
        items = read(reader, 7)
        assert read_quiet(reader) == []
    first, truncate_notes, mixed_1, mixed_2, mixed_3, altered, renamed = items
    assert rows(first) == [("items", "insert", None, {"id": 1, "name": "a", "qty": 1})]
    assert (truncate_notes.table, truncate_notes.kind) == ("notes", "truncate")
    # One source transaction in statement order; the items inside resume inside it.
    assert rows(mixed_1) == [("notes", "insert", None, {"id": 1, "body": "x"})]
    assert (mixed_2.table, mixed_2.kind) == ("items", "truncate")
    assert rows(mixed_3) == [("items", "insert", None, {"id": 2, "name": "b", "qty": 2})]
    assert mixed_1.position == f"{truncate_notes.position}#1"
    assert mixed_2.position == f"{truncate_notes.position}#2"
    assert "#" not in mixed_3.position
    # No DDL in logical decoding: a changed table is reported with its next row change.
    assert (altered.table, altered.kind) == ("notes", "alter")
    assert "body is now integer" in altered.statement
    assert (renamed.table, renamed.kind) == ("items", "rename")
    with capture.open_reader(mixed_1.position) as reader:
        assert read(reader, 2) == [mixed_2, mixed_3]


def test_an_xa_transaction_comes_out_once_when_prepared(mysql_case):
    case = mysql_case
    capture, position = case.start()
    connection = case.connect()
    with connection.cursor() as cursor:
        for statement in ("XA START 'rx1'", f"INSERT INTO {case.q(case.schema)}.items "
                          f"VALUES (1, 'xa', 1)", "XA END 'rx1'", "XA PREPARE 'rx1'",
                          "XA COMMIT 'rx1'"):
            cursor.execute(statement)
    connection.close()
    case.execute("INSERT INTO {s}.items VALUES (2, 'plain', 1)")
    with capture.open_reader(position) as reader:
        first, second = read(reader, 2)
        assert read_quiet(reader) == []
    assert rows(first) == [("items", "insert", None, {"id": 1, "name": "xa", "qty": 1})]
    assert rows(second) == [("items", "insert", None, {"id": 2, "name": "plain", "qty": 1})]
