"""Liveness of the control plane and its store."""

from app.storage.database import db, is_sqlite


def check() -> dict:
    """The store answers a query; when it does not, its error reaches the HTTP edge (503)."""
    db.execute_sql("SELECT 1")
    return {"status": "ok", "storage": "sqlite" if is_sqlite() else "postgresql"}
