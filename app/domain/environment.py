"""What the services need from the deployment, set once by the app factory or the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from app.storage.secrets import SecretBox


class EnginePort(Protocol):
    def wake(self, database_id) -> None:
        """Have the engine look at `database_id` soon (its work is already committed)."""

    def queue_depth(self) -> int:
        """Wake-ups waiting in the job queue; raises when the queue does not answer."""


class NoEngine:
    """The engine port when no lifecycle engine is wired: work stays recorded in the store."""

    def wake(self, database_id) -> None:
        """Nothing to wake; the engine's reconciler finds recorded work on its own."""

    def queue_depth(self) -> int:
        return 0


class InstanceKeys(Protocol):
    """Where a database's query keys go so its instances can check them (the instance runtime)."""

    def deliver_keys(self, database_id: str, secret: str, keys: dict[str, str | None]) -> None:
        """Hand over the database's secret and its live keys (keyId -> expiresAt or None)."""


@dataclass(frozen=True)
class Environment:
    secret_box: SecretBox
    region: str = "local"
    # The lifecycle engine, as the domain sees it: `wake(database_id)` after a
    # commit that left work for it. app.bootstrap wires the real one; the
    # domain never imports app.engine.
    engine: EnginePort = field(default_factory=NoEngine)
    # Where query keys go so instances can check them: the instance runtime
    # (app.bootstrap wires it; the local one writes a keys file per database).
    instance_keys: InstanceKeys | None = None
    # Builds the free plan includes (paid plans are unlimited).
    free_plan_build_credits: int = 100


_current: Environment | None = None


def configure(environment: Environment) -> None:
    global _current
    _current = environment


def current() -> Environment:
    if _current is None:
        raise RuntimeError("the domain environment is not configured (call app.create_app first)")
    return _current
