"""`reflexdb serve`: the API (gunicorn) and one engine worker, started and watched together.

So the embedded default needs no other step: a child that exits is started
again (after a pause that grows while it keeps dying); SIGTERM or SIGINT stops
both children and then the supervisor. Instances are not children of the
supervisor: they outlive it and the next worker adopts them.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 25.0


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    backoff: float = field(default=0.5)   # doubled before each restart: the first comes after 1 s


def supervise(children: list[Child], *, cwd: str, env: dict | None = None) -> int:
    """Run `children` until SIGTERM/SIGINT, restarting any that exits; returns the exit status."""
    stopping = threading.Event()

    def on_signal(signum, _frame):
        log.info("received %s: stopping the API and the worker", signal.Signals(signum).name)
        stopping.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    for child in children:
        _start(child, cwd, env)
    while not stopping.wait(0.5):
        for child in children:
            code = child.process.poll()
            if code is None:
                continue
            ran = time.monotonic() - child.started_at
            # A child that ran a while before dying starts again at once; one that
            # keeps dying at start-up waits longer each time.
            child.backoff = 1.0 if ran > 60 else min(child.backoff * 2, MAX_BACKOFF_SECONDS)
            log.error("%s exited with status %s after %.0f s; starting it again in %.0f s",
                      child.name, code, ran, child.backoff)
            if stopping.wait(child.backoff):
                break
            _start(child, cwd, env)
    for child in children:
        if child.process is not None and child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    for child in children:
        if child.process is None:
            continue
        try:
            child.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in time; killing it", child.name)
            child.process.kill()
            child.process.wait()
    return 0


def _start(child: Child, cwd: str, env: dict | None) -> None:
    child.process = subprocess.Popen(child.argv, cwd=cwd, env=env if env is not None else os.environ.copy())
    child.started_at = time.monotonic()
    log.info("started %s (pid %d)", child.name, child.process.pid)


__all__ = ["Child", "supervise"]
