"""Starting and steering instance processes: the interface the lifecycle engine uses.

`LocalProcessRuntime` runs each instance as `python -m app.instance` on this
machine, in its own session (so it outlives the control plane process that
started it). The runtime binds the listening socket itself and hands it over
(gunicorn's `fd://N`), so no other process can take the port in between; the
secrets go through a pipe (app/contracts/instance_secrets.py), never argv, the
environment or a file. A handle is plain data (`to_dict`/`from_dict`) so the
engine can store it and steer the instance after a restart of its own: it
names the process by pid and start time (a reused pid is not mistaken for the
instance) and carries the admin token, which must be stored as a secret.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import psutil
import requests

from app.contracts.artifact import SchemaArtifact
from app.contracts.instance_secrets import (
    LISTEN_FD_OPTION,
    SECRETS_FD_OPTION,
    InstanceSecrets,
    secrets_pipe,
)
from app.contracts.instance_settings import InstanceSettings, SettingsError
from app.contracts.query_keys import write_keys_file

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Control-plane settings the instance has no use for: not passed on (DATABASE_URL
# may hold the store's password, REFLEXDB_SECRET_KEYS the encryption keys).
_WITHHELD_ENV_PREFIXES = ("REFLEXDB_", "DATABASE_URL")


class InstanceStartError(Exception):
    """The instance process did not come up; the message says why (log tail included)."""


@dataclass(frozen=True)
class InstanceHandle:
    """How to reach and steer one started instance."""

    database_id: str
    endpoint_url: str
    pid: int
    create_time: float          # psutil's start time of `pid`: together they name the process
    work_dir: str
    settings_path: str
    log_path: str
    admin_token: str = field(repr=False)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "InstanceHandle":
        return cls(**data)


@dataclass(frozen=True)
class InstanceSpec:
    """What the engine asks a runtime to start: one instance of one database."""

    database_id: str
    instance_id: str                     # unique per start: the swap runs two side by side
    settings: InstanceSettings           # the runtime sets paths, host and port
    artifact: SchemaArtifact
    source_password: str = field(repr=False)


class Runtime(Protocol):
    """How the lifecycle engine starts, watches and steers instances.

    `LocalProcessRuntime` runs processes on this machine; docs/architecture.md
    describes how a Kubernetes runtime maps the same calls. A handle is the
    runtime's own plain data with an `endpoint_url`; `record_of` gives it
    without secrets (for the store), `handle_from_record` puts the admin token back.
    """

    def launch(self, spec: InstanceSpec) -> InstanceHandle:
        """Start an instance; returns once it answers /health (its snapshot may still load)."""

    def stop(self, handle: InstanceHandle) -> None:
        """Stop the instance; idempotent."""

    def release(self, handle: InstanceHandle) -> None:
        """Stop the instance and free everything it held; idempotent."""

    def is_alive(self, handle: InstanceHandle) -> bool:
        """Whether the instance still exists."""

    def instances_of(self, database_id: str) -> list[InstanceHandle]:
        """Every instance of the database the runtime can see, recorded by the engine or not."""

    def list_instances(self) -> list[InstanceHandle]:
        """Every instance the runtime can see, of any database (each handle names its database)."""

    def health(self, handle: InstanceHandle) -> dict:
        """The instance's /health document, or {"status": "unreachable", "reason"}."""

    def reload(self, handle: InstanceHandle) -> dict:
        """A full snapshot reload now."""

    def pause_replication(self, handle: InstanceHandle) -> dict:
        """Freeze the snapshot (queries keep being served)."""

    def resume_replication(self, handle: InstanceHandle) -> dict:
        """Unfreeze the snapshot."""

    def instance_id_of(self, handle: InstanceHandle) -> str:
        """The `instance_id` of the spec the handle was launched from."""

    def deliver_keys(self, database_id: str, secret: str, keys: dict[str, str | None]) -> None:
        """Give every instance of the database its query-key secret and live keys."""

    def handle_from_record(self, record: dict, admin_token: str) -> InstanceHandle:
        """A handle from what `record_of` returned and the admin token."""

    def record_of(self, handle: InstanceHandle) -> dict:
        """The handle as plain data without secrets."""


class LocalProcessRuntime:
    """Runs instances as local subprocesses, one working directory each under `base_dir`."""

    def __init__(self, base_dir: str | os.PathLike, *, host: str = "127.0.0.1",
                 python: str = sys.executable, start_timeout: float = 30.0,
                 request_timeout: float = 5.0):
        self.base_dir = Path(base_dir)
        self.host = host
        self.python = python
        self.start_timeout = start_timeout
        self.request_timeout = request_timeout
        # The processes this runtime started, kept so their exit status is collected.
        self._children: dict[int, psutil.Popen] = {}

    # -- lifecycle ---------------------------------------------------------

    def start(self, database_id: str, settings: InstanceSettings, artifact: SchemaArtifact,
              source_password: str, keys_file: str) -> InstanceHandle:
        """Start an instance and return once it answers /health (its snapshot may still load).

        `settings` supplies everything but the paths, host and port, which the
        runtime sets. Raises InstanceStartError when the process does not come up.
        """
        work_dir = self.base_dir / _safe_name(database_id)
        work_dir.mkdir(parents=True, exist_ok=True)
        artifact_path = work_dir / "artifact.json"
        _write_atomic(artifact_path, artifact.to_json())
        # Bound and listening here, before the instance exists: the port is
        # ours from now on, and early connections wait in the backlog.
        with _listen(self.host) as listener:
            port = listener.getsockname()[1]
            instance_settings = dataclasses.replace(
                settings, database_id=database_id, artifact_path=str(artifact_path),
                keys_file=str(Path(keys_file).resolve()), host=self.host, port=port)
            settings_path = work_dir / "settings.json"
            instance_settings.write(str(settings_path))
            admin_token = secrets.token_urlsafe(32)
            log_path = work_dir / "instance.log"
            process = self._spawn(settings_path, log_path, listener.fileno(),
                                  InstanceSecrets(source_password, admin_token))
        self._children[process.pid] = process
        handle = InstanceHandle(database_id=database_id,
                                endpoint_url=f"http://{_url_host(self.host)}:{port}",
                                pid=process.pid, create_time=process.create_time(),
                                work_dir=str(work_dir), settings_path=str(settings_path),
                                log_path=str(log_path), admin_token=admin_token)
        try:
            self._wait_until_up(handle, process)
        except InstanceStartError:
            self.stop(handle)
            raise
        return handle

    def stop(self, handle: InstanceHandle, timeout: float = 10.0) -> None:
        """Stop the instance and its worker (SIGTERM, then SIGKILL after `timeout`); idempotent."""
        process = self._process(handle)
        if process is None:
            return
        family: list[psutil.Process] = [process]
        with contextlib.suppress(psutil.Error):
            family += process.children(recursive=True)
        # gunicorn's master stops its worker on SIGTERM; the list lets us wait
        # for (and if need be kill) the worker too.
        with contextlib.suppress(psutil.NoSuchProcess):
            process.terminate()
        _gone, alive = psutil.wait_procs(family, timeout=timeout)
        for lingering in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                lingering.kill()
        psutil.wait_procs(alive, timeout=5.0)
        self._forget(handle.pid)

    def is_alive(self, handle: InstanceHandle) -> bool:
        """True while the instance process runs."""
        return self._process(handle) is not None

    # -- steering ----------------------------------------------------------

    def health(self, handle: InstanceHandle) -> dict:
        """The instance's /health, or `{"status": "unreachable", "reason": …}`."""
        try:
            response = requests.get(f"{handle.endpoint_url}/health",
                                    timeout=self.request_timeout)
            if response.status_code == 200:
                return response.json()
            reason = f"/health answered {response.status_code}"
        except (requests.RequestException, ValueError) as exc:
            reason = f"/health did not answer: {type(exc).__name__}"
        if not self.is_alive(handle):
            reason = "the instance process is not running"
        return {"status": "unreachable", "reason": reason}

    def reload(self, handle: InstanceHandle) -> dict:
        """Ask for a full snapshot reload now (the instance answers 202 and swaps when done)."""
        return self._admin(handle, "/admin/reload")

    def pause_replication(self, handle: InstanceHandle) -> dict:
        """Freeze the snapshot: queries keep being served, no refresh."""
        answer = self._admin(handle, "/admin/replication/pause")
        self._remember_paused(handle, True)
        return answer

    def resume_replication(self, handle: InstanceHandle) -> dict:
        """Unfreeze the snapshot: a reload follows at once, then the usual interval."""
        answer = self._admin(handle, "/admin/replication/resume")
        self._remember_paused(handle, False)
        return answer

    # -- the Runtime interface (the lifecycle engine, app/engine/executor.py) --

    def launch(self, spec: InstanceSpec) -> InstanceHandle:
        """Start the instance `spec` describes, in a working directory of its own.

        One directory per instance (data_dir/instances/<db>/runs/<instance>/), so
        an old and a new instance of one database run side by side during a swap.
        """
        runner = copy.copy(self)   # shares `_children`: this runtime still reaps the process
        runner.base_dir = self.base_dir / _safe_name(spec.database_id) / "runs" / _safe_name(spec.instance_id)
        return runner.start(spec.database_id, spec.settings, spec.artifact, spec.source_password,
                            str(self.keys_path(spec.database_id)))

    def release(self, handle: InstanceHandle, timeout: float = 10.0) -> None:
        """Stop the instance and delete its working directory; idempotent."""
        self.stop(handle, timeout)
        run_dir = Path(handle.work_dir).parent
        runs = (self.base_dir / _safe_name(handle.database_id) / "runs").resolve()
        if run_dir.resolve().parent == runs:
            shutil.rmtree(run_dir, ignore_errors=True)

    def instances_of(self, database_id: str) -> list[InstanceHandle]:
        """Every live instance process of `database_id` on this machine, recorded or not."""
        return [handle for handle in self.list_instances() if handle.database_id == database_id]

    def list_instances(self) -> list[InstanceHandle]:
        """Every live instance process this runtime started on this machine, recorded or not.

        Found by their command line (`--settings <base_dir>/<db>/runs/<instance>/…`),
        so an instance a dead worker started and never recorded can still be
        stopped. The handles carry no admin token: they are for `stop`/`release`.
        """
        base = str(self.base_dir.resolve()) + os.sep
        found = []
        for process in psutil.process_iter(["pid", "cmdline", "create_time"]):
            argv = process.info["cmdline"] or []
            if "app.instance" not in argv or "--settings" not in argv[:-1]:
                continue
            pid = process.info["pid"]
            try:
                if os.getsid(pid) != pid:
                    continue   # a child of an instance (its server's worker), not an instance
            except OSError:
                continue
            settings_path = os.path.abspath(argv[argv.index("--settings") + 1])
            parts = settings_path[len(base):].split(os.sep) if settings_path.startswith(base) else []
            # <db>/runs/<instance>/<db>/settings.json
            if len(parts) != 5 or parts[1] != "runs" or parts[0] != parts[3]:
                continue
            work_dir = os.path.dirname(settings_path)
            try:
                settings = InstanceSettings.load(settings_path)
                database_id = settings.database_id
                endpoint = f"http://{_url_host(settings.host)}:{settings.port}"
            except SettingsError:
                database_id, endpoint = parts[0], ""
            found.append(InstanceHandle(database_id=database_id, endpoint_url=endpoint, pid=pid,
                                        create_time=process.info["create_time"], work_dir=work_dir,
                                        settings_path=settings_path,
                                        log_path=os.path.join(work_dir, "instance.log"), admin_token=""))
        return found

    @staticmethod
    def instance_id_of(handle: InstanceHandle) -> str:
        """The `instance_id` the handle was launched with (its run directory's name)."""
        return Path(handle.work_dir).parent.name

    def keys_path(self, database_id: str) -> Path:
        """The keys file every instance of `database_id` reads."""
        return self.base_dir / _safe_name(database_id) / "keys.json"

    def deliver_keys(self, database_id: str, secret: str, keys: dict[str, str | None]) -> None:
        """Hand the database's query-key secret and live keys to its instances (the keys file)."""
        path = self.keys_path(database_id)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_keys_file(str(path), secret, keys)
        path.chmod(0o600)

    def handle_from_record(self, record: dict, admin_token: str) -> InstanceHandle:
        """The handle stored by the engine (`record_of`), with its admin token put back."""
        return InstanceHandle.from_dict({**record, "admin_token": admin_token})

    @staticmethod
    def record_of(handle: InstanceHandle) -> dict:
        """The handle as plain data without its secret (the engine stores the token encrypted)."""
        record = handle.to_dict()
        record.pop("admin_token")
        return record

    # -- helpers -----------------------------------------------------------

    def _admin(self, handle: InstanceHandle, path: str) -> dict:
        response = requests.post(f"{handle.endpoint_url}{path}",
                                 headers={"Authorization": f"Bearer {handle.admin_token}"},
                                 timeout=self.request_timeout)
        response.raise_for_status()
        return response.json()

    def _remember_paused(self, handle: InstanceHandle, paused: bool) -> None:
        # Kept in the settings file so a restarted worker stays frozen (or not).
        settings = InstanceSettings.load(handle.settings_path)
        if settings.replication_paused != paused:
            dataclasses.replace(settings, replication_paused=paused).write(handle.settings_path)

    def _spawn(self, settings_path: Path, log_path: Path, listen_fd: int,
               instance_secrets: InstanceSecrets) -> psutil.Popen:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_WITHHELD_ENV_PREFIXES)}
        env.update({
            # glibc reads it at start-up: without it every thread may get its
            # own 64 MiB malloc arena, which the memory limit would count.
            "MALLOC_ARENA_MAX": "2",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH")) if p),
        })
        secrets_fd = secrets_pipe(instance_secrets)
        try:
            with open(log_path, "ab") as log:
                return psutil.Popen(
                    [self.python, "-m", "app.instance", "--settings", str(settings_path),
                     SECRETS_FD_OPTION, str(secrets_fd), LISTEN_FD_OPTION, str(listen_fd)],
                    env=env, cwd=str(PROJECT_ROOT), stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True,
                    pass_fds=(secrets_fd, listen_fd))
        finally:
            # The child has its own copy; ours would keep the pipe open.
            os.close(secrets_fd)

    def _wait_until_up(self, handle: InstanceHandle, process: psutil.Popen) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise InstanceStartError(
                    f"the instance exited with code {process.returncode} while starting: "
                    f"{_tail(handle.log_path)}")
            try:
                if requests.get(f"{handle.endpoint_url}/health", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise InstanceStartError(f"the instance did not answer /health within "
                                 f"{self.start_timeout:.0f}s: {_tail(handle.log_path)}")

    def _process(self, handle: InstanceHandle) -> psutil.Process | None:
        """The instance's process while it runs; None once it ended or its pid was reused."""
        try:
            process = psutil.Process(handle.pid)
            if process.create_time() != handle.create_time:
                return None     # another process got the pid since
            if process.status() != psutil.STATUS_ZOMBIE:
                return process
        except psutil.NoSuchProcess:
            return None
        # Ended but not yet reaped (it is our child): collect its exit status.
        with contextlib.suppress(psutil.Error, ChildProcessError):
            process.wait(timeout=0)
        self._forget(handle.pid)
        return None

    def _forget(self, pid: int) -> None:
        child = self._children.pop(pid, None)
        if child is not None:
            child.poll()    # records the exit status (already collected: recorded as 0)


def _listen(host: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, 0), family=family, backlog=128)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _safe_name(database_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in database_id) or "_"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _tail(log_path: str, lines: int = 15) -> str:
    try:
        text = Path(log_path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return " | ".join(text.strip().splitlines()[-lines:]) or "(empty log)"


__all__ = ["InstanceHandle", "InstanceSpec", "InstanceStartError", "LocalProcessRuntime", "Runtime"]
