"""How every message names a place in a document, and says in English what is wrong there.

Both planes use these: the API for request bodies and parameters, the schema-config
loader for `reflexdb.yaml`, the compiler for what it finds wrong in a config. A place is
spelled as jsonschema spells it (`tables[2].columns[0]`, `instance.mysqlDb`); a jsonschema
error becomes one sentence in the words of the document's format (`Terms`): a JSON body has
objects and fields, a YAML config mappings and keys.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


def field_path(*parts) -> str:
    """A place in a document: `field_path("tables", 2, "columns", 0)` is `tables[2].columns[0]`.

    A part may itself be a path (`field_path("tables[0]", "name")`); None and "" are skipped.
    """
    text = ""
    for part in parts:
        if part is None or part == "":
            continue
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def line_column(text: str, position: int) -> tuple[int, int]:
    """1-based line and column of a 0-based offset in `text`."""
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    return line, column


def sentence(path: str, message: str) -> str:
    """`path: message`, or the message alone for the whole document."""
    return f"{path}: {message}" if path else message


def json_type(value) -> str:
    """The JSON Schema type of a parsed value (`object`, `array`, `string`...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


@dataclass(frozen=True)
class Terms:
    """The words of one document format."""

    document: str                    # the whole document, e.g. "the request body"
    types: Mapping[str, str]         # JSON Schema type -> a value of it, e.g. "an object"
    field: str                       # what a mapping's keys are called
    unknown: str                     # what a key the schema does not know is called
    null_hint: str = ""              # appended to "must not be null"
    # Patterns with a message of their own: pattern -> what is wrong with a value that
    # does not match it. Other patterns name the field's description.
    patterns: Mapping[str, str] = field(default_factory=dict)

    def kind(self, value) -> str:
        """What `value` is, e.g. "a string", "a list"."""
        name = json_type(value)
        return self.types.get(name, name)


_TYPES = {"string": "a string", "integer": "an integer", "number": "a number",
          "boolean": "true or false", "array": "an array", "object": "a JSON object", "null": "null"}

JSON_TERMS = Terms(
    document="the request body",
    types=_TYPES,
    field="field",
    unknown="unknown or read-only field",
    null_hint="; leave the field out to keep its value",
    patterns={UUID_PATTERN: "is not a valid UUID"},
)

YAML_TERMS = Terms(
    document="the schema config",
    types={**_TYPES, "object": "a mapping", "array": "a list", "integer": "a whole number",
           "boolean": "true/false"},
    field="key",
    unknown="unknown key",
)


def describe_schema_error(error, terms: Terms, root: str = "") -> tuple[str, str]:
    """(path, message) for one jsonschema `ValidationError`, in the words of `terms`.

    `root` names the document in the path (a query parameter's name); "" for a body.
    """
    here = field_path(root, *error.absolute_path)
    kind, expected, value = error.validator, error.validator_value, error.instance
    if kind == "required":
        missing = next((key for key in expected if key not in value), expected[0])
        return field_path(here, missing), "is required"
    if kind == "additionalProperties" and expected is False:
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(key for key in value if key not in allowed)
        return here, (f"{terms.unknown}{'s' if len(unknown) > 1 else ''} "
                      f"{', '.join(repr(key) for key in unknown)}; "
                      f"accepted {terms.field}s: {', '.join(allowed)}")
    if kind == "dependentRequired":
        for key, needed in expected.items():
            missing = [other for other in needed if key in value and other not in value]
            if missing:
                return here, f"{key!r} needs {missing[0]!r} too"
    if "propertyNames" in error.absolute_schema_path:
        # jsonschema reports a bad key with the key itself as the instance.
        return field_path(here, value), f"{terms.field} {_problem(error, terms)}"
    if kind == "type" and value is None:
        return here, f"must not be null{terms.null_hint}"
    if kind == "type" and not here:
        return "", f"{terms.document} must be {_wanted(expected, terms)}"
    return here, _problem(error, terms)


def _wanted(expected, terms: Terms) -> str:
    names = expected if isinstance(expected, list) else [expected]
    return " or ".join(terms.types.get(name, name) for name in names)


def _problem(error, terms: Terms) -> str:
    """What is wrong with the value itself, without its place."""
    kind, limit, value = error.validator, error.validator_value, error.instance
    if kind == "type":
        return f"must be {_wanted(limit, terms)}, got {terms.kind(value)}"
    if kind in ("minLength", "maxLength"):
        bound = "at least" if kind == "minLength" else "at most"
        return f"must be {bound} {_count(limit, 'character', 'characters')} long"
    if kind in ("minimum", "maximum"):
        return f"{value} is {'less' if kind == 'minimum' else 'greater'} than the {kind} of {limit}"
    if kind in ("minItems", "maxItems", "minProperties", "maxProperties"):
        choices = list(error.schema.get("properties", {}))
        if kind == "maxProperties" and limit == 1 and len(choices) == 2:
            return f"give either {choices[0]!r} or {choices[1]!r}, not both"
        size = _count(limit, "item", "items") if "Items" in kind else _count(limit, "entry", "entries")
        # Past a maximum, say how far: a long list is hard to count by eye.
        return f"must have at least {size}" if kind.startswith("min") else \
            f"must have at most {size} (it has {len(value)})"
    if kind == "uniqueItems":
        return f"items must be unique: {_repeated(value)!r} appears more than once"
    if kind == "enum":
        return f"{value!r} is not one of {', '.join(map(_json_word, limit))}"
    if kind == "const":
        return f"must be {limit!r}"
    if kind == "format" and limit == "date-time":
        return f"{value!r} is not an RFC 3339 date-time with an offset, e.g. 2030-01-01T00:00:00Z"
    if kind == "format":
        return f"{value!r} is not a valid {limit}"
    if kind == "pattern" and limit in terms.patterns:
        return f"{value!r} {terms.patterns[limit]}"
    if kind == "pattern":
        return f"{value!r} has the wrong format ({error.schema.get('description', limit)})"
    return error.message


def _json_word(value) -> str:
    """An enum value as a client writes it in JSON: null, true, false, or the value."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    return str(value)


def _count(number: int, one: str, several: str) -> str:
    return f"{number} {one if number == 1 else several}"


def _repeated(items):
    seen = set()
    for item in items:
        marker = repr(item)
        if marker in seen:
            return item
        seen.add(marker)
    return None


__all__ = ["JSON_TERMS", "UUID_PATTERN", "YAML_TERMS", "Terms", "describe_schema_error", "field_path",
           "json_type", "line_column", "sentence"]
