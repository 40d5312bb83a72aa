"""marshmallow schemas, one per resource: the wire shape (camelCase) for every caller, HTTP or not.

Each schema maps one resource both ways, as Airflow's `api_connexion` schemas do:
`data_key` is the wire name and the attribute is the model column, so loaded
data goes straight to the model; read-only fields are `dump_only` (sending one
is an unknown field), secrets `load_only`. A create loads the schema whole; a
PATCH loads it with `partial=True`, leaving out what only a create may set.

The OpenAPI spec states the same bounds for HTTP requests; tests/test_spec_agreement.py
proves the two never drift. Rules that need stored state live in the services.
"""

from __future__ import annotations

import datetime as dt
import functools

from marshmallow import (
    EXCLUDE,
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates_schema,
)

from app.contracts.backends import API_BACKENDS, DEFAULT_PORTS, SYNC_MODES
from app.contracts.messages import field_path
from app.contracts.timestamps import rfc3339
from app.domain import catalog
from app.domain.errors import InvalidRequest

NAME = validate.Length(min=1, max=100)
HOST = validate.Length(min=1, max=255)
USER = validate.Length(min=1, max=255)
PASSWORD = validate.Length(min=1, max=1024)
SCHEMA_NAME = validate.Length(min=1, max=64)
PORT = validate.Range(min=1, max=65535)
SYNC_INTERVAL = validate.Range(min=catalog.MIN_SYNC_INTERVAL, max=catalog.MAX_SYNC_INTERVAL)
BINLOG_SERVER_ID = validate.Range(min=1, max=4294967295)
CUSTOM_DOMAIN = validate.Regexp(
    r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$",
    error="must be a DNS label: lowercase letters, digits and inner hyphens, at most 63 characters",
)
HH_MM = validate.Regexp(r"^(?:[01][0-9]|2[0-3]):[0-5][0-9]$", error="must be a time as HH:MM (UTC)")


def _unique(values):
    if len(set(values)) != len(values):
        raise ValidationError("items must be unique")


def _in_future(value: dt.datetime | None):
    if value is not None and value <= dt.datetime.now(dt.timezone.utc).replace(tzinfo=None):
        raise ValidationError("must be in the future")


class UtcDateTime(fields.DateTime):
    """RFC 3339 in UTC with a `Z`; loads aware values and stores them naive UTC."""

    def _serialize(self, value, attr, obj, **kwargs):
        return rfc3339(value)

    def _deserialize(self, value, attr, data, **kwargs):
        parsed = super()._deserialize(value, attr, data, **kwargs)
        if parsed.tzinfo is None:
            raise ValidationError("must carry a UTC offset, e.g. 2030-01-01T00:00:00Z")
        return parsed.astimezone(dt.timezone.utc).replace(tzinfo=None)


class StrictSchema(Schema):
    """Unknown fields (and read-only ones) are an error on load, never silently dropped."""

    class Meta:
        unknown = RAISE


class OutputSchema(Schema):
    """A shape that is only ever dumped; fields come out in declaration order."""

    class Meta:
        unknown = EXCLUDE


# -- databases ---------------------------------------------------------------


class TagSchema(StrictSchema):
    label = fields.String(required=True, validate=validate.Length(min=1, max=30))
    color = fields.String(required=True, validate=validate.OneOf(catalog.TAG_COLORS))


class PauseScheduleSchema(StrictSchema):
    pause_at = fields.String(data_key="pauseAt", required=True, validate=[validate.Length(5, 5), HH_MM])
    resume_at = fields.String(data_key="resumeAt", required=True, validate=[validate.Length(5, 5), HH_MM])
    days = fields.List(fields.Integer(strict=True, validate=validate.Range(min=0, max=6)),
                       load_default=list, validate=[validate.Length(max=7), _unique])

    @validates_schema
    def _distinct_times(self, data, **kwargs):
        if data.get("pause_at") and data.get("pause_at") == data.get("resume_at"):
            raise ValidationError("must differ from pauseAt", "resumeAt")


class DatabaseSchema(StrictSchema):
    """A database (instance): one schema of one connection, with its instance settings."""

    # What each request may send (contract §4); a field it does not list is refused there.
    # POST /databases:
    CREATE_FIELDS = ("connection_id", "name", "mysql_db", "instance_size", "log_level", "binlog_server_id")
    # The first database created with its connection (POST /connections `instance`):
    INSTANCE_FIELDS = tuple(name for name in CREATE_FIELDS if name != "connection_id")
    # PATCH /databases/{id}:
    UPDATE_FIELDS = ("name", "mysql_db", "instance_size", "log_level", "binlog_server_id",
                     "build_compute_override", "custom_domain", "pause_schedule", "tags",
                     "sync_mode", "sync_interval")

    id = fields.UUID(dump_only=True)
    customer_id = fields.UUID(data_key="customerId", dump_only=True)
    connection_id = fields.UUID(data_key="connectionId", required=True)
    name = fields.String(required=True, validate=NAME)
    mysql_db = fields.String(data_key="mysqlDb", required=True, validate=SCHEMA_NAME)
    sync_mode = fields.String(data_key="syncMode", validate=validate.OneOf(SYNC_MODES))
    sync_interval = fields.Integer(data_key="syncInterval", strict=True, validate=SYNC_INTERVAL)
    instance_size = fields.String(data_key="instanceSize", load_default="nano",
                                  validate=validate.OneOf(tuple(catalog.INSTANCE_SIZES)))
    task_cpu = fields.Method("_task_cpu", data_key="taskCpu")
    task_memory_mb = fields.Method("_task_memory_mb", data_key="taskMemoryMb")
    log_level = fields.String(data_key="logLevel", load_default="info",
                              validate=validate.OneOf(catalog.LOG_LEVELS))
    status = fields.String(dump_only=True)
    desired_state = fields.String(data_key="desiredState", dump_only=True)
    last_error = fields.String(data_key="lastError", dump_only=True)
    endpoint_url = fields.String(data_key="endpointUrl", dump_only=True)
    health_status = fields.String(data_key="healthStatus", dump_only=True)
    binlog_server_id = fields.Integer(data_key="binlogServerId", allow_none=True, load_default=None,
                                      strict=True, validate=BINLOG_SERVER_ID)
    build_compute_override = fields.String(data_key="buildComputeOverride", allow_none=True,
                                           validate=validate.OneOf(catalog.BUILD_COMPUTE_TYPES))
    custom_domain = fields.String(data_key="reflexdbCustomDomain", allow_none=True,
                                  validate=[validate.Length(min=1, max=63), CUSTOM_DOMAIN])
    pause_schedule = fields.Nested(PauseScheduleSchema, data_key="pauseSchedule", allow_none=True)
    tags = fields.List(fields.Nested(TagSchema), validate=validate.Length(max=5))
    region = fields.String(dump_only=True)
    created_at = UtcDateTime(data_key="createdAt", dump_only=True)
    updated_at = UtcDateTime(data_key="updatedAt", dump_only=True)

    def _task_cpu(self, database) -> int:
        return catalog.INSTANCE_SIZES[database.instance_size][0]

    def _task_memory_mb(self, database) -> int:
        return catalog.INSTANCE_SIZES[database.instance_size][1]


# -- connections -------------------------------------------------------------


class ConnectionSchema(StrictSchema):
    """A connection: a source server, the schemas databases may use, and the sync policy.

    The policy goes in as `syncMode`/`syncInterval` and comes out as what it
    allows (`allowedSyncModes`/`minSyncInterval`), contract §5.
    """

    # Set at create, never changed: a PATCH that sends them is refused as unknown.
    CREATE_ONLY = ("backend", "instance")

    id = fields.UUID(dump_only=True)
    customer_id = fields.UUID(data_key="customerId", dump_only=True)
    name = fields.String(required=True, validate=NAME)
    backend = fields.String(load_default="mysql", validate=validate.OneOf(API_BACKENDS))
    host = fields.String(data_key="mysqlHost", required=True, validate=HOST)
    # Its default depends on the backend: see _default_port.
    port = fields.Integer(data_key="mysqlPort", strict=True, validate=PORT)
    available_schemas = fields.List(
        fields.String(validate=SCHEMA_NAME), data_key="availableSchemas", required=True,
        validate=[validate.Length(min=1, max=100), _unique],
    )
    user = fields.String(data_key="mysqlUser", required=True, validate=USER)
    # Plain text only on the way in; the service stores it encrypted (password_encrypted).
    password = fields.String(data_key="mysqlPassword", required=True, validate=PASSWORD, load_only=True)
    sync_mode = fields.String(data_key="syncMode", load_default=catalog.DEFAULT_SYNC_MODE, load_only=True,
                              validate=validate.OneOf(SYNC_MODES))
    sync_interval = fields.Integer(data_key="syncInterval", strict=True, load_only=True,
                                   load_default=catalog.DEFAULT_SYNC_INTERVAL, validate=SYNC_INTERVAL)
    allowed_sync_modes = fields.Method("_allowed_sync_modes", data_key="allowedSyncModes")
    min_sync_interval = fields.Integer(attribute="sync_interval", data_key="minSyncInterval", dump_only=True)
    created_at = UtcDateTime(data_key="createdAt", dump_only=True)
    updated_at = UtcDateTime(data_key="updatedAt", dump_only=True)
    instance = fields.Nested(DatabaseSchema, only=DatabaseSchema.INSTANCE_FIELDS, load_only=True)
    # Its live databases, which the service attaches where an answer shows them (GET of one
    # connection, a create with `instance`); other answers exclude the field.
    databases = fields.List(fields.Nested(DatabaseSchema), attribute="live_databases", dump_only=True)

    def _allowed_sync_modes(self, connection) -> list[str]:
        return catalog.allowed_sync_modes(connection.backend, connection.sync_mode)

    @post_load
    def _default_port(self, data, partial, **kwargs):
        if not partial:
            data.setdefault("port", DEFAULT_PORTS[data["backend"]])
        return data


# -- keys --------------------------------------------------------------------


class ManagementKeySchema(StrictSchema):
    """A management key `rmk_<keyId>.<secret>`; the full `key` only in the create response."""

    id = fields.UUID(dump_only=True)
    customer_id = fields.UUID(data_key="customerId", dump_only=True)
    name = fields.String(required=True, validate=NAME)
    key_id = fields.String(data_key="keyId", dump_only=True)
    last_used_at = UtcDateTime(data_key="lastUsedAt", dump_only=True)
    expires_at = UtcDateTime(data_key="expiresAt", allow_none=True, load_default=None, validate=_in_future)
    revoked_at = UtcDateTime(data_key="revokedAt", dump_only=True)
    created_at = UtcDateTime(data_key="createdAt", dump_only=True)
    key = fields.String(dump_only=True)


class QueryKeySchema(StrictSchema):
    """A query key `rxk_<keyId>.<mac>` of one database; the full `key` only in the create response."""

    id = fields.UUID(dump_only=True)
    database_id = fields.UUID(data_key="databaseId", dump_only=True)
    key_id = fields.String(data_key="keyId", dump_only=True)
    name = fields.String(required=True, validate=NAME)
    created_at = UtcDateTime(data_key="createdAt", dump_only=True)
    expires_at = UtcDateTime(data_key="expiresAt", allow_none=True, load_default=None, validate=_in_future)
    key = fields.String(dump_only=True)


# -- schema config -----------------------------------------------------------


class SchemaConfigSchema(OutputSchema):
    """A database's reflexdb.yaml (dump only: the document is validated by its own JSON Schema)."""

    database_id = fields.UUID(attribute="id", data_key="databaseId")
    config = fields.Raw(attribute="schema_config")
    updated_at = UtcDateTime(attribute="schema_config_updated_at", data_key="updatedAt")


# The name app/domain/schema_configs.py (another branch) uses.


# -- loading -----------------------------------------------------------------


@functools.cache
def shared(schema_class: type[Schema], *, only: tuple[str, ...] | None = None,
           exclude: tuple[str, ...] = (), many: bool = False) -> Schema:
    """The one instance of `schema_class` with these options, built at first use.

    A schema keeps no per-call state (dump and load take everything as arguments), and
    building one deep-copies every declared field: per request, that cost more than the
    dump itself (docs/control-plane-performance.md).
    """
    return schema_class(only=only, exclude=exclude, many=many)


def load(schema: Schema, payload, *, partial: bool = False) -> dict:
    """Validate `payload` with `schema`; raise InvalidRequest naming every bad field.

    `partial` loads only the fields sent (a PATCH). It applies to the top level
    only: a nested object (pauseSchedule, a tag) replaces the stored one whole,
    so it is loaded whole.
    """
    if not isinstance(payload, dict):
        raise InvalidRequest("the request body must be a JSON object")
    problem = _unstorable_text(payload)
    if problem:
        raise InvalidRequest(problem)
    try:
        return schema.load(payload, partial=tuple(schema.load_fields) if partial else None)
    except ValidationError as exc:
        raise InvalidRequest(describe(exc.messages)) from None


def _unstorable_text(value, path: str = "") -> str | None:
    """Text no store can keep: NUL characters (PostgreSQL refuses them) or lone surrogates."""
    if isinstance(value, str):
        if "\x00" in value:
            return f"{path or 'body'}: must not contain NUL characters"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"{path or 'body'}: must be valid Unicode text (it holds a lone surrogate)"
        return None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        if isinstance(key, str) and (problem := _unstorable_text(key, path)):
            return problem
        if problem := _unstorable_text(item, field_path(path, key)):
            return problem
    return None


def describe(messages, path: tuple = ()) -> str:
    """Flatten marshmallow's nested messages into 'field: problem; other.field: problem'."""
    if isinstance(messages, dict):
        return "; ".join(describe(value, path if key == "_schema" else (*path, key))
                         for key, value in messages.items())
    if isinstance(messages, list) and not all(isinstance(m, str) for m in messages):
        return "; ".join(describe(m, path) for m in messages)
    text = " ".join(messages) if isinstance(messages, list) else str(messages)
    return f"{field_path(*path) or 'body'}: {text}"


# -- lifecycle, builds, credits (docs/lifecycle.md) ----------------------------

BUILD_CREDIT_AMOUNT = validate.Range(min=-1_000_000, max=1_000_000)


def _not_zero(value):
    if value == 0:
        raise ValidationError("must not be 0: a positive amount grants credits, a negative one deducts")


class ResizeSchema(StrictSchema):
    """POST /databases/{id}/resize."""

    instance_size = fields.String(data_key="instanceSize", required=True,
                                  validate=validate.OneOf(tuple(catalog.INSTANCE_SIZES)))


class RedeploySchema(StrictSchema):
    """POST /databases/{id}/redeploy."""

    build_id = fields.UUID(data_key="buildId", required=True)


class PlanUpdateSchema(StrictSchema):
    """PATCH /admin/customers/{id}/plan."""

    plan = fields.String(required=True, validate=validate.OneOf(catalog.PLANS))


class BuildCreditAdjustmentSchema(StrictSchema):
    """POST /admin/customers/{id}/build-credits: a grant (amount > 0) or a deduction (< 0)."""

    amount = fields.Integer(required=True, strict=True, validate=[BUILD_CREDIT_AMOUNT, _not_zero])
    reason = fields.String(allow_none=True, load_default=None, validate=validate.Length(min=1, max=500))
    expires_at = UtcDateTime(data_key="expiresAt", allow_none=True, load_default=None)

    @validates_schema
    def _expiry_fits(self, data, **kwargs):
        expires_at = data.get("expires_at")
        if expires_at is None:
            return
        if data.get("amount", 0) < 0:
            raise ValidationError("applies to grants only (a positive amount)", "expiresAt")
        if expires_at <= dt.datetime.now(dt.timezone.utc).replace(tzinfo=None):
            raise ValidationError("must be in the future", "expiresAt")


class BuildOut(OutputSchema):
    id = fields.UUID()
    database_id = fields.UUID(data_key="databaseId")
    status = fields.String()
    started_at = UtcDateTime(data_key="startedAt")
    finished_at = UtcDateTime(data_key="finishedAt")
    duration_seconds = fields.Function(
        lambda b: None if b.started_at is None or b.finished_at is None
        else round(max((b.finished_at - b.started_at).total_seconds(), 0.0), 3),
        data_key="durationSeconds",
    )
    compute_type = fields.String(data_key="computeType")
    logs_url = fields.Function(lambda b: f"/v1/databases/{b.database_id}/builds/{b.id}/logs",
                               data_key="logsUrl")
    tables = fields.Function(
        lambda b: None if not b.artifact else [t.get("alias") or t["name"] for t in b.artifact["tables"]])
    created_at = UtcDateTime(data_key="createdAt")


class InstanceSyncOut(OutputSchema):
    """How the instance keeps its snapshot fresh, as its /health said at the last check."""

    sync_mode = fields.String(data_key="syncMode")
    effective_sync_mode = fields.String(data_key="effectiveSyncMode")
    sync_note = fields.String(data_key="syncNote")
    replication_paused = fields.Boolean(data_key="replicationPaused")
    last_sync_at = fields.String(data_key="lastSyncAt")
    replication_lag_ms = fields.Integer(data_key="replicationLagMs")
    events_applied = fields.Integer(data_key="eventsApplied")
    position = fields.String()
    last_reload_reason = fields.String(data_key="lastReloadReason")


def _sync_of(instance) -> dict | None:
    state = instance.sync_state
    if state is None:
        return None
    # /health is camelCase already: map it onto the schema's attributes.
    return InstanceSyncOut().dump({field.attribute or name: state.get(field.data_key or name)
                                   for name, field in InstanceSyncOut().fields.items()})


class InstanceOut(OutputSchema):
    id = fields.UUID()
    database_id = fields.UUID(data_key="databaseId")
    build_id = fields.UUID(data_key="buildId")
    endpoint_url = fields.String(data_key="endpointUrl")
    health_status = fields.String(data_key="healthStatus")
    snapshot_age_ms = fields.Integer(data_key="snapshotAgeMs")
    swap_count = fields.Integer(data_key="swapCount")
    row_counts = fields.Raw(data_key="rowCounts")
    sync = fields.Function(_sync_of)
    last_health_check = UtcDateTime(data_key="lastHealthCheck")
    created_at = UtcDateTime(data_key="createdAt")
    updated_at = UtcDateTime(data_key="updatedAt")


class BuildCreditEntryOut(OutputSchema):
    id = fields.UUID()
    customer_id = fields.UUID(data_key="customerId")
    amount = fields.Integer()
    reason = fields.String()
    expires_at = UtcDateTime(data_key="expiresAt")
    created_at = UtcDateTime(data_key="createdAt")
    total_adjustment = fields.Integer(data_key="totalAdjustment")
    balance = fields.Integer()


class CustomerOut(OutputSchema):
    id = fields.UUID()
    name = fields.String()
    plan = fields.String()
    is_admin = fields.Boolean(data_key="isAdmin")
    created_at = UtcDateTime(data_key="createdAt")
