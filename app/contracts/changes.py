"""Change data capture: what a source's change stream hands to the instance that applies it.

A CDC reader (app/sources/cdc/: MySQL/MariaDB binlog, PostgreSQL logical decoding) turns the
source's stream into `SourceTransaction`s, one per committed source transaction, in commit
order. The instance applies each one to its snapshot atomically (readers see all of it or none)
and records `position`, from which the stream resumes after a restart or a pause.

Values are already in snapshot storage types (app.contracts.artifact: the same conversion as a
full load), keyed by source column name. `before` holds the row as it was (update, delete) and
`after` as it is now (insert, update); for a table with a primary key, `before` carries at
least the key columns. A `SchemaChange` tells the applier that a table's shape (or all of its
rows, for a truncate) changed in a way row events cannot express; docs/instance.md says what
the instance does for each kind.

What the readers add (docs/cdc.md):
- `before` is the whole row on MySQL (binlog_row_image=FULL) and on PostgreSQL tables with
  REPLICA IDENTITY FULL; otherwise on PostgreSQL only the primary key columns.
- `after` may lack a column (PostgreSQL only): a large (TOASTed) value that the update did not
  change is not in the stream; the row keeps the value it has.
- One source transaction usually gives one item. A PostgreSQL transaction that mixes row
  changes and TRUNCATE gives several in statement order (a `DROP TABLE a, b` on MySQL gives
  one SchemaChange per table); each item's `position` still resumes exactly after it.
"""

from __future__ import annotations

from dataclasses import dataclass

CHANGE_KINDS = ("insert", "update", "delete")
SCHEMA_CHANGE_KINDS = ("truncate", "alter", "drop", "rename", "create", "unknown")


@dataclass(frozen=True)
class RowChange:
    """One row inserted, updated or deleted on the source."""

    table: str                      # the source table name (app.contracts.artifact.Table.name)
    kind: str                       # one of CHANGE_KINDS
    before: dict | None = None      # source column -> value, as it was (update, delete)
    after: dict | None = None       # source column -> value, as it is now (insert, update)


@dataclass(frozen=True)
class SourceTransaction:
    """The row changes of one committed source transaction, in statement order."""

    changes: tuple[RowChange, ...]
    position: str                   # opaque: resume the stream right after this transaction
    committed_at: float | None      # the source's commit time, epoch seconds (None if unknown)


@dataclass(frozen=True)
class SchemaChange:
    """A change to a table's shape or contents that row events do not carry (DDL, TRUNCATE)."""

    table: str | None               # the source table, or None when the statement names none
    kind: str                       # one of SCHEMA_CHANGE_KINDS
    statement: str                  # the DDL as the source logged it (for the log; may be cut)
    position: str                   # resume right after it


__all__ = ["CHANGE_KINDS", "SCHEMA_CHANGE_KINDS", "RowChange", "SchemaChange", "SourceTransaction"]
