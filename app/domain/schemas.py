"""marshmallow schemas: the wire shapes (camelCase) for every caller, HTTP or not.

The OpenAPI spec states the same bounds for HTTP requests; tests/test_spec_agreement.py
proves the two never drift. Rules between fields of one payload live here too;
rules that need stored state live in the services.
"""

from __future__ import annotations

import datetime as dt

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


class UtcDateTime(fields.DateTime):
    """RFC 3339 in UTC with a `Z`; loads aware values and stores them naive UTC."""

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def _deserialize(self, value, attr, data, **kwargs):
        parsed = super()._deserialize(value, attr, data, **kwargs)
        if parsed.tzinfo is None:
            raise ValidationError("must carry a UTC offset, e.g. 2030-01-01T00:00:00Z")
        return parsed.astimezone(dt.timezone.utc).replace(tzinfo=None)


class StrictSchema(Schema):
    """Unknown fields are an error, never silently dropped."""

    class Meta:
        unknown = RAISE


# -- connections -------------------------------------------------------------


class InstanceCreateSchema(StrictSchema):
    """The first database created together with a connection (POST /connections `instance`)."""

    name = fields.String(required=True, validate=NAME)
    mysql_db = fields.String(data_key="mysqlDb", required=True, validate=SCHEMA_NAME)
    instance_size = fields.String(data_key="instanceSize", load_default="nano",
                                  validate=validate.OneOf(tuple(catalog.INSTANCE_SIZES)))
    log_level = fields.String(data_key="logLevel", load_default="info",
                              validate=validate.OneOf(catalog.LOG_LEVELS))
    binlog_server_id = fields.Integer(data_key="binlogServerId", allow_none=True,
                                      load_default=None, strict=True, validate=BINLOG_SERVER_ID)


class DatabaseCreateSchema(InstanceCreateSchema):
    connection_id = fields.UUID(data_key="connectionId", required=True)


class ConnectionUpdateSchema(StrictSchema):
    """PATCH /connections/{id}: every field optional, none nullable."""

    name = fields.String(validate=NAME)
    mysql_host = fields.String(data_key="mysqlHost", validate=HOST)
    mysql_port = fields.Integer(data_key="mysqlPort", strict=True, validate=PORT)
    available_schemas = fields.List(
        fields.String(validate=SCHEMA_NAME), data_key="availableSchemas",
        validate=[validate.Length(min=1, max=100), _unique],
    )
    mysql_user = fields.String(data_key="mysqlUser", validate=USER)
    mysql_password = fields.String(data_key="mysqlPassword", validate=PASSWORD, load_only=True)
    sync_mode = fields.String(data_key="syncMode", validate=validate.OneOf(catalog.SYNC_MODES))
    sync_interval = fields.Integer(data_key="syncInterval", strict=True, validate=SYNC_INTERVAL)


class ConnectionCreateSchema(ConnectionUpdateSchema):
    name = fields.String(required=True, validate=NAME)
    backend = fields.String(load_default="mysql", validate=validate.OneOf(catalog.BACKENDS))
    mysql_host = fields.String(data_key="mysqlHost", required=True, validate=HOST)
    mysql_port = fields.Integer(data_key="mysqlPort", strict=True, validate=PORT)
    available_schemas = fields.List(
        fields.String(validate=SCHEMA_NAME), data_key="availableSchemas", required=True,
        validate=[validate.Length(min=1, max=100), _unique],
    )
    mysql_user = fields.String(data_key="mysqlUser", required=True, validate=USER)
    mysql_password = fields.String(data_key="mysqlPassword", required=True, validate=PASSWORD,
                                   load_only=True)
    sync_mode = fields.String(data_key="syncMode", load_default=catalog.DEFAULT_SYNC_MODE,
                              validate=validate.OneOf(catalog.SYNC_MODES))
    sync_interval = fields.Integer(data_key="syncInterval", strict=True,
                                   load_default=catalog.DEFAULT_SYNC_INTERVAL, validate=SYNC_INTERVAL)
    instance = fields.Nested(InstanceCreateSchema)

    @validates_schema
    def _sync_mode_fits_backend(self, data, **kwargs):
        mode, backend = data.get("sync_mode"), data.get("backend")
        if mode and backend and mode not in ("poll", catalog.CDC_MODES[backend]):
            raise ValidationError(
                f"must be 'poll' or '{catalog.CDC_MODES[backend]}' for backend '{backend}'",
                "syncMode",
            )

    @validates_schema
    def _instance_schema_is_available(self, data, **kwargs):
        instance, schemas = data.get("instance"), data.get("available_schemas")
        if instance and schemas is not None and instance["mysql_db"] not in schemas:
            raise ValidationError(
                {"mysqlDb": [f"'{instance['mysql_db']}' is not in availableSchemas"]}, "instance"
            )

    @post_load
    def _default_port(self, data, **kwargs):
        data.setdefault("mysql_port", catalog.DEFAULT_PORTS[data["backend"]])
        return data


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


class DatabaseUpdateSchema(StrictSchema):
    """PATCH /databases/{id}: every field optional; the nullable ones clear with null."""

    name = fields.String(validate=NAME)
    mysql_db = fields.String(data_key="mysqlDb", validate=SCHEMA_NAME)
    instance_size = fields.String(data_key="instanceSize",
                                  validate=validate.OneOf(tuple(catalog.INSTANCE_SIZES)))
    log_level = fields.String(data_key="logLevel", validate=validate.OneOf(catalog.LOG_LEVELS))
    binlog_server_id = fields.Integer(data_key="binlogServerId", allow_none=True, strict=True,
                                      validate=BINLOG_SERVER_ID)
    build_compute_override = fields.String(data_key="buildComputeOverride", allow_none=True,
                                           validate=validate.OneOf(catalog.BUILD_COMPUTE_TYPES))
    custom_domain = fields.String(data_key="reflexdbCustomDomain", allow_none=True,
                                  validate=[validate.Length(min=1, max=63), CUSTOM_DOMAIN])
    pause_schedule = fields.Nested(PauseScheduleSchema, data_key="pauseSchedule", allow_none=True)
    tags = fields.List(fields.Nested(TagSchema), validate=validate.Length(max=5))
    sync_mode = fields.String(data_key="syncMode", validate=validate.OneOf(catalog.SYNC_MODES))
    sync_interval = fields.Integer(data_key="syncInterval", strict=True, validate=SYNC_INTERVAL)


# -- keys --------------------------------------------------------------------


class KeyCreateSchema(StrictSchema):
    """A new management key or query key."""

    name = fields.String(required=True, validate=NAME)
    expires_at = UtcDateTime(data_key="expiresAt", allow_none=True, load_default=None)

    @validates_schema
    def _expiry_in_future(self, data, **kwargs):
        expires_at = data.get("expires_at")
        if expires_at is not None and expires_at <= dt.datetime.now(dt.timezone.utc).replace(tzinfo=None):
            raise ValidationError("must be in the future", "expiresAt")


ManagementKeyCreateSchema = QueryKeyCreateSchema = KeyCreateSchema


# -- responses (dump only) ---------------------------------------------------


class OutputSchema(Schema):
    """Dump-only shapes; fields come out in declaration order."""

    class Meta:
        unknown = EXCLUDE


class DatabaseOut(OutputSchema):
    id = fields.UUID()
    customer_id = fields.UUID(data_key="customerId")
    connection_id = fields.UUID(data_key="connectionId")
    name = fields.String()
    mysql_db = fields.String(data_key="mysqlDb")
    sync_mode = fields.String(data_key="syncMode")
    sync_interval = fields.Integer(data_key="syncInterval")
    instance_size = fields.String(data_key="instanceSize")
    task_cpu = fields.Function(lambda d: catalog.INSTANCE_SIZES[d.instance_size][0], data_key="taskCpu")
    task_memory_mb = fields.Function(lambda d: catalog.INSTANCE_SIZES[d.instance_size][1],
                                     data_key="taskMemoryMb")
    log_level = fields.String(data_key="logLevel")
    status = fields.String()
    desired_state = fields.String(data_key="desiredState")
    last_error = fields.String(data_key="lastError")
    endpoint_url = fields.String(data_key="endpointUrl")
    health_status = fields.String(data_key="healthStatus")
    binlog_server_id = fields.Integer(data_key="binlogServerId")
    build_compute_override = fields.String(data_key="buildComputeOverride")
    custom_domain = fields.String(data_key="reflexdbCustomDomain")
    pause_schedule = fields.Function(
        lambda d: None if d.pause_schedule is None else {
            "pauseAt": d.pause_schedule["pause_at"],
            "resumeAt": d.pause_schedule["resume_at"],
            "days": d.pause_schedule["days"],
        },
        data_key="pauseSchedule",
    )
    tags = fields.Raw()
    region = fields.String()
    created_at = UtcDateTime(data_key="createdAt")
    updated_at = UtcDateTime(data_key="updatedAt")


class ConnectionOut(OutputSchema):
    id = fields.UUID()
    customer_id = fields.UUID(data_key="customerId")
    name = fields.String()
    backend = fields.String()
    host = fields.String(data_key="mysqlHost")
    port = fields.Integer(data_key="mysqlPort")
    available_schemas = fields.List(fields.String(), data_key="availableSchemas")
    user = fields.String(data_key="mysqlUser")
    allowed_sync_modes = fields.Function(
        lambda c: catalog.allowed_sync_modes(c.backend, c.sync_mode), data_key="allowedSyncModes"
    )
    min_sync_interval = fields.Integer(attribute="sync_interval", data_key="minSyncInterval")
    created_at = UtcDateTime(data_key="createdAt")
    updated_at = UtcDateTime(data_key="updatedAt")


class ConnectionWithDatabasesOut(ConnectionOut):
    databases = fields.List(fields.Nested(DatabaseOut), attribute="live_databases")


class ManagementKeyOut(OutputSchema):
    id = fields.UUID()
    customer_id = fields.UUID(data_key="customerId")
    name = fields.String()
    key_id = fields.String(data_key="keyId")
    last_used_at = UtcDateTime(data_key="lastUsedAt")
    expires_at = UtcDateTime(data_key="expiresAt")
    revoked_at = UtcDateTime(data_key="revokedAt")
    created_at = UtcDateTime(data_key="createdAt")


class ManagementKeyCreatedOut(ManagementKeyOut):
    key = fields.String()


class QueryKeyOut(OutputSchema):
    id = fields.UUID()
    database_id = fields.UUID(data_key="databaseId")
    key_id = fields.String(data_key="keyId")
    name = fields.String()
    created_at = UtcDateTime(data_key="createdAt")
    expires_at = UtcDateTime(data_key="expiresAt")


class QueryKeyCreatedOut(QueryKeyOut):
    key = fields.String()


class SchemaConfigOut(OutputSchema):
    database_id = fields.UUID(attribute="id", data_key="databaseId")
    config = fields.Raw(attribute="schema_config")
    updated_at = UtcDateTime(attribute="schema_config_updated_at", data_key="updatedAt")


def load(schema: Schema, payload, *, partial: bool = False) -> dict:
    """Validate `payload` with `schema`; raise InvalidRequest naming every bad field."""
    if not isinstance(payload, dict):
        raise InvalidRequest("the request body must be a JSON object")
    problem = _unstorable_text(payload)
    if problem:
        raise InvalidRequest(problem)
    try:
        return schema.load(payload, partial=partial)
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
        where = f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else key)
        if problem := _unstorable_text(item, where):
            return problem
    return None


def describe(messages, prefix: str = "") -> str:
    """Flatten marshmallow's nested messages into 'field: problem; other: problem'."""
    parts = []
    if isinstance(messages, dict):
        for key, value in messages.items():
            path = f"{prefix}.{key}" if prefix and key != "_schema" else (prefix or str(key))
            if key == "_schema":
                path = prefix or "body"
            parts.append(describe(value, path))
    elif isinstance(messages, list):
        text = " ".join(str(m) if not isinstance(m, (dict, list)) else describe(m, prefix)
                        for m in messages)
        parts.append(f"{prefix}: {text}" if prefix else text)
    else:
        parts.append(f"{prefix}: {messages}" if prefix else str(messages))
    return "; ".join(parts)


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


class InstanceOut(OutputSchema):
    id = fields.UUID()
    database_id = fields.UUID(data_key="databaseId")
    build_id = fields.UUID(data_key="buildId")
    endpoint_url = fields.String(data_key="endpointUrl")
    health_status = fields.String(data_key="healthStatus")
    snapshot_age_ms = fields.Integer(data_key="snapshotAgeMs")
    swap_count = fields.Integer(data_key="swapCount")
    row_counts = fields.Raw(data_key="rowCounts")
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
