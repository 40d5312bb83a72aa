"""Settings of one instance process, read from the JSON file its starter writes.

The file holds everything an instance needs except secrets: the source password
and the admin token reach the process through a pipe (app.contracts.instance_secrets),
never through a file, argv or the environment.

File format (camelCase, unknown fields rejected; every field is described in
docs/instance.md, the query limits in docs/query-language.md):

    {
      "databaseId": "5b0c…",                  # required
      "artifactPath": "/…/artifact.json",     # required: a SchemaArtifact as JSON
      "keysFile": "/…/keys.json",             # required: see app.contracts.query_keys
      "source": {                             # required: credentials minus password
        "backend": "mysql" | "postgres",
        "host": "db.example.com", "port": 3306,
        "user": "reader", "schema": "shop",
        "database": null                      # postgres: the database holding `schema`
      },
      "syncMode": "poll",                     # poll | binlog | logical | cdc (cdc runs as poll)
      "syncIntervalSeconds": 30,              # 1-3600
      "instanceId": null,                     # logical: names this instance's slot
      "binlogServerId": null,                 # binlog: the replica's server id (required)
      "cdcUnavailable": null,                 # why the engine fell back to poll (prerequisites)
      "fullReloadSeconds": null,              # CDC safety net: full reload every N s; null = off
      "replicationPaused": false,
      "memoryLimitMb": 512,                   # the size's taskMemoryMb; null = no limit
      "defaultLimit": 1000, "maxLimit": 10000,  # ... and the other query limits
      "host": "127.0.0.1", "port": 8080,
      "workers": null,                        # reader processes; null = the CPU count (1-32)
      "threads": 2,                           # request threads per reader process
      "answerCacheMb": 16,                    # per reader process; 0 = no answer cache
      "snapshotDir": null,                    # where generations live; null = /dev/shm
                                              # (else the settings file's directory)
      "logLevel": "info"                      # debug | info | warn | error
    }

The file is read with a marshmallow schema, so a bad file is refused with one
line per bad setting, naming the field and what it accepts.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    pre_load,
    validate,
    validates_schema,
)

from app.contracts.backends import CDC_MODES, POLL, SYNC_MODES
from app.contracts.backends import READABLE_BACKENDS as BACKENDS
from app.contracts.query_limits import DEFAULT_LIMITS, LIMIT_SPECS, QueryLimits

LOG_LEVELS = ("debug", "info", "warn", "error")
# The change streams an instance can read (app/sources/cdc); mssql's `cdc` polls.
STREAMING_MODES = ("binlog", "logical")


# A binlogServerId left null is derived from the database id into this range: far from the
# small ids people give their own servers and replicas (1 is the usual primary's), and the
# same on every deploy of the database (a replica id must not change under the source).
DERIVED_SERVER_ID_MIN = 1_000_000_000
DERIVED_SERVER_ID_SPAN = 1_000_000_000


def derived_binlog_server_id(database_id) -> int:
    """The stable binlog replica id of a database whose binlogServerId is null."""
    digest = hashlib.sha256(str(database_id).lower().encode()).digest()
    return DERIVED_SERVER_ID_MIN + int.from_bytes(digest[:8], "big") % DERIVED_SERVER_ID_SPAN


# Reader processes: more than the cores only adds memory and switching; 32
# keeps a mistaken setting from forking hundreds of interpreters.
MAX_WORKERS = 32


class SettingsError(ValueError):
    """The settings file is missing, unreadable or invalid; one line per problem."""


@dataclass(frozen=True)
class SourceSettings:
    """Where the source schema lives; the password is not part of it."""

    backend: str
    host: str
    port: int
    user: str
    schema: str
    database: str | None = None


@dataclass(frozen=True)
class InstanceSettings:
    """Everything one instance process needs to run, secrets excepted."""

    database_id: str
    artifact_path: str
    keys_file: str
    source: SourceSettings
    sync_mode: str = "poll"
    sync_interval_seconds: int = 30
    instance_id: str | None = None
    binlog_server_id: int | None = None
    cdc_unavailable: str | None = None
    full_reload_seconds: int | None = None
    replication_paused: bool = False
    memory_limit_mb: int | None = 512
    limits: QueryLimits = DEFAULT_LIMITS
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int | None = None
    threads: int = 2
    answer_cache_mb: int = 16
    snapshot_dir: str | None = None
    log_level: str = "info"

    @property
    def effective_sync_mode(self) -> str:
        """The mode the instance really runs: the backend's change stream (binlog for
        mysql, logical for postgres) unless the engine found its prerequisites missing;
        poll otherwise (and for mssql's cdc, which has no reader)."""
        if self.cdc_unavailable is None and CDC_MODES.get(self.source.backend) == self.sync_mode \
                and self.sync_mode in STREAMING_MODES:
            return self.sync_mode
        return POLL

    @property
    def sync_note(self) -> str | None:
        """Why the instance polls although its database asks for a change stream, or None."""
        if self.sync_mode == POLL or self.effective_sync_mode != POLL:
            return None
        if self.cdc_unavailable:
            return f"{self.sync_mode} is not available, the instance polls: {self.cdc_unavailable}"
        return f"{self.sync_mode} is not implemented for {self.source.backend}; the instance polls"

    @property
    def reader_workers(self) -> int:
        """Reader processes to run: `workers`, or the CPU count, within 1..MAX_WORKERS."""
        if self.workers is not None:
            return self.workers
        return max(1, min(os.cpu_count() or 1, MAX_WORKERS))

    # -- serialisation -----------------------------------------------------

    def to_dict(self) -> dict:
        return _SCHEMA.dump(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def write(self, path: str) -> None:
        """Write the settings file atomically (temp file + rename)."""
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(self.to_json())
        os.replace(tmp, path)

    @classmethod
    def from_dict(cls, data: dict) -> "InstanceSettings":
        """Validate the file's object; SettingsError lists every bad setting."""
        if not isinstance(data, dict):
            raise SettingsError("the settings file must hold a JSON object")
        try:
            return _SCHEMA.load(data)
        except ValidationError as exc:
            raise SettingsError("\n".join(_lines(exc.messages))) from None

    @classmethod
    def load(cls, path: str) -> "InstanceSettings":
        """Read and validate a settings file."""
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except OSError as exc:
            raise SettingsError(f"cannot read settings file {path}: {exc.strerror}") from None
        except ValueError as exc:
            raise SettingsError(f"settings file {path} is not valid JSON: {exc}") from None
        return cls.from_dict(data)


# -- the schema ---------------------------------------------------------------

class _StrictInteger(fields.Integer):
    """An integer that is one in JSON too: not a float, a string or a boolean."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class _StrictBoolean(fields.Boolean):
    """true or false, nothing that merely looks like one."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


def _accepting(accepts: str) -> dict:
    return {"invalid": accepts, "null": accepts, "required": f"required: {accepts}",
            "type": accepts}


def _integer(minimum: int, maximum: int, *, allow_none: bool = False, **options):
    accepts = f"an integer from {minimum} to {maximum}" + (" or null" if allow_none else "")
    return _StrictInteger(validate=validate.Range(minimum, maximum, error=accepts),
                          allow_none=allow_none, error_messages=_accepting(accepts), **options)


def _text(*, allow_none: bool = False, **options):
    accepts = "a non-empty string" + (" or null" if allow_none else "")
    return fields.String(validate=validate.Length(min=1, error=accepts), allow_none=allow_none,
                         error_messages=_accepting(accepts), **options)


def _choice(choices: tuple[str, ...], **options):
    accepts = f"one of {', '.join(choices)}"
    return fields.String(validate=validate.OneOf(choices, error=accepts),
                         error_messages=_accepting(accepts), **options)


class _Strict(Schema):
    error_messages = {"unknown": "unknown field", "type": "must be an object"}

    class Meta:
        unknown = RAISE


class _SourceSchema(_Strict):
    backend = _choice(BACKENDS, required=True)
    host = _text(required=True)
    port = _integer(1, 65535, required=True)
    user = _text(required=True)
    schema = _text(required=True)
    database = _text(allow_none=True, load_default=None)

    @pre_load
    def refuse_password(self, data, **kwargs):
        if isinstance(data, dict) and "password" in data:
            raise ValidationError("must not be in the settings file; the starter passes it "
                                  "through the secrets pipe (--secrets-fd)", "password")
        return data

    @post_load
    def make_source(self, data, **kwargs) -> SourceSettings:
        return SourceSettings(**data)


class _SettingsFields(_Strict):
    database_id = _text(data_key="databaseId", required=True)
    artifact_path = _text(data_key="artifactPath", required=True)
    keys_file = _text(data_key="keysFile", required=True)
    source = fields.Nested(_SourceSchema, required=True, error_messages=_accepting(
        "an object with backend, host, port, user, schema and database"))
    sync_mode = _choice(SYNC_MODES, data_key="syncMode", load_default="poll")
    sync_interval_seconds = _integer(1, 3600, data_key="syncIntervalSeconds", load_default=30)
    instance_id = _text(allow_none=True, data_key="instanceId", load_default=None)
    binlog_server_id = _integer(1, 4294967295, allow_none=True, data_key="binlogServerId",
                                load_default=None)
    cdc_unavailable = _text(allow_none=True, data_key="cdcUnavailable", load_default=None)
    full_reload_seconds = _integer(10, 604800, allow_none=True, data_key="fullReloadSeconds",
                                   load_default=None)
    replication_paused = _StrictBoolean(data_key="replicationPaused", load_default=False,
                                        error_messages=_accepting("true or false"))
    memory_limit_mb = _integer(1, 1 << 20, allow_none=True, data_key="memoryLimitMb",
                               load_default=512)
    host = _text(load_default="127.0.0.1")
    port = _integer(0, 65535, load_default=8080)
    workers = _integer(1, MAX_WORKERS, allow_none=True, load_default=None)
    threads = _integer(1, 64, load_default=2)
    answer_cache_mb = _integer(0, 1024, data_key="answerCacheMb", load_default=16)
    snapshot_dir = _text(allow_none=True, data_key="snapshotDir", load_default=None)
    log_level = _choice(LOG_LEVELS, data_key="logLevel", load_default="info")

    @validates_schema
    def default_within_max(self, data, **kwargs):
        limits = data.get("limits", {})
        default, maximum = limits.get("default_limit"), limits.get("max_limit")
        if default is not None and maximum is not None and default > maximum:
            raise ValidationError(f"at most maxLimit ({maximum})", "defaultLimit")

    @post_load
    def make_settings(self, data, **kwargs) -> InstanceSettings:
        data["limits"] = QueryLimits(**data.get("limits", {}))
        return InstanceSettings(**data)


# The query limits sit flat in the file, next to the other settings, and load
# into `InstanceSettings.limits` (a dotted attribute is a nested key).
_InstanceSettingsSchema = type("_InstanceSettingsSchema", (_SettingsFields,), {
    name: _integer(spec.minimum, spec.maximum, data_key=spec.name, attribute=f"limits.{name}",
                   load_default=getattr(DEFAULT_LIMITS, name))
    for name, spec in LIMIT_SPECS.items()})
_SCHEMA = _InstanceSettingsSchema()


def _lines(messages, prefix: str = "") -> list[str]:
    """marshmallow's nested messages as `field.path: what it accepts` lines."""
    lines = []
    for key, value in sorted(messages.items(), key=lambda item: str(item[0])):
        if key == "_schema":  # the object itself, not one of its fields
            path = prefix or "settings"
        else:
            path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            lines.extend(_lines(value, path))
        else:
            lines.append(f"{path}: {'; '.join(map(str, value))}")
    return lines


__all__ = ["DERIVED_SERVER_ID_MIN", "DERIVED_SERVER_ID_SPAN", "derived_binlog_server_id",
           "BACKENDS", "LOG_LEVELS", "MAX_WORKERS", "STREAMING_MODES", "SYNC_MODES",
           "InstanceSettings", "SettingsError", "SourceSettings"]
