"""Indexes that serve every list page and the schema-in-use answer in a bounded number of index rows.

Each list is read in (created_at, id) order after its equality filters
(app/domain/pagination.py), so each index ends in (created_at, id): a page is a
range scan of `limit` entries however long the list. Two older indexes become
prefixes of the new ones and go.
"""

INDEXES = (
    # GET /connections
    ("connection_live_order", "connections (customer_id, created_at, id) WHERE deleted_at IS NULL"),
    # GET /databases, GET /databases?status=…, GET /databases?connectionId=… and the
    # databases GET /connections/{id} embeds.
    ("database_live_order", "databases (customer_id, created_at, id) WHERE deleted_at IS NULL"),
    ("database_status_order", "databases (customer_id, status, created_at, id) WHERE deleted_at IS NULL"),
    ("database_connection_order", "databases (connection_id, created_at, id) WHERE deleted_at IS NULL"),
    # GET /account/management-keys (revoked keys included)
    ("management_key_order", "management_keys (customer_id, created_at, id)"),
    # GET /databases/{id}/api-keys (live keys), and every keys-file write
    ("query_key_live_order", "query_keys (database_id, created_at, id) WHERE revoked_at IS NULL"),
)
# The schema-in-use check counts per schema, then names the first few databases
# of each schema by name: with `name` in the index that is a scan of a few entries.
SCHEMA_USAGE = "databases (connection_id, mysql_db, name) WHERE deleted_at IS NULL"
SCHEMA_USAGE_BEFORE = "databases (connection_id, mysql_db) WHERE deleted_at IS NULL"
# Prefixes of the new indexes, dropped (and restored by down()).
REPLACED = (
    ("database_customer_live", "databases (customer_id) WHERE deleted_at IS NULL"),
    ("query_keys_live", "query_keys (database_id) WHERE revoked_at IS NULL"),
)


def up(migrator, db):
    for name, definition in INDEXES:
        db.execute_sql(f"CREATE INDEX {name} ON {definition}")
    db.execute_sql("DROP INDEX database_schema_usage")
    db.execute_sql(f"CREATE INDEX database_schema_usage ON {SCHEMA_USAGE}")
    for name, _ in REPLACED:
        db.execute_sql(f"DROP INDEX {name}")


def down(migrator, db):
    for name, definition in REPLACED:
        db.execute_sql(f"CREATE INDEX {name} ON {definition}")
    db.execute_sql("DROP INDEX database_schema_usage")
    db.execute_sql(f"CREATE INDEX database_schema_usage ON {SCHEMA_USAGE_BEFORE}")
    for name, _ in INDEXES:
        db.execute_sql(f"DROP INDEX {name}")
