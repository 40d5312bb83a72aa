"""The schema config (`reflexdb.yaml`): its format and its loader.

    version: 1
    where: 'tenant_id = 42'          # optional, needs where_columns
    where_columns: [tenant_id]       # source columns the global where needs
    tables:                          # optional: when given, only these tables
      - name: users
        alias: people
        columns: [id, name, email]   # allow-list; key columns are still loaded, hidden
        where: 'deleted_at IS NULL'
        relations: {exclude: [manager]}
        reverse_relations: {exclude: [audit_log]}
        field_aliases: {email: contact}
        field_notes: {email: "Primary contact address"}

`where` strings use the query language's filter syntax over field names; only
their shape and length are checked here (the loader compiles them).
"""

from __future__ import annotations

import jsonschema
import yaml

MAX_CONFIG_BYTES = 1024 * 1024
MAX_TABLES = 1000
MAX_COLUMNS = 1000
MAX_NAME = 64
MAX_NOTE = 1000
MAX_WHERE = 4000
ALIAS_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
# Source names may hold any printable character (MySQL and PostgreSQL allow
# spaces, dashes...), but never control characters.
NAME_PATTERN = r"^[^\u0000-\u001f\u007f]+$"

_NAME = {"type": "string", "minLength": 1, "maxLength": MAX_NAME, "pattern": NAME_PATTERN,
         "description": "A table or column name as it is on the source."}
_ALIAS = {"type": "string", "minLength": 1, "maxLength": MAX_NAME, "pattern": ALIAS_PATTERN,
          "description": "A name exposed to queries: a letter or underscore, then letters, "
                         "digits or underscores."}
_WHERE = {"type": "string", "minLength": 1, "maxLength": MAX_WHERE,
          "description": "A row filter in the query language's filter syntax."}


def _names(description: str, max_items: int) -> dict:
    return {"type": "array", "items": _NAME, "maxItems": max_items, "uniqueItems": True,
            "description": description}


SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "reflexdb.yaml",
    "description": "Which tables, columns and relations a database exposes, and how.",
    "type": "object",
    "additionalProperties": False,
    "required": ["version"],
    "dependentRequired": {"where": ["where_columns"], "where_columns": ["where"]},
    "properties": {
        "version": {"type": "integer", "const": 1, "description": "Format version; always 1."},
        "where": {**_WHERE, "description": "A row filter applied to every table that has all "
                                           "of where_columns."},
        "where_columns": {**_names("Source columns the global where needs.", 100),
                          "minItems": 1},
        "tables": {
            "type": "array", "minItems": 1, "maxItems": MAX_TABLES,
            "description": "The tables to expose; every table when omitted.",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name"],
                "properties": {
                    "name": _NAME,
                    "alias": _ALIAS,
                    "columns": {**_names("Column allow-list; every column when omitted.",
                                         MAX_COLUMNS), "minItems": 1},
                    "where": _WHERE,
                    "relations": {
                        "type": "object", "additionalProperties": False,
                        "minProperties": 1, "maxProperties": 1,
                        "description": "Forward relations to keep (include) or drop (exclude).",
                        "properties": {
                            "include": _names("Forward relations to keep.", MAX_COLUMNS),
                            "exclude": _names("Forward relations to drop.", MAX_COLUMNS),
                        },
                    },
                    "reverse_relations": {
                        "type": "object", "additionalProperties": False, "required": ["exclude"],
                        "description": "Reverse relations to drop.",
                        "properties": {
                            "exclude": _names("Reverse relations to drop.", MAX_COLUMNS),
                        },
                    },
                    "field_aliases": {
                        "type": "object", "maxProperties": MAX_COLUMNS,
                        "propertyNames": _NAME, "additionalProperties": _ALIAS,
                        "description": "Column name -> field name exposed to queries.",
                    },
                    "field_notes": {
                        "type": "object", "maxProperties": MAX_COLUMNS,
                        "propertyNames": _NAME,
                        "additionalProperties": {"type": "string", "maxLength": MAX_NOTE},
                        "description": "Column name -> note shown in the instance's API docs.",
                    },
                },
            },
        },
    },
}

_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


class ConfigError(Exception):
    """The schema config is wrong at `path` (e.g. `tables[2].columns[0]`).

    `errors` lists every problem found as (path, message), first one first.
    """

    def __init__(self, path: str, message: str, errors: list[tuple[str, str]] | None = None):
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message
        self.errors = errors or [(path, message)]


def format_path(parts) -> str:
    """['tables', 2, 'columns', 0] -> 'tables[2].columns[0]'."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def load_config(source) -> dict:
    """Parse (YAML text) or take (dict) a schema config and validate it.

    Returns the config as a dict; raises ConfigError naming what is wrong.
    """
    if isinstance(source, (str, bytes)):
        config = _parse_yaml(source)
    elif isinstance(source, dict):
        config = source
    else:
        raise ConfigError("", f"the schema config must be YAML text or a mapping, "
                              f"not {type(source).__name__}")
    if not isinstance(config, dict):
        raise ConfigError("", "the schema config must be a mapping with at least "
                              "'version: 1'")
    errors = sorted(_VALIDATOR.iter_errors(config), key=_error_order)
    if errors:
        problems = [_describe(error) for error in errors]
        # One error per place: the first (most specific) one.
        seen, unique = set(), []
        for path, message in problems:
            if path not in seen:
                seen.add(path)
                unique.append((path, message))
        raise ConfigError(unique[0][0], unique[0][1], unique)
    return config


# -- YAML --------------------------------------------------------------------

class _Loader(yaml.SafeLoader):
    """SafeLoader without aliases (no expansion bombs) and without duplicate keys."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ConfigError(_yaml_position(event.start_mark),
                              "YAML aliases (*name) are not supported: write the value out")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        keys = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in keys
                keys.add(key)
            except TypeError:
                continue   # an unhashable key; the base class reports it
            if duplicate:
                raise ConfigError(_yaml_position(key_node.start_mark),
                                  f"key {key!r} appears twice")
        return super().construct_mapping(node, deep=deep)


def _yaml_position(mark) -> str:
    return f"line {mark.line + 1} column {mark.column + 1}" if mark else ""


def _parse_yaml(text) -> object:
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError("", f"the schema config is larger than {MAX_CONFIG_BYTES} bytes")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError("", "the schema config is not UTF-8 text") from None
    try:
        config = yaml.load(text, Loader=_Loader)
    except ConfigError:
        raise
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "syntax error"
        raise ConfigError(_yaml_position(mark), f"not valid YAML: {problem}") from None
    if config is None:
        raise ConfigError("", "the schema config is empty: it needs at least 'version: 1'")
    return config


# -- validation errors in plain words ------------------------------------------

_TYPE_NAMES = {"object": "a mapping", "array": "a list", "string": "a string",
               "integer": "a whole number", "number": "a number", "boolean": "true or false"}


def _error_order(error) -> tuple:
    path = tuple(error.absolute_path)
    return (tuple((0, p, "") if isinstance(p, int) else (1, 0, p) for p in path),
            error.validator != "required")


def _kind(value) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (int, float)):
        return "a number"
    return "null" if value is None else type(value).__name__


def _describe(error) -> tuple[str, str]:
    """(path, message) for one jsonschema error."""
    path = list(error.absolute_path)
    value = error.instance
    kind, expected = error.validator, error.validator_value
    if kind == "required":
        missing = [key for key in expected if key not in value]
        return format_path(path), f"missing required key {missing[0]!r}"
    if kind == "additionalProperties" and expected is False:
        allowed = set(error.schema.get("properties", {}))
        unknown = sorted(key for key in value if key not in allowed)
        known = ", ".join(sorted(allowed))
        return format_path(path + [unknown[0]]), (f"unknown key {unknown[0]!r}; "
                                                  f"allowed keys: {known}")
    if kind == "dependentRequired":
        for key, needed in expected.items():
            if key in value:
                for other in needed:
                    if other not in value:
                        return format_path(path), f"{key!r} needs {other!r} too"
    if "propertyNames" in error.absolute_schema_path:
        # jsonschema reports a bad key with the key itself as the instance.
        return format_path(path + [value]), f"key {_plain(error)}"
    if path and path[-1] == "version" and kind == "const":
        return format_path(path), f"unsupported version {value!r}: the only version is 1"
    return format_path(path), _plain(error)


def _plain(error) -> str:
    kind, expected, value = error.validator, error.validator_value, error.instance
    if kind == "type":
        names = expected if isinstance(expected, list) else [expected]
        wanted = " or ".join(_TYPE_NAMES.get(name, name) for name in names)
        return f"must be {wanted}, not {_kind(value)}"
    if kind == "minLength":
        return "must not be empty"
    if kind == "maxLength":
        return f"must be at most {expected} characters long (it has {len(value)})"
    if kind == "pattern":
        if expected == ALIAS_PATTERN:
            return (f"{value!r} is not a valid name: use a letter or underscore, "
                    f"then letters, digits or underscores")
        return f"{value!r} must not contain control characters"
    if kind == "minItems":
        return f"must list at least {expected} item{'s' if expected != 1 else ''}"
    if kind == "maxItems":
        return f"must list at most {expected} items (it has {len(value)})"
    if kind == "uniqueItems":
        seen, duplicate = set(), None
        for item in value:
            marker = repr(item)
            if marker in seen:
                duplicate = item
                break
            seen.add(marker)
        return f"lists {duplicate!r} more than once"
    if kind == "minProperties":
        return "must not be empty"
    if kind == "maxProperties":
        if expected == 1:
            return "give either 'include' or 'exclude', not both"
        return f"must have at most {expected} entries"
    if kind == "const":
        return f"must be {expected!r}"
    return error.message
