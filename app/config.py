"""Settings read from the environment, once, by the app factory, the CLI and gunicorn.conf.py."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from cryptography.fernet import Fernet
from environs import Env, EnvValidationError, ValidationError
from marshmallow.validate import Length, Range

from app.resources import SPEC as DEFAULT_SPEC

# The checkout's root when running from one (tests and scripts use it); in an installed
# package this is site-packages: nothing the app serves or runs is looked up from here.
PROJECT_ROOT = Path(__file__).resolve().parent.parent

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
POSTGRES_SCHEMES = ("postgres", "postgresql", "postgres+pool", "postgresql+pool")
STORE_SCHEMES = (*POSTGRES_SCHEMES, "sqlite")
# Their values are secrets (the store URL may carry a password): never echoed.
SECRET_VARIABLES = frozenset({"DATABASE_URL", "REFLEXDB_SECRET_KEYS"})


class SettingsError(ValueError):
    """Settings with a value they do not accept: `problems` holds one line per setting."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def _default_workers() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True)
class Settings:
    """Everything the control plane can be configured with (see README, "Settings")."""

    database_url: str | None = None        # unset: embedded SQLite in data_dir
    data_dir: Path = Path("data")
    secret_keys: tuple[str, ...] = ()      # Fernet keys, newest first; unset: key file in data_dir
    region: str = "local"
    db_pool_size: int = 20
    threads: int = 2                       # Flask handler threads per worker process
    max_body_bytes: int = 1024 * 1024
    spec_path: Path = DEFAULT_SPEC
    log_level: str = "INFO"
    # gunicorn's (read by gunicorn.conf.py)
    bind: str = "127.0.0.1:8080"
    workers: int = field(default_factory=_default_workers)
    timeout: int = 30
    access_log: str | None = "-"           # None: no access log
    free_plan_build_credits: int = 100     # builds included in the free plan; paid plans: unlimited
    validate_responses: bool = False       # tests turn this on: every response checked against the spec
    idempotency_ttl_seconds: int = 86400   # how long an Idempotency-Key's answer is replayed (docs/api-hardening.md)
    audit_retention_days: int = 365        # audit entries older than this are deleted; 0 keeps them for ever
    # The lifecycle engine (docs/architecture.md): job queue, leases, reconciler, instances.
    redis_url: str | None = None           # unset: the job queue lives in the store (PostgreSQL or SQLite)
    queue_name: str = "reflexdb"           # the job queue's name (Redis key prefix / table rows)
    engine_lease_seconds: float = 30.0     # a step's lease; a dead worker's step is taken up after it
    engine_max_attempts: int = 3           # starts of one step before it ends failed
    reconcile_seconds: float = 5.0         # how often the reconciler looks at every database
    deploy_timeout: float = 600.0          # seconds a new instance has to serve its first snapshot
    source_connect_timeout: int = 10       # seconds to connect to a source (testing_connection, builds)
    worker_threads: int = 4                # steps one worker runs at once
    instance_host: str = "127.0.0.1"       # where the local runtime binds instances
    # Per management key (app/api/ratelimit.py); "off" disables a budget.
    rate_limit: str = "600/minute"         # every authenticated request
    source_rate_limit: str = "20/minute"   # actions that make the engine read the source database
    extra: dict = field(default_factory=dict)  # test overrides that have no env var

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> "Settings":
        """Read every setting from `environ` (default: the process environment).

        Raises SettingsError naming each variable whose value is refused and
        what it accepts; `overrides` replace values after they are read.
        """
        reader = _Reader(environ)
        values = dict(
            database_url=reader.store_url("DATABASE_URL"),
            data_dir=reader.directory("REFLEXDB_DATA_DIR", Path("data")),
            secret_keys=reader.fernet_keys("REFLEXDB_SECRET_KEYS"),
            region=reader.text("REFLEXDB_REGION", "local", max_length=64),
            db_pool_size=reader.integer("REFLEXDB_DB_POOL_SIZE", 20, 1, 1000),
            threads=reader.integer("REFLEXDB_THREADS", 2, 1, 64),
            spec_path=reader.existing_file("REFLEXDB_SPEC", DEFAULT_SPEC),
            log_level=reader.choice("REFLEXDB_LOG_LEVEL", "INFO", LOG_LEVELS),
            bind=reader.text("REFLEXDB_BIND", "127.0.0.1:8080", max_length=255),
            workers=reader.integer("REFLEXDB_WORKERS", _default_workers(), 1, 256),
            timeout=reader.integer("REFLEXDB_TIMEOUT", 30, 1, 3600),
            access_log=reader.text("REFLEXDB_ACCESS_LOG", "-", max_length=4096, empty=True) or None,
            free_plan_build_credits=reader.integer("REFLEXDB_FREE_PLAN_BUILD_CREDITS", 100, 0, 1_000_000),
            idempotency_ttl_seconds=reader.integer("REFLEXDB_IDEMPOTENCY_TTL_SECONDS", 86400, 60, 604800),
            audit_retention_days=reader.integer("REFLEXDB_AUDIT_RETENTION_DAYS", 365, 0, 36500),
            redis_url=reader.redis_url("REFLEXDB_REDIS_URL"),
            queue_name=reader.text("REFLEXDB_QUEUE_NAME", "reflexdb", max_length=64),
            engine_lease_seconds=reader.number("REFLEXDB_ENGINE_LEASE_SECONDS", 30.0, 2.0, 3600.0),
            engine_max_attempts=reader.integer("REFLEXDB_ENGINE_MAX_ATTEMPTS", 3, 1, 100),
            reconcile_seconds=reader.number("REFLEXDB_RECONCILE_SECONDS", 5.0, 0.2, 3600.0),
            deploy_timeout=reader.number("REFLEXDB_DEPLOY_TIMEOUT", 600.0, 1.0, 86400.0),
            source_connect_timeout=reader.integer("REFLEXDB_SOURCE_CONNECT_TIMEOUT", 10, 1, 600),
            worker_threads=reader.integer("REFLEXDB_WORKER_THREADS", 4, 1, 64),
            instance_host=reader.text("REFLEXDB_INSTANCE_HOST", "127.0.0.1", max_length=255),
            rate_limit=reader.rate("REFLEXDB_RATE_LIMIT", "600/minute"),
            source_rate_limit=reader.rate("REFLEXDB_SOURCE_RATE_LIMIT", "20/minute"),
        )
        reader.finish()
        values.update(overrides)
        settings = cls(**values)
        if settings.uses_postgres and not settings.secret_keys:
            raise SettingsError([
                "REFLEXDB_SECRET_KEYS must be set when DATABASE_URL names a PostgreSQL store "
                "(generate a key with: reflexdb secrets generate-key)"])
        return settings

    @property
    def uses_postgres(self) -> bool:
        return bool(self.database_url) and urlparse(self.database_url).scheme in POSTGRES_SCHEMES


class _MappingEnv(Env):
    """environs' reader over a given mapping instead of os.environ (tests pass their own)."""

    def __init__(self, environ: Mapping[str, str]):
        super().__init__(eager=False)
        self._mapping = environ

    def _get_value(self, env_key, default):
        # environs looks values up here; its public API reads os.environ only.
        return self._mapping.get(env_key, default)


class _Reader:
    """Reads settings with environs, remembering what each variable accepts for the error."""

    def __init__(self, environ: Mapping[str, str] | None):
        self._environ = os.environ if environ is None else environ
        self._env = Env(eager=False) if environ is None else _MappingEnv(environ)
        self._accepts: dict[str, str] = {}

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        self._accepts[name] = f"an integer from {low} to {high}"
        return self._env.int(name, default, validate=Range(low, high))

    def text(self, name: str, default: str, *, max_length: int, empty: bool = False) -> str:
        low = 0 if empty else 1
        self._accepts[name] = (f"text of at most {max_length} characters" if empty
                               else f"non-empty text of at most {max_length} characters")
        return self._env.str(name, default, validate=Length(low, max_length))

    def number(self, name: str, default: float, low: float, high: float) -> float:
        self._accepts[name] = f"a number from {low:g} to {high:g}"
        return self._env.float(name, default, validate=Range(low, high))

    def redis_url(self, name: str) -> str | None:
        self._accepts[name] = "empty or a redis:// (or rediss://, unix://) URL"
        return self._env.str(name, "", validate=_redis_url) or None

    def rate(self, name: str, default: str) -> str:
        self._accepts[name] = ("a rate such as 600/minute or 10/second (per second, minute, "
                               "hour or day), or off")
        value = self._env.str(name, default, validate=_rate)
        return "".join(value.split()).lower() if value else value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        self._accepts[name] = f"one of {', '.join(choices)}, in any case"
        value = self._env.str(name, default, validate=_upper_in(choices))
        return value.upper() if value else value

    def directory(self, name: str, default: Path) -> Path:
        self._accepts[name] = "the path of a directory (made when missing)"
        return self._env.path(name, default, validate=_not_a_file)

    def existing_file(self, name: str, default: Path) -> Path:
        self._accepts[name] = "the path of an existing file"
        path = self._env.path(name, default, validate=_is_file)
        # Absolute, so it names the same file whatever directory reads it (Connexion
        # would take a relative spec path relative to the app package).
        return path.absolute() if isinstance(path, Path) else path

    def store_url(self, name: str) -> str | None:
        self._accepts[name] = "empty or a postgresql:// or sqlite:/// URL"
        return self._env.str(name, "", validate=_store_url) or None

    def fernet_keys(self, name: str) -> tuple[str, ...]:
        self._accepts[name] = ("a comma-separated list of Fernet keys, newest first "
                               "(generate one with: reflexdb secrets generate-key)")
        raw = self._env.str(name, "", validate=_fernet_keys)
        return tuple(_split_keys(raw or ""))

    def finish(self) -> None:
        """Raise SettingsError with one line for each refused setting."""
        try:
            self._env.seal()
        except EnvValidationError as exc:
            refused = exc.error_messages
            raise SettingsError([self._problem(name) for name in self._accepts if name in refused]
                                ) from None

    def _problem(self, name: str) -> str:
        line = f"{name} must be {self._accepts[name]}"
        if name not in SECRET_VARIABLES:
            value = self._environ.get(name, "")
            shown = value if len(value) <= 60 else value[:57] + "..."
            line += f" (it is {shown!r})"
        return line


def _upper_in(choices: tuple[str, ...]):
    def validate(value: str) -> None:
        if value.upper() not in choices:
            raise ValidationError("not one of the choices")
    return validate


def _not_a_file(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise ValidationError("not a directory")


def _is_file(path: Path) -> None:
    if not path.is_file():
        raise ValidationError("no such file")


def _redis_url(value: str) -> None:
    if value and urlparse(value).scheme not in ("redis", "rediss", "unix"):
        raise ValidationError("not a Redis URL")


RATE = re.compile(r"^\s*[1-9][0-9]{0,8}\s*/\s*(second|minute|hour|day)\s*$", re.IGNORECASE)


def _rate(value: str) -> None:
    if value.strip().lower() != "off" and not RATE.match(value):
        raise ValidationError("not a rate")


def _store_url(value: str) -> None:
    # Never put the value in the message: the URL may hold the store's password.
    if value and urlparse(value).scheme not in STORE_SCHEMES:
        raise ValidationError("unsupported scheme")


def _split_keys(value: str) -> list[str]:
    return [key.strip() for key in value.split(",") if key.strip()]


def _fernet_keys(value: str) -> None:
    for key in _split_keys(value):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            # The key itself stays out of the message.
            raise ValidationError("not a Fernet key") from None


__all__ = ["DEFAULT_SPEC", "PROJECT_ROOT", "Settings", "SettingsError"]
