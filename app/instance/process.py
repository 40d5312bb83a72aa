"""Serving one instance: a gunicorn master, N reader workers and one writer process.

The master creates the store directory (app/instance/store.py), forks the
writer (app/instance/writer.py `run_forked`) before it forks the readers,
re-forks it when it dies, and removes the directory when it stops. The master
never starts a thread nor opens a connection or a snapshot, so a fork shares
nothing but memory (copy on write): the writer starts without a new
interpreter and its imports, and no secret crosses a pipe. Readers are gunicorn
`gthread` workers: each opens the current generation read-only and mapped, so
the snapshot is in memory once whatever the number of readers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import threading
import time
from dataclasses import dataclass

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.errors import HaltServer

from app.contracts.instance_settings import InstanceSettings, SettingsError
from app.instance.logs import configure_logging
from app.instance.memory import MemoryBudget, cap_malloc_arenas, limit_reader
from app.instance.server import create_app
from app.instance.state import InstanceState
from app.instance.store import (
    CONTROL_SOCKET,
    hold_store_directory,
    make_store_directory,
    remove_store_directory,
    store_base,
    sweep_stale_store_directories,
)
from app.instance.worker import LoadBoard

log = logging.getLogger(__name__)

# A writer that dies this many times within the window is not restarted
# again: the master exits, and the engine's supervisor sees a dead instance.
WRITER_RESTARTS = 5
WRITER_RESTART_WINDOW_SECONDS = 60.0
WRITER_STOP_SECONDS = 10.0
READER_REAP_SECONDS = 0.01


@dataclass
class _WriterProcess:
    """A forked writer: its pid and the read end of a pipe only it holds open (EOF = its end)."""

    pid: int
    alive_fd: int

    def ended(self, timeout: float = 0) -> bool:
        """Whether the writer is gone, waiting up to `timeout` seconds for it."""
        readable, _, _ = select.select([self.alive_fd], [], [], timeout)
        return bool(readable) and not os.read(self.alive_fd, 4096)


class _InstanceArbiter(Arbiter):
    """gunicorn's master, which also keeps the writer process running."""

    def manage_workers(self):
        super().manage_workers()
        self.app.supervise_writer(self)

    def stop(self, graceful=True):
        # The writer stops while the readers finish their requests, not after.
        self.app.terminate_writer()
        # gunicorn's own wait checks the readers every 0.1 s and sleeps once
        # more after the last is reaped: 0.2 s of most stops. Reap them here
        # as they end (up to the graceful timeout), then let it finish the stop.
        self.kill_workers(signal.SIGTERM if graceful else signal.SIGQUIT)
        deadline = time.monotonic() + self.cfg.graceful_timeout
        while self.WORKERS and time.monotonic() < deadline:
            self.reap_workers()
            if self.WORKERS:
                time.sleep(READER_REAP_SECONDS)
        if self.WORKERS:   # past the graceful timeout: as gunicorn would, not a second wait
            self.kill_workers(signal.SIGKILL)
        super().stop(graceful)


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
        self._store_lock: int | None = None
        self._writer: _WriterProcess | None = None
        self._control: socket.socket | None = None
        self._writer_deaths: list[float] = []
        self._load_board = LoadBoard()
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        options = {
            # A socket the starter bound and passed, or the settings' address.
            "bind": f"fd://{self._listen_fd}" if self._listen_fd is not None
            else f"{s.host}:{s.port}",
            "workers": s.reader_workers,
            "worker_class": "app.instance.worker.ReaderWorker",
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
            "pre_fork": self._pre_fork,
            "post_fork": self._post_fork,
            "child_exit": self._child_exit,
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
        base = store_base(self.settings.snapshot_dir, fallback)
        for stale in sweep_stale_store_directories(base):
            log.warning("removed %s, left by an instance that was killed", stale)
        self.store_dir = make_store_directory(self.settings.database_id, base=base)
        # Held by the master and every process it forks, released when the last exits.
        self._store_lock = hold_store_directory(self.store_dir)
        # The master binds the writer's control socket and keeps it: readers
        # can connect from their first request, and while a writer restarts
        # their commands wait in the backlog for the next one.
        self._control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._control.bind(os.path.join(self.store_dir, CONTROL_SOCKET))
        self._control.listen(64)
        self._start_writer(arbiter)

    def _start_writer(self, arbiter) -> None:
        settings_path = os.path.join(self.store_dir, "settings.json")
        if not os.path.exists(settings_path):
            # The settings as this master started with them; a restarted
            # writer takes the pause state from the writer's state file.
            current = self.settings
            if self.settings_path:
                with contextlib.suppress(SettingsError):
                    current = InstanceSettings.load(self.settings_path)
            current.write(settings_path)
        if threading.active_count() > 1:
            # A fork copies only the forking thread: a lock another thread
            # held would stay locked in the writer forever.
            log.warning("forking the writer while the master runs threads: %s",
                        ", ".join(t.name for t in threading.enumerate()))
        alive_read, alive_write = os.pipe()
        # Signals wait until the child installed its own handlers (not gunicorn's).
        signals = {*arbiter.SIGNALS, signal.SIGCHLD}
        signal.pthread_sigmask(signal.SIG_BLOCK, signals)
        try:
            pid = os.fork()
            if pid == 0:
                self._be_writer(arbiter, settings_path, alive_read, signals)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)
        os.close(alive_write)
        self._writer = _WriterProcess(pid, alive_read)
        log.info("writer process %d started", pid)

    def _be_writer(self, arbiter, settings_path: str, alive_read: int, signals) -> None:
        """The forked child: drop what is the master's, run the writer, never return."""
        status = 1
        try:
            os.close(alive_read)
            for sig in signals:
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)
            # The master's listening sockets and its readers' heartbeat files.
            for listener in arbiter.LISTENERS:
                listener.close()
            for worker in arbiter.WORKERS.values():
                worker.tmp.close()
            if self._listen_fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._listen_fd)
            self._admin_token = None
            # Imported here: the master and its readers never need the writer's modules.
            from app.instance.writer import run_forked
            status = run_forked(settings_path, self.store_dir,
                                source_password=self._source_password, control=self._control,
                                master=arbiter.pid)
        except BaseException:
            with contextlib.suppress(Exception):
                log.exception("the writer process failed")
        finally:
            # Never back into gunicorn's code; nothing is left to flush but the log.
            with contextlib.suppress(Exception):
                logging.shutdown()
            os._exit(status)

    def _writer_alive(self) -> bool:
        return self._writer is not None and not self._writer.ended()

    def supervise_writer(self, arbiter) -> None:
        """Restart the writer if it died (called by the master's loop, about once a second)."""
        if self._writer is None or self._writer_alive():
            return
        self._forget_writer()
        now = time.monotonic()
        self._writer_deaths = [t for t in self._writer_deaths
                               if now - t < WRITER_RESTART_WINDOW_SECONDS] + [now]
        if len(self._writer_deaths) >= WRITER_RESTARTS:
            log.error("the writer process died %d times in %.0f s; the instance stops",
                      WRITER_RESTARTS, WRITER_RESTART_WINDOW_SECONDS)
            raise HaltServer("the writer process keeps dying", 1)
        log.warning("the writer process died; restarting it (the published snapshot is kept)")
        self._start_writer(arbiter)

    def _forget_writer(self) -> None:
        writer, self._writer = self._writer, None
        os.close(writer.alive_fd)
        # gunicorn reaps every child (waitpid(-1)); if it has not yet, reap it here.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(writer.pid, os.WNOHANG)

    def terminate_writer(self) -> None:
        """Ask the writer to stop (SIGTERM) without waiting for it."""
        # Its pipe says whether the pid is still the writer's (not reaped, not reused).
        if self._writer is not None and not self._writer.ended():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._writer.pid, signal.SIGTERM)

    def _stop_writer(self) -> None:
        writer = self._writer
        if writer is None:
            return
        self.terminate_writer()
        if not writer.ended(WRITER_STOP_SECONDS):
            with contextlib.suppress(ProcessLookupError):
                os.kill(writer.pid, signal.SIGKILL)
            writer.ended(1.0)
        self._forget_writer()

    def _on_exit(self, arbiter) -> None:
        self._stop_writer()
        if self._control is not None:
            self._control.close()
        if self.store_dir:
            remove_store_directory(self.store_dir)

    # -- the readers ---------------------------------------------------------------

    def _pre_fork(self, arbiter, worker) -> None:
        self._load_board.assign(worker, arbiter.WORKERS.values())

    def _child_exit(self, arbiter, worker) -> None:
        self._load_board.release(worker)

    def _post_fork(self, arbiter, worker) -> None:
        worker.max_buffered_body = self.settings.limits.max_query_bytes
        # The readers have no use for the writer's pipe nor its listening socket.
        if self._writer is not None:
            os.close(self._writer.alive_fd)
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
