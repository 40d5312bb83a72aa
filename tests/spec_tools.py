"""scripts/spec.py as a module for the tests, and the pinned Redocly CLI installed once per session."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from app.config import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "scripts" / "spec.py"


def _load():
    spec = importlib.util.spec_from_file_location("spec_tools_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


spec_script = _load()


@pytest.fixture(scope="session")
def redocly():
    """The pinned Redocly CLI, installed from tools/openapi/package-lock.json with `npm ci` if needed.
    No npm, or an install that fails, fails the tests that need it: they never skip."""
    try:
        return spec_script.ensure_redocly()
    except spec_script.ToolError as exc:
        pytest.fail(str(exc), pytrace=False)
