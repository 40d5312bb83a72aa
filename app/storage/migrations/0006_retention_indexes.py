"""Indexes on the time columns that housekeeping deletes by (app/domain/housekeeping.py).

The existing indexes start with customer_id (they serve one account's reads); a sweep
across all accounts, oldest first, needs the time column first.
"""

INDEXES = (
    ("idempotency_expiry_all", "idempotency_records (expires_at)"),
    ("audit_entry_age", "audit_entries (created_at)"),
)


def up(migrator, db):
    for name, definition in INDEXES:
        db.execute_sql(f"CREATE INDEX {name} ON {definition}")


def down(migrator, db):
    for name, _ in INDEXES:
        db.execute_sql(f"DROP INDEX {name}")
