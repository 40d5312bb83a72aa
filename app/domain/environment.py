"""What the services need from the deployment, set once by the app factory or the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from app.storage.secrets import SecretBox


class InstanceKeys(Protocol):
    """Where a database's query keys go so its instances can check them (the instance runtime)."""

    def deliver_keys(self, database_id: str, secret: str, keys: dict[str, str | None]) -> None:
        """Hand over the database's secret and its live keys (keyId -> expiresAt or None)."""


class EngineWake(Protocol):
    """The lifecycle engine, as the services see it: something to wake up."""

    def wake(self, database_id) -> None:
        """Ask the engine to carry out what the database's row now says (status, desired state)."""


@dataclass(frozen=True)
class Environment:
    secret_box: SecretBox
    region: str = "local"
    # Ports to the engine side, injected by app/bootstrap.py: the domain never
    # imports app.engine, it records what is wanted and hands it over here.
    instance_keys: InstanceKeys | None = None
    engine: EngineWake | None = None


_current: Environment | None = None


def configure(environment: Environment) -> None:
    global _current
    _current = environment


def current() -> Environment:
    if _current is None:
        raise RuntimeError("the domain environment is not configured (call app.create_app first)")
    return _current
