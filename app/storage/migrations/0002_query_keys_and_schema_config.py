"""Query keys, the per-database secret they are derived from, and the schema config."""
import uuid

from peewee import *


def up(migrator, db):
    # Frozen stubs of the tables the new one refers to.
    class Customer(Model):
        id = UUIDField(primary_key=True)

        class Meta:
            database = db
            table_name = "customers"

    class Database(Model):
        id = UUIDField(primary_key=True)

        class Meta:
            database = db
            table_name = "databases"

    class QueryKey(Model):
        id = UUIDField(primary_key=True, default=uuid.uuid4)
        customer = ForeignKeyField(Customer, on_delete="CASCADE")
        database = ForeignKeyField(Database, on_delete="CASCADE")
        name = CharField(max_length=100)
        key_id = CharField(max_length=64, unique=True)
        expires_at = DateTimeField(null=True)
        revoked_at = DateTimeField(null=True)
        created_at = DateTimeField()

        class Meta:
            database = db
            table_name = "query_keys"

    migrator.migrate(
        migrator.add_column("databases", "query_key_secret_encrypted", TextField(null=True)),
        migrator.add_column("databases", "schema_config", TextField(null=True)),
        migrator.add_column("databases", "schema_config_updated_at", DateTimeField(null=True)),
    )
    db.create_tables([QueryKey])
    db.execute_sql("CREATE INDEX query_keys_live ON query_keys (database_id) WHERE revoked_at IS NULL")


def down(migrator, db):
    db.execute_sql("DROP TABLE IF EXISTS query_keys")
    migrator.migrate(
        migrator.drop_column("databases", "query_key_secret_encrypted"),
        migrator.drop_column("databases", "schema_config"),
        migrator.drop_column("databases", "schema_config_updated_at"),
    )
