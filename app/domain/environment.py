"""What the services need from the deployment, set once by the app factory or the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.storage.secrets import SecretBox


@dataclass(frozen=True)
class Environment:
    secret_box: SecretBox
    region: str = "local"
    # Where each database's instance files live (keys file, artifact...), one
    # folder per database id; the local instance runtime reads them from here.
    instances_dir: Path = Path("data/instances")


_current: Environment | None = None


def configure(environment: Environment) -> None:
    global _current
    _current = environment


def current() -> Environment:
    if _current is None:
        raise RuntimeError("the domain environment is not configured (call app.create_app first)")
    return _current
