"""Starting and steering instance processes: the interface the lifecycle engine uses.

`LocalProcessRuntime` runs each instance as `python -m app.instance` on this
machine, on a free local port, in its own session (so it outlives the control
plane process that started it). Secrets reach the instance through its
environment only. A handle is plain data (`to_dict`/`from_dict`) so the engine
can store it and steer the instance after a restart of its own; it carries the
instance's admin token, which must be stored as a secret.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from app.contracts.artifact import SchemaArtifact
from app.contracts.instance_settings import ADMIN_TOKEN_ENV, SOURCE_PASSWORD_ENV, InstanceSettings

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class InstanceStartError(Exception):
    """The instance process did not come up; the message says why (log tail included)."""


@dataclass(frozen=True)
class InstanceHandle:
    """How to reach and steer one started instance."""

    database_id: str
    endpoint_url: str
    pid: int
    work_dir: str
    settings_path: str
    log_path: str
    admin_token: str = field(repr=False)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "InstanceHandle":
        return cls(**data)


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
        self._children: dict[int, subprocess.Popen] = {}

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
        last_error = None
        for _attempt in range(3):
            port = _free_port(self.host)
            instance_settings = dataclasses.replace(
                settings, database_id=database_id, artifact_path=str(artifact_path),
                keys_file=str(Path(keys_file).resolve()), host=self.host, port=port)
            settings_path = work_dir / "settings.json"
            instance_settings.write(str(settings_path))
            admin_token = secrets.token_urlsafe(32)
            log_path = work_dir / "instance.log"
            process = self._spawn(settings_path, log_path, source_password, admin_token)
            handle = InstanceHandle(database_id=database_id,
                                    endpoint_url=f"http://{_url_host(self.host)}:{port}",
                                    pid=process.pid, work_dir=str(work_dir),
                                    settings_path=str(settings_path), log_path=str(log_path),
                                    admin_token=admin_token)
            try:
                self._wait_until_up(handle, process)
                return handle
            except InstanceStartError as exc:
                last_error = exc
                self.stop(handle)
                if "Address already in use" not in str(exc):
                    break
        raise last_error

    def stop(self, handle: InstanceHandle, timeout: float = 10.0) -> None:
        """Stop the instance (SIGTERM, then SIGKILL after `timeout`); idempotent."""
        if not self._is_ours(handle.pid):
            self._children.pop(handle.pid, None)
            return
        try:
            os.kill(handle.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        if not self._wait_exit(handle.pid, timeout):
            try:
                os.killpg(handle.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self._wait_exit(handle.pid, 5.0)
        self._children.pop(handle.pid, None)

    def is_alive(self, handle: InstanceHandle) -> bool:
        """True while the instance process exists."""
        return self._is_ours(handle.pid)

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

    def _spawn(self, settings_path: Path, log_path: Path, source_password: str,
               admin_token: str) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items()
               if k not in (SOURCE_PASSWORD_ENV, ADMIN_TOKEN_ENV)}
        env.update({
            SOURCE_PASSWORD_ENV: source_password,
            ADMIN_TOKEN_ENV: admin_token,
            # glibc reads it at start-up: without it every thread may get its
            # own 64 MiB malloc arena, which the memory limit would count.
            "MALLOC_ARENA_MAX": "2",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH")) if p),
        })
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [self.python, "-m", "app.instance", "--settings", str(settings_path)],
                env=env, cwd=str(PROJECT_ROOT), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
        self._children[process.pid] = process
        return process

    def _wait_until_up(self, handle: InstanceHandle, process: subprocess.Popen) -> None:
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

    def _is_ours(self, pid: int) -> bool:
        process = self._children.get(pid)
        if process is not None:
            return process.poll() is None
        # Started by an earlier runtime (the engine restarted): check the pid
        # still is an instance before signalling it, pids get reused.
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return b"app.instance" in cmdline

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        process = self._children.get(pid)
        while time.monotonic() < deadline:
            if process is not None:
                if process.poll() is not None:
                    return True
            elif not self._is_ours(pid):
                return True
            time.sleep(0.05)
        return False


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


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


__all__ = ["InstanceHandle", "InstanceStartError", "LocalProcessRuntime"]
