"""Serving one instance: a gunicorn master, N reader workers and one writer process.

The master creates the store directory (app/instance/store.py), starts the
writer (`python -m app.instance.writer`, a fresh interpreter: no thread of the
master is ever forked) before it forks the readers, restarts the writer when
it dies, and removes the directory when it stops. Readers are gunicorn
`gthread` workers: each opens the current generation read-only and mapped, so
the snapshot is in memory once whatever the number of readers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import subprocess
import sys
import time

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.errors import HaltServer

from app.contracts.instance_secrets import SECRETS_FD_OPTION, InstanceSecrets, secrets_pipe
from app.contracts.instance_settings import InstanceSettings, SettingsError
from app.instance.logs import configure_logging
from app.instance.memory import MemoryBudget, cap_malloc_arenas, limit_reader
from app.instance.server import create_app
from app.instance.state import InstanceState
from app.instance.store import CONTROL_SOCKET, make_store_directory, remove_store_directory

log = logging.getLogger(__name__)

# A writer that dies this many times within the window is not restarted
# again: the master exits, and the engine's supervisor sees a dead instance.
WRITER_RESTARTS = 5
WRITER_RESTART_WINDOW_SECONDS = 60.0
WRITER_STOP_SECONDS = 10.0


class _InstanceArbiter(Arbiter):
    """gunicorn's master, which also keeps the writer process running."""

    def manage_workers(self):
        super().manage_workers()
        self.app.supervise_writer()


class InstanceApplication(BaseApplication):
    """gunicorn application: reader workers over a store that one writer process fills."""

    def __init__(self, settings: InstanceSettings, *, source_password: str,
                 admin_token: str | None, settings_path: str | None = None,
                 listen_fd: int | None = None):
        self.settings = settings
        self.settings_path = settings_path
        self._listen_fd = listen_fd
        self._source_password = source_password
        self._admin_token = admin_token
        self.state: InstanceState | None = None
        self.store_dir: str | None = None
        self._writer: subprocess.Popen | None = None
        self._control: socket.socket | None = None
        self._writer_deaths: list[float] = []
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        options = {
            # A socket the starter bound and passed, or the settings' address.
            "bind": f"fd://{self._listen_fd}" if self._listen_fd is not None
            else f"{s.host}:{s.port}",
            "workers": s.reader_workers,
            "worker_class": "gthread",
            "threads": s.threads,
            "timeout": 60,
            "graceful_timeout": 5,
            "keepalive": 5,
            "loglevel": "warning" if s.log_level == "warn" else s.log_level,
            # The access log shows paths and status only, never headers (keys).
            "accesslog": "-" if s.log_level == "debug" else None,
            "errorlog": "-",
            "proc_name": f"reflexdb-instance-{s.database_id}",
            "on_starting": self._on_starting,
            "post_fork": self._post_fork,
            "worker_exit": self._worker_exit,
            "on_exit": self._on_exit,
            # gunicorn's control socket has one default path per user: several
            # instances on one machine would fight over it, and nothing uses it.
            "control_socket_disable": True,
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def run(self):
        try:
            _InstanceArbiter(self).run()
        finally:
            # on_exit does not run when the master stops on an error.
            self._stop_writer()

    # -- the writer ---------------------------------------------------------------

    def _on_starting(self, arbiter) -> None:
        configure_logging(self.settings)
        cap_malloc_arenas()
        fallback = (os.path.dirname(os.path.abspath(self.settings_path))
                    if self.settings_path else None)
        self.store_dir = make_store_directory(self.settings.database_id,
                                              base=self.settings.snapshot_dir,
                                              fallback=fallback)
        # The master binds the writer's control socket and keeps it: readers
        # can connect from their first request, and while a writer restarts
        # their commands wait in the backlog for the next one.
        self._control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._control.bind(os.path.join(self.store_dir, CONTROL_SOCKET))
        self._control.listen(64)
        self._start_writer()

    def _start_writer(self) -> None:
        settings_path = os.path.join(self.store_dir, "settings.json")
        if not os.path.exists(settings_path):
            # The settings as this master started with them; a restarted
            # writer takes the pause state from the writer's state file.
            current = self.settings
            if self.settings_path:
                with contextlib.suppress(SettingsError):
                    current = InstanceSettings.load(self.settings_path)
            current.write(settings_path)
        secrets_fd = secrets_pipe(InstanceSecrets(self._source_password, None))
        control_fd = self._control.fileno()
        try:
            # stdout is a pipe only the writer holds: its end (EOF) is the
            # writer's death, whoever reaps the process (gunicorn reaps every child).
            self._writer = subprocess.Popen(
                [sys.executable, "-m", "app.instance.writer", "--settings", settings_path,
                 SECRETS_FD_OPTION, str(secrets_fd), "--store-dir", self.store_dir,
                 "--control-fd", str(control_fd)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                pass_fds=(secrets_fd, control_fd))
        finally:
            os.close(secrets_fd)
        log.info("writer process %d started", self._writer.pid)

    def _writer_alive(self) -> bool:
        writer = self._writer
        if writer is None:
            return False
        readable, _, _ = select.select([writer.stdout], [], [], 0)
        if not readable:
            return True
        return bool(os.read(writer.stdout.fileno(), 4096))

    def supervise_writer(self) -> None:
        """Restart the writer if it died (called by the master's loop, about once a second)."""
        if self._writer is None or self._writer_alive():
            return
        self._writer.stdout.close()
        self._writer = None
        now = time.monotonic()
        self._writer_deaths = [t for t in self._writer_deaths
                               if now - t < WRITER_RESTART_WINDOW_SECONDS] + [now]
        if len(self._writer_deaths) >= WRITER_RESTARTS:
            log.error("the writer process died %d times in %.0f s; the instance stops",
                      WRITER_RESTARTS, WRITER_RESTART_WINDOW_SECONDS)
            raise HaltServer("the writer process keeps dying", 1)
        log.warning("the writer process died; restarting it (the published snapshot is kept)")
        self._start_writer()

    def _stop_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            with contextlib.suppress(ProcessLookupError):
                writer.terminate()
            deadline = time.monotonic() + WRITER_STOP_SECONDS
            # gunicorn may reap it first: its pipe's end tells either way.
            while time.monotonic() < deadline:
                readable, _, _ = select.select([writer.stdout], [], [], 0.1)
                if readable and not os.read(writer.stdout.fileno(), 4096):
                    break
            else:
                with contextlib.suppress(ProcessLookupError):
                    writer.kill()
            writer.stdout.close()
            with contextlib.suppress(ChildProcessError, subprocess.TimeoutExpired):
                writer.wait(1.0)

    def _on_exit(self, arbiter) -> None:
        self._stop_writer()
        if self._control is not None:
            self._control.close()
        if self.store_dir:
            remove_store_directory(self.store_dir)

    # -- the readers ---------------------------------------------------------------

    def _post_fork(self, arbiter, worker) -> None:
        # The readers have no use for the writer's pipe nor its listening socket.
        if self._writer is not None:
            self._writer.stdout.close()
            self._writer = None
        if self._control is not None:
            self._control.close()
            self._control = None

    def load(self):
        configure_logging(self.settings, "reader")
        limit_reader(MemoryBudget(self.settings.memory_limit_mb))
        self.state = InstanceState.from_files(self.settings, admin_token=self._admin_token,
                                              store_dir=self.store_dir)
        self.state.start()
        return create_app(self.state)

    def _worker_exit(self, server, worker) -> None:
        if self.state is not None:
            self.state.stop()


__all__ = ["InstanceApplication", "configure_logging"]
