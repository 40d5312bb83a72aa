"""Customers, management keys, connections and databases."""
import datetime
import uuid

from peewee import *


def up(migrator, db):
    # Frozen copies of the models as they were at this migration, on purpose
    # independent of app.storage.models.
    class Base(Model):
        id = UUIDField(primary_key=True, default=uuid.uuid4)

        class Meta:
            database = db
            legacy_table_names = False

    class Customer(Base):
        class Meta:
            table_name = "customers"

        name = CharField(max_length=100)
        plan = CharField(max_length=20, default="free")
        is_admin = BooleanField(default=False)
        created_at = DateTimeField(default=datetime.datetime.utcnow)

    class ManagementKey(Base):
        class Meta:
            table_name = "management_keys"

        customer = ForeignKeyField(Customer, on_delete="CASCADE")
        name = CharField(max_length=100)
        key_id = CharField(max_length=32, unique=True)
        secret_hash = CharField(max_length=64)
        last_used_at = DateTimeField(null=True)
        expires_at = DateTimeField(null=True)
        revoked_at = DateTimeField(null=True)
        created_at = DateTimeField()

    class Connection(Base):
        class Meta:
            table_name = "connections"

        customer = ForeignKeyField(Customer, on_delete="CASCADE")
        name = CharField(max_length=100)
        backend = CharField(max_length=10)
        host = CharField(max_length=255)
        port = IntegerField()
        available_schemas = TextField()
        user = CharField(max_length=255)
        password_encrypted = TextField()
        sync_mode = CharField(max_length=10)
        sync_interval = IntegerField()
        credentials_version = IntegerField(default=1)
        created_at = DateTimeField()
        updated_at = DateTimeField()
        deleted_at = DateTimeField(null=True)

    class Database(Base):
        class Meta:
            table_name = "databases"

        customer = ForeignKeyField(Customer, on_delete="CASCADE")
        connection = ForeignKeyField(Connection, on_delete="RESTRICT")
        name = CharField(max_length=100)
        mysql_db = CharField(max_length=64)
        sync_mode = CharField(max_length=10)
        sync_interval = IntegerField()
        instance_size = CharField(max_length=10)
        log_level = CharField(max_length=10)
        status = CharField(max_length=32)
        desired_state = CharField(max_length=32, null=True)
        last_error = TextField(null=True)
        endpoint_url = CharField(max_length=500, null=True)
        health_status = CharField(max_length=20, null=True)
        binlog_server_id = BigIntegerField(null=True)
        build_compute_override = CharField(max_length=40, null=True)
        custom_domain = CharField(max_length=63, null=True)
        pause_schedule = TextField(null=True)
        tags = TextField()
        region = CharField(max_length=64)
        deployed_credentials_version = IntegerField(null=True)
        deployed_config = TextField(null=True)
        created_at = DateTimeField()
        updated_at = DateTimeField()
        deleted_at = DateTimeField(null=True)

    db.create_tables([Customer, ManagementKey, Connection, Database])
    # Uniqueness holds among live rows only: a soft-deleted row frees its name.
    for statement in (
        'CREATE UNIQUE INDEX connection_name_live ON connections (customer_id, name) '
        'WHERE deleted_at IS NULL',
        'CREATE UNIQUE INDEX database_name_live ON databases (connection_id, name) '
        'WHERE deleted_at IS NULL',
        'CREATE UNIQUE INDEX database_custom_domain_live ON databases (custom_domain) '
        'WHERE deleted_at IS NULL AND custom_domain IS NOT NULL',
        # The schema-in-use check reads exactly this.
        'CREATE INDEX database_schema_usage ON databases (connection_id, mysql_db) '
        'WHERE deleted_at IS NULL',
        'CREATE INDEX database_customer_live ON databases (customer_id) WHERE deleted_at IS NULL',
    ):
        db.execute_sql(statement)


def down(migrator, db):
    for table in ("databases", "connections", "management_keys", "customers"):
        db.execute_sql(f"DROP TABLE IF EXISTS {table}")
