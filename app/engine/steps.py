"""The steps of the status matrix: test the connection, build, deploy, stop; each idempotent.

Every step can run again after a crash of the worker that ran it: a test and a
build simply start over (a build left `in_progress` is marked failed first), a
deploy first stops any instance of the database the store does not record as
live, and stopping stops whatever is still there.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid

from app import sources
from app.build import ConfigError, build_artifact
from app.contracts.artifact import SchemaArtifact
from app.contracts.backends import CDC_MODES
from app.contracts.instance_settings import (
    STREAMING_MODES,
    InstanceSettings,
    SourceSettings,
    derived_binlog_server_id,
)
from app.domain import catalog, lifecycle, query_keys
from app.domain.environment import current
from app.engine.context import StepContext, StepFailed, Superseded
from app.engine.runtime import InstanceSpec, InstanceStartError
from app.sources import SourceCredentials, SourceError
from app.sources.cdc import change_capture, release_all, slot_name
from app.storage.database import db
from app.storage.models import Build, Connection, Database, Instance, utcnow

log = logging.getLogger(__name__)

# Health statuses an instance reports -> the database's healthStatus (contract §3).
HEALTH = {"ok": "ok", "degraded": "degraded", "cap_exceeded": "cap_exceeded",
          "unreachable": "unreachable", "loading": "degraded"}
DEFAULT_COMPUTE_TYPE = "BUILD_GENERAL1_LARGE"
# How often a deploy asks a started instance whether it serves yet: soon at
# first (a small snapshot is served a few hundred ms after the start), then
# every POLL_SECONDS while a large one loads.
FIRST_POLL_SECONDS = 0.02
POLL_SECONDS = 0.2


# -- credentials -------------------------------------------------------------

def source_credentials(connection: Connection, database: Database) -> SourceCredentials:
    """The connection's current credentials for the database's schema (password decrypted)."""
    if connection.backend not in sources.BACKENDS:
        raise StepFailed(
            f"{connection.backend} sources are not supported yet: this service can serve MySQL/MariaDB "
            f"and PostgreSQL schemas; the connection {connection.name!r} stays registered for when "
            f"{connection.backend} support arrives")
    password = current().secret_box.decrypt(connection.password_encrypted)
    return SourceCredentials.for_target(backend=connection.backend, host=connection.host, port=connection.port,
                                        user=connection.user, password=password, target=database.mysql_db)


# -- testing_connection ------------------------------------------------------

def test_connection(ctx: StepContext) -> None:
    """Connect with the current credentials under a timeout and check the schema can be read."""
    connection = Connection.get_by_id(ctx.row.connection_id)
    credentials = source_credentials(connection, ctx.row)
    timeout = ctx.settings.source_connect_timeout
    outcome: dict = {}

    streaming = streams_changes(credentials, ctx.row.sync_mode)

    def probe():
        try:
            with sources.open_source(credentials, connect_timeout=timeout) as source:
                source.check_access()
                if streaming:
                    outcome["cdc"] = _prerequisites_note(source, ctx.row.sync_mode)
        except SourceError as exc:
            outcome["error"] = exc
        except Exception as exc:   # the driver failed in a way the adapter does not name
            outcome["error"] = SourceError("source_error", f"{type(exc).__name__} while checking the source")
        outcome["done"] = True

    # The adapter bounds the connect; a server that accepts and then stalls a
    # query is bounded here (the probe thread is abandoned, it holds no lock).
    bound = timeout * 2 + 1
    thread = threading.Thread(target=probe, name=f"probe-{ctx.row.id}", daemon=True)
    thread.start()
    thread.join(bound)
    where = f"{credentials.host}:{credentials.port}"
    if "done" not in outcome:
        raise StepFailed(_timeout_message(credentials, where, bound))
    error = outcome.get("error")
    if error is not None:
        if error.code == "unreachable" and "timed out" in error.message:
            raise StepFailed(_timeout_message(credentials, where, timeout))
        raise StepFailed(f"testing the connection failed: {error.message}")
    # A CDC mode the source is not set up for does not fail the provision: the instance
    # polls and says why (issue 9, "CDC by default where it works"); lastError names
    # each missing prerequisite until a deploy finds them all.
    ctx.commit("queued", last_error=outcome.get("cdc"))


def streams_changes(credentials: SourceCredentials, sync_mode: str) -> bool:
    """Whether `sync_mode` is the change stream an instance reads from this backend."""
    return sync_mode in STREAMING_MODES and CDC_MODES.get(credentials.backend) == sync_mode


def _prerequisites_note(source, sync_mode: str) -> str | None:
    """None when the source can stream changes; else the fallback note naming what is missing."""
    ok, reasons = source.cdc_prerequisites()
    return None if ok else fallback_note(sync_mode, "; ".join(reasons))


def fallback_note(sync_mode: str, reasons: str) -> str:
    """What lastError and the instance's syncNote say when a CDC database polls instead."""
    return f"{sync_mode} is not available, the instance polls: {reasons}"[:2000]


def cdc_unavailable(credentials: SourceCredentials, sync_mode: str, timeout: int) -> str | None:
    """Why an instance of this database must poll instead of streaming (checked now), or None:
    each missing prerequisite, named (the instance settings' `cdcUnavailable`).

    The deploy checks again (a resume or reconfigure has no connection test, and the source
    may have been fixed or broken since); a source that cannot be asked counts as unfit:
    the instance polls rather than failing over and over to open a stream.
    """
    if not streams_changes(credentials, sync_mode):
        return None
    try:
        with sources.open_source(credentials, connect_timeout=timeout) as source:
            ok, reasons = source.cdc_prerequisites()
    except SourceError as exc:
        return f"the prerequisites could not be checked: {exc.message}"[:1900]
    return None if ok else "; ".join(reasons)[:1900]


def release_replication(ctx: StepContext) -> str | None:
    """Drop the database's replication slots and publications on the source (PostgreSQL).

    An orphaned slot makes the source keep WAL forever. Every instance drops its own when
    it stops; this is the net for one that was killed. Returns a note when the source could
    not be reached (the slot may remain), None otherwise.
    """
    row = ctx.row
    connection = Connection.get_by_id(row.connection_id)
    if connection.backend != "postgres":
        return None
    deployed = (row.deployed_config or {}).get("sync_mode")
    if "logical" not in (row.sync_mode, deployed):
        return None
    try:
        credentials = source_credentials(connection, row)
        dropped = release_all(credentials, row.id, connect_timeout=ctx.settings.source_connect_timeout)
    except (StepFailed, SourceError) as exc:
        slot = slot_name(row.id)
        log.warning("database %s: replication slots not dropped: %s", row.id, exc)
        return (f"the replication slots {slot}* could not be dropped on the source "
                f"({getattr(exc, 'message', exc)}); drop them there: "
                f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                f"WHERE slot_name LIKE '{slot}%'")[:2000]
    if dropped:
        log.info("database %s: dropped %s on the source", row.id, ", ".join(dropped))
    return None



def _timeout_message(credentials: SourceCredentials, where: str, seconds: float) -> str:
    server = {"mysql": "MySQL", "postgres": "PostgreSQL"}[credentials.backend]
    return (f"testing the connection failed: the {server} server at {where} did not answer "
            f"within {seconds:g} s: check the host, the port and the firewall between this service and "
            f"the server (the limit is REFLEXDB_SOURCE_CONNECT_TIMEOUT)")


# -- queued ------------------------------------------------------------------

def start_build(ctx: StepContext) -> None:
    """Queued builds start at once (no build capacity limit yet)."""
    ctx.commit("building")


# -- building ----------------------------------------------------------------

def build(ctx: StepContext) -> None:
    """A new Build: introspect, apply the schema config, store the artifact and a timed log."""
    row = ctx.row
    mark_unfinished_builds_failed(row.id)
    record = Build.create(customer=row.customer_id, database=row.id, status="in_progress",
                          compute_type=row.build_compute_override or DEFAULT_COMPUTE_TYPE,
                          started_at=utcnow(), log="")
    log_ = TimedLog(record.id)
    try:
        connection = Connection.get_by_id(row.connection_id)
        credentials = source_credentials(connection, row)
        artifact, _ = build_artifact(credentials, row.schema_config,
                                     connect_timeout=ctx.settings.source_connect_timeout, on_log=log_.line)
    except (StepFailed, SourceError, ConfigError) as exc:
        message = (exc.message if isinstance(exc, (StepFailed, SourceError))
                   else f"the schema config does not fit the source: {exc}")
        log_.finish(f"build failed: {message}")
        _end_build(record.id, "failed", log_)
        ctx.fail(f"build failed: {message}")
        return
    except Exception:
        log.exception("build %s of database %s failed", record.id, row.id)
        log_.finish("build failed: an internal error stopped the build; see the worker's log")
        _end_build(record.id, "failed", log_)
        ctx.fail("build failed: an internal error stopped the build; see the worker's log")
        return
    log_.finish("artifact stored")
    params = dict(row.operation_params or {}, buildId=str(record.id))
    ctx.commit("deploying", operation_params=params,
               then=lambda: _end_build(record.id, "succeeded", log_, artifact))


def mark_unfinished_builds_failed(database_id) -> None:
    """A build left in progress by a worker that died is over: failed, with a last log line saying so."""
    Build.update(status="failed", finished_at=utcnow(), log=Build.log.concat(
        "the worker running this build stopped before it finished\n")).where(
        (Build.database == database_id) & Build.status.in_(("queued", "in_progress"))).execute()


def _end_build(build_id, status: str, timed_log: TimedLog, artifact: SchemaArtifact | None = None) -> None:
    values = dict(status=status, finished_at=utcnow(), log=timed_log.text())
    if artifact is not None:
        values["artifact"] = artifact.to_dict()
    Build.update(**values).where(Build.id == build_id).execute()


class TimedLog:
    """A build log whose lines carry the time since the build started and each step's duration.

    Written to the Build row as it grows, so a build that fails (or a worker
    that dies) leaves the log up to that point.
    """

    def __init__(self, build_id):
        self.build_id = build_id
        self.started = time.monotonic()
        self.entries: list[tuple[float, str]] = []

    def line(self, text: str) -> None:
        self.entries.append((time.monotonic() - self.started, text))
        Build.update(log=self.text()).where(Build.id == self.build_id).execute()

    def finish(self, text: str) -> None:
        self.entries.append((time.monotonic() - self.started, text))
        total = self.entries[-1][0]
        self.entries.append((total, f"total {total:.3f} s"))

    def text(self) -> str:
        lines = []
        for index, (at, text) in enumerate(self.entries):
            following = self.entries[index + 1][0] if index + 1 < len(self.entries) else None
            took = f"{following - at:7.3f}s" if following is not None else " " * 8
            lines.append(f"[{at:8.3f}s] {took}  {text}")
        return "\n".join(lines) + "\n"


# -- deploying / resuming -----------------------------------------------------

def deploy(ctx: StepContext) -> None:
    """Start the build the operation names, wait until it serves, then swap it in for the old one."""
    row = ctx.row
    # provision/rebuild: the build just made; redeploy: the one asked for; reconfigure and
    # resize: the deployed one (the request names it); resume: the deployed one.
    params = row.operation_params or {}
    build_id = row.deployed_build_id if row.status == "resuming" else (params.get("buildId") or row.deployed_build_id)
    if build_id is None:
        raise StepFailed("there is no build to deploy: provision the database")
    start_instance(ctx, build_id, reason=None)


def start_instance(ctx: StepContext, build_id, *, reason: str | None, config: dict | None = None) -> None:
    """Launch `build_id` with the current credentials; commit `running` once it serves.

    `config` is the instance settings (`deployed_config` form) to use; None
    means the database's current ones (a deploy applies pending changes, a
    restart after a crash does not).
    The old live instance (if any) keeps serving until then and is released
    after the commit; if the new one fails, the old one is left as it was.
    """
    row = ctx.row
    record = Build.select().where((Build.id == build_id) & (Build.database == row.id)).first()
    if record is None or record.status != "succeeded" or record.artifact is None:
        raise StepFailed(f"build {build_id} is not a succeeded build of this database")
    connection = Connection.get_by_id(row.connection_id)
    credentials = source_credentials(connection, row)
    runtime = ctx.runtime
    live = Instance.select().where((Instance.database == row.id) & Instance.stopped_at.is_null()).first()
    release_unrecorded(ctx, live)
    deliver_keys(row)
    instance_id = uuid.uuid4()
    previous_mode = (row.deployed_config or {}).get("sync_mode")
    config = dict(lifecycle.current_config(row), **(config or {}))
    fallback = cdc_unavailable(credentials, config["sync_mode"], ctx.settings.source_connect_timeout)
    settings = InstanceSettings(
        database_id=str(row.id), artifact_path="-", keys_file="-",
        source=SourceSettings(backend=credentials.backend, host=credentials.host, port=credentials.port,
                              user=credentials.user, schema=credentials.schema, database=credentials.database),
        sync_mode=config["sync_mode"], sync_interval_seconds=config["sync_interval"],
        instance_id=str(instance_id), cdc_unavailable=fallback,
        binlog_server_id=(row.binlog_server_id or derived_binlog_server_id(row.id)
                          if credentials.backend == "mysql" else None),
        replication_paused=row.replication_paused,
        memory_limit_mb=catalog.INSTANCE_SIZES[config["instance_size"]][1], log_level=config["log_level"])
    spec = InstanceSpec(database_id=str(row.id), instance_id=str(instance_id), settings=settings,
                        artifact=SchemaArtifact.from_dict(record.artifact), source_password=credentials.password)
    launched = time.monotonic()
    try:
        handle = runtime.launch(spec)
    except InstanceStartError as exc:
        raise StepFailed(f"the instance did not start: {exc}") from None
    try:
        up = time.monotonic() - launched
        health = wait_until_serving(ctx, handle)
        log.info("database %s: instance %s answered in %.2f s, served its snapshot in %.2f s",
                 row.id, instance_id, up, time.monotonic() - launched)
        admin_token = current().secret_box.encrypt(handle.admin_token)
        now = utcnow()

        def swap():
            Instance.update(stopped_at=now, updated_at=now).where(
                (Instance.database == row.id) & Instance.stopped_at.is_null()).execute()
            Instance.create(id=instance_id, customer=row.customer_id, database=row.id, build=record.id,
                            endpoint_url=handle.endpoint_url, handle=runtime.record_of(handle),
                            admin_token_encrypted=admin_token, created_at=now, updated_at=now,
                            **health_columns(health, now))

        ctx.commit("running", then=swap, endpoint_url=handle.endpoint_url,
                   health_status=HEALTH.get(health.get("status"), "degraded"),
                   last_error=_join_notes(reason, fallback and fallback_note(config["sync_mode"], fallback)),
                   deployed_build_id=record.id, deployed_credentials_version=connection.credentials_version,
                   deployed_config=config)
    except BaseException:
        runtime.release(handle)
        raise
    if live is not None:
        runtime.release(handle_of(runtime, live))
        if previous_mode == "logical" and credentials.backend == "postgres":
            _drop_instance_slot(credentials, settings, spec.artifact, live.id)


def _drop_instance_slot(credentials: SourceCredentials, settings: InstanceSettings, artifact: SchemaArtifact,
                        instance_id) -> None:
    """Drop the replication slot of a replaced instance (it drops its own when it stops
    cleanly; this is the net for one that was killed). Best effort: terminate drops them all."""
    try:
        change_capture(credentials, artifact, database_id=settings.database_id, instance_id=instance_id).release()
    except Exception as exc:
        log.warning("database %s: the replaced instance's replication slot was not dropped: %s",
                    settings.database_id, getattr(exc, "message", exc))


def _join_notes(*notes: str | None) -> str | None:
    kept = [note for note in notes if note]
    return "; ".join(kept) if kept else None


def deliver_keys(row: Database) -> None:
    """Give the runtime the database's current query keys (the instance checks them on its own)."""
    # Under the row lock the API takes for key changes, so this never overwrites a newer list.
    with db.atomic():
        locked = Database.lock_owned(row.customer_id, row.id)
        if locked is not None:
            query_keys.publish(locked)


def wait_until_serving(ctx: StepContext, handle) -> dict:
    """The instance's health once it serves its first snapshot; StepFailed when it cannot."""
    runtime = ctx.runtime
    timeout = ctx.settings.deploy_timeout
    deadline = time.monotonic() + timeout
    next_check = time.monotonic() + 1
    poll = FIRST_POLL_SECONDS
    while True:
        health = runtime.health(handle)
        if health.get("serving"):
            return health
        if health.get("lastSyncError"):
            raise StepFailed(f"the instance could not load its snapshot: {health['lastSyncError']}")
        if health.get("status") == "unreachable" and not runtime.is_alive(handle):
            raise StepFailed(f"the instance stopped while loading its snapshot: {health.get('reason')}")
        if time.monotonic() > deadline:
            raise StepFailed(f"the instance did not serve its snapshot within {timeout:g} s "
                             f"(REFLEXDB_DEPLOY_TIMEOUT); the source may be too large or too slow")
        if time.monotonic() >= next_check:
            ctx.check()   # a newer action (resize while deploying) restarts the deploy
            next_check = time.monotonic() + 1
        time.sleep(poll)
        poll = min(poll * 1.5, POLL_SECONDS)


# The /health fields kept as the instance's `sync` (GET /v1/databases/{id}/instance).
SYNC_FIELDS = ("syncMode", "effectiveSyncMode", "syncNote", "replicationPaused", "lastSyncAt",
               "replicationLagMs", "eventsApplied", "position", "lastReloadReason")


def health_columns(health: dict, at: dt.datetime) -> dict:
    """Instance row columns from a /health document."""
    return {"health_status": HEALTH.get(health.get("status"), "degraded"),
            "snapshot_age_ms": health.get("snapshotAgeMs"), "swap_count": health.get("swapCount") or 0,
            "row_counts": health.get("rowCounts") or {},
            "sync_state": {name: health.get(name) for name in SYNC_FIELDS}, "last_health_check": at}


def handle_of(runtime, instance: Instance):
    """The runtime handle of a stored instance (admin token decrypted)."""
    return runtime.handle_from_record(instance.handle, current().secret_box.decrypt(instance.admin_token_encrypted))


def release_unrecorded(ctx: StepContext, live: Instance | None) -> None:
    """Stop every instance of the database that the store does not record as live.

    Those are what a worker that died left behind: a half-started deploy, or
    the old instance of a swap that committed just before the crash.
    """
    keep = ctx.runtime.instance_id_of(handle_of(ctx.runtime, live)) if live is not None else None
    for handle in ctx.runtime.instances_of(str(ctx.row.id)):
        if ctx.runtime.instance_id_of(handle) != keep:
            log.warning("database %s: stopping instance %s that no step records", ctx.row.id,
                        ctx.runtime.instance_id_of(handle))
            ctx.runtime.release(handle)


# -- pausing / terminating ----------------------------------------------------

def stop_everything(ctx: StepContext, status: str) -> None:
    """Release every instance of the database, then commit `status` with no endpoint."""
    runtime = ctx.runtime
    live = list(Instance.select().where((Instance.database == ctx.row.id) & Instance.stopped_at.is_null()))
    for instance in live:
        runtime.release(handle_of(runtime, instance))
    release_unrecorded(ctx, None)
    note = release_replication(ctx)
    now = utcnow()

    def mark_stopped():
        Instance.update(stopped_at=now, updated_at=now).where(
            (Instance.database == ctx.row.id) & Instance.stopped_at.is_null()).execute()

    extra = {"last_error": note} if note else {}
    ctx.commit(status, then=mark_stopped, endpoint_url=None, health_status=None, **extra)


def pause(ctx: StepContext) -> None:
    stop_everything(ctx, "paused")


def terminate(ctx: StepContext) -> None:
    stop_everything(ctx, "terminated")


STEPS = {
    "testing_connection": test_connection,
    "queued": start_build,
    "building": build,
    "deploying": deploy,
    "resuming": deploy,
    "pausing": pause,
    "terminating": terminate,
}


def run_step(ctx: StepContext) -> None:
    """Run the step of the row's status; a StepFailed ends the database `failed` with its message."""
    try:
        STEPS[ctx.row.status](ctx)
    except StepFailed as exc:
        ctx.fail(exc.message)
    except Superseded:
        raise
    except Exception:
        log.exception("database %s: step %s failed", ctx.row.id, ctx.row.status)
        ctx.fail(f"an internal error stopped the engine while {ctx.row.status.replace('_', ' ')}; "
                 f"see the worker's log")


__all__ = ["HEALTH", "STEPS", "deploy", "handle_of", "health_columns", "run_step", "source_credentials",
           "start_instance"]
