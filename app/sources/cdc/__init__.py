"""Change data capture: a source's committed changes as a stream of SourceTransactions.

    capture = change_capture(credentials, artifact, database_id=db_id, server_id=binlog_id)
    with open_source(credentials) as source:
        with capture.snapshot_start(source) as position:   # the initial load's consistent read
            snapshot = Snapshot.load(artifact, source)      # reads inside it join it
    with capture.open_reader(position) as reader:
        while running:
            item = reader.poll(timeout=1.0)       # SourceTransaction | SchemaChange | None
            if item is not None:
                apply(item); save(item.position); reader.confirm(item.position)
    capture.release()                             # on terminate/delete (PostgreSQL: the slot)

Backends: MySQL/MariaDB `binlog` (app/sources/cdc/binlog.py), PostgreSQL `logical`
(app/sources/cdc/logical.py). Errors: ReloadRequired (PositionLost, TransactionTooLarge):
load a new snapshot with a new `snapshot_start`; SourceError: the source refuses. Whether a
source can do it at all: `Source.cdc_prerequisites()`. docs/cdc.md tells the whole story.
"""

from __future__ import annotations

from app.contracts import artifact
from app.sources.base import SourceCredentials
from app.sources.cdc.base import (
    DEFAULT_MAX_TRANSACTION_CHANGES,
    Backoff,
    ChangeReader,
    PositionLost,
    ReloadRequired,
    TransactionTooLarge,
)
from app.sources.cdc.binlog import BinlogCapture, BinlogReader
from app.sources.cdc.logical import (
    LogicalCapture,
    LogicalReader,
    drop_replication_state,
    slot_name,
)

ChangeCapture = BinlogCapture | LogicalCapture


def change_capture(credentials: SourceCredentials, schema_artifact: artifact.SchemaArtifact, *,
                   database_id=None, instance_id=None, server_id: int | None = None,
                   connect_timeout: int = 10,
                   max_transaction_changes: int = DEFAULT_MAX_TRANSACTION_CHANGES
                   ) -> ChangeCapture:
    """The change capture of the credentials' backend: binlog (needs `server_id`, the
    database's binlogServerId) or logical (needs `database_id`; `instance_id` gives each
    instance its own slot, so an old and a new instance can stream side by side)."""
    if credentials.backend == "mysql":
        return BinlogCapture(credentials, schema_artifact, server_id=server_id,
                             connect_timeout=connect_timeout,
                             max_transaction_changes=max_transaction_changes)
    if credentials.backend == "postgres":
        if database_id is None:
            raise ValueError("logical decoding needs the database id (it names the slot)")
        return LogicalCapture(credentials, schema_artifact, database_id=database_id,
                              instance_id=instance_id, connect_timeout=connect_timeout,
                              max_transaction_changes=max_transaction_changes)
    raise ValueError(f"no change data capture for backend {credentials.backend!r}")


def release_all(credentials: SourceCredentials, database_id, *, connect_timeout: int = 10
                ) -> list[str]:
    """Drop whatever change capture left on the source for a database (terminate, delete):
    PostgreSQL slots and publications (their names are returned); nothing for MySQL."""
    if credentials.backend == "postgres":
        return drop_replication_state(credentials, database_id, connect_timeout=connect_timeout)
    return []


__all__ = ["DEFAULT_MAX_TRANSACTION_CHANGES", "Backoff", "BinlogCapture", "BinlogReader",
           "ChangeCapture", "ChangeReader", "LogicalCapture", "LogicalReader", "PositionLost",
           "ReloadRequired", "TransactionTooLarge", "change_capture", "drop_replication_state",
           "release_all", "slot_name"]
