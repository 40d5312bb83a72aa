"""Fixtures for the lifecycle API: a recording engine port, and rows the engine would write."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from app.domain import environment
from app.storage.database import db
from app.storage.models import Build, Database, Instance


class WakeRecorder:
    """The engine port, recording which databases it was asked to look at."""

    def __init__(self):
        self.woken: list[str] = []

    def wake(self, database_id) -> None:
        self.woken.append(str(database_id))


@pytest.fixture
def engine(stack):
    recorder = WakeRecorder()
    environment.configure(dataclasses.replace(stack.environment, engine=recorder))
    yield recorder
    environment.configure(stack.environment)


@pytest.fixture
def credits_allowance(stack):
    """Set the free plan's allowance for one test: `credits_allowance(2)`."""
    def configure(allowance: int) -> None:
        environment.configure(dataclasses.replace(environment.current(), free_plan_build_credits=allowance))
    yield configure
    environment.configure(stack.environment)


def set_state(database: dict, **columns) -> None:
    """Write lifecycle columns directly, as the engine would (e.g. status='building')."""
    with db.connection_context():
        Database.update(**columns).where(Database.id == database["id"]).execute()


def stored_database(database: dict) -> Database:
    with db.connection_context():
        return Database.get_by_id(database["id"])


T0 = dt.datetime(2030, 1, 2, 3, 4, 5, 678000)


def add_build(database: dict, status: str = "succeeded", *, created_at: dt.datetime = T0, log: str = "",
              artifact: dict | None = None, started_at=None, finished_at=None) -> Build:
    with db.connection_context():
        return Build.create(customer=database["customerId"], database=database["id"], status=status,
                            compute_type="BUILD_GENERAL1_LARGE", artifact=artifact, log=log,
                            started_at=started_at, finished_at=finished_at, created_at=created_at)


def add_instance(database: dict, build: Build, *, stopped: bool = False, **columns) -> Instance:
    values = dict(customer=database["customerId"], database=database["id"], build=build.id,
                  endpoint_url="http://127.0.0.1:41001", handle={"pid": 1}, admin_token_encrypted="x",
                  created_at=T0, updated_at=T0, stopped_at=T0 if stopped else None)
    values.update(columns)
    with db.connection_context():
        return Instance.create(**values)
