"""Tests that try to break the control plane with generated bodies (issue 6): JSON for every
operation that takes a body, YAML for the schema config. Whatever is sent, the answer is a 2xx
or a 4xx `{error, message}`, never a 500, and it comes within a second."""

from __future__ import annotations

import json
import time

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.config import DEFAULT_SPEC

NIL = "00000000-0000-4000-8000-000000000000"
# Each answer must come within this many seconds (the safety bound).
WITHIN = 1.0

FUZZ = settings(max_examples=150, deadline=None, derandomize=False,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])

# -- JSON ----------------------------------------------------------------------------------

API_FIELDS = ["name", "mysqlHost", "mysqlPort", "availableSchemas", "mysqlUser", "mysqlPassword",
              "backend", "syncMode", "syncInterval", "instance", "connectionId", "mysqlDb",
              "instanceSize", "logLevel", "binlogServerId", "tags", "label", "color",
              "pauseSchedule", "pauseAt", "resumeAt", "days", "expiresAt", "buildId", "plan",
              "amount", "reason", "reflexdbCustomDomain", "buildComputeOverride", "version",
              "tables", "where", "where_columns", "columns", "field_notes"]
# Every code point, lone surrogates and NUL included.
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=30)
PLAUSIBLE = st.sampled_from(["shop", "db.example.com", "poll", "binlog", "nano", "info", "pro",
                             "2030-01-01T00:00:00Z", "12:00", NIL, "users", "a = 1", ""])

json_scalars = (st.none() | st.booleans() | st.integers(-(10 ** 25), 10 ** 25)
                | st.integers(0, 70000) | st.floats(allow_nan=False, allow_infinity=False)
                | ANY_TEXT | PLAUSIBLE)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(API_FIELDS) | ANY_TEXT, children, max_size=6),
    max_leaves=30)


def _deep(opening: str, closing: str, inner: str = ""):
    return st.integers(0, 20_000).map(lambda n: opening * n + inner + closing * n)


pathological_json = st.one_of(
    _deep("[", "]"),
    _deep('{"a":', "}", "1"),
    st.integers(1, 6000).map(lambda n: '{"name": "x", "mysqlPort": ' + "9" * n + "}"),
    st.integers(1, 6000).map(lambda n: '{"name": -' + "1" * n + ".5e" + "9" * min(n, 400) + "}"),
    st.sampled_from(API_FIELDS).map(lambda key: f'{{"{key}": 1, "{key}": 2}}'),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1E400", "1e-999", "0x10", "01",
                     "true", "null", '"\\u0000"', '"\\ud800"', '"\\udfff\\ud800"']).map(
        lambda literal: '{"name": %s, "mysqlPort": %s}' % (literal, literal)),
    st.binary(max_size=300),
    st.text(max_size=300),
)
json_bodies = st.one_of(json_values.map(json.dumps), json_values.map(lambda v: json.dumps(v, ensure_ascii=False)),
                        pathological_json)
content_types = st.sampled_from(["application/json"] * 6 + [
    "application/json; charset=utf-8", "application/json;charset=latin-1", "application/json;charset=nope",
    "text/plain", "application/yaml", "application/x-www-form-urlencoded", None])


def operations_with_bodies() -> list[tuple[str, str]]:
    spec = yaml.safe_load(DEFAULT_SPEC.read_text())
    return sorted((method.upper(), path) for path, item in spec["paths"].items()
                  for method, operation in item.items()
                  if isinstance(operation, dict) and "requestBody" in operation)


def assert_well_formed(response, elapsed: float) -> None:
    assert elapsed < WITHIN, f"answered in {elapsed:.2f}s"
    assert response.status_code < 500, response.text
    if response.status_code == 204:
        assert response.content == b""
        return
    assert response.headers["content-type"] == "application/json", response.headers
    body = response.json()
    if response.status_code >= 400:
        assert set(body) == {"error", "message"}, body
        assert isinstance(body["error"], str) and isinstance(body["message"], str)


def send(client, method: str, path: str, content, content_type: str | None):
    headers = {"Content-Type": content_type} if content_type else {}
    started = time.perf_counter()
    response = client.request(method, path, content=content.encode("utf-8", "surrogatepass")
                              if isinstance(content, str) else content, headers=headers)
    return response, time.perf_counter() - started


@pytest.fixture
def targets(client, connection, database):
    ids = {"{connectionId}": connection["id"], "{databaseId}": database["id"], "{keyId}": NIL,
           "{customerId}": NIL, "{id}": NIL, "{buildId}": NIL}

    def concrete(path):
        for name, value in ids.items():
            path = path.replace(name, value)
        return path

    return [(method, concrete(path)) for method, path in operations_with_bodies()]


@FUZZ
@given(data=st.data(), body=json_bodies, content_type=content_types)
def test_json_bodies(client, targets, data, body, content_type):
    method, path = data.draw(st.sampled_from(targets), label="operation")
    response, elapsed = send(client, method, path, body, content_type)
    assert_well_formed(response, elapsed)


# -- YAML (the schema config) --------------------------------------------------------------

CONFIG_KEYS = ["version", "tables", "name", "alias", "columns", "where", "where_columns",
               "relations", "include", "exclude", "reverse_relations", "field_aliases", "field_notes"]
FILTERS = ["a = 1", 'name = "x"', 'age >= 18 AND plan = "pro"', "deleted_at IS NULL",
           "(a = 1 OR b = 2)", "a IN (1, 2, 3)", "a BETWEEN 1 AND 5", "NOT a = 1", ">>", "a = ",
           "((((a = 1))))", 'a LIKE "%x%"', "a.b.c = 1", "a = 1 OR " * 50 + "a = 1"]
NAMES = st.sampled_from(["users", "posts", "id", "name", "email", "tenant_id", "1st", "a b"]) | ANY_TEXT

yaml_scalars = (st.none() | st.booleans() | st.integers(-(10 ** 30), 10 ** 30) | st.floats()
                | st.dates() | ANY_TEXT | st.sampled_from(FILTERS))
yaml_trees = st.recursive(
    yaml_scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(CONFIG_KEYS) | NAMES | st.integers(-5, 5) | st.booleans(),
                      children, max_size=6),
    max_leaves=30)
tables = st.fixed_dictionaries({"name": NAMES}, optional={
    "alias": NAMES, "columns": st.lists(NAMES, max_size=5), "where": st.sampled_from(FILTERS) | ANY_TEXT,
    "relations": st.dictionaries(st.sampled_from(["include", "exclude"]), st.lists(NAMES, max_size=3)),
    "reverse_relations": st.fixed_dictionaries({"exclude": st.lists(NAMES, max_size=3)}),
    "field_aliases": st.dictionaries(NAMES, NAMES, max_size=3),
    "field_notes": st.dictionaries(NAMES, ANY_TEXT | yaml_scalars, max_size=3),
})
configs = st.fixed_dictionaries({"version": st.sampled_from([1, 1, 1, 2, "1", None])}, optional={
    "tables": st.lists(tables, max_size=6), "where": st.sampled_from(FILTERS),
    "where_columns": st.lists(NAMES, max_size=3)})


def _dump(tree, flow: bool) -> str | None:
    try:
        return yaml.safe_dump(tree, default_flow_style=flow, allow_unicode=True)
    except (yaml.YAMLError, UnicodeEncodeError):
        return None


def _block_nesting(depth: int) -> str:
    return "version: 1\nx:\n" + "".join(" " * level + "a:\n" for level in range(1, depth))


pathological_yaml = st.one_of(
    _deep("[", "]").map(lambda text: "version: 1\ntables: " + text),
    _deep("{a: ", "}", "1").map(lambda text: "version: 1\nx: " + text),
    st.integers(1, 3000).map(_block_nesting),
    st.integers(1, 6000).map(lambda n: "version: " + "1" * n),
    st.integers(1, 500).map(lambda n: "version: " + ":".join(["59"] * n)),
    st.sampled_from([
        "version: 1\n1: a\nfoo: b", "version: 1\nyes: a\nno: b", "version: 1\n~: x", "? [a, b]\n: c",
        "version: 1\nversion: 1", "a: &a [1, 2]\nb: [*a, *a, *a]", "a: &a [*a]",
        "version: !!python/object/apply:os.system [ls]", "version: !!binary aGVsbG8=",
        "version: !!set {a, b}", "version: !!timestamp 2001-12-14", "version: 1\n---\nversion: 1",
        "\ufeffversion: 1", "version:\t1", "version: 1\x00", "version: 1\n<<: {tables: []}",
        'version: 1\ntables:\n  - name: "\\0"', 'version: 1\ntables:\n  - name: "\\ud800"',
        "version: .nan", "version: .inf", "version: 1.0", "version: 0x1", "version: 0b1",
        "version: 1\ntables: [{name: users, where: '" + "(" * 40 + "a = 1" + ")" * 40 + "'}]",
        "version: 1\ntables: [{name: users, where: '" + "NOT " * 40 + "a = 1'}]",
    ]),
    st.text(max_size=300),
    st.binary(max_size=300),
)
yaml_bodies = st.one_of(
    st.builds(_dump, yaml_trees, st.booleans()).filter(lambda text: text is not None),
    st.builds(_dump, configs, st.booleans()).filter(lambda text: text is not None),
    pathological_yaml,
)


@FUZZ
@given(body=yaml_bodies)
def test_yaml_config_bodies(client, database, body):
    response, elapsed = send(client, "PUT", f"/databases/{database['id']}/config", body, "application/yaml")
    assert_well_formed(response, elapsed)


@FUZZ
@given(config=configs | yaml_trees)
def test_json_config_bodies(client, database, config):
    response, elapsed = send(client, "PUT", f"/databases/{database['id']}/config",
                             json.dumps(config, default=str), "application/json")
    assert_well_formed(response, elapsed)
