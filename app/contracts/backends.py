"""The source database engines: which the API accepts, which the data plane reads, and how.

One list for both planes. The control plane accepts every engine here (a
connection may name one before its adapter exists); the data plane (source
adapters, instance settings) reads only `READABLE_BACKENDS`.
"""

from __future__ import annotations

from dataclasses import dataclass

POLL = "poll"


@dataclass(frozen=True)
class Backend:
    """One source engine."""

    name: str
    default_port: int
    # The engine's change stream; each engine has exactly one (contract §5, sync policy).
    cdc_mode: str
    # Whether an adapter in app/sources can introspect and read it.
    readable: bool


_ALL = (
    Backend("mysql", default_port=3306, cdc_mode="binlog", readable=True),
    Backend("postgres", default_port=5432, cdc_mode="logical", readable=True),
    Backend("mssql", default_port=1433, cdc_mode="cdc", readable=False),
)
BACKENDS: dict[str, Backend] = {backend.name: backend for backend in _ALL}

# Every engine the API accepts, in the spec's order.
API_BACKENDS = tuple(BACKENDS)
# The engines the data plane can read.
READABLE_BACKENDS = tuple(name for name, backend in BACKENDS.items() if backend.readable)
DEFAULT_PORTS = {name: backend.default_port for name, backend in BACKENDS.items()}
CDC_MODES = {name: backend.cdc_mode for name, backend in BACKENDS.items()}
# Every sync mode there is: polling, or one engine's change stream.
SYNC_MODES = (POLL, *CDC_MODES.values())


def sync_modes(backend: str) -> tuple[str, str]:
    """The sync modes a source of `backend` can offer: polling or its own CDC mode."""
    return (POLL, BACKENDS[backend].cdc_mode)


__all__ = ["API_BACKENDS", "BACKENDS", "CDC_MODES", "DEFAULT_PORTS", "POLL", "READABLE_BACKENDS",
           "SYNC_MODES", "Backend", "sync_modes"]
