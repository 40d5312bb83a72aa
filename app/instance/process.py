"""Serving one instance in this process with gunicorn (1 gthread worker, N threads)."""

from __future__ import annotations

import logging

from gunicorn.app.base import BaseApplication

from app.contracts.instance_settings import InstanceSettings, SettingsError
from app.instance.memory import MemoryBudget, limit_process
from app.instance.server import create_app
from app.instance.state import InstanceState

_LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
               "error": logging.ERROR}


class InstanceApplication(BaseApplication):
    """gunicorn application whose single worker holds the snapshot.

    The snapshot is built inside the worker (not the master) after `load()`
    applies the memory limit, so the limit covers exactly the process that
    serves queries. One worker, because a snapshot is per process.
    """

    def __init__(self, settings: InstanceSettings, *, source_password: str,
                 admin_token: str | None, settings_path: str | None = None,
                 listen_fd: int | None = None):
        self.settings = settings
        self.settings_path = settings_path
        self._listen_fd = listen_fd
        self._source_password = source_password
        self._admin_token = admin_token
        self.state: InstanceState | None = None
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        options = {
            # A socket the starter bound and passed, or the settings' address.
            "bind": f"fd://{self._listen_fd}" if self._listen_fd is not None
            else f"{s.host}:{s.port}",
            "workers": 1,
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
            "worker_exit": self._worker_exit,
            # gunicorn's control socket has one default path per user: several
            # instances on one machine would fight over it, and nothing uses it.
            "control_socket_disable": True,
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self):
        if self.settings_path:
            # A re-forked worker picks up what the runtime changed in the file
            # since the start (replication paused or resumed).
            try:
                self.settings = InstanceSettings.load(self.settings_path)
            except SettingsError:
                pass
        configure_logging(self.settings)
        limit_process(MemoryBudget(self.settings.memory_limit_mb))
        self.state = InstanceState.from_files(self.settings,
                                              source_password=self._source_password,
                                              admin_token=self._admin_token)
        self.state.start()
        return create_app(self.state)

    def _worker_exit(self, server, worker) -> None:
        if self.state is not None:
            self.state.stop()


def configure_logging(settings: InstanceSettings) -> None:
    """Log lines to stderr tagged with the database id."""
    logging.basicConfig(
        level=_LOG_LEVELS.get(settings.log_level, logging.INFO),
        format=f"%(asctime)s %(levelname)s [instance {settings.database_id}] "
               f"%(name)s: %(message)s",
        force=True)


__all__ = ["InstanceApplication", "configure_logging"]
