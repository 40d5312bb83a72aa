"""Wiring shared by the web app, the CLI and the engine worker: the store, the keys, the engine ports."""

from __future__ import annotations

from pathlib import Path

from peewee import Database, OperationalError, SqliteDatabase
from playhouse.migrations import Runner

from app.config import Settings
from app.domain.environment import Environment, configure
from app.engine.queue import EngineQueue
from app.engine.runtime import LocalProcessRuntime
from app.storage.database import MIGRATIONS_DIR, init_database, is_sqlite, make_database
from app.storage.secrets import load_secret_box


class StoreNotReady(Exception):
    """The store cannot be used yet (unreachable or not migrated); the message says what to do."""


def configure_services(settings: Settings, *, require_migrated: bool = False) -> Environment:
    """Point the models at the store and give the services their keys and ports; returns the environment.

    With `require_migrated`, refuse (StoreNotReady) a store that is unreachable
    or has pending migrations, before anything is written (no key file, no
    empty embedded database).
    """
    database = make_database(settings.database_url, settings.data_dir, settings.db_pool_size)
    if require_migrated:
        check_migrated(database)
    init_database(database)
    box = load_secret_box(settings.secret_keys, settings.data_dir, embedded=is_sqlite())
    environment = Environment(
        secret_box=box, region=settings.region,
        # Query keys reach instances through the runtime (the local one writes
        # data_dir/instances/<id>/keys.json); wake-ups go through the job queue.
        instance_keys=make_runtime(settings), engine=EngineQueue(settings),
        free_plan_build_credits=settings.free_plan_build_credits)
    configure(environment)
    return environment


def make_runtime(settings: Settings) -> LocalProcessRuntime:
    """The instance runtime of this deployment (one process per instance on this machine)."""
    return LocalProcessRuntime(settings.data_dir.resolve() / "instances", host=settings.instance_host)


def check_migrated(database: Database) -> None:
    """Raise StoreNotReady unless every migration is applied to `database`."""
    hint = "run `reflexdb migrate` first"
    if isinstance(database, SqliteDatabase) and not Path(database.database).exists():
        # Connecting would create the file: say so instead.
        raise StoreNotReady(f"there is no store at {database.database} yet: {hint}")
    try:
        with database.connection_context():
            pending = [m.name for m in Runner(database, directory=str(MIGRATIONS_DIR)).status()
                       if m.path is not None and not m.applied]
    except OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreNotReady(f"cannot reach the store: {reason}") from None
    if pending:
        raise StoreNotReady(f"the store lacks {len(pending)} migration(s) "
                            f"({', '.join(pending)}): {hint}")
