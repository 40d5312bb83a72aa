"""Wiring shared by the web app and the CLI: open the store, hand the services their keys."""

from __future__ import annotations

from pathlib import Path

from peewee import Database, OperationalError, SqliteDatabase
from playhouse.migrations import Runner

from app.config import Settings
from app.domain.environment import Environment, configure
from app.storage.database import MIGRATIONS_DIR, init_database, is_sqlite, make_database
from app.storage.secrets import load_secret_box


class StoreNotReady(Exception):
    """The store cannot be used yet (unreachable or not migrated); the message says what to do."""


def configure_services(settings: Settings, *, require_migrated: bool = False) -> None:
    """Point the models at the store and give the services their keys.

    With `require_migrated`, refuse (StoreNotReady) a store that is unreachable
    or has pending migrations, before anything is written (no key file, no
    empty embedded database).
    """
    database = make_database(settings.database_url, settings.data_dir, settings.db_pool_size)
    if require_migrated:
        check_migrated(database)
    init_database(database)
    box = load_secret_box(settings.secret_keys, settings.data_dir, embedded=is_sqlite())
    configure(Environment(secret_box=box, region=settings.region,
                          instances_dir=settings.data_dir / "instances",
                          free_plan_build_credits=settings.free_plan_build_credits))


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
