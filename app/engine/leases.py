"""Leases in the store: which worker runs a database's step, which one runs the reconciler.

Every claim is one compare-and-set UPDATE, so two workers (on any number of
hosts sharing the store) never both believe they hold the same lease. Times are
naive UTC from the workers' clocks: keep them in sync (NTP); a lease is many
seconds long, so small skews do not matter.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import uuid

from peewee import IntegrityError

from app.storage.database import db
from app.storage.models import Database, EngineLease, utcnow

log = logging.getLogger(__name__)


def new_owner() -> str:
    """A lease owner name unique to one run: host, process and a random part (≤ 64 chars)."""
    return f"{socket.gethostname()[:30]}/{os.getpid()}/{uuid.uuid4().hex[:16]}"


def claim_database(database_id, owner: str, seconds: float) -> bool:
    """Take the database's lease if it is free, expired or already ours."""
    now = utcnow()
    claimed = Database.update(lease_owner=owner, lease_expires_at=now + dt.timedelta(seconds=seconds)).where(
        (Database.id == database_id) & Database.deleted_at.is_null()
        & (Database.lease_expires_at.is_null() | (Database.lease_expires_at < now)
           | (Database.lease_owner == owner))).execute()
    return claimed == 1


def extend_database(database_id, owner: str, seconds: float) -> bool:
    """Push our lease's expiry forward; False when it is no longer ours."""
    return Database.update(lease_expires_at=utcnow() + dt.timedelta(seconds=seconds)).where(
        (Database.id == database_id) & (Database.lease_owner == owner)).execute() == 1


def release_database(database_id, owner: str) -> None:
    Database.update(lease_owner=None, lease_expires_at=None).where(
        (Database.id == database_id) & (Database.lease_owner == owner)).execute()


def claim_named(name: str, owner: str, seconds: float) -> bool:
    """Take (or keep) a named engine lease such as "reconciler"."""
    now = utcnow()
    expires = now + dt.timedelta(seconds=seconds)
    claimed = EngineLease.update(owner=owner, expires_at=expires).where(
        (EngineLease.name == name) & ((EngineLease.owner == owner) | (EngineLease.expires_at < now))).execute()
    if claimed:
        return True
    try:
        with db.atomic():
            EngineLease.create(name=name, owner=owner, expires_at=expires)
        return True
    except IntegrityError:
        return False   # someone else holds it


def release_named(name: str, owner: str) -> None:
    EngineLease.delete().where((EngineLease.name == name) & (EngineLease.owner == owner)).execute()


class Heartbeat:
    """Extends a database lease every third of its length while a step runs.

    `lost` is set when the lease was taken by someone else (we stalled past its
    expiry): the step must then stop without committing anything.
    """

    def __init__(self, database_id, owner: str, seconds: float):
        self.database_id = database_id
        self.owner = owner
        self.seconds = seconds
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{database_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                with db.connection_context():
                    if not extend_database(self.database_id, self.owner, self.seconds):
                        log.warning("lost the lease on database %s", self.database_id)
                        self.lost.set()
                        return
            except Exception:
                # The store is briefly unreachable: keep trying until the lease
                # runs out; the commit's compare-and-set is the real guard.
                log.exception("could not extend the lease on database %s", self.database_id)


__all__ = ["Heartbeat", "claim_database", "claim_named", "extend_database", "new_owner",
           "release_database", "release_named"]
