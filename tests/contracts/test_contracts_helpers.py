"""The helpers both planes share: places in a document, schema errors in English, atomic files,
timestamps."""

from __future__ import annotations

import json
import os
import stat
import threading
from datetime import datetime, timedelta, timezone

import jsonschema
import pytest

from app.contracts.files import write_atomic
from app.contracts.messages import JSON_TERMS, YAML_TERMS, describe_schema_error, field_path
from app.contracts.query_keys import parse_keys_file, write_keys_file
from app.contracts.timestamps import parse_rfc3339, rfc3339


@pytest.mark.parametrize("parts,path", [
    (("tables", 2, "columns", 0), "tables[2].columns[0]"),
    (("instance", "mysqlDb"), "instance.mysqlDb"),
    (("tables[0]", "name"), "tables[0].name"),
    (("", "limit"), "limit"),
    ((None, "tags", 0, "color"), "tags[0].color"),
    ((), ""),
])
def test_field_path(parts, path):
    assert field_path(*parts) == path


SCHEMA = {"type": "object", "additionalProperties": False, "required": ["name"],
          "properties": {"name": {"type": "string", "maxLength": 3},
                         "items": {"type": "array", "maxItems": 1, "uniqueItems": True,
                                   "items": {"type": "object"}}}}


def describe(document, terms):
    error = next(jsonschema.Draft202012Validator(SCHEMA).iter_errors(document))
    return describe_schema_error(error, terms)


@pytest.mark.parametrize("document,json_words,yaml_words", [
    ({}, ("name", "is required"), ("name", "is required")),
    ({"name": "a", "x": 1, "y": 2},
     ("", "unknown or read-only fields 'x', 'y'; accepted fields: items, name"),
     ("", "unknown keys 'x', 'y'; accepted keys: items, name")),
    ({"name": 1}, ("name", "must be a string, got a number"), ("name", "must be a string, got a number")),
    ({"name": None}, ("name", "must not be null; leave the field out to keep its value"),
     ("name", "must not be null")),
    ({"name": "abcd"}, ("name", "must be at most 3 characters long"),
     ("name", "must be at most 3 characters long")),
    ({"name": "a", "items": [{}, {}]}, ("items", "must have at most 1 item (it has 2)"),
     ("items", "must have at most 1 item (it has 2)")),
    ({"name": "a", "items": [True]}, ("items[0]", "must be a JSON object, got true or false"),
     ("items[0]", "must be a mapping, got true/false")),
    ([], ("", "the request body must be a JSON object"), ("", "the schema config must be a mapping")),
])
def test_one_translator_two_vocabularies(document, json_words, yaml_words):
    assert describe(document, JSON_TERMS) == json_words
    assert describe(document, YAML_TERMS) == yaml_words


@pytest.fixture
def open_umask():
    """No umask: a file's mode is what its writer asked for, nothing less."""
    previous = os.umask(0)
    yield
    os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_write_atomic_replaces_the_file_whole(tmp_path, open_umask):
    path = tmp_path / "settings.json"
    write_atomic(path, "old")
    write_atomic(path, "new ✓")
    assert path.read_text(encoding="utf-8") == "new ✓"
    assert mode(path) == 0o666
    assert os.listdir(tmp_path) == ["settings.json"]


def test_a_private_file_is_private_from_its_creation(tmp_path, open_umask):
    path = tmp_path / "keys.json"
    # A temporary file a crashed writer left behind, readable by all: its mode must not survive.
    stale = tmp_path / f"keys.json.tmp{os.getpid()}.{threading.get_ident()}"
    stale.write_text("stale")
    stale.chmod(0o644)
    write_keys_file(str(path), "s3cret", {"k1": None, "k2": "2030-01-01T00:00:00Z"})
    assert mode(path) == 0o600
    assert os.listdir(tmp_path) == ["keys.json"]
    keys = parse_keys_file(json.loads(path.read_text()))
    assert (keys.secret, keys.expires) == ("s3cret", {
        "k1": None, "k2": datetime(2030, 1, 1, tzinfo=timezone.utc)})


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "keys.json"
    write_atomic(path, "old")
    with pytest.raises(UnicodeEncodeError):
        write_atomic(path, "bad \ud800")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["keys.json"]


@pytest.mark.parametrize("value,text", [
    (datetime(2030, 1, 2, 3, 4, 5, 6), "2030-01-02T03:04:05.000006Z"),     # naive: stored UTC
    (datetime(2030, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2))), "2030-01-02T03:04:05.000000Z"),
    (None, None),
])
def test_rfc3339(value, text):
    assert rfc3339(value) == text
    if text:
        assert parse_rfc3339(text) == (value if value.tzinfo else value.replace(tzinfo=timezone.utc))
