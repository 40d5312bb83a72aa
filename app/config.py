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
        )
        values.update(overrides)
        return cls(**values)
