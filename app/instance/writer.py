"""The writer process: the one process that changes the snapshot.

Forked (and re-forked when it dies) by the instance's gunicorn master
(app/instance/process.py), which then calls `run_forked`; `python -m
app.instance.writer --settings PATH --secrets-fd N --store-dir DIR` runs one on
its own (tests, by hand). It owns a `SnapshotStore` on DIR and a sync
controller (poll: `SyncController`; binlog and logical: `ChangeSync`, same
interface), and:

- publishes its state for /health in `DIR/state.json` (atomic write) whenever
  it changes, checked every 0.25 s, and at once when a poll load publishes a
  generation (readers say `serving` from it) or the change stream applies a
  transaction;
- accepts on the unix socket `DIR/control.sock` (bound by the master, which
  passes it as `--control-fd`; the directory is 0700, so only the instance's
  own user reaches it) one-word commands from the
  reader workers: `reload`, `pause`, `resume`; each answer is the state after
  the command, as JSON;
- on start, takes over the generation a previous writer published (and its
  counters from state.json) instead of reloading: a writer restart costs no
  load from the source; the next timed reload is due an interval after that
  generation was read (poll), or the stream resumes from the position recorded
  in that generation (CDC; app/instance/replication.py).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import importlib
import json
import logging
import os
import signal
import socket
import sys
import threading

from app.contracts.artifact import SchemaArtifact
from app.contracts.files import write_atomic
from app.contracts.instance_secrets import SECRETS_FD_OPTION, SecretsError, read_secrets
from app.contracts.instance_settings import InstanceSettings, SettingsError
from app.instance.logs import configure_logging
from app.instance.memory import MemoryBudget, limit_process
from app.instance.store import (
    CONTROL_SOCKET,
    STATE_FILE,
    SnapshotStore,
    WatchedFile,
    remove_store_directory,
)

log = logging.getLogger(__name__)

STATE_INTERVAL_SECONDS = 0.25
COMMANDS = ("reload", "pause", "resume")
_MAX_COMMAND_BYTES = 64
_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15

# Sync controllers by effective sync mode ("module:class", imported when
# used: a polling writer never loads the change capture's modules): each takes
# (artifact, settings, source_password, store, budget) and offers
# start/stop/reload/freeze/unfreeze/status() and the health attributes.
CONTROLLERS = {"poll": "app.instance.sync:SyncController",
               "binlog": "app.instance.replication:ChangeSync",
               "logical": "app.instance.replication:ChangeSync"}


def controller_class(sync_mode: str) -> type:
    """The sync controller class of an effective sync mode (CONTROLLERS)."""
    module, name = CONTROLLERS[sync_mode].split(":")
    return getattr(importlib.import_module(module), name)


def grace_seconds(settings: InstanceSettings) -> float:
    """How long a retired generation stays: the longest query, plus the readers' idle re-check."""
    return settings.limits.query_timeout_ms / 1000 + 2.0


class _PublishingStore(SnapshotStore):
    """A store that says when it published a generation (the writer writes state.json then)."""

    on_publish = staticmethod(lambda: None)

    def publish(self, snapshot):
        generation = super().publish(snapshot)
        try:
            self.on_publish()
        except Exception:   # the state loop writes it anyway
            log.exception("publishing the state after a new generation failed")
        return generation


class Writer:
    """The store, its controller, the state file and the control socket of one instance."""

    def __init__(self, settings: InstanceSettings, artifact: SchemaArtifact, store_dir: str, *,
                 source_password: str, control: socket.socket | None = None, open_source=None):
        self.settings = settings
        self.store_dir = store_dir
        self.store = _PublishingStore(store_dir, grace_seconds=grace_seconds(settings))
        self.budget = MemoryBudget(settings.memory_limit_mb)
        previous = WatchedFile(os.path.join(store_dir, STATE_FILE)).read() or {}
        if isinstance(previous.get("replicationPaused"), bool):
            # A dead writer's last word beats the settings file it started from.
            settings = dataclasses.replace(settings,
                                           replication_paused=previous["replicationPaused"])
            self.settings = settings
        adopted = self.store.adopt()
        controller = controller_class(settings.effective_sync_mode)
        self.controller = controller(artifact, settings, source_password, self.store,
                                     self.budget, open_source=open_source)
        if adopted is not None:
            # The same generation, the same counts: readers never noticed.
            self.controller.load_count = previous.get("loadCount", 1)
            self.controller.last_sync_at = previous.get("lastSyncAt")
            self.controller.last_rows_per_second = previous.get("loadRowsPerSecond")
            self.store.swap_count = previous.get("swapCount", 0)
            restore = getattr(self.controller, "restore", None)
            if restore is not None:
                restore(previous)
        self.starts = previous.get("writerStarts", 0) + 1
        self._state_lock = threading.Lock()
        self._last_state = None
        self._stop = threading.Event()
        self._socket = control
        if hasattr(self.controller, "on_change"):
            # It says when its state changed (ChangeSync: after each applied
            # transaction; the stream's start and reloads show at the next tick,
            # so `serving` comes with `streaming`, as the CDC tests expect).
            self.controller.on_change = self.publish_state
        else:
            # Readers say `serving` once state.json names a generation: write
            # it when one is published (the controller recorded its load just
            # before), not at the next 0.25 s tick.
            self.store.on_publish = self.publish_state

    # -- state ---------------------------------------------------------------

    def state(self) -> dict:
        """What readers put in /health."""
        c, current = self.controller, self.store.current
        return {
            "status": c.status(),
            "loading": c.loading,
            "lastSyncError": c.last_error,
            "lastSyncErrorCode": c.last_error_code,
            "lastSyncAt": c.last_sync_at,
            "loadRowsPerSecond": (round(c.last_rows_per_second, 1)
                                  if c.last_rows_per_second is not None else None),
            "loadCount": c.load_count,
            "swapCount": self.store.swap_count,
            "replicationPaused": c.frozen,
            "generation": current.number if current else None,
            "writerPid": os.getpid(),
            "writerStarts": self.starts,
            "effectiveSyncMode": self.settings.effective_sync_mode,
            "syncNote": self.settings.sync_note,
            **c.stream_health(),
        }

    def publish_state(self) -> dict:
        """Write state.json if the state changed; return the state."""
        with self._state_lock:
            state = self.state()
            if state != self._last_state:
                write_atomic(os.path.join(self.store_dir, STATE_FILE),
                             json.dumps(state, sort_keys=True))
                self._last_state = state
            return state

    # -- control ---------------------------------------------------------------

    def command(self, name: str) -> dict:
        """Apply a reader's command; the state after it."""
        if name == "reload":
            self.controller.reload()
        elif name == "pause":
            self.controller.freeze()
        elif name == "resume":
            self.controller.unfreeze()
        return self.publish_state()

    def _serve_control(self) -> None:
        # A timeout, not close(), ends the loop: the master shares this socket.
        self._socket.settimeout(0.5)
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with connection:
                try:
                    connection.settimeout(2.0)
                    name = connection.recv(_MAX_COMMAND_BYTES).decode("ascii", "replace").strip()
                    if name not in COMMANDS:
                        answer = {"error": f"unknown command; one of {', '.join(COMMANDS)}"}
                    else:
                        answer = self.command(name)
                    connection.sendall(json.dumps(answer).encode())
                except OSError as exc:
                    log.warning("a control connection failed: %s", exc)

    # -- running -----------------------------------------------------------------

    def run(self) -> None:
        """Serve until SIGTERM (or the master's death)."""
        if self._socket is None:   # run on its own (tests, by hand)
            path = os.path.join(self.store_dir, CONTROL_SOCKET)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._socket.bind(path)
            self._socket.listen(16)
        threading.Thread(target=self._serve_control, name="rx-control", daemon=True).start()
        self.controller.start()
        master = os.getppid()
        try:
            while not self._stop.wait(STATE_INTERVAL_SECONDS):
                self.publish_state()
                self.store.collect()
                if os.getppid() != master:
                    break
        finally:
            self.close()
            if os.getppid() != master:
                # The master died without cleaning up (SIGKILL): its readers
                # exit on their own, and nobody else will remove the store.
                log.warning("the instance's master is gone; the writer removes the store")
                remove_store_directory(self.store_dir)

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        self.controller.stop()
        if self._socket is not None:
            self._socket.close()
        with contextlib.suppress(Exception):
            self.publish_state()
        self.store.close()


def _die_with_parent() -> None:
    """SIGTERM this process when the master dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def run_writer(settings: InstanceSettings, store_dir: str, *, source_password: str,
               control: socket.socket | None) -> None:
    """Be the writer of `store_dir` in this process until SIGTERM (or the master's death)."""
    limit_process(MemoryBudget(settings.memory_limit_mb))
    with open(settings.artifact_path, encoding="utf-8") as f:
        artifact = SchemaArtifact.from_json(f.read())
    writer = Writer(settings, artifact, store_dir, source_password=source_password,
                    control=control)
    signal.signal(signal.SIGTERM, lambda *_: writer.stop())
    signal.signal(signal.SIGINT, lambda *_: writer.stop())
    log.info("writer started (start %d), store %s", writer.starts, store_dir)
    writer.run()


def run_forked(settings_path: str, store_dir: str, *, source_password: str,
               control: socket.socket, master: int) -> int:
    """The writer in a process the master just forked (app/instance/process.py); its exit code.

    The master has no thread, no connection and no open snapshot when it forks,
    so nothing is shared but its memory (copy on write), the control socket and
    the log. The settings come from the store's settings.json, which holds the
    pause state the runtime last recorded.
    """
    _die_with_parent()
    if os.getppid() != master:   # the master died before the line above
        return 1
    _name_process(b"rx-writer")
    try:
        settings = InstanceSettings.load(settings_path)
    except SettingsError as exc:
        print(f"reflexdb writer: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings, "writer")
    run_writer(settings, store_dir, source_password=source_password, control=control)
    return 0


def _name_process(name: bytes) -> None:
    """Name this process (ps, psutil's name()): the forked writer keeps the master's argv."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(_PR_SET_NAME, ctypes.c_char_p(name[:15]), 0, 0, 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.instance.writer",
                                     description="The writer process of one instance.")
    parser.add_argument("--settings", required=True)
    parser.add_argument(SECRETS_FD_OPTION, type=int, required=True, metavar="N")
    parser.add_argument("--store-dir", required=True)
    parser.add_argument("--control-fd", type=int, metavar="M",
                        help="a listening control socket to serve (default: bind DIR/control.sock)")
    args = parser.parse_args(argv)
    _die_with_parent()
    try:
        secrets = read_secrets(args.secrets_fd)
        settings = InstanceSettings.load(args.settings)
    except (SecretsError, SettingsError) as exc:
        print(f"reflexdb writer: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings, "writer")
    control = (socket.socket(fileno=args.control_fd) if args.control_fd is not None else None)
    run_writer(settings, args.store_dir, source_password=secrets.source_password,
               control=control)
    return 0

if __name__ == "__main__":
    sys.exit(main())
