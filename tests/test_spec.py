"""The spec itself: valid OpenAPI 3.0.3, every field bounded and described, errors listed,
written the way generators and Connexion read it alike, each vocabulary named once."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
import yaml
from connexion.json_schema import resolve_refs
from openapi_schema_validator import OAS30ReadValidator, oas30_format_checker
from openapi_spec_validator import validate

from app.config import DEFAULT_SPEC

SPEC = yaml.safe_load(DEFAULT_SPEC.read_text())
RESOLVED = resolve_refs(SPEC)
METHODS = ("get", "post", "put", "patch", "delete")
# Keys whose value is a payload (an example), not part of the description.
PAYLOAD_KEYS = ("example", "examples")
COMPOSITIONS = ("allOf", "oneOf", "anyOf")


def operations(spec=SPEC):
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def nodes(node, where=""):
    """Every mapping of the description with its JSON pointer-ish location, examples left out."""
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            if key not in PAYLOAD_KEYS:
                yield from nodes(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from nodes(value, f"{where}[{i}]")


def test_is_valid_openapi_3_0_3():
    assert SPEC["openapi"] == "3.0.3"
    validate(SPEC)


def test_no_yaml_slips():
    """An unquoted comma in a flow mapping turns half a description into a key with no value."""
    for where, node in nodes(SPEC):
        if where.startswith("/components/examples/"):
            continue  # example payloads are data: their nulls are real
        for key, value in node.items():
            assert value is not None or key in ("default",), f"{where}/{key} is null"


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
            assert {"401", "429"} <= set(responses), f"{method} {path}"
        if "{" in path or "requestBody" in operation:
            assert "400" in responses, f"{method} {path}"
        if "requestBody" in operation:
            assert {"413", "415"} <= set(responses), f"{method} {path}"
        for status, response in responses.items():
            if status.startswith(("4", "5")):
                ref = response.get("$ref") or response["content"]["application/json"]["schema"]["$ref"]
                assert ref.rsplit("/", 1)[1] in {"Error", "BadRequest", "Unauthorized", "Forbidden", "NotFound",
                                                 "Conflict", "PreconditionFailed", "PayloadTooLarge",
                                                 "UnsupportedMediaType", "TooManyRequests",
                                                 "InternalError"}, f"{method} {path} {status}"


def _schemas_everywhere():
    return [(where, node) for where, node in nodes({"schemas": SPEC["components"]["schemas"],
                                                    "paths": SPEC["paths"]})
            if isinstance(node.get("type"), str)]


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


# -- constructs that generators and Connexion read differently ----------------------------


def generator_traps(spec) -> list[str]:
    """Constructs a client generator (or Connexion) reads otherwise than the spec means.

    - OpenAPI 3.0.3: `nullable: true` does not let null past an `enum` that does not list
      it; openapi-python-client follows that and its model raises on the server's null.
    - An `enum` listing null on a schema that is not nullable: Connexion's type check
      refuses the null the enum promises.
    - In OpenAPI 3.0 every sibling of `$ref` is ignored (a `nullable`, a `description`, a
      `default`): wrap the reference in `allOf` to add to it, or put it in the component.
    - `nullable` beside `allOf`/`oneOf`/`anyOf`: Connexion validates null against the
      parts and refuses it, generators accept it; put `nullable` in the component.
    """
    problems = []
    for where, node in nodes(spec):
        if "$ref" in node and len(node) > 1:
            if "nullable" in node:
                problems.append(f"{where}: `nullable` beside `$ref` is ignored; make the component nullable")
            problems.append(f"{where}: siblings of `$ref` are ignored: {sorted(set(node) - {'$ref'})}")
        if "enum" in node and isinstance(node["enum"], list):
            lists_null = None in node["enum"]
            if node.get("nullable") and not lists_null:
                problems.append(f"{where}: a nullable enum must list null among its values")
            if lists_null and not node.get("nullable"):
                problems.append(f"{where}: an enum listing null must be `nullable: true`")
        if node.get("nullable") and any(key in node for key in COMPOSITIONS):
            problems.append(f"{where}: `nullable` beside {'/'.join(k for k in COMPOSITIONS if k in node)} "
                            "refuses null in Connexion; make the component nullable")
    return problems


def test_no_construct_that_generators_read_differently():
    assert generator_traps(SPEC) == []


@pytest.mark.parametrize("fragment,problem", [
    ({"type": "string", "nullable": True, "enum": ["a", "b"]}, "a nullable enum must list null"),
    ({"type": "string", "enum": ["a", None]}, "an enum listing null must be `nullable: true`"),
    ({"$ref": "#/components/schemas/Uuid", "nullable": True}, "`nullable` beside `$ref`"),
    ({"$ref": "#/components/schemas/Uuid", "description": "An id."}, "siblings of `$ref` are ignored"),
    ({"allOf": [{"$ref": "#/components/schemas/Uuid"}], "nullable": True}, "`nullable` beside allOf"),
])
def test_generator_trap_check_can_fail(fragment, problem):
    broken = {**SPEC, "components": {**SPEC["components"], "schemas": {
        **SPEC["components"]["schemas"], "Broken": {"type": "object", "properties": {"field": fragment}}}}}
    found = generator_traps(broken)
    assert len(found) >= 1 and all("/Broken/properties/field" in p for p in found), found
    assert any(problem in p for p in found), found


# -- each vocabulary written once -----------------------------------------------------------


def repeated_enums(spec) -> dict[tuple, list[str]]:
    """Enums written out in more than one place (null aside): each should be one component."""
    seen: dict[tuple, list[str]] = {}
    for where, node in nodes(spec):
        if isinstance(node.get("enum"), list):
            values = tuple(sorted(str(v) for v in node["enum"] if v is not None))
            seen.setdefault(values, []).append(where)
    return {values: places for values, places in seen.items() if len(places) > 1}


def test_each_enum_is_written_once():
    assert repeated_enums(SPEC) == {}


def test_repeated_enum_check_can_fail():
    copy = {"type": "string", "enum": ["info", "debug", "warn", "error"], "description": "Copy."}
    broken = {**SPEC, "components": {**SPEC["components"],
                                     "schemas": {**SPEC["components"]["schemas"], "Copy": copy}}}
    assert list(repeated_enums(broken)) == [("debug", "error", "info", "warn")]


def test_each_path_parameter_is_a_named_component():
    """Path parameters are written once in components/parameters, named after what they carry."""
    declared = Counter()
    for path, item in SPEC["paths"].items():
        for parameter in item.get("parameters", []):
            assert set(parameter) == {"$ref"}, f"{path}: inline parameter {parameter.get('name')}"
            component = SPEC["components"]["parameters"][parameter["$ref"].rsplit("/", 1)[1]]
            assert "{" + component["name"] + "}" in path, f"{path} does not carry {component['name']}"
            declared[component["name"]] += 1
        for method in METHODS:
            # An operation declares only its query and header parameters (a list's limit, cursor,
            # filters; Idempotency-Key, If-Match).
            for parameter in item.get(method, {}).get("parameters", []):
                assert set(parameter) == {"$ref"}, f"{method} {path}: inline parameter {parameter.get('name')}"
                component = SPEC["components"]["parameters"][parameter["$ref"].rsplit("/", 1)[1]]
                assert component["in"] in ("query", "header"), f"{method} {path}: path parameters belong to the path"
    # An id parameter names its resource: `keyId` would read as the key's public `keyId` field.
    assert all(name.endswith("Id") and name != "keyId" for name in declared), declared


# -- examples -------------------------------------------------------------------------------


def response_examples():
    for path, method, operation in operations(RESOLVED):
        for status, response in operation["responses"].items():
            for media_type, media in response.get("content", {}).items() if status.startswith("2") else ():
                yield f"{method.upper()} {path} {status} {media_type}", media


def test_every_success_response_has_an_example_that_fits_its_schema():
    answers = list(response_examples())
    assert answers
    for where, media in answers:
        examples = media.get("examples", {})
        assert examples or "example" in media, f"{where}: no example"
        values = [e["value"] for e in examples.values()] + ([media["example"]] if "example" in media else [])
        for value in values:
            errors = [e.message for e in OAS30ReadValidator(media["schema"], format_checker=oas30_format_checker)
                      .iter_errors(value)]
            assert errors == [], f"{where}: {errors}"


def test_every_named_example_is_used():
    used = {node["$ref"].rsplit("/", 1)[1]
            for _, media in nodes(SPEC["paths"]) for node in media.get("examples", {}).values()
            if "$ref" in node}
    assert used == set(SPEC["components"].get("examples", {}))


# -- Connexion still accepts and refuses exactly what the spec says ------------------------


def flatten(schema: dict) -> dict:
    """A resolved schema with its `allOf` parts merged in, as a reader of the field sees it."""
    merged = {key: value for key, value in schema.items() if key != "allOf"}
    for part in schema.get("allOf", []):
        merged = {**flatten(part), **merged}
    return merged


def _request_enum_fields():
    """(operation, example body, field path, its schema) for every enum field of a JSON request body."""
    for path, method, operation in operations(RESOLVED):
        if "requestBody" not in operation:
            continue
        media = operation["requestBody"]["content"]["application/json"]
        pending = [((), media["schema"])]
        while pending:
            prefix, schema = pending.pop()
            for name, sub in schema.get("properties", {}).items():
                sub = flatten(sub)
                if "enum" in sub:
                    yield method, path, media["example"], (*prefix, name), sub
                if sub.get("type") == "object" and isinstance(media["example"].get(name), dict):
                    pending.append(((*prefix, name), sub))


ENUM_FIELDS = list(_request_enum_fields())


def test_request_enums_are_all_found():
    found = {(m, p, ".".join(f)) for m, p, _, f, _ in ENUM_FIELDS}
    assert ("patch", "/databases/{databaseId}", "buildComputeOverride") in found
    assert ("post", "/connections", "instance.instanceSize") in found


@pytest.mark.parametrize("method,path,example,field,schema", ENUM_FIELDS,
                         ids=[f"{m.upper()} {p} {'.'.join(f)}" for m, p, _, f, _ in ENUM_FIELDS])
def test_connexion_takes_null_exactly_where_the_enum_is_nullable(client, method, path, example, field,
                                                                 schema):
    """A null reaches the service where the spec lists it; elsewhere it is a 400, as is a stranger."""
    connection = client.post("/connections", {"name": "c", "mysqlHost": "h", "availableSchemas": ["shop"],
                                              "mysqlUser": "u", "mysqlPassword": "s3cret-pass"}).json()
    database = client.post("/databases", {"connectionId": connection["id"], "name": "d",
                                          "mysqlDb": "shop"}).json()
    ids = {"connectionId": connection["id"], "databaseId": database["id"],
           "customerId": database["customerId"]}

    def send(value):
        body = yaml.safe_load(yaml.safe_dump(example))  # a deep copy
        if "connectionId" in body:
            body["connectionId"] = connection["id"]
        if "name" in body:
            body["name"] = f"n-{uuid.uuid4().hex[:8]}"
        target = body
        for part in field[:-1]:
            target = target[part]
        target[field[-1]] = value
        return client.request(method.upper(), path.format(**ids), json_body=body)

    where = ".".join(field)
    null_answer = send(None)
    if schema.get("nullable"):
        assert null_answer.status_code in (200, 201), null_answer.text
        assert send(next(v for v in schema["enum"] if v is not None)).status_code in (200, 201)
    else:
        assert null_answer.status_code == 400, null_answer.text
        assert null_answer.json() == {"error": "invalid_request",
                                      "message": f"{where}: must not be null; leave the field out to keep its value"}
    stranger = send("not-a-member" if schema.get("type") == "string" else 999)
    assert stranger.status_code == 400, stranger.text
    assert stranger.json()["error"] == "invalid_request"
    assert stranger.json()["message"].startswith(f"{where}: "), stranger.json()
