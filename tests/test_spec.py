"""The spec itself: valid OpenAPI 3.0.3, every field bounded and described, errors listed."""

from __future__ import annotations

import yaml
from openapi_spec_validator import validate

from app.config import DEFAULT_SPEC

SPEC = yaml.safe_load(DEFAULT_SPEC.read_text())
METHODS = ("get", "post", "put", "patch", "delete")


def operations():
    for path, item in SPEC["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def test_is_valid_openapi_3_0_3():
    assert SPEC["openapi"] == "3.0.3"
    validate(SPEC)


def test_no_yaml_slips():
    """An unquoted comma in a flow mapping turns half a description into a key with no value."""
    def walk(node, where):
        if isinstance(node, dict):
            for key, value in node.items():
                assert value is not None or key in ("default", "example"), f"{where}/{key} is null"
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")
    walk(SPEC, "")


def test_operation_ids_are_snake_case_handlers():
    import app.api.handlers as handlers

    for _path, _method, operation in operations():
        operation_id = operation["operationId"]
        assert operation_id == operation_id.lower() and "_" in operation_id, operation_id
        assert callable(getattr(handlers, operation_id, None)), f"no handler {operation_id}"


def test_every_operation_lists_its_errors_with_the_error_schema():
    for path, method, operation in operations():
        responses = operation["responses"]
        assert "500" in responses, f"{method} {path}"
        if operation.get("security", SPEC["security"]):
            assert "401" in responses, f"{method} {path}"
        if "{" in path or "requestBody" in operation:
            assert "400" in responses, f"{method} {path}"
        if "requestBody" in operation:
            assert {"413", "415"} <= set(responses), f"{method} {path}"
        for status, response in responses.items():
            if status.startswith(("4", "5")):
                ref = response.get("$ref") or response["content"]["application/json"]["schema"]["$ref"]
                assert ref.rsplit("/", 1)[1] in {"Error", "BadRequest", "Unauthorized", "Forbidden", "NotFound",
                                                 "Conflict", "PayloadTooLarge", "UnsupportedMediaType",
                                                 "InternalError"}, f"{method} {path} {status}"


def _schemas_everywhere():
    seen = []

    def walk(node, where):
        if isinstance(node, dict):
            if "type" in node and isinstance(node["type"], str):
                seen.append((where, node))
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")
    walk(SPEC["components"]["schemas"], "schemas")
    walk(SPEC["paths"], "paths")
    return seen


def test_every_field_is_bounded():
    for where, schema in _schemas_everywhere():
        kind = schema["type"]
        if kind == "string" and "enum" not in schema:
            assert "maxLength" in schema, f"{where}: string without maxLength"
        if kind == "integer":
            assert "format" in schema and ("maximum" in schema or "enum" in schema), f"{where}: unbounded integer"
        if kind == "array":
            assert "maxItems" in schema, f"{where}: array without maxItems"


def test_every_property_is_described():
    for name, schema in SPEC["components"]["schemas"].items():
        parts = [schema] + [p for p in schema.get("allOf", []) if "properties" in p]
        for part in parts:
            for prop, sub in part.get("properties", {}).items():
                if "$ref" in sub:  # described where it is defined
                    sub = SPEC["components"]["schemas"][sub["$ref"].rsplit("/", 1)[1]]
                assert sub.get("description"), f"{name}.{prop} has no description"
