"""Schemathesis over every operation of the spec, against the app under gunicorn on PostgreSQL.

Whatever it sends, valid or not, every answer must have a status the spec lists,
the content type and shape the spec gives, and never be a 500. The seed is fixed,
so a failure reproduces; the run prints the curl command of each failing case.
For a deeper hunt: REFLEXDB_TEST_ST_EXAMPLES=300 REFLEXDB_TEST_ST_SEED=<any> pytest tests/test_schemathesis.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import make_customer

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def test_every_operation_answers_as_documented(live_server):
    _, key = make_customer("Schemathesis", plan="teams")
    examples = os.environ.get("REFLEXDB_TEST_ST_EXAMPLES", "40")
    seed = os.environ.get("REFLEXDB_TEST_ST_SEED", "20261126")
    st = Path(sys.executable).parent / "st"
    result = subprocess.run(
        [str(st), "run", f"{live_server}/openapi.json", "--header", f"Authorization: Bearer {key}",
         "--checks", CHECKS, "--max-examples", examples, "--seed", seed, "--no-color"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false"},
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
