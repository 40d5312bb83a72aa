"""Assertions shared by the test modules: the error envelope, generated fields, formats."""

from __future__ import annotations

import logging
import re
import threading
from contextlib import contextmanager

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def without_generated(resource: dict) -> dict:
    for key in ("id", "createdAt", "updatedAt"):
        assert key in resource
    assert UUID.match(resource["id"])
    assert ISO_Z.match(resource["createdAt"]) and ISO_Z.match(resource["updatedAt"])
    return {k: v for k, v in resource.items() if k not in ("id", "createdAt", "updatedAt")}


def assert_error(response, status: int, code: str, *fragments: str):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "message"}
    assert body["error"] == code
    for fragment in fragments:
        assert fragment in body["message"], body["message"]
    return body


TRANSACTION_CONTROL = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")


@contextmanager
def counted_statements(*, savepoints: bool = False):
    """The SQL statements the store runs meanwhile, on every thread (peewee logs each one).

    Savepoints are left out unless `savepoints`: transaction control, not work.
    """
    seen: list[str] = []
    lock = threading.Lock()

    class Counter(logging.Handler):
        def emit(self, record):
            # peewee logs each statement as (sql, params).
            if isinstance(record.msg, tuple) and (
                    savepoints or not record.msg[0].startswith(TRANSACTION_CONTROL)):
                with lock:
                    seen.append(record.msg[0])

    peewee_log = logging.getLogger("peewee")
    handler, level = Counter(), peewee_log.level
    peewee_log.addHandler(handler)
    peewee_log.setLevel(logging.DEBUG)
    try:
        yield seen
    finally:
        peewee_log.removeHandler(handler)
        peewee_log.setLevel(level)


def statement_kind(sql: str) -> str:
    """`SELECT <first table>[ FOR UPDATE]`, `UPDATE <table>`, `INSERT <table>`, or the statement itself."""
    verb = sql.split(None, 1)[0].upper()
    if verb not in ("SELECT", "UPDATE", "INSERT"):
        return sql.strip().upper()
    table = re.search(r'(?:FROM|UPDATE|INTO)\s+"?(\w+)"?', sql, re.I).group(1)
    return f"{verb} {table}" + (" FOR UPDATE" if "FOR UPDATE" in sql.upper() else "")
