"""CONTRIBUTING.md's worked example stays true: each quoted block is in the file it names, and the
quotes form one chain (the spec's operationId is the handler, which calls the quoted service)."""

from __future__ import annotations

import re

import pytest
import yaml

import app.api.handlers as handlers
from app.config import PROJECT_ROOT

GUIDE = (PROJECT_ROOT / "CONTRIBUTING.md").read_text()
QUOTE = re.compile(r"<!-- quote: (?P<path>\S+) -->\n```(?P<lang>\w+)\n(?P<text>.*?)```\n", re.S)
QUOTES = [(m["path"], m["lang"], m["text"]) for m in QUOTE.finditer(GUIDE)]


def _quoted(path_prefix: str) -> list[str]:
    return [text for path, _lang, text in QUOTES if path.startswith(path_prefix)]


def test_the_guide_quotes_each_of_the_five_steps():
    assert {path for path, _lang, _text in QUOTES} >= {
        "openapi/openapi.yaml", "app/api/handlers/management_keys.py", "app/api/handlers/__init__.py",
        "app/domain/management_keys.py", "tests/api/test_management_keys.py", "docs/architecture.md"}


@pytest.mark.parametrize("path,lang,text", QUOTES, ids=[f"{p}:{i}" for i, (p, _l, _t) in enumerate(QUOTES)])
def test_each_quote_is_in_the_file_it_names(path, lang, text):
    source = (PROJECT_ROOT / path).read_text()
    assert text.rstrip("\n") in source, (
        f"CONTRIBUTING.md quotes {path}, which no longer holds that text: update the guide's worked example")


def test_the_quotes_form_one_chain():
    (spec_text,) = [t for t in _quoted("openapi/openapi.yaml") if "operationId" in t]
    path, item = next(iter(yaml.safe_load(spec_text).items()))
    (method, operation), = [(m, o) for m, o in item.items() if m != "parameters"]
    operation_id = operation["operationId"]

    (handler_text,) = _quoted("app/api/handlers/management_keys.py")
    assert handler_text.startswith(f"def {operation_id}("), "the handler is named by the operationId"
    assert callable(getattr(handlers, operation_id)), "Connexion finds it in app.api.handlers"

    (service_text,) = _quoted("app/domain/")
    service = re.match(r"def (\w+)\(", service_text)[1]
    assert f"management_keys.{service}(" in handler_text, "the handler calls the quoted service"

    # The quoted tests call the operation the spec quote declares.
    url = re.escape(path.split("{")[0])
    calls = re.findall(rf"client\.{method}\(f\"{url}", "".join(_quoted("tests/")))
    assert len(calls) == 3, calls


def test_the_commands_it_names_exist():
    for script in set(re.findall(r"scripts/\w+\.py", GUIDE)):
        assert (PROJECT_ROOT / script).exists(), script
    for subcommand in set(re.findall(r"scripts/spec\.py (\w+)", GUIDE)):
        assert subcommand in {"lint", "breaking", "reference"}, subcommand
