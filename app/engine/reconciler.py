"""The reconciler: every few seconds, look at every database and wake the engine where needed.

One runs in each worker; only the one holding the "reconciler" lease acts (the
others wait to take over when it dies). Each pass:

- a database in a transitional status whose step lease expired (its worker
  died) or was never taken (a lost wake-up) is enqueued again; the executor
  counts the starts and ends it `failed` after REFLEXDB_ENGINE_MAX_ATTEMPTS;
- a running database whose instance process died is enqueued (the executor
  restarts it, and lastError says so); a live one is adopted as it is, and its
  health (status, snapshot age, swaps, row counts) is written to the store;
- instance processes the store does not record (left by a worker that died
  mid-swap) are stopped, for databases no step is working on;
- `pauseSchedule` events that came due are carried out once each;
- about once a minute, expired idempotency records and audit entries past retention are
  deleted, a batch at a time (app/domain/housekeeping.py).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time

from app.domain import housekeeping, lifecycle
from app.domain.errors import DomainError
from app.domain.principal import Principal
from app.engine import steps
from app.engine.context import TRANSITIONAL, Engine
from app.engine.leases import claim_named, new_owner, release_named
from app.storage.database import db
from app.storage.models import Customer, Database, Instance, utcnow

log = logging.getLogger(__name__)

LEASE_NAME = "reconciler"
HOUSEKEEPING_SECONDS = 60.0


class Reconciler:
    """Runs `tick` every `settings.reconcile_seconds` while this worker holds the reconciler lease."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.owner = new_owner()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._woken: dict[str, float] = {}   # database id -> when this reconciler last enqueued it
        self._swept_at: float | None = None  # time.monotonic() of the last housekeeping sweep

    # -- thread ------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="reconciler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        try:
            with db.connection_context():
                release_named(LEASE_NAME, self.owner)
        except Exception:
            log.exception("could not release the reconciler lease")

    def run(self) -> None:
        interval = self.engine.settings.reconcile_seconds
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                with db.connection_context():
                    if claim_named(LEASE_NAME, self.owner, max(3 * interval, 3.0)):
                        self.tick()
            except Exception:
                log.exception("reconciler pass failed; trying again in %s s", interval)
            self._stop.wait(max(0.0, interval - (time.monotonic() - started)))

    # -- one pass ----------------------------------------------------------

    def tick(self) -> None:
        """One look at every database (see the module docstring)."""
        # Processes first, rows second: an instance started after this scan is
        # not in it, and one started before it belongs to a step whose lease
        # the rows below still show as held.
        processes = self._instance_processes()
        now = utcnow()
        rows = list(Database.active().where(
            Database.status.in_(TRANSITIONAL) | (Database.status == "running")
            | Database.desired_state.is_null(False) | Database.pause_schedule.is_null(False)
            | Database.id.in_(list(processes))))
        live = {instance.database_id: instance for instance in
                Instance.select().where(Instance.stopped_at.is_null()
                                        & Instance.database.in_([row.id for row in rows]))}
        for row in rows:
            try:
                self._reconcile(row, live.get(row.id), processes.get(str(row.id), []), now)
            except Exception:
                log.exception("reconciling database %s failed", row.id)
        self.housekeeping()

    def housekeeping(self) -> None:
        """Delete what is past its time, at most once per HOUSEKEEPING_SECONDS (a failure waits for the next)."""
        if self._swept_at is not None and time.monotonic() - self._swept_at < HOUSEKEEPING_SECONDS:
            return
        self._swept_at = time.monotonic()
        try:
            result = housekeeping.sweep(audit_retention_days=self.engine.settings.audit_retention_days)
        except Exception:
            log.exception("housekeeping sweep failed")
            return
        if result.idempotency_records or result.audit_entries:
            log.info("housekeeping: deleted %d expired idempotency records and %d audit entries",
                     result.idempotency_records, result.audit_entries)

    def _reconcile(self, row: Database, live: Instance | None, processes: list, now: dt.datetime) -> None:
        lease_free = row.lease_expires_at is None or row.lease_expires_at < now
        if not lease_free:
            return   # a worker is on it
        if row.status in TRANSITIONAL or row.desired_state or (
                row.status == "running" and lifecycle.pending_in_place(row)):
            if row.lease_owner is not None:
                self._wake(row, urgent=True, why="the worker running its step stopped")
            else:
                self._wake(row, urgent=False, why="work no worker has taken yet")
            return
        self._stop_unrecorded(row, live, processes)
        if row.status == "running":
            self._watch(row, live)
        if row.pause_schedule:
            self._follow_schedule(row, now)

    def _wake(self, row: Database, *, urgent: bool, why: str) -> None:
        # A wake-up may simply be waiting in the queue behind busy workers:
        # enqueue again only once per lease length unless something happened.
        key = str(row.id)
        last = self._woken.get(key)
        if not urgent and last is not None and time.monotonic() - last < self.engine.settings.engine_lease_seconds:
            return
        self._woken[key] = time.monotonic()
        (log.warning if urgent else log.info)("database %s (%s): %s; enqueued", row.id, row.status, why)
        self.engine.wake(key)

    def _instance_processes(self) -> dict[str, list]:
        found: dict[str, list] = {}
        for handle in self.engine.runtime.list_instances():
            found.setdefault(handle.database_id, []).append(handle)
        return found

    def _stop_unrecorded(self, row: Database, live: Instance | None, processes: list) -> None:
        runtime = self.engine.runtime
        keep = runtime.instance_id_of(steps.handle_of(runtime, live)) if live is not None else None
        for handle in processes:
            if runtime.instance_id_of(handle) != keep:
                log.warning("database %s (%s): stopping instance %s that no step records", row.id, row.status,
                            runtime.instance_id_of(handle))
                runtime.release(handle)

    def _watch(self, row: Database, live: Instance | None) -> None:
        """Adopt a live instance (health into the store) or wake the executor to restart a dead one."""
        runtime = self.engine.runtime
        handle = steps.handle_of(runtime, live) if live is not None else None
        if handle is None or not runtime.is_alive(handle):
            self._wake(row, urgent=True, why="its instance process is not running")
            return
        health = runtime.health(handle)
        now = utcnow()
        columns = steps.health_columns(health, now)
        Instance.update(updated_at=now, **columns).where(Instance.id == live.id).execute()
        if columns["health_status"] != row.health_status:
            Database.update(health_status=columns["health_status"]).where(
                (Database.id == row.id) & (Database.status == "running")).execute()
        paused = health.get("replicationPaused")
        if paused is not None and paused != row.replication_paused:
            self._wake(row, urgent=False, why="its instance's replication is not as asked")

    def _follow_schedule(self, row: Database, now: dt.datetime) -> None:
        """Carry out the latest pauseSchedule event that came due since the last one carried out."""
        event = latest_event(row.pause_schedule, now)
        if row.schedule_applied_at is None:
            # A schedule just set: arm it; events from now on are carried out.
            Database.update(schedule_applied_at=now).where(
                (Database.id == row.id) & Database.schedule_applied_at.is_null()).execute()
            return
        if event is None or event[0] <= row.schedule_applied_at:
            return
        at, action = event
        # Consume the event first (compare-and-set), so it is carried out once.
        consumed = Database.update(schedule_applied_at=now).where(
            (Database.id == row.id) & (Database.schedule_applied_at == row.schedule_applied_at)).execute()
        if not consumed:
            return
        wanted = {"pause": "running", "resume": "paused"}[action]
        if row.status != wanted:
            log.info("database %s: pauseSchedule %s at %s skipped (status %s)", row.id, action, at, row.status)
            return
        log.info("database %s: pauseSchedule %s due at %s", row.id, action, at)
        request_scheduled_action(row, action)


def latest_event(schedule: dict, now: dt.datetime) -> tuple[dt.datetime, str] | None:
    """The most recent (time, "pause" | "resume") of the schedule at or before `now` (UTC, naive)."""
    days = set(schedule.get("days") or range(7))
    events = []
    for back in range(8):
        day = (now - dt.timedelta(days=back)).date()
        if (day.weekday() + 1) % 7 not in days:   # the schedule counts 0 = Sunday
            continue
        for action, key in (("pause", "pause_at"), ("resume", "resume_at")):
            hours, minutes = (int(part) for part in schedule[key].split(":"))
            at = dt.datetime.combine(day, dt.time(hours, minutes))
            if at <= now:
                events.append((at, action))
    return max(events) if events else None


def request_scheduled_action(row: Database, action: str) -> None:
    """The action as the account itself would request it (same matrix, same rules)."""
    customer = Customer.get_by_id(row.customer_id)
    principal = Principal(customer_id=customer.id, key_id="pause-schedule", is_admin=False, plan=customer.plan)
    try:
        lifecycle.request_action(principal, row.id, action, {})
    except DomainError as exc:
        log.info("database %s: pauseSchedule %s refused: %s", row.id, action, exc)


__all__ = ["Reconciler", "latest_event", "request_scheduled_action"]
