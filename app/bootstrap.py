"""Wiring shared by the web app, the CLI and the engine worker: the store, the keys, the engine ports."""

from __future__ import annotations

from app.config import Settings
from app.domain.environment import Environment, configure
from app.engine.queue import EngineQueue
from app.engine.runtime import LocalProcessRuntime
from app.storage.database import init_database, is_sqlite, make_database
from app.storage.secrets import load_secret_box


def configure_services(settings: Settings) -> Environment:
    """Open the store, load the secret keys and give the services their ports; returns the environment."""
    init_database(make_database(settings.database_url, settings.data_dir, settings.db_pool_size))
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
