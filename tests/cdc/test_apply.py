"""apply_transaction on a generation of the instance's store (SnapshotStore.write), read as a
reader process reads it (GenerationReader): what a fresh load would hold."""

from __future__ import annotations

import contextlib
import sqlite3

import pytest

from app.contracts.artifact import Column, SchemaArtifact, Table
from app.contracts.changes import RowChange, SourceTransaction
from app.instance.changes import IncompleteRow, apply_transaction
from app.instance.reader import GenerationReader
from app.instance.replication import _record_position, _recorded_position
from app.instance.snapshot import rowid_key
from app.instance.store import SnapshotStore


class RowsSource:
    """A source that hands Snapshot.load fixed rows (the load's own contract: stream_rows)."""

    def __init__(self, rows: dict[str, list[tuple]]):
        self.rows = rows

    @contextlib.contextmanager
    def consistent_read(self):
        yield

    def stream_rows(self, table, where=None, batch_size=5000):
        yield list(self.rows.get(table.name, []))


ITEMS = Table("items", (Column("id", "integer", False), Column("name", "text"),
                        Column("qty", "integer"), Column("secret_ref", "integer", hidden=True)),
              ("id",), alias="products")
NOTES = Table("notes", (Column("id", "integer", False), Column("body", "text"),
                        Column("published", "boolean")), ("id",),
              where="published = true")
LOG = Table("log", (Column("at", "text"), Column("what", "text")))
ARTIFACT = SchemaArtifact("postgres", "shop", (ITEMS, NOTES, LOG))


class Store:
    """The writer's store and a reader process's view of it, on one directory."""

    def __init__(self, directory: str):
        self.store = SnapshotStore(directory, grace_seconds=0)
        self.reader = GenerationReader(directory)

    @contextlib.contextmanager
    def reading(self):
        with self.reader.reading() as (connection, _version):
            yield connection

    @contextlib.contextmanager
    def write(self, **options):
        with self.store.write(**options) as connection:
            yield connection


@pytest.fixture
def holder(tmp_path):
    source = RowsSource({
        "items": [(1, "apple", 5, 10), (2, "pear", 0, 20)],
        "notes": [(1, "hello", 1)],
        "log": [("t1", "a"), ("t1", "a"), ("t2", "b")],
    })
    store = Store(str(tmp_path))
    store.store.publish(store.store.load(ARTIFACT, source))
    yield store
    store.reader.close()
    store.store.close()


def txn(*changes: RowChange) -> SourceTransaction:
    return SourceTransaction(changes=changes, position="0/1", committed_at=None)


def rows(holder, table: str) -> list[tuple]:
    with holder.reading() as connection:
        return connection.execute(f'SELECT * FROM "{table}" ORDER BY 1, 2').fetchall()


def apply(holder, *changes, **options) -> set[str]:
    with holder.write() as connection:
        return apply_transaction(connection, ARTIFACT, txn(*changes), **options)


def test_insert_update_delete_by_primary_key(holder):
    deltas: dict[str, int] = {}
    touched = apply(holder,
                    RowChange("items", "insert", after={"id": 3, "name": "fig", "qty": 7,
                                                        "secret_ref": 30}),
                    RowChange("items", "update", before={"id": 1},
                              after={"id": 1, "name": "apple", "qty": 4, "secret_ref": 10}),
                    RowChange("items", "delete", before={"id": 2}),
                    row_deltas=deltas)
    assert touched == {"products"}
    assert deltas == {"products": 0}
    assert rows(holder, "items") == [(1, "apple", 4, 10), (3, "fig", 7, 30)]


def test_columns_the_artifact_does_not_list_are_skipped_and_unknown_tables_too(holder):
    touched = apply(holder,
                    RowChange("items", "insert", after={"id": 4, "name": "kiwi", "qty": 1,
                                                        "secret_ref": 40, "cost": 99}),
                    RowChange("ignored", "insert", after={"id": 1, "v": 1}))
    assert touched == {"products"}
    assert rows(holder, "items")[-1] == (4, "kiwi", 1, 40)


def test_primary_key_change_moves_the_row(holder):
    apply(holder, RowChange("items", "update", before={"id": 1, "name": "apple"},
                            after={"id": 10, "name": "apple", "qty": 5, "secret_ref": 10}))
    assert rows(holder, "items") == [(2, "pear", 0, 20), (10, "apple", 5, 10)]


def test_a_replayed_insert_replaces_the_row(holder):
    apply(holder, RowChange("items", "insert",
                            after={"id": 2, "name": "pear", "qty": 9, "secret_ref": 20}))
    assert rows(holder, "items") == [(1, "apple", 5, 10), (2, "pear", 9, 20)]


def test_missing_after_columns_keep_the_old_value(holder):
    """PostgreSQL leaves out a TOASTed value the update did not change."""
    apply(holder, RowChange("items", "update", before={"id": 1},
                            after={"id": 1, "qty": 6, "secret_ref": 10}))
    assert rows(holder, "items")[0] == (1, "apple", 6, 10)


def test_missing_after_columns_of_a_row_not_held_ask_for_a_reload(holder):
    with pytest.raises(IncompleteRow, match="body"):
        apply(holder, RowChange("notes", "update", before={"id": 5},
                                after={"id": 5, "published": True}))
    assert rows(holder, "notes") == [(1, "hello", 1)]   # rolled back, nothing half done


def test_where_filter_row_leaves_and_appears(holder):
    deltas: dict[str, int] = {}
    apply(holder,
          RowChange("notes", "update", before={"id": 1},
                    after={"id": 1, "body": "hello", "published": False}),
          RowChange("notes", "insert", after={"id": 2, "body": "draft", "published": False}),
          RowChange("notes", "insert", after={"id": 3, "body": "live", "published": True}),
          row_deltas=deltas)
    assert rows(holder, "notes") == [(3, "live", 1)]
    assert deltas == {"notes": 0}
    apply(holder, RowChange("notes", "update", before={"id": 2},
                            after={"id": 2, "body": "draft", "published": True}))
    assert rows(holder, "notes") == [(2, "draft", 1), (3, "live", 1)]


def test_where_filter_null_does_not_match(holder):
    apply(holder, RowChange("notes", "insert", after={"id": 4, "body": "?", "published": None}))
    assert rows(holder, "notes") == [(1, "hello", 1)]


def test_no_primary_key_deletes_one_equal_row(holder):
    deltas: dict[str, int] = {}
    apply(holder, RowChange("log", "delete", before={"at": "t1", "what": "a"}),
          row_deltas=deltas)
    assert rows(holder, "log") == [("t1", "a"), ("t2", "b")]
    assert deltas == {"log": -1}
    apply(holder, RowChange("log", "update", before={"at": "t2", "what": "b"},
                            after={"at": "t2", "what": "c"}))
    assert rows(holder, "log") == [("t1", "a"), ("t2", "c")]


def test_a_failed_transaction_is_rolled_back_whole(holder):
    with pytest.raises(ValueError):
        apply(holder, RowChange("items", "delete", before={"id": 1}),
              RowChange("items", "merge", after={"id": 9}))
    assert rows(holder, "items") == [(1, "apple", 5, 10), (2, "pear", 0, 20)]
    assert holder.store.current.data_version == 0   # nothing committed, nothing to invalidate
    with holder.reading() as connection:   # readers never write
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            connection.execute("DELETE FROM items")


def test_a_multi_statement_transaction_is_atomic_to_readers(holder):
    """A query's statements all run in one read transaction: a write committed meanwhile
    (it does not wait for the reader: WAL) shows up in the next query, whole."""
    def count(connection, table):
        return connection.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]

    with holder.reading() as connection:
        assert (count(connection, "items"), count(connection, "notes")) == (2, 1)
        apply(holder, RowChange("items", "delete", before={"id": 1}),
              RowChange("notes", "insert", after={"id": 7, "body": "new", "published": True}))
        assert (count(connection, "items"), count(connection, "notes")) == (2, 1)
    with holder.reading() as connection:
        assert (count(connection, "items"), count(connection, "notes")) == (1, 2)


def test_the_write_publishes_row_counts_and_a_new_data_version(holder):
    before = holder.store.current
    deltas: dict[str, int] = {}
    with holder.write(row_deltas=deltas) as connection:
        apply_transaction(connection, ARTIFACT, txn(
            RowChange("items", "insert", after={"id": 3, "name": "fig", "qty": 1,
                                                "secret_ref": 0}),
            RowChange("log", "delete", before={"at": "t2", "what": "b"})), row_deltas=deltas)
    after = holder.store.current
    assert (before.data_version, before.row_counts) == (0, {"products": 2, "notes": 1, "log": 3})
    assert (after.data_version, after.row_counts) == (1, {"products": 3, "notes": 1, "log": 2})
    holder.reader.refresh()
    assert holder.reader.generation == after   # what readers' /health shows


def test_a_one_column_integer_key_is_the_rowid(holder):
    """The snapshot keeps items.id as its rowid: upserts and key changes keep rowid = id."""
    assert (rowid_key(ITEMS), rowid_key(LOG)) == ("id", None)
    apply(holder, RowChange("items", "insert", after={"id": 2, "name": "pear", "qty": 1,
                                                      "secret_ref": 20}),
          RowChange("items", "update", before={"id": 1}, after={"id": 5, "name": "apple",
                                                                "qty": 5, "secret_ref": 10}),
          RowChange("items", "update", before={"id": 5}, after={"id": 2, "name": "apple",
                                                                "qty": 6, "secret_ref": 10}))
    with holder.reading() as connection:
        assert connection.execute("SELECT rowid, * FROM items ORDER BY rowid").fetchall() == [
            (2, 2, "apple", 6, 10)]


def test_the_position_committed_with_a_transaction_is_what_a_new_writer_resumes_from(holder):
    """A restarted writer adopts the published generation and reads the position recorded in
    the same transaction as the rows (app/instance/replication.py)."""
    with holder.write() as connection:
        assert _recorded_position(connection) is None   # not loaded by ChangeSync
        _record_position(connection, "0/10", create=True)
    with pytest.raises(ValueError):
        with holder.write() as connection:
            apply_transaction(connection, ARTIFACT, txn(RowChange("items", "delete",
                                                                  before={"id": 1})))
            _record_position(connection, "0/20")
            raise ValueError("the writer fails before the commit")
    holder.store.close()
    restarted = SnapshotStore(holder.store.directory, grace_seconds=0)
    try:
        assert restarted.adopt() == holder.store.current
        with restarted.write() as connection:
            assert _recorded_position(connection) == "0/10"
            assert connection.execute("SELECT count(*) FROM items").fetchone()[0] == 2
    finally:
        restarted.close()
