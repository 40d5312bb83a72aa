"""The spec lint (Redocly CLI with tools/openapi/redocly.yaml): the checked-in spec is clean, and a
spec breaking any one rule is caught by that rule, at the place it is broken."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import yaml

from app.config import DEFAULT_SPEC
from tests.spec_tools import SCRIPT, redocly, spec_script  # noqa: F401  (redocly is a fixture)

SPEC = yaml.safe_load(DEFAULT_SPEC.read_text())


def _schema(spec, name):
    return spec["components"]["schemas"][name]


def _operation(spec, path, method):
    return spec["paths"][path][method]


# Each fixture: the checked-in spec with one defect, the rule that must catch it and where.
# They change parts of the spec that no parallel work removes (connections, their schemas).
FIXTURES = {
    "operationId missing": (
        lambda s: _operation(s, "/connections", "get").pop("operationId"),
        "operation-operationId", "#/paths/~1connections/get/operationId"),
    "operationId not snake_case": (
        lambda s: _operation(s, "/connections", "get").update(operationId="listConnections"),
        "rule/operation-id-snake-case", "#/paths/~1connections/get/operationId"),
    "operationId used twice": (
        lambda s: _operation(s, "/connections", "post").update(operationId="list_connections"),
        "operation-operationId-unique", "#/paths/~1connections/post/list_connections"),
    "operation without summary": (
        lambda s: _operation(s, "/connections", "get").pop("summary"),
        "operation-summary", "#/paths/~1connections/get/summary"),
    "property without description": (
        lambda s: _schema(s, "ConnectionCreate")["properties"]["name"].pop("description"),
        "reflexdb/described-fields", "#/components/schemas/ConnectionCreate/properties/name"),
    "parameter without description": (
        lambda s: s["components"]["parameters"]["ConnectionId"].pop("description"),
        "parameter-description", "#/components/parameters/ConnectionId"),
    "operation without 500": (
        lambda s: _operation(s, "/connections", "get")["responses"].pop("500"),
        "reflexdb/error-responses", "#/paths/~1connections/get/responses"),
    "secured operation without 401": (
        lambda s: _operation(s, "/connections", "get")["responses"].pop("401"),
        "reflexdb/error-responses", "#/paths/~1connections/get/responses"),
    "operation on an id without 400": (
        lambda s: _operation(s, "/connections/{connectionId}", "get")["responses"].pop("400"),
        "reflexdb/error-responses", "#/paths/~1connections~1{connectionId}/get/responses"),
    "body without 415": (
        lambda s: _operation(s, "/connections", "post")["responses"].pop("415"),
        "reflexdb/error-responses", "#/paths/~1connections/post/responses"),
    "error response in another shape": (
        lambda s: _operation(s, "/connections", "post")["responses"].update({"409": {
            "description": "Conflict.", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"detail": {"type": "string", "maxLength": 10,
                                                            "description": "What."}}}}}}}),
        "reflexdb/error-responses", "#/paths/~1connections/post/responses/409"),
    "request body without example": (
        lambda s: _operation(s, "/connections", "post")["requestBody"]["content"]["application/json"]
        .pop("example"),
        "reflexdb/examples", "#/paths/~1connections/post/requestBody/content/application~1json"),
    "success answer without example": (  # its example is also used by POST /connections: not left unused
        lambda s: _operation(s, "/connections/{connectionId}", "get")["responses"]["200"]["content"]
        ["application/json"].pop("examples"),
        "reflexdb/examples",
        "#/paths/~1connections~1{connectionId}/get/responses/200/content/application~1json"),
    "example that contradicts its schema": (
        lambda s: _operation(s, "/connections", "post")["requestBody"]["content"]["application/json"]
        ["example"].update(mysqlPort="3306"),
        "no-invalid-media-type-examples",
        "#/paths/~1connections/post/requestBody/content/application~1json/example/mysqlPort"),
    "string without maxLength": (
        lambda s: _schema(s, "ConnectionCreate")["properties"]["name"].pop("maxLength"),
        "reflexdb/bounded-values", "#/components/schemas/ConnectionCreate/properties/name/type"),
    "integer without maximum": (
        lambda s: _schema(s, "ConnectionCreate")["properties"]["mysqlPort"].pop("maximum"),
        "reflexdb/bounded-values", "#/components/schemas/ConnectionCreate/properties/mysqlPort/type"),
    "integer without minimum": (
        lambda s: _schema(s, "ConnectionCreate")["properties"]["syncInterval"].pop("minimum"),
        "reflexdb/bounded-values", "#/components/schemas/ConnectionCreate/properties/syncInterval/type"),
    "integer without format": (
        lambda s: _schema(s, "ConnectionCreate")["properties"]["mysqlPort"].pop("format"),
        "reflexdb/bounded-values", "#/components/schemas/ConnectionCreate/properties/mysqlPort/type"),
    "array without maxItems": (
        lambda s: _schema(s, "ConnectionCreate")["properties"]["availableSchemas"].pop("maxItems"),
        "reflexdb/bounded-values",
        "#/components/schemas/ConnectionCreate/properties/availableSchemas/type"),
    "unbounded query parameter": (
        lambda s: _operation(s, "/connections", "get").update(parameters=[{
            "name": "limit", "in": "query", "description": "Page size.",
            "schema": {"type": "integer", "format": "int32", "minimum": 1}}]),
        "reflexdb/bounded-values", "#/paths/~1connections/get/parameters/0/schema/type"),
    "inline enum repeating a component's": (
        lambda s: _schema(s, "ConnectionCreate")["properties"].update(logLevel={
            "type": "string", "enum": ["debug", "info", "warn", "error"], "description": "Log level."}),
        "reflexdb/enum-defined-once", "#/components/schemas/ConnectionCreate/properties/logLevel/enum"),
}


def _problems(report: dict, path) -> set[tuple[str, str]]:
    return {(p["ruleId"], p["location"][0]["pointer"]) for p in report["problems"]
            if p["location"][0]["source"]["ref"] == str(path.resolve())}


@pytest.fixture(scope="module")
def linted(redocly, tmp_path_factory):  # noqa: F811
    """One lint run over the checked-in spec and every fixture: name -> its problems."""
    folder = tmp_path_factory.mktemp("lint-fixtures")
    paths = {"checked-in": folder / "checked-in.yaml"}
    paths["checked-in"].write_text(DEFAULT_SPEC.read_text())
    for i, (name, (breaks, _rule, _where)) in enumerate(FIXTURES.items()):
        broken = copy.deepcopy(SPEC)
        breaks(broken)
        paths[name] = folder / f"fixture-{i}.yaml"
        paths[name].write_text(yaml.safe_dump(broken, sort_keys=False))
    report = spec_script.lint_report(list(paths.values()))
    return {name: _problems(report, path) for name, path in paths.items()}


def test_the_checked_in_spec_passes_the_lint(linted):
    assert linted["checked-in"] == set(), (
        "the spec breaks the lint rules; run `.venv/bin/python scripts/spec.py lint` for the report "
        "(what each rule asks for: tools/openapi/README.md)")


@pytest.mark.parametrize("name", FIXTURES)
def test_each_broken_rule_is_caught_where_it_is_broken(linted, name):
    _breaks, rule, where = FIXTURES[name]
    # Whatever else the checked-in spec reports (e.g. after a merge), the defect adds exactly this.
    assert linted[name] - linted["checked-in"] == {(rule, where)}


def test_the_command_fails_on_a_broken_spec_and_passes_the_checked_in_one(redocly, tmp_path):  # noqa: F811
    broken = copy.deepcopy(SPEC)
    _schema(broken, "ConnectionCreate")["properties"]["name"].pop("maxLength")
    path = tmp_path / "openapi.yaml"
    path.write_text(yaml.safe_dump(broken, sort_keys=False))
    failed = subprocess.run([sys.executable, str(SCRIPT), "lint", str(path)], capture_output=True, text=True)
    assert failed.returncode == 1
    assert "reflexdb/bounded-values" in failed.stdout + failed.stderr
    assert "A string without `maxLength` (or an `enum`)" in failed.stdout + failed.stderr
    passed = subprocess.run([sys.executable, str(SCRIPT), "lint"], capture_output=True, text=True)
    assert passed.returncode == 0, passed.stdout + passed.stderr
