"""`run_database`: carry one database through the status matrix, one step at a time.

A Huey task (or the reconciler) calls it with a database id. It takes the
database's lease (one compare-and-set UPDATE), runs the step of the current
status under a heartbeat, commits the next status only if the generation and
the lease are unchanged, and loops until a stable status; then it carries out a
queued goal (`desiredState`) and keeps a running instance in line (alive,
reload asked for, replication paused or not). See docs/architecture.md, "The lifecycle engine".
"""

from __future__ import annotations

import logging

from app.domain.lifecycle import apply_desired_state, pending_in_place
from app.engine import steps
from app.engine.context import TRANSITIONAL, Engine, StepContext, StepFailed, Superseded
from app.engine.leases import Heartbeat, claim_database, new_owner, release_database
from app.storage.database import db
from app.storage.models import Database, Instance, utcnow

log = logging.getLogger(__name__)

# Rounds of claim -> drive -> release in one call: a request that lands just
# as the lease is released is picked up by the same call; past this, the
# reconciler takes over (it bounds a row that never settles).
MAX_ROUNDS = 5


class Executor:
    """Runs database steps for one worker process."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def run_database(self, database_id) -> None:
        """Drive the database until it is stable and in line with what its row asks for."""
        with db.connection_context():
            for _ in range(MAX_ROUNDS):
                owner = new_owner()
                if not claim_database(database_id, owner, self.engine.settings.engine_lease_seconds):
                    return   # another worker has it; it will see what changed
                try:
                    self._drive(database_id, owner)
                except Exception:
                    # Steps turn their own errors into `failed`; this is the store or a bug.
                    # The lease is released and the reconciler brings the database back.
                    log.exception("database %s: the engine stopped on an unexpected error", database_id)
                    return
                finally:
                    release_database(database_id, owner)
                if not needs_work(Database.active().where(Database.id == database_id).first()):
                    return

    def _drive(self, database_id, owner: str) -> None:
        settings = self.engine.settings
        while True:
            row = Database.active().where(Database.id == database_id).first()
            if row is None or row.lease_owner != owner:
                return
            if row.status in TRANSITIONAL:
                if not self._start_counted(row, owner):
                    continue
                with Heartbeat(row.id, owner, settings.engine_lease_seconds) as heartbeat:
                    try:
                        steps.run_step(StepContext(self.engine, row, owner, heartbeat))
                    except Superseded:
                        if heartbeat.lost.is_set():
                            return
                        # A newer action: its step starts afresh.
                        Database.update(attempts=0).where(
                            (Database.id == row.id) & (Database.lease_owner == owner)).execute()
                continue
            if row.status == "running":
                with Heartbeat(row.id, owner, settings.engine_lease_seconds) as heartbeat:
                    try:
                        keep_running(StepContext(self.engine, row, owner, heartbeat))
                    except Superseded:
                        if heartbeat.lost.is_set():
                            return
                        continue
            if row.desired_state:
                apply_desired_state(row.id)   # through the matrix: start it, or drop it and say why
                after = Database.active().where(Database.id == database_id).first()
                if after is None or after.desired_state == row.desired_state and after.status == row.status:
                    return   # nothing moved; do not spin
                continue
            return

    def _start_counted(self, row: Database, owner: str) -> bool:
        """Count a start of the row's step; past the limit, end it failed. False when it ended."""
        limit = self.engine.settings.engine_max_attempts
        Database.update(attempts=Database.attempts + 1).where(
            (Database.id == row.id) & (Database.lease_owner == owner)).execute()
        attempts = Database.select(Database.attempts).where(Database.id == row.id).scalar()
        if attempts <= limit:
            return True
        ctx = StepContext(self.engine, row, owner)
        try:
            # One transaction: whoever sees the database failed sees its build failed too.
            ctx.fail(engine_stopped_message(attempts - 1, row.status),
                     then=lambda: steps.mark_unfinished_builds_failed(row.id))
        except Superseded:
            pass
        return False


def engine_stopped_message(times: int, status: str) -> str:
    count = "once" if times == 1 else f"{times} times"
    return (f"the engine stopped {count} while {status.replace('_', ' ')} (a worker was killed or "
            f"lost the store mid-step), so it gave up: look at the workers' logs, then retry the action")


def needs_work(row: Database | None) -> bool:
    """Whether the row asks the engine for something."""
    if row is None:
        return False
    return (row.status in TRANSITIONAL or bool(row.desired_state)
            or (row.status == "running" and bool(pending_in_place(row))))


def keep_running(ctx: StepContext) -> None:
    """A running database: its instance alive (restarted if it died), reload and replication as asked."""
    row, runtime = ctx.row, ctx.runtime
    live = Instance.select().where((Instance.database == row.id) & Instance.stopped_at.is_null()).first()
    handle = steps.handle_of(runtime, live) if live is not None else None
    if handle is None or not runtime.is_alive(handle):
        if row.deployed_build_id is None:
            ctx.fail("the database is running without a deployed build; provision it again")
            return
        stopped = utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")
        reason = (f"the instance process stopped unexpectedly (noticed at {stopped}); the engine started "
                  f"it again from the deployed build")
        log.warning("database %s: %s", row.id, reason)
        try:
            steps.start_instance(ctx, row.deployed_build_id, reason=reason, config=row.deployed_config)
        except StepFailed as exc:
            ctx.fail(f"the instance process stopped unexpectedly and could not be started again: {exc.message}")
        return
    steps.release_unrecorded(ctx, live)
    pending = pending_in_place(row)
    problem = None
    try:
        if "reload" in pending:
            runtime.reload(handle)
        health = runtime.health(handle)
        paused = health.get("replicationPaused")
        if paused is not None and paused != row.replication_paused:
            (runtime.pause_replication if row.replication_paused else runtime.resume_replication)(handle)
    except Exception as exc:   # the instance is up but did not take the request
        problem = f"the running instance did not accept {' and '.join(pending) or 'a replication change'}: {exc}"
        log.warning("database %s: %s", row.id, problem)
    if pending or problem:
        # Done: clear the pending list, unless a newer request came in meanwhile (then Superseded).
        ctx.commit("running", **({"last_error": problem} if problem else {}))


__all__ = ["Executor", "engine_stopped_message", "keep_running", "needs_work"]
