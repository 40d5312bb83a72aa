"""Run the whole test suite as two halves at once: `.venv/bin/python scripts/test.py [PYTEST ARGS]`.

The suite mostly waits (on processes it starts, on servers, on deadlines): run one half after
the other and a 2-core machine sits half idle for over 20 minutes. The two halves run
concurrently, each with its own control-plane store database (`REFLEXDB_TEST_PG_DB` + `_a` /
`_b`; conftest.py creates a missing one). Everything that starts instances and engine workers
(which share the default job queue) is in the first half, so the halves never share a queue.
Each half's output is printed when it ends; the exit status is the first failing half's.

With arguments (paths, `-k`, ...) it is plain pytest: one run of what you asked for.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Instances, engine workers, change capture, the benchmark smoke run; and the zero-downtime
# deploys (no queue; a minute of waiting), which balance the halves (7 and 9 minutes without).
FIRST_HALF = ["tests/engine", "tests/lifecycle", "tests/cdc", "tests/instance",
              "tests/test_end_to_end.py", "tests/bench", "tests/test_zero_downtime.py"]


def main(argv: list[str]) -> int:
    pytest = [sys.executable, "-m", "pytest"]
    if argv:
        return subprocess.call(pytest + argv, cwd=ROOT)
    base = os.environ.get("REFLEXDB_TEST_PG_DB", "reflexdb_test")
    halves = {
        "first half": (pytest + FIRST_HALF, f"{base}_a"),
        "second half": (pytest + ["tests"] + [f"--ignore={path}" for path in FIRST_HALF], f"{base}_b"),
    }
    running = []
    for name, (command, database) in halves.items():
        output = tempfile.TemporaryFile()
        process = subprocess.Popen(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT,
                                   env={**os.environ, "REFLEXDB_TEST_PG_DB": database})
        print(f"tests: {name} started ({' '.join(command[3:])[:120]}...)", flush=True)
        running.append((name, process, output))
    status = 0
    for name, process, output in running:
        code = process.wait()
        output.seek(0)
        sys.stdout.write(f"\n===== {name}: exit {code} =====\n")
        sys.stdout.flush()
        sys.stdout.buffer.write(output.read())
        sys.stdout.flush()
        status = status or code
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
