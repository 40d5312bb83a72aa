"""Peewee models of the control plane, with their query intent as classmethods."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from typing import NamedTuple

from peewee import (
    BigIntegerField,
    BooleanField,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    IntegrityError,
    Model,
    TextField,
    UUIDField,
)

from app.storage.database import db, is_sqlite
from app.storage.prebuilt import PrebuiltInsert, PrebuiltSelect, PrebuiltUpdate

# Database.first_live_on's statements, by row count.
_FIRST_LIVE_ON: dict[int, PrebuiltSelect] = {}


def utcnow() -> dt.datetime:
    """Naive UTC now: every timestamp is stored as naive UTC."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class JSONField(TextField):
    """JSON stored as text, so it works the same on PostgreSQL and SQLite."""

    def db_value(self, value):
        return None if value is None else json.dumps(value, separators=(",", ":"))

    def python_value(self, value):
        return None if value is None else json.loads(value)


# SQLite names the columns of a violated unique index, not the index.
_SQLITE_UNIQUE = re.compile(r"UNIQUE constraint failed: (.+)")


def violated_unique_index(error: IntegrityError) -> str | None:
    """The name of the unique index `error` violated, or None if it is another integrity error."""
    cause = getattr(error, "orig", error)      # the driver's exception, which peewee wraps
    name = getattr(getattr(cause, "diag", None), "constraint_name", None)   # psycopg2
    if name:
        return name
    match = _SQLITE_UNIQUE.match(str(cause))
    if match is None:
        return None
    qualified = [column.strip().split(".", 1) for column in match.group(1).split(",")]
    table, columns = qualified[0][0], [column for _, column in qualified]
    return next((index.name for index in db.get_indexes(table)
                 if index.unique and index.columns == columns), None)


class BaseModel(Model):
    id = UUIDField(primary_key=True, default=uuid.uuid4)

    class Meta:
        database = db
        legacy_table_names = False

    @classmethod
    def owned_by(cls, customer_id):
        """The rows of `customer_id` (for models that belong to a customer)."""
        return cls.select().where(cls.customer == customer_id)

    @classmethod
    def find_owned(cls, customer_id, row_id):
        """The row `row_id` of `customer_id` (`owned_by`), or None: one prebuilt statement."""
        return cls._prebuilt_owned(lock=False).first(customer_id, row_id)

    @classmethod
    def lock_owned(cls, customer_id, row_id):
        """The row `row_id` of `customer_id`, row-locked until the transaction ends (None if absent).

        SQLite has no row locks; there every transaction is BEGIN IMMEDIATE (see
        app.storage.database), which serialises writers.
        """
        return cls._prebuilt_owned(lock=True).first(customer_id, row_id)

    @classmethod
    def _prebuilt_owned(cls, *, lock: bool) -> PrebuiltSelect:
        # Per model class (not inherited: each has its own table) and lock mode.
        key = f"_prebuilt_owned_{'lock' if lock else 'read'}"
        select = cls.__dict__.get(key)
        if select is None:
            def build(customer_id, row_id):
                query = cls.owned_by(customer_id).where(cls.id == row_id)
                if lock and not is_sqlite():
                    query = query.for_update()
                return query.limit(1)

            select = PrebuiltSelect(cls, build, (cls.customer, cls.id))
            setattr(cls, key, select)
        return select


class Resource(BaseModel):
    """A customer's connection or database: timestamped, soft-deleted (`deleted_at`), kept for audit."""

    # Subclasses declare `customer`, `created_at`, `updated_at` and `deleted_at`.

    @classmethod
    def create(cls, **values):
        """Insert a row; `created_at` and `updated_at` are one timestamp unless given."""
        now = utcnow()
        values.setdefault("created_at", now)
        values.setdefault("updated_at", values["created_at"])
        return super().create(**values)

    @classmethod
    def update_row(cls, row_id, **changes) -> int:
        """Set `changes` on the row `row_id`: one prebuilt statement per set of columns
        (a connection's rename sends it on every PATCH); returns the rows changed."""
        update = cls.__dict__.get("_prebuilt_update")
        if update is None:
            update = PrebuiltUpdate(cls)
            cls._prebuilt_update = update
        return update.execute(row_id, changes)

    @classmethod
    def active(cls):
        """Every live (not deleted) row."""
        return cls.select().where(cls.deleted_at.is_null())

    @classmethod
    def owned_by(cls, customer_id):
        """The live rows of `customer_id`: a deleted row is gone for its owner too."""
        return cls.active().where(cls.customer == customer_id)


class Customer(BaseModel):
    class Meta:
        table_name = "customers"

    name = CharField(max_length=100)
    plan = CharField(max_length=20, default="free")
    is_admin = BooleanField(default=False)
    created_at = DateTimeField(default=utcnow)


class ManagementKey(BaseModel):
    class Meta:
        table_name = "management_keys"

    customer = ForeignKeyField(Customer, backref="management_keys", on_delete="CASCADE")
    name = CharField(max_length=100)
    key_id = CharField(max_length=32, unique=True)
    secret_hash = CharField(max_length=64)          # sha256 hex of the secret part
    last_used_at = DateTimeField(null=True)
    expires_at = DateTimeField(null=True)
    revoked_at = DateTimeField(null=True)
    created_at = DateTimeField(default=utcnow)

    @classmethod
    def with_owner(cls, key_id: str) -> KeyWithOwner | None:
        """The key `key_id` and what authentication needs of its customer: one prebuilt
        statement (every authenticated request sends it)."""
        rows = _KEY_WITH_OWNER.tuples(key_id)
        return KeyWithOwner(*rows[0]) if rows else None

    @classmethod
    def touch(cls, ident, now) -> None:
        """Record that key `ident` was used at `now`."""
        cls.update(last_used_at=now).where(cls.id == ident).execute()

    @classmethod
    async def with_owner_from_loop(cls, statements, key_id: str) -> KeyWithOwner | None:
        """`with_owner()`, sent from the event loop (app/storage/loop_statements.py)."""
        rows = await _KEY_WITH_OWNER.tuples_from_loop(statements, key_id)
        return KeyWithOwner(*rows[0]) if rows else None

    @classmethod
    async def touch_from_loop(cls, statements, ident, now) -> None:
        """`touch()`, sent from the event loop."""
        await statements.fetch(*cls.update(last_used_at=now).where(cls.id == ident).sql())


class KeyWithOwner(NamedTuple):
    id: uuid.UUID
    customer_id: uuid.UUID
    secret_hash: str
    last_used_at: dt.datetime | None
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    is_admin: bool
    plan: str


_KEY_WITH_OWNER = PrebuiltSelect(
    ManagementKey,
    lambda key_id: (ManagementKey.select(ManagementKey.id, ManagementKey.customer, ManagementKey.secret_hash,
                                         ManagementKey.last_used_at, ManagementKey.expires_at,
                                         ManagementKey.revoked_at, Customer.is_admin, Customer.plan)
                    .join(Customer).where(ManagementKey.key_id == key_id).limit(1)),
    (ManagementKey.key_id,))


class Connection(Resource):
    """A customer's source server, the schemas it exposes and its sync policy."""

    # Every write that must agree with `available_schemas` (PATCH of the connection,
    # creating a database, changing a database's mysqlDb) takes this row's lock first
    # (`Connection.lock_owned`).

    class Meta:
        table_name = "connections"

    customer = ForeignKeyField(Customer, backref="connections", on_delete="CASCADE")
    name = CharField(max_length=100)
    backend = CharField(max_length=10)
    host = CharField(max_length=255)
    port = IntegerField()
    available_schemas = JSONField()
    user = CharField(max_length=255)
    password_encrypted = TextField()                 # Fernet token, see app.storage.secrets
    sync_mode = CharField(max_length=10)
    sync_interval = IntegerField()
    # Bumped on every change to host/port/user/password; a deployed instance
    # records the version it was deployed with, so staleness is a comparison.
    credentials_version = IntegerField(default=1)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)
    deleted_at = DateTimeField(null=True)


class Database(Resource):
    class Meta:
        table_name = "databases"

    customer = ForeignKeyField(Customer, backref="databases", on_delete="CASCADE")
    connection = ForeignKeyField(Connection, backref="databases", on_delete="RESTRICT")
    name = CharField(max_length=100)
    mysql_db = CharField(max_length=64)
    sync_mode = CharField(max_length=10)
    sync_interval = IntegerField()
    instance_size = CharField(max_length=10, default="nano")
    log_level = CharField(max_length=10, default="info")
    status = CharField(max_length=32, default="registered")
    desired_state = CharField(max_length=32, null=True)
    last_error = TextField(null=True)
    endpoint_url = CharField(max_length=500, null=True)
    health_status = CharField(max_length=20, null=True)
    binlog_server_id = BigIntegerField(null=True)
    build_compute_override = CharField(max_length=40, null=True)
    custom_domain = CharField(max_length=63, null=True)
    pause_schedule = JSONField(null=True)
    tags = JSONField(default=list)
    region = CharField(max_length=64)
    # What the running instance was deployed with (null until first deploy):
    # the credentials version and the settings, for credentialsPending and
    # hasPendingChanges.
    deployed_credentials_version = IntegerField(null=True)
    deployed_config = JSONField(null=True)
    # Query keys are HMACs of their keyId under this secret (Fernet-encrypted
    # here); the instance gets it at deploy and checks keys on its own.
    query_key_secret_encrypted = TextField(null=True)
    schema_config = JSONField(null=True)            # reflexdb.yaml, validated, as JSON
    schema_config_updated_at = DateTimeField(null=True)
    # The lifecycle engine's bookkeeping (docs/lifecycle.md). `operation` is the
    # action being carried out while the status is transitional; `generation`
    # is bumped by every accepted action, and a step commits its result only if
    # it is unchanged. The lease says which worker runs the current step.
    operation = CharField(max_length=32, null=True)
    operation_params = JSONField(null=True)
    generation = IntegerField(default=0)
    lease_owner = CharField(max_length=64, null=True)
    lease_expires_at = DateTimeField(null=True)
    attempts = IntegerField(default=0)              # starts of the current step
    replication_paused = BooleanField(default=False)
    deployed_build_id = UUIDField(null=True)
    schedule_applied_at = DateTimeField(null=True)  # the last pauseSchedule event carried out
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)
    deleted_at = DateTimeField(null=True)

    @classmethod
    def active_on(cls, connection_id):
        """The live databases of one connection."""
        return cls.active().where(cls.connection == connection_id)

    @classmethod
    def first_live_on(cls, connection_id, count: int) -> list:
        """The first `count` live databases of one connection, in list order (created_at, id):
        one prebuilt statement (GET /connections/{id} embeds them)."""
        select = _FIRST_LIVE_ON.get(count)
        if select is None:
            select = _FIRST_LIVE_ON.setdefault(count, PrebuiltSelect(
                cls, lambda connection_id: (cls.active_on(connection_id)
                                            .order_by(cls.created_at, cls.id).limit(count)),
                (cls.connection,)))
        return select.rows(connection_id)


class QueryKey(BaseModel):
    class Meta:
        table_name = "query_keys"

    customer = ForeignKeyField(Customer, on_delete="CASCADE")
    database = ForeignKeyField(Database, backref="query_keys", on_delete="CASCADE")
    name = CharField(max_length=100)
    key_id = CharField(max_length=64, unique=True)
    expires_at = DateTimeField(null=True)
    revoked_at = DateTimeField(null=True)
    created_at = DateTimeField(default=utcnow)

    @classmethod
    def live_for(cls, database_id):
        return (cls.select().where((cls.database == database_id) & cls.revoked_at.is_null())
                .order_by(cls.created_at, cls.id))


class Build(BaseModel):
    """One compile of the query engine for a database; its artifact is what Redeploy reuses."""

    class Meta:
        table_name = "builds"

    customer = ForeignKeyField(Customer, on_delete="CASCADE")
    database = ForeignKeyField(Database, backref="builds", on_delete="CASCADE")
    status = CharField(max_length=20, default="queued")   # queued | in_progress | succeeded | failed
    compute_type = CharField(max_length=40)
    artifact = JSONField(null=True)                 # the SchemaArtifact, once succeeded
    log = TextField(default="")
    started_at = DateTimeField(null=True)
    finished_at = DateTimeField(null=True)
    created_at = DateTimeField(default=utcnow)


class Instance(BaseModel):
    """One started instance process of a database; `stopped_at` is null while it is live."""

    class Meta:
        table_name = "instances"

    customer = ForeignKeyField(Customer, on_delete="CASCADE")
    database = ForeignKeyField(Database, backref="instances", on_delete="CASCADE")
    build = ForeignKeyField(Build, on_delete="CASCADE")
    endpoint_url = CharField(max_length=500)
    handle = JSONField()                            # the runtime's handle (no secrets)
    admin_token_encrypted = TextField()             # Fernet token of the instance's admin token
    health_status = CharField(max_length=20, null=True)
    snapshot_age_ms = BigIntegerField(null=True)
    swap_count = IntegerField(default=0)
    row_counts = JSONField(default=dict)
    sync_state = JSONField(null=True)               # the /health sync fields (app/engine/steps.py)
    last_health_check = DateTimeField(null=True)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)
    stopped_at = DateTimeField(null=True)


class BuildCreditEntry(BaseModel):
    """A line of an account's build-credit ledger: admin grants and deductions, and -1 per build."""

    class Meta:
        table_name = "build_credit_entries"

    customer = ForeignKeyField(Customer, on_delete="CASCADE")
    amount = IntegerField()
    reason = CharField(max_length=500, null=True)
    expires_at = DateTimeField(null=True)
    build = ForeignKeyField(Build, null=True, on_delete="SET NULL")
    created_at = DateTimeField(default=utcnow)


class EngineLease(Model):
    """A named lease held by one engine worker at a time (e.g. the reconciler)."""

    class Meta:
        database = db
        table_name = "engine_leases"

    name = CharField(max_length=64, primary_key=True)
    owner = CharField(max_length=64)
    expires_at = DateTimeField()


ALL_MODELS = (Customer, ManagementKey, Connection, Database, QueryKey, Build, Instance,
              BuildCreditEntry, EngineLease)


class IdempotencyRecord(BaseModel):
    """The answer to the first POST sent with an `Idempotency-Key`, replayed to retries (app/domain/idempotency.py)."""

    class Meta:
        table_name = "idempotency_records"

    customer = ForeignKeyField(Customer, on_delete="CASCADE")
    key = CharField(max_length=255)                 # unique per customer (migration 0005)
    operation_id = CharField(max_length=64)          # for operators reading the table; not compared
    # Fernet token of {fingerprint, status, headers, body}: the answer may hold a key
    # shown once (POST /account/management-keys), the fingerprint hashes a body that
    # may hold a password. Null only inside the transaction that claims the key.
    response_encrypted = TextField(null=True)
    created_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField()


class AuditEntry(BaseModel):
    """One mutating request of an account: who, what, on which resource, with what outcome (app/domain/audit.py)."""

    class Meta:
        table_name = "audit_entries"

    customer = ForeignKeyField(Customer, on_delete="CASCADE")
    key_id = CharField(max_length=32)                # the management key's public keyId
    operation_id = CharField(max_length=64)
    resource_type = CharField(max_length=32, null=True)
    resource_id = UUIDField(null=True)
    status = IntegerField()
    request_id = CharField(max_length=128)
    source_ip = CharField(max_length=64, null=True)
    idempotency_key = CharField(max_length=255, null=True)
    replayed = BooleanField(default=False)
    created_at = DateTimeField(default=utcnow)

    @classmethod
    def insert_row(cls, **values) -> None:
        """Insert one entry (`id` and `created_at` default): one prebuilt statement (every
        mutating request writes one), the last of its transaction, sent with the COMMIT on
        PostgreSQL (`PooledStore.execute_at_commit`)."""
        _INSERT_AUDIT_ENTRY.execute(values, at_commit=True)


_INSERT_AUDIT_ENTRY = PrebuiltInsert(AuditEntry)

ALL_MODELS = (*ALL_MODELS, IdempotencyRecord, AuditEntry)
