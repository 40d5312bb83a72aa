"""Settings of one instance process, read from the JSON file its starter writes.

The file holds everything an instance needs except secrets: the source password
comes from the environment variable `REFLEXDB_SOURCE_PASSWORD` and the admin
token from `REFLEXDB_INSTANCE_ADMIN_TOKEN`, never from a file or argv.

File format (camelCase, unknown fields rejected):

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
      "syncMode": "poll",                     # poll | binlog | logical | cdc (CDC runs as poll)
      "syncIntervalSeconds": 30,              # 1-3600
      "replicationPaused": false,
      "memoryLimitMb": 512,                   # the size's taskMemoryMb; null = no limit
      "defaultLimit": 1000, "maxLimit": 10000,
      "host": "127.0.0.1", "port": 8080,
      "threads": 8,
      "logLevel": "info"                      # debug | info | warn | error
    }
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields

SOURCE_PASSWORD_ENV = "REFLEXDB_SOURCE_PASSWORD"
ADMIN_TOKEN_ENV = "REFLEXDB_INSTANCE_ADMIN_TOKEN"

SYNC_MODES = ("poll", "binlog", "logical", "cdc")
LOG_LEVELS = ("debug", "info", "warn", "error")
BACKENDS = ("mysql", "postgres")


class SettingsError(ValueError):
    """The settings file is missing, unreadable or invalid."""


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
    replication_paused: bool = False
    memory_limit_mb: int | None = 512
    default_limit: int = 1000
    max_limit: int = 10000
    host: str = "127.0.0.1"
    port: int = 8080
    threads: int = 8
    log_level: str = "info"

    @property
    def effective_sync_mode(self) -> str:
        """The mode the instance really runs: only poll exists so far."""
        return "poll"

    # -- serialisation -----------------------------------------------------

    def to_dict(self) -> dict:
        data = asdict(self)
        source = data.pop("source")
        out = {_camel(k): v for k, v in data.items()}
        out["source"] = source
        return out

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
        if not isinstance(data, dict):
            raise SettingsError("the settings file must hold a JSON object")
        known = {_camel(f.name): f.name for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise SettingsError(f"unknown settings field(s): {', '.join(unknown)}")
        kwargs = {known[k]: v for k, v in data.items()}
        for required in ("databaseId", "artifactPath", "keysFile", "source"):
            if data.get(required) in (None, ""):
                raise SettingsError(f"settings field {required!r} is required")
        kwargs["source"] = _source_from_dict(data["source"])
        settings = cls(**kwargs)
        settings.validate()
        return settings

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

    def validate(self) -> None:
        """Raise SettingsError when a value is out of range."""
        _check(isinstance(self.database_id, str), "databaseId must be a string")
        _check(self.sync_mode in SYNC_MODES, f"syncMode must be one of {', '.join(SYNC_MODES)}")
        _check(_is_int(self.sync_interval_seconds) and 1 <= self.sync_interval_seconds <= 3600,
               "syncIntervalSeconds must be an integer between 1 and 3600")
        _check(isinstance(self.replication_paused, bool), "replicationPaused must be a boolean")
        _check(self.memory_limit_mb is None
               or (_is_int(self.memory_limit_mb) and 1 <= self.memory_limit_mb <= 1 << 20),
               "memoryLimitMb must be null or an integer between 1 and 1048576")
        _check(_is_int(self.default_limit) and 1 <= self.default_limit <= 1_000_000,
               "defaultLimit must be an integer between 1 and 1000000")
        _check(_is_int(self.max_limit) and self.default_limit <= self.max_limit <= 1_000_000,
               "maxLimit must be an integer between defaultLimit and 1000000")
        _check(isinstance(self.host, str) and self.host, "host must be a non-empty string")
        _check(_is_int(self.port) and 0 <= self.port <= 65535, "port must be between 0 and 65535")
        _check(_is_int(self.threads) and 1 <= self.threads <= 64,
               "threads must be an integer between 1 and 64")
        _check(self.log_level in LOG_LEVELS, f"logLevel must be one of {', '.join(LOG_LEVELS)}")


def _source_from_dict(data) -> SourceSettings:
    if not isinstance(data, dict):
        raise SettingsError("source must be an object")
    if "password" in data:
        raise SettingsError(
            f"source.password must not be in the settings file; pass it in {SOURCE_PASSWORD_ENV}")
    allowed = {f.name for f in fields(SourceSettings)}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise SettingsError(f"unknown source field(s): {', '.join(unknown)}")
    missing = sorted(k for k in ("backend", "host", "port", "user", "schema") if k not in data)
    if missing:
        raise SettingsError(f"source field(s) required: {', '.join(missing)}")
    source = SourceSettings(**data)
    _check(source.backend in BACKENDS, f"source.backend must be one of {', '.join(BACKENDS)}")
    _check(_is_int(source.port) and 1 <= source.port <= 65535,
           "source.port must be between 1 and 65535")
    for name in ("host", "user", "schema"):
        _check(isinstance(getattr(source, name), str) and getattr(source, name),
               f"source.{name} must be a non-empty string")
    return source


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check(condition, message: str) -> None:
    if not condition:
        raise SettingsError(message)


__all__ = ["ADMIN_TOKEN_ENV", "SOURCE_PASSWORD_ENV", "InstanceSettings", "SettingsError",
           "SourceSettings"]
