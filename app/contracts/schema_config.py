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

Every bound below is checked before the work it limits, so validating any
config is a small, bounded amount of work whatever is sent (docs/schema-config.md
lists them).
"""

from __future__ import annotations

import math
from dataclasses import replace

import jsonschema
import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.reader import ReaderError
from yaml.resolver import Resolver

from app.contracts.messages import YAML_TERMS, describe_schema_error, field_path, line_column, sentence

try:  # libyaml scans and parses about ten times faster than PyYAML's pure Python
    from yaml._yaml import CParser as _EventParser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _EventParser(Reader, Scanner, Parser):
        def __init__(self, stream):
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)

MAX_CONFIG_BYTES = 1024 * 1024
MAX_TABLES = 1000
MAX_COLUMNS = 1000
MAX_NAME = 64
MAX_NOTE = 1000
MAX_WHERE = 4000
# Work bounds: what validation costs grows with these, not with the bytes sent.
MAX_VALUES = 10_000          # keys, values, lists and mappings, counted together
MAX_WHERE_TOTAL = 8000       # characters of every `where` of one config together
# Bounds shared by every document the control plane parses (JSON bodies too).
MAX_DEPTH = 32               # nested lists and mappings
MAX_INTEGER_DIGITS = 20      # enough for any 64-bit integer
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
        super().__init__(sentence(path, message))
        self.path = path
        self.message = message
        self.errors = errors or [(path, message)]


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
    _check_values(config)
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
    _check_where_total(config)
    return config


def _check_values(config: dict) -> None:
    """The bounds schema validation cannot state, checked before it runs (its cost grows
    with the number of values): count, nesting, integer size, text no store can keep."""
    count = 0
    stack = [((), config, 1)]   # (path, value, nesting of the value)
    while stack:
        path, value, depth = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise ConfigError("", f"the schema config holds more than {MAX_VALUES:,} keys and "
                                  f"values; that is the limit")
        if isinstance(value, str):
            _check_text(value, field_path(*path))
        elif isinstance(value, int) and not isinstance(value, bool):
            if abs(value) >= 10 ** MAX_INTEGER_DIGITS:
                raise ConfigError(field_path(*path), f"the number is too large (at most "
                                                     f"{MAX_INTEGER_DIGITS} digits)")
        elif isinstance(value, (dict, list)):
            if depth > MAX_DEPTH:
                raise ConfigError(field_path(*path), f"nested deeper than {MAX_DEPTH} levels")
            if isinstance(value, dict):
                for key in value:
                    if not isinstance(key, str):
                        raise ConfigError(field_path(*path), f"key {key!r} is {_TERMS.kind(key)}: "
                                                             f"keys are names (text)")
                    count += 1
                    _check_text(key, field_path(*path), "a key ")
                children = [(path + (key,), item) for key, item in value.items()]
            else:
                children = [(path + (index,), item) for index, item in enumerate(value)]
            # Reversed onto the stack so the first problem in document order is reported.
            stack.extend((child, item, depth + 1) for child, item in reversed(children))
        elif isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(field_path(*path), f"{value!r} is not a number")


def _check_text(text: str, path: str, what: str = "") -> None:
    """Text no store can keep: NUL characters (PostgreSQL refuses them) or lone surrogates."""
    if "\x00" in text:
        raise ConfigError(path, f"{what}must not contain NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(path, f"{what}must be valid Unicode text (it holds a lone surrogate)") from None


def _check_where_total(config: dict) -> None:
    """Filters are compiled at upload; their total size bounds that work."""
    total = len(config.get("where", "")) + sum(len(table.get("where", ""))
                                               for table in config.get("tables", []))
    if total > MAX_WHERE_TOTAL:
        raise ConfigError("", f"the where filters add up to {total:,} characters; at most "
                              f"{MAX_WHERE_TOTAL:,} in one config")


# -- YAML --------------------------------------------------------------------

class _Loader(Composer, _EventParser, SafeConstructor, Resolver):
    """Safe YAML within the format's bounds: no aliases (no expansion bombs), keys that are
    unique names, nesting, value count and integers bounded while the document is read."""

    def __init__(self, stream):
        _EventParser.__init__(self, stream)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self._values = 0
        self._depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        where = _yaml_position(event.start_mark)
        if isinstance(event, yaml.AliasEvent):
            raise ConfigError(where, "YAML aliases (*name) are not supported: write the value out")
        self._values += 1
        if self._values > MAX_VALUES:
            raise ConfigError(where, f"the schema config holds more than {MAX_VALUES:,} keys "
                                     f"and values; that is the limit")
        nests = isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent))
        if nests and self._depth >= MAX_DEPTH:
            raise ConfigError(where, f"nested deeper than {MAX_DEPTH} levels")
        self._depth += nests
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= nests

    def construct_mapping(self, node, deep=False):
        self.flatten_mapping(node)
        keys = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            where = _yaml_position(key_node.start_mark)
            if not isinstance(key, str):
                written = f" {key_node.value}" if isinstance(key_node, yaml.ScalarNode) else ""
                raise ConfigError(where, f"key{written} is {_TERMS.kind(key)}: keys are names; "
                                         f"write it in quotes")
            if key in keys:
                raise ConfigError(where, f"key {key!r} appears twice")
            keys.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_bounded_int(self, node):
        # Python refuses to read integers of more than 4,300 digits; stop long before.
        too_large = ConfigError(_yaml_position(node.start_mark),
                                f"the number is too large (at most {MAX_INTEGER_DIGITS} digits)")
        if len(node.value) > 2 * MAX_INTEGER_DIGITS:   # room for a sign, 0x, underscores
            raise too_large
        value = self.construct_yaml_int(node)
        if abs(value) >= 10 ** MAX_INTEGER_DIGITS:
            raise too_large
        return value


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_bounded_int)


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
    except UnicodeEncodeError:
        raise ConfigError("", "the schema config must be valid Unicode text "
                              "(it holds a lone surrogate)") from None
    except ReaderError as exc:
        # libyaml reports a byte offset into the UTF-8 text.
        before = text.encode("utf-8")[:exc.position].decode("utf-8", "ignore")
        line, column = line_column(before, len(before))
        raise ConfigError(f"line {line} column {column}", f"not valid YAML: {exc.reason}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "syntax error"
        raise ConfigError(_yaml_position(mark), f"not valid YAML: {problem}") from None
    if config is None:
        raise ConfigError("", "the schema config is empty: it needs at least 'version: 1'")
    return config


# -- validation errors in plain words ------------------------------------------

_TERMS = replace(YAML_TERMS, patterns={
    ALIAS_PATTERN: "is not a valid name: use a letter or underscore, then letters, digits or underscores",
    NAME_PATTERN: "must not contain control characters",
})


def _error_order(error) -> tuple:
    path = tuple(error.absolute_path)
    return (tuple((0, p, "") if isinstance(p, int) else (1, 0, p) for p in path),
            error.validator != "required")


def _describe(error) -> tuple[str, str]:
    """(path, message) for one jsonschema error."""
    path = list(error.absolute_path)
    if path and path[-1] == "version" and error.validator == "const":
        return field_path(*path), f"unsupported version {error.instance!r}: the only version is 1"
    return describe_schema_error(error, _TERMS)
