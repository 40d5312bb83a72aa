"""Settings read from the environment, once, by the app factory or the CLI."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SPEC = PROJECT_ROOT / "openapi" / "openapi.yaml"


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
    free_plan_build_credits: int = 100     # builds included in the free plan; paid plans: unlimited
    validate_responses: bool = False       # tests turn this on: every response checked against the spec
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
    extra: dict = field(default_factory=dict)  # test overrides that have no env var

    @classmethod
    def from_env(cls, environ: dict | None = None, **overrides) -> "Settings":
        env = os.environ if environ is None else environ
        keys = tuple(k.strip() for k in env.get("REFLEXDB_SECRET_KEYS", "").split(",") if k.strip())
        values = dict(
            database_url=env.get("DATABASE_URL") or None,
            data_dir=Path(env.get("REFLEXDB_DATA_DIR", "data")),
            secret_keys=keys,
            region=env.get("REFLEXDB_REGION", "local"),
            db_pool_size=int(env.get("REFLEXDB_DB_POOL_SIZE", "20")),
            threads=int(env.get("REFLEXDB_THREADS", "2")),
            spec_path=Path(env.get("REFLEXDB_SPEC", str(DEFAULT_SPEC))),
            log_level=env.get("REFLEXDB_LOG_LEVEL", "INFO").upper(),
            free_plan_build_credits=int(env.get("REFLEXDB_FREE_PLAN_BUILD_CREDITS", "100")),
            redis_url=env.get("REFLEXDB_REDIS_URL") or None,
            queue_name=env.get("REFLEXDB_QUEUE_NAME", "reflexdb"),
            engine_lease_seconds=float(env.get("REFLEXDB_ENGINE_LEASE_SECONDS", "30")),
            engine_max_attempts=int(env.get("REFLEXDB_ENGINE_MAX_ATTEMPTS", "3")),
            reconcile_seconds=float(env.get("REFLEXDB_RECONCILE_SECONDS", "5")),
            deploy_timeout=float(env.get("REFLEXDB_DEPLOY_TIMEOUT", "600")),
            source_connect_timeout=int(env.get("REFLEXDB_SOURCE_CONNECT_TIMEOUT", "10")),
            worker_threads=int(env.get("REFLEXDB_WORKER_THREADS", "4")),
            instance_host=env.get("REFLEXDB_INSTANCE_HOST", "127.0.0.1"),
        )
        values.update(overrides)
        return cls(**values)
