"""Liveness of the control plane and its store."""

from app.domain.errors import Unavailable
from app.storage.database import db, is_sqlite


def check() -> dict:
    try:
        db.execute_sql("SELECT 1")
    except Exception:  # any driver error means the same thing to a probe
        raise Unavailable("the control plane's database does not answer") from None
    return {"status": "ok", "storage": "sqlite" if is_sqlite() else "postgresql"}
