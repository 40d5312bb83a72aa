"""Wiring shared by the web app and the CLI: open the store, hand the services their keys."""

from __future__ import annotations

from app.config import Settings
from app.domain.environment import Environment, configure
from app.storage.database import init_database, is_sqlite, make_database
from app.storage.secrets import load_secret_box


def configure_services(settings: Settings) -> None:
    init_database(make_database(settings.database_url, settings.data_dir, settings.db_pool_size))
    box = load_secret_box(settings.secret_keys, settings.data_dir, embedded=is_sqlite())
    configure(Environment(secret_box=box, region=settings.region,
                          instances_dir=settings.data_dir / "instances",
                          free_plan_build_credits=settings.free_plan_build_credits))
