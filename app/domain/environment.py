"""What the services need from the deployment, set once by the app factory or the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from app.storage.secrets import SecretBox


class EnginePort(Protocol):
    def wake(self, database_id) -> None:
        """Have the engine look at `database_id` soon (its work is already committed)."""


class NoEngine:
    """The engine port when no lifecycle engine is wired: work stays recorded in the store."""

    def wake(self, database_id) -> None:
        """Nothing to wake; the engine's reconciler finds recorded work on its own."""


@dataclass(frozen=True)
class Environment:
    secret_box: SecretBox
    region: str = "local"
    # Where each database's instance files live (keys file, artifact...), one
    # folder per database id; the local instance runtime reads them from here.
    instances_dir: Path = Path("data/instances")
    # The lifecycle engine, as the domain sees it: `wake(database_id)` after a
    # commit that left work for it. app.bootstrap wires the real one; the
    # domain never imports app.engine.
    engine: EnginePort = field(default_factory=NoEngine)
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
