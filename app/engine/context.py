"""What a step works with: the engine's parts, the database row it acts on, and the commit rule.

A step commits its result only through `StepContext.commit`/`fail`: one
compare-and-set UPDATE on (id, generation, lease owner), in the same transaction
as any rows it writes alongside. When the row moved on (a newer action bumped
the generation, or another worker took the lease) the commit raises
`Superseded` and writes nothing; the step then undoes what it started.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from app.config import Settings
from app.domain.lifecycle import STABLE, TRANSITIONAL
from app.engine.leases import Heartbeat
from app.engine.runtime import Runtime
from app.metrics import count_transition
from app.storage.database import db
from app.storage.models import Database

log = logging.getLogger(__name__)



class Superseded(Exception):
    """The database's row moved on (new generation or lost lease): the step's result is void."""


class StepFailed(Exception):
    """The step cannot succeed; `message` is the user-facing lastError."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass
class Engine:
    """The engine's parts, shared by the executor and the reconciler of one worker."""

    settings: Settings
    runtime: Runtime
    wake: Callable[[str], None]


class StepContext:
    """One run of one step on one database row, under the worker's lease."""

    def __init__(self, engine: Engine, row: Database, owner: str, heartbeat: Heartbeat | None = None):
        self.engine = engine
        self.row = row
        self.owner = owner
        self.heartbeat = heartbeat
        self.generation = row.generation
        self._cancel = threading.Event()

    @property
    def settings(self) -> Settings:
        return self.engine.settings

    @property
    def runtime(self) -> Runtime:
        return self.engine.runtime

    def check(self) -> None:
        """Raise Superseded when the lease is lost or a newer action changed the row."""
        if self.heartbeat is not None and self.heartbeat.lost.is_set():
            raise Superseded("the lease was lost")
        current = (Database.select(Database.generation, Database.lease_owner)
                   .where(Database.id == self.row.id).first())
        if current is None or current.generation != self.generation or current.lease_owner != self.owner:
            raise Superseded("the database moved on")

    def commit(self, status: str, then: Callable[[], None] | None = None, **fields) -> None:
        """Move to `status` with `fields`, and run `then` in the same transaction; or raise Superseded."""
        if self.heartbeat is not None and self.heartbeat.lost.is_set():
            raise Superseded("the lease was lost")
        values = dict(status=status, attempts=0, **fields)
        if status in STABLE:
            values.setdefault("operation", None)
            values.setdefault("operation_params", None)
        with db.atomic():
            updated = Database.update(**values).where(
                (Database.id == self.row.id) & (Database.generation == self.generation)
                & (Database.lease_owner == self.owner) & Database.deleted_at.is_null()).execute()
            if updated != 1:
                raise Superseded("the database moved on")
            if then is not None:
                then()
        log.info("database %s: %s -> %s", self.row.id, self.row.status, status)
        count_transition(self.row.status, status)
        for name, value in values.items():
            setattr(self.row, name, value)

    def fail(self, message: str, then: Callable[[], None] | None = None) -> None:
        """End in `failed` with `message` as lastError."""
        self.commit("failed", then=then, last_error=message[:4000])


__all__ = ["Engine", "STABLE", "StepContext", "StepFailed", "Superseded", "TRANSITIONAL"]
