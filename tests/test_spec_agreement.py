"""The spec and the marshmallow schemas state the same contract, field by field.

HTTP requests are checked by the spec, every other caller by marshmallow: if the
two drifted, the same payload would be accepted on one path and refused on the other.
"""

from __future__ import annotations

import pytest
import yaml
from marshmallow import fields, validate

from app.config import DEFAULT_SPEC
from app.domain import schemas

SPEC = yaml.safe_load(DEFAULT_SPEC.read_text())
PAIRS = [
    ("ConnectionCreate", schemas.ConnectionCreateSchema),
    ("ConnectionUpdate", schemas.ConnectionUpdateSchema),
    ("InstanceCreate", schemas.InstanceCreateSchema),
    ("DatabaseCreate", schemas.DatabaseCreateSchema),
    ("DatabaseUpdate", schemas.DatabaseUpdateSchema),
    ("Tag", schemas.TagSchema),
    ("ManagementKeyCreate", schemas.ManagementKeyCreateSchema),
    ("QueryKeyCreate", schemas.QueryKeyCreateSchema),
    ("ResizeRequest", schemas.ResizeSchema),
    ("RedeployRequest", schemas.RedeploySchema),
    ("PlanUpdate", schemas.PlanUpdateSchema),
    ("BuildCreditAdjustment", schemas.BuildCreditAdjustmentSchema),
]


def resolve(node: dict) -> dict:
    """Follow `$ref` and single-element `allOf` wrappers to the schema they stand for."""
    if "$ref" in node:
        return resolve(SPEC["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]])
    if "allOf" in node and len(node["allOf"]) == 1:
        merged = {**resolve(node["allOf"][0]), **{k: v for k, v in node.items() if k != "allOf"}}
        return merged
    return node


def constraints_of_spec(node: dict) -> dict:
    node = resolve(node)
    out = {"type": node.get("type"), "nullable": bool(node.get("nullable"))}
    for key in ("minLength", "maxLength", "minimum", "maximum", "minItems", "maxItems", "pattern", "default"):
        if key in node:
            out[key] = node[key]
    if "enum" in node:
        out["enum"] = sorted(node["enum"])
    if node.get("uniqueItems"):
        out["uniqueItems"] = True
    if node.get("type") == "array":
        out["items"] = constraints_of_spec(node["items"])
    if node.get("type") == "object":
        out["properties"] = {name: constraints_of_spec(sub) for name, sub in node.get("properties", {}).items()}
        out["required"] = sorted(node.get("required", []))
    if node.get("format") == "uuid":
        # The spec spells a UUID with a pattern and both lengths; marshmallow's UUID field knows it.
        out = {"type": "uuid", "nullable": out["nullable"]}
    if node.get("format") == "date-time":
        out = {"type": "date-time", "nullable": out["nullable"]}
    return out


def constraints_of_field(field: fields.Field) -> dict:
    if isinstance(field, fields.UUID):
        return {"type": "uuid", "nullable": field.allow_none}
    if isinstance(field, fields.DateTime):
        return {"type": "date-time", "nullable": field.allow_none}
    kind = {fields.String: "string", fields.Integer: "integer", fields.List: "array",
            fields.Nested: "object"}
    out = {"type": next(v for k, v in kind.items() if isinstance(field, k)), "nullable": field.allow_none}
    if isinstance(field, fields.Integer):
        assert field.strict, f"{field.data_key}: integers must be strict, as JSON Schema's are"
    for validator in field.validators:
        if isinstance(validator, validate.Length):
            lo, hi = ("minItems", "maxItems") if out["type"] == "array" else ("minLength", "maxLength")
            if validator.min is not None:
                out[lo] = validator.min
            if validator.max is not None:
                out[hi] = validator.max
        elif isinstance(validator, validate.Range):
            out["minimum"], out["maximum"] = validator.min, validator.max
        elif isinstance(validator, validate.OneOf):
            out["enum"] = sorted(validator.choices)
        elif isinstance(validator, validate.Regexp):
            out["pattern"] = validator.regex.pattern
        elif getattr(validator, "__name__", "") == "_unique":
            out["uniqueItems"] = True
    default = field.load_default
    if default is not None and not callable(default) and default is not fields.missing_:
        out["default"] = default
    if isinstance(field, fields.List):
        out["items"] = constraints_of_field(field.inner)
    if isinstance(field, fields.Nested):
        out.update(constraints_of_schema(field.schema))
    return out


def constraints_of_schema(schema) -> dict:
    loadable = {f.data_key or name: f for name, f in schema.fields.items() if not f.dump_only}
    return {
        "properties": {key: constraints_of_field(f) for key, f in loadable.items()},
        "required": sorted(key for key, f in loadable.items() if f.required),
    }


@pytest.mark.parametrize("spec_name,schema_class", PAIRS, ids=[p[0] for p in PAIRS])
def test_spec_and_marshmallow_agree(spec_name, schema_class):
    spec = constraints_of_spec(SPEC["components"]["schemas"][spec_name])
    ours = {"type": "object", "nullable": False, **constraints_of_schema(schema_class())}
    assert set(spec["properties"]) == set(ours["properties"]), "the two name different fields"
    for name in spec["properties"]:
        assert spec["properties"][name] == ours["properties"][name], f"{spec_name}.{name} differs"
    assert spec == ours


# Bodies checked by another schema than marshmallow: reflexdb.yaml has its own JSON Schema,
# shared with the build (which reads the same file from disk).
VALIDATED_ELSEWHERE = {"SchemaConfig"}


def test_schema_config_spec_matches_its_json_schema():
    from app.contracts.schema_config import SCHEMA

    spec = SPEC["components"]["schemas"]["SchemaConfig"]
    assert spec["required"] == SCHEMA["required"] == ["version"]
    assert spec["properties"]["version"]["enum"] == [SCHEMA["properties"]["version"]["const"]]
    documented = spec["description"]
    for key in SCHEMA["properties"]:
        assert key in documented, f"SchemaConfig's description does not mention {key!r}"


def test_every_request_body_schema_is_covered():
    covered = {name for name, _ in PAIRS} | VALIDATED_ELSEWHERE
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            body = operation.get("requestBody") if isinstance(operation, dict) else None
            if body:
                ref = body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
                assert ref in covered, f"{method.upper()} {path} uses {ref}, which no marshmallow schema mirrors"


def test_agreement_check_can_fail():
    """The comparison notices a changed bound (guards against a vacuous test)."""
    changed = schemas.ConnectionUpdateSchema()
    changed.fields["mysql_port"].validators = [validate.Range(min=1, max=65534)]
    spec = constraints_of_spec(SPEC["components"]["schemas"]["ConnectionUpdate"])
    assert constraints_of_schema(changed)["properties"]["mysqlPort"] != spec["properties"]["mysqlPort"]
