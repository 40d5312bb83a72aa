"""LocalProcessRuntime with real instance processes on a real MariaDB source.

What is checked is what an operator could check on the machine: /proc of every
process of the instance, the files it leaves, the sockets it listens on, and
that processes are told apart by pid and start time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import requests

from app.config import PROJECT_ROOT
from app.engine.runtime import InstanceHandle, InstanceStartError, LocalProcessRuntime
from tests.engine.conftest import N_ROWS


def wait_for(predicate, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def serving(runtime, handle) -> dict:
    return wait_for(lambda: (lambda h: h if h.get("serving") else None)(runtime.health(handle)),
                    "the first snapshot")


def instance_processes(handle) -> list[psutil.Process]:
    master = psutil.Process(handle.pid)
    return [master, *master.children(recursive=True)]


def worker_of(handle) -> int | None:
    children = psutil.Process(handle.pid).children()
    return children[0].pid if children else None


def proc_bytes(pid: int, name: str) -> bytes:
    with open(f"/proc/{pid}/{name}", "rb") as f:
        return f.read()


def start(runtime, source, keys, started, **overrides):
    handle = runtime.start(f"db-{len(started)}-{os.getpid()}", source.settings(**overrides),
                           source.artifact, source.password, keys[0])
    started.append(handle)
    return handle


class TestSecrets:
    def test_no_secret_in_environ_or_cmdline_of_any_process(self, runtime, source, keys, started,
                                                            monkeypatch, tmp_path):
        # Control-plane secrets in the starter's environment must not reach the instance either.
        monkeypatch.setenv("DATABASE_URL", "postgresql://admin:store-pw-0xC0FFEE@db/reflexdb")
        monkeypatch.setenv("REFLEXDB_SECRET_KEYS", "fernet-key-0xC0FFEE")
        handle = start(runtime, source, keys, started)

        health = serving(runtime, handle)   # the snapshot was read from MariaDB with the password

        assert health["rowCounts"] == {"items": N_ROWS}
        # gunicorn's master, a reader worker per core, the writer: the second reader may
        # still be forking when the first one serves.
        expected, deadline = 2 + (os.cpu_count() or 1), time.monotonic() + 10
        while len(processes := instance_processes(handle)) < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(processes) == expected, processes
        secrets = [source.password, handle.admin_token, "0xC0FFEE"]
        for process in processes:
            for name in ("environ", "cmdline"):
                text = proc_bytes(process.pid, name)
                assert not [s for s in secrets if s.encode() in text], (process.pid, name)
        # Nor in any file the instance or the runtime left behind.
        for path in (tmp_path / "instances").rglob("*"):
            if path.is_file():
                content = path.read_bytes()
                assert source.password.encode() not in content, path
                assert handle.admin_token.encode() not in content, path

    def test_a_reforked_worker_still_has_the_password(self, runtime, source, keys, started):
        handle = start(runtime, source, keys, started)
        serving(runtime, handle)
        first_worker = worker_of(handle)

        os.kill(first_worker, signal.SIGKILL)   # gunicorn's master forks a new worker

        # The new worker loads its own snapshot from the source: it has the password.
        wait_for(lambda: worker_of(handle) not in (None, first_worker), "a new worker")
        health = serving(runtime, handle)
        assert (health["rowCounts"], health["status"]) == ({"items": N_ROWS}, "ok")
        new_worker = worker_of(handle)
        assert source.password.encode() not in proc_bytes(new_worker, "environ")
        # The admin token reached it too: the runtime can still steer the instance.
        assert runtime.reload(handle) == {"status": "reloading", "swapCount": 0}

    def test_the_instance_refuses_secrets_it_cannot_read(self, tmp_path):
        result = subprocess.run(
            [sys.executable, "-m", "app.instance", "--settings", str(tmp_path / "none.json"),
             "--secrets-fd", "0"],
            input="password=hunter2", capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=30)
        assert (result.returncode, result.stdout) == (2, "")
        assert result.stderr == "reflexdb instance: the secrets are not valid JSON\n"


class TestControlSocket:
    def test_the_instance_writes_no_shared_gunicorn_socket(self, runtime, source, keys, started,
                                                           monkeypatch, tmp_path):
        home = tmp_path / "home"
        home.mkdir()
        monkeypatch.setenv("HOME", str(home))
        monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
        handle = start(runtime, source, keys, started)
        serving(runtime, handle)

        assert list(home.iterdir()) == []
        # Only the writer's control socket, inside the instance's private store directory.
        unix = {c.laddr for p in instance_processes(handle) for c in p.net_connections(kind="unix")}
        assert [path for path in unix if not (path.startswith("/dev/shm/reflexdb-")
                                               and path.endswith("/control.sock"))] == []


class TestProcesses:
    def test_serves_on_the_socket_the_runtime_bound(self, runtime, source, keys, started):
        handle = start(runtime, source, keys, started)
        serving(runtime, handle)

        port = int(handle.endpoint_url.rsplit(":", 1)[1])
        settings = json.loads(open(handle.settings_path).read())
        assert settings["port"] == port
        listening = [c.laddr for c in psutil.Process(handle.pid).net_connections(kind="tcp")
                     if c.status == psutil.CONN_LISTEN]
        assert listening == [("127.0.0.1", port)]
        cmdline = psutil.Process(handle.pid).cmdline()
        assert cmdline[cmdline.index("--listen-fd") + 1].isdigit()
        assert "Address already in use" not in open(handle.log_path).read()

    def test_a_handle_survives_the_runtime_and_steers_the_instance(self, runtime, source, keys,
                                                                  started, tmp_path):
        handle = start(runtime, source, keys, started)
        serving(runtime, handle)
        workers = [p.pid for p in instance_processes(handle)]

        # As the engine will: store the handle as JSON, restart, steer with a new runtime.
        stored = json.loads(json.dumps(handle.to_dict()))
        again = InstanceHandle.from_dict(stored)
        other = LocalProcessRuntime(tmp_path / "instances")
        assert again == handle and other.is_alive(again)
        other.stop(again)

        assert not other.is_alive(again) and not runtime.is_alive(handle)
        assert not [pid for pid in workers if psutil.pid_exists(pid)
                    and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
        assert runtime.health(handle) == {"status": "unreachable",
                                          "reason": "the instance process is not running"}

    def test_a_reused_pid_is_not_the_instance(self, runtime, tmp_path):
        stranger = subprocess.Popen(["sleep", "60"])
        try:
            created = psutil.Process(stranger.pid).create_time()
            handle = InstanceHandle(database_id="x", endpoint_url="http://127.0.0.1:9", pid=stranger.pid,
                                    create_time=created - 1.0, work_dir=str(tmp_path),
                                    settings_path="-", log_path="-", admin_token="-")

            assert not runtime.is_alive(handle)
            runtime.stop(handle)

            assert stranger.poll() is None   # not signalled
        finally:
            stranger.kill()
            stranger.wait()

    def test_stop_kills_what_ignores_sigterm(self, runtime, source, keys, started):
        handle = start(runtime, source, keys, started)
        serving(runtime, handle)
        processes = instance_processes(handle)
        os.kill(handle.pid, signal.SIGSTOP)   # a stopped master cannot act on SIGTERM

        runtime.stop(handle, timeout=1.0)

        assert not runtime.is_alive(handle)
        assert not [p.pid for p in processes if p.is_running()
                    and p.status() != psutil.STATUS_ZOMBIE]

    def test_a_start_that_fails_says_why_and_leaves_nothing(self, source, keys, tmp_path):
        runtime = LocalProcessRuntime(tmp_path / "instances", python="/bin/false")
        before = {p.pid for p in psutil.Process().children(recursive=True)}

        with pytest.raises(InstanceStartError, match="the instance exited with code 1 while starting"):
            runtime.start("db-x", source.settings(), source.artifact, source.password, keys[0])

        after = {p.pid for p in psutil.Process().children(recursive=True)
                 if p.status() != psutil.STATUS_ZOMBIE}
        assert after <= before

    def test_queries_reach_the_instance(self, runtime, source, keys, started):
        handle = start(runtime, source, keys, started)
        serving(runtime, handle)
        answer = requests.post(f"{handle.endpoint_url}/query", data=b"items(id = 3) { label }",
                               headers={"Authorization": f"Bearer {keys[1]}",
                                        "Content-Type": "text/plain"}, timeout=10)
        assert (answer.status_code, answer.json()) == (200, [{"label": "item 3"}])
