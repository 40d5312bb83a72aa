"""Connexion's request validators with messages that name the field and say what to send."""

from __future__ import annotations

from connexion.datastructures import MediaTypeDict
from connexion.exceptions import BadRequestProblem
from connexion.json_schema import Draft4RequestValidator
from connexion.utils import is_null, is_nullable
from connexion.validators import VALIDATOR_MAP, JSONRequestBodyValidator, ParameterValidator
from jsonschema import Draft4Validator, ValidationError

UUID_PATTERN_PREFIX = "^[0-9a-fA-F]{8}-"
_JSON_TYPES = {"string": "a string", "integer": "an integer", "number": "a number",
               "boolean": "true or false", "array": "an array", "object": "an object"}


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _path(parts) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def describe(error: ValidationError, name: str = "") -> str:
    """One sentence: `<field>: <what is wrong>`."""
    path = _path(error.absolute_path) or name
    kind, limit, value = error.validator, error.validator_value, error.instance
    if kind == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return f"{path + '.' if path else ''}{missing}: is required"
    if kind == "additionalProperties":
        extra = sorted(set(value) - set(error.schema.get("properties", {})))
        where = f" in {path}" if path else ""
        allowed = ", ".join(error.schema.get("properties", {}))
        return (f"unknown or read-only field{'s' if len(extra) > 1 else ''} "
                f"{', '.join(repr(e) for e in extra)}{where}; accepted fields: {allowed}")
    if kind == "type":
        if not path:
            return "the request body must be a JSON object"
        if value is None:
            return f"{path}: must not be null; leave the field out to keep its value"
        expected = limit if isinstance(limit, str) else limit[0]
        return f"{path}: must be {_JSON_TYPES.get(expected, expected)}, got {_json_type(value)}"
    messages = {
        "minLength": lambda: f"must be at least {limit} character{'s' if limit != 1 else ''} long",
        "maxLength": lambda: f"must be at most {limit} characters long",
        "minimum": lambda: f"{value} is less than the minimum of {limit}",
        "maximum": lambda: f"{value} is greater than the maximum of {limit}",
        "minItems": lambda: f"must have at least {limit} item{'s' if limit != 1 else ''}",
        "maxItems": lambda: f"must have at most {limit} items",
        "uniqueItems": lambda: "items must be unique",
        "enum": lambda: f"{value!r} is not one of {', '.join(map(str, limit))}",
        "format": lambda: (f"{value!r} is not an RFC 3339 date-time with an offset, e.g. 2030-01-01T00:00:00Z"
                           if limit == "date-time" else f"{value!r} is not a valid {limit}"),
        "pattern": lambda: (f"{value!r} is not a valid UUID" if str(limit).startswith(UUID_PATTERN_PREFIX)
                            else f"{value!r} has the wrong format ({error.schema.get('description', limit)})"),
    }
    text = messages[kind]() if kind in messages else error.message
    return f"{path}: {text}" if path else text


class RequestBodyValidator(JSONRequestBodyValidator):
    def _validate(self, body):
        if not self._nullable and body is None:
            raise BadRequestProblem(detail="the request body must be a JSON object")
        try:
            return Draft4RequestValidator(self._schema, format_checker=Draft4Validator.FORMAT_CHECKER).validate(body)
        except ValidationError as exception:
            raise BadRequestProblem(detail=describe(exception)) from None

    async def _parse(self, stream, scope):
        try:
            return await super()._parse(stream, scope)
        except BadRequestProblem as exc:
            raise BadRequestProblem(detail=f"the request body is not valid JSON: {exc.detail}") from None
        except UnicodeDecodeError:
            raise BadRequestProblem(detail=f"the request body is not valid {self._encoding} text") from None


class RequestParameterValidator(ParameterValidator):
    @staticmethod
    def validate_parameter(parameter_type, value, param, param_name=None):
        if is_nullable(param) and is_null(value):
            return None
        if value is None:
            return f"{param['name']}: is required" if param.get("required") else None
        try:
            Draft4Validator(param.get("schema", param),
                            format_checker=Draft4Validator.FORMAT_CHECKER).validate(value)
        except ValidationError as exception:
            return describe(exception, param_name or param.get("name", ""))
        return None


def validator_map() -> dict:
    body = MediaTypeDict(dict(VALIDATOR_MAP["body"]))
    body["*/*json"] = RequestBodyValidator
    return {**VALIDATOR_MAP, "parameter": RequestParameterValidator, "body": body}
