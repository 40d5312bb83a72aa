"""Applying a source's committed changes to a snapshot, row by row.

`apply_transaction(connection, artifact, txn)` runs the row changes of one
`SourceTransaction` (app/contracts/changes.py) against a snapshot laid out as
app/instance/snapshot.py builds it, so that the result is what a fresh load
would hold:

- a change of a table the artifact does not list is skipped, and so is a column the
  artifact does not list (the schema config left it out);
- a table with a primary key is keyed by it: an insert replaces a row with the same
  key (a replayed change is harmless), an update whose key changed moves the row, a
  delete removes it;
- a table without a primary key: a delete removes *one* row equal to `before` (the
  source had duplicates; one of them went), an update replaces one such row;
- a column missing from `after` (PostgreSQL leaves out a TOASTed value the update did
  not change) keeps the value the row has; when the snapshot does not have the row
  (it did not match the table's `where` before), the value is unknown and
  `IncompleteRow` asks for a reload instead of a guess;
- a table's config `where` is honoured after each change: a row that no longer matches
  leaves, one that starts matching appears (the filter is compiled for SQLite with
  the query language's compiler, as the load compiles it for the source).

The caller owns the transaction (one per SourceTransaction, so readers see all of it
or none) and everything else; this module only runs statements.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from app.contracts.artifact import SchemaArtifact, Table
from app.contracts.changes import RowChange, SourceTransaction
from app.query import compile_filter, parse_filter


class IncompleteRow(Exception):
    """A change cannot be applied from the stream alone (a value it omits is unknown)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class TablePlan:
    """The statements that apply one table's changes."""

    def __init__(self, table: Table):
        self.table = table
        self.alias = table.alias
        self.columns = tuple(column.name for column in table.columns)
        self.column_set = frozenset(self.columns)
        self.key = tuple(table.primary_key)
        name = quote(table.name)
        column_list = ", ".join(quote(c) for c in self.columns)
        self.insert_sql = (f"INSERT INTO {name} ({column_list}) "
                           f"VALUES ({', '.join('?' for _ in self.columns)})")
        if self.key:
            match = " AND ".join(f"{quote(c)} IS ?" for c in self.key)
            self.select_sql = f"SELECT {column_list} FROM {name} WHERE {match} LIMIT 1"
            self.delete_sql = f"DELETE FROM {name} WHERE {match}"
        self.name = name
        self.filter_sql: str | None = None
        self.filter_params: list = []
        if table.where:
            sql, params = compile_filter(parse_filter(table.where), table, "sqlite")
            # NULL (unknown) does not match, as on the source.
            self.filter_sql = (f"DELETE FROM {name} WHERE rowid = ? "
                               f"AND NOT IFNULL(({sql}), 0)")
            self.filter_params = list(params)

    # -- one change ------------------------------------------------------------

    def apply(self, connection: sqlite3.Connection, change: RowChange) -> int:
        """Apply `change`; the net number of rows it added (negative: removed)."""
        if change.kind == "insert":
            return self._put(connection, None, change.after or {}, change)
        if change.kind == "delete":
            return -self._remove(connection, change.before or {})
        if change.kind == "update":
            return self._put(connection, change.before or {}, change.after or {}, change)
        raise ValueError(f"unknown row change kind {change.kind!r}")

    def _put(self, connection, before: dict | None, after: dict, change: RowChange) -> int:
        """Insert or update: remove the old row (by `before`, and any row at the new key),
        then insert the merged new row if it matches the table's filter."""
        delta = 0
        old = None
        complete = self.column_set.issubset(after)
        if before is not None:
            if not complete:
                old = self._find(connection, before)
            delta -= self._remove(connection, before)
        if self.key:
            new_key = tuple(after.get(c, before.get(c) if before else None) for c in self.key)
            old_key = tuple(before.get(c) for c in self.key) if before is not None else None
            if new_key != old_key:
                # An insert over an existing key (a replay) or a key moved onto a row that
                # the snapshot still has: the source's row wins, as on the source.
                delta -= connection.execute(self.delete_sql, new_key).rowcount
        if complete:
            values = [after[c] for c in self.columns]
        elif old is not None:
            values = [after[c] if c in after else old[i] for i, c in enumerate(self.columns)]
        else:
            missing = sorted(self.column_set.difference(after))
            raise IncompleteRow(
                f"a change to {self.table.name} leaves out {', '.join(missing)} (a large "
                f"value the source did not resend) for a row the snapshot does not hold")
        cursor = connection.execute(self.insert_sql, values)
        delta += 1
        if self.filter_sql is not None:
            delta -= connection.execute(self.filter_sql,
                                        [cursor.lastrowid, *self.filter_params]).rowcount
        return delta

    def _find(self, connection, before: dict):
        if self.key:
            return connection.execute(self.select_sql,
                                      [before.get(c) for c in self.key]).fetchone()
        where, params = self._whole_row(before)
        return connection.execute(
            f"SELECT {', '.join(quote(c) for c in self.columns)} FROM {self.name} "
            f"WHERE {where} LIMIT 1", params).fetchone()

    def _remove(self, connection, before: dict) -> int:
        if self.key:
            return connection.execute(self.delete_sql, [before.get(c) for c in self.key]).rowcount
        # No key: one row equal to `before` (its replicated columns), not every duplicate.
        where, params = self._whole_row(before)
        return connection.execute(
            f"DELETE FROM {self.name} WHERE rowid = "
            f"(SELECT rowid FROM {self.name} WHERE {where} LIMIT 1)", params).rowcount

    def _whole_row(self, before: dict) -> tuple[str, list]:
        columns = [c for c in self.columns if c in before]
        if not columns:
            raise IncompleteRow(f"a change to {self.table.name} (no primary key) does not say "
                                f"which row it changes")
        return " AND ".join(f"{quote(c)} IS ?" for c in columns), [before[c] for c in columns]


class ChangeApplier:
    """The table plans of one artifact (compiled once; filters parsed once)."""

    def __init__(self, artifact: SchemaArtifact):
        self.artifact = artifact
        self.plans = {table.name: TablePlan(table) for table in artifact.tables}

    def apply(self, connection: sqlite3.Connection, changes: Iterable[RowChange],
              row_deltas: dict[str, int] | None = None) -> set[str]:
        touched: set[str] = set()
        for change in changes:
            plan = self.plans.get(change.table)
            if plan is None:
                continue
            delta = plan.apply(connection, change)
            touched.add(plan.alias)
            if row_deltas is not None:
                row_deltas[plan.alias] = row_deltas.get(plan.alias, 0) + delta
        return touched


_APPLIERS: dict[int, ChangeApplier] = {}


def applier_for(artifact: SchemaArtifact) -> ChangeApplier:
    """The (cached) applier of `artifact`; an instance has one artifact for its lifetime."""
    applier = _APPLIERS.get(id(artifact))
    if applier is None or applier.artifact is not artifact:
        if len(_APPLIERS) > 16:
            _APPLIERS.clear()
        applier = _APPLIERS[id(artifact)] = ChangeApplier(artifact)
    return applier


def apply_transaction(connection: sqlite3.Connection, artifact: SchemaArtifact,
                      txn: SourceTransaction, *,
                      row_deltas: dict[str, int] | None = None) -> set[str]:
    """Apply `txn`'s row changes to the snapshot in `connection`; the aliases it touched.

    Runs inside the caller's transaction. `row_deltas`, when given, gets each touched
    table's net row count change added. Raises IncompleteRow when a change cannot be
    applied from what the stream carries (the caller rolls back and reloads).
    """
    return applier_for(artifact).apply(connection, txn.changes, row_deltas)


__all__ = ["ChangeApplier", "IncompleteRow", "TablePlan", "applier_for", "apply_transaction"]
