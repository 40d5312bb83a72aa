"""The live-server helpers of tests/conftest.py: a slow server never escapes as an error, nothing leaks."""

from __future__ import annotations

import socket
import subprocess

import psutil
import pytest

from tests.conftest import stop_process_group, wait_until_serving


def test_a_server_that_never_answers_fails_the_wait_cleanly(tmp_path):
    # Connections are accepted by the kernel (backlog) but never answered: a ReadTimeout each time.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
        log = tmp_path / "log"
        log.write_text("still starting")
        try:
            with pytest.raises(pytest.fail.Exception, match="the server did not start: still starting"):
                wait_until_serving(f"http://127.0.0.1:{port}/health", proc, log, timeout=3)
        finally:
            stop_process_group(proc)
    assert proc.returncode is not None


def test_stop_kills_a_group_that_ignores_sigterm():
    # A parent ignoring SIGTERM with a child that ignores it too (the ignore is inherited).
    proc = subprocess.Popen(["bash", "-c", 'trap "" TERM; sleep 300 & echo ready; wait'],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout.readline() == "ready\n"
    family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    assert len(family) == 2

    stop_process_group(proc, timeout=1)

    assert proc.returncode is not None
    gone, alive = psutil.wait_procs(family, timeout=5)
    assert alive == []
