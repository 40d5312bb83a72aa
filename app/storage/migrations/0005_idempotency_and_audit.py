"""Idempotency keys (the first answer of a POST, replayed to its retries) and the audit log."""
import uuid

from peewee import *


def up(migrator, db):
    # A frozen stub of the table the new ones refer to.
    class Customer(Model):
        id = UUIDField(primary_key=True)

        class Meta:
            database = db
            table_name = "customers"

    class IdempotencyRecord(Model):
        id = UUIDField(primary_key=True, default=uuid.uuid4)
        customer = ForeignKeyField(Customer, on_delete="CASCADE")
        key = CharField(max_length=255)
        operation_id = CharField(max_length=64)
        response_encrypted = TextField(null=True)
        created_at = DateTimeField()
        expires_at = DateTimeField()

        class Meta:
            database = db
            table_name = "idempotency_records"

    class AuditEntry(Model):
        id = UUIDField(primary_key=True, default=uuid.uuid4)
        customer = ForeignKeyField(Customer, on_delete="CASCADE")
        key_id = CharField(max_length=32)
        operation_id = CharField(max_length=64)
        resource_type = CharField(max_length=32, null=True)
        resource_id = UUIDField(null=True)
        status = IntegerField()
        request_id = CharField(max_length=128)
        source_ip = CharField(max_length=64, null=True)
        idempotency_key = CharField(max_length=255, null=True)
        replayed = BooleanField()
        created_at = DateTimeField()

        class Meta:
            database = db
            table_name = "audit_entries"

    db.create_tables([IdempotencyRecord, AuditEntry])
    for statement in (
        # One answer per key and account; a concurrent duplicate waits on this index.
        "CREATE UNIQUE INDEX idempotency_key_unique ON idempotency_records (customer_id, key)",
        # Expired records are swept per account.
        "CREATE INDEX idempotency_expiry ON idempotency_records (customer_id, expires_at)",
        # GET /account/audit-log pages in (created_at, id) order after its filters.
        "CREATE INDEX audit_entry_order ON audit_entries (customer_id, created_at, id)",
        "CREATE INDEX audit_entry_resource_order ON audit_entries (customer_id, resource_id, created_at, id)",
        "CREATE INDEX audit_entry_type_order ON audit_entries (customer_id, resource_type, created_at, id)",
    ):
        db.execute_sql(statement)


def down(migrator, db):
    for table in ("audit_entries", "idempotency_records"):
        db.execute_sql(f"DROP TABLE IF EXISTS {table}")
