"""The lifecycle engine: builds, instances, the build-credit ledger, leases, and its columns on databases."""
import uuid

from peewee import *


def up(migrator, db):
    # Frozen stubs of the tables the new ones refer to.
    class Stub(Model):
        id = UUIDField(primary_key=True)

        class Meta:
            database = db

    class Customer(Stub):
        class Meta:
            table_name = "customers"

    class Database(Stub):
        class Meta:
            table_name = "databases"

    class Build(Model):
        id = UUIDField(primary_key=True, default=uuid.uuid4)
        customer = ForeignKeyField(Customer, on_delete="CASCADE")
        database = ForeignKeyField(Database, on_delete="CASCADE")
        status = CharField(max_length=20)
        compute_type = CharField(max_length=40)
        artifact = TextField(null=True)
        log = TextField()
        started_at = DateTimeField(null=True)
        finished_at = DateTimeField(null=True)
        created_at = DateTimeField()

        class Meta:
            database = db
            table_name = "builds"

    class Instance(Model):
        id = UUIDField(primary_key=True, default=uuid.uuid4)
        customer = ForeignKeyField(Customer, on_delete="CASCADE")
        database = ForeignKeyField(Database, on_delete="CASCADE")
        build = ForeignKeyField(Build, on_delete="CASCADE")
        endpoint_url = CharField(max_length=500)
        handle = TextField()
        admin_token_encrypted = TextField()
        health_status = CharField(max_length=20, null=True)
        snapshot_age_ms = BigIntegerField(null=True)
        swap_count = IntegerField()
        row_counts = TextField()
        last_health_check = DateTimeField(null=True)
        created_at = DateTimeField()
        updated_at = DateTimeField()
        stopped_at = DateTimeField(null=True)

        class Meta:
            database = db
            table_name = "instances"

    class BuildCreditEntry(Model):
        id = UUIDField(primary_key=True, default=uuid.uuid4)
        customer = ForeignKeyField(Customer, on_delete="CASCADE")
        amount = IntegerField()
        reason = CharField(max_length=500, null=True)
        expires_at = DateTimeField(null=True)
        build = ForeignKeyField(Build, null=True, on_delete="SET NULL")
        created_at = DateTimeField()

        class Meta:
            database = db
            table_name = "build_credit_entries"

    class EngineLease(Model):
        name = CharField(max_length=64, primary_key=True)
        owner = CharField(max_length=64)
        expires_at = DateTimeField()

        class Meta:
            database = db
            table_name = "engine_leases"

    migrator.migrate(
        migrator.add_column("databases", "operation", CharField(max_length=32, null=True)),
        migrator.add_column("databases", "operation_params", TextField(null=True)),
        migrator.add_column("databases", "generation", IntegerField(default=0)),
        migrator.add_column("databases", "lease_owner", CharField(max_length=64, null=True)),
        migrator.add_column("databases", "lease_expires_at", DateTimeField(null=True)),
        migrator.add_column("databases", "attempts", IntegerField(default=0)),
        migrator.add_column("databases", "replication_paused", BooleanField(default=False)),
        migrator.add_column("databases", "deployed_build_id", UUIDField(null=True)),
        migrator.add_column("databases", "schedule_applied_at", DateTimeField(null=True)),
    )
    db.create_tables([Build, Instance, BuildCreditEntry, EngineLease])
    for statement in (
        "CREATE INDEX builds_by_database ON builds (database_id, created_at)",
        # At most one live instance per database.
        "CREATE UNIQUE INDEX instances_live ON instances (database_id) WHERE stopped_at IS NULL",
        "CREATE INDEX build_credit_entries_by_customer ON build_credit_entries (customer_id)",
        # The reconciler looks for work in transitional statuses only.
        "CREATE INDEX databases_engine_work ON databases (status) WHERE deleted_at IS NULL "
        "AND status NOT IN ('registered', 'paused', 'failed', 'stopped', 'terminated')",
    ):
        db.execute_sql(statement)


def down(migrator, db):
    for table in ("engine_leases", "build_credit_entries", "instances", "builds"):
        db.execute_sql(f"DROP TABLE IF EXISTS {table}")
    migrator.migrate(*(migrator.drop_column("databases", column) for column in (
        "operation", "operation_params", "generation", "lease_owner", "lease_expires_at",
        "attempts", "replication_paused", "deployed_build_id", "schedule_applied_at")))
