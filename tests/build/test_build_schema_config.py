"""load_config: the reflexdb.yaml format and its error messages."""

from __future__ import annotations

import jsonschema
import pytest

from app.contracts.schema_config import SCHEMA, ConfigError, load_config

FULL = """\
version: 1
where: tenant_id = 42
where_columns: [tenant_id]
tables:
  - name: users
    alias: people
    columns: [id, name, email]
    where: deleted_at IS NULL
    relations: {exclude: [manager]}
    reverse_relations: {exclude: [audit_log]}
    field_aliases: {email: contact}
    field_notes: {email: Primary contact address}
  - name: order items
    relations:
      include: [order]
"""


def test_schema_is_valid_draft_2020_12():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_full_example():
    assert load_config(FULL) == {
        "version": 1, "where": "tenant_id = 42", "where_columns": ["tenant_id"],
        "tables": [
            {"name": "users", "alias": "people", "columns": ["id", "name", "email"],
             "where": "deleted_at IS NULL", "relations": {"exclude": ["manager"]},
             "reverse_relations": {"exclude": ["audit_log"]},
             "field_aliases": {"email": "contact"},
             "field_notes": {"email": "Primary contact address"}},
            {"name": "order items", "relations": {"include": ["order"]}},
        ]}


def test_accepts_a_dict_and_bytes():
    assert load_config({"version": 1}) == {"version": 1}
    assert load_config(b"version: 1\n") == {"version": 1}


def tables(*entries):
    return {"version": 1, "tables": list(entries)}


@pytest.mark.parametrize("config, path, message", [
    ("", "", "the schema config is empty: it needs at least 'version: 1'"),
    ("- 1\n", "", "the schema config must be a mapping with at least 'version: 1'"),
    ("tables: [{name: a}]\n", "version", "is required"),
    ("version: 2\n", "version", "unsupported version 2: the only version is 1"),
    ("version: '1'\n", "version", "must be a whole number, got a string"),
    ("version: true\n", "version", "must be a whole number, got true/false"),
    ("version: 1\ncolour: red\n", "",
     "unknown key 'colour'; accepted keys: tables, version, where, where_columns"),
    ("version: 1\nwhere: a = 1\n", "", "'where' needs 'where_columns' too"),
    ("version: 1\nwhere_columns: [a]\n", "", "'where_columns' needs 'where' too"),
    ("version: 1\nwhere: ''\nwhere_columns: [a]\n", "where", "must be at least 1 character long"),
    ({"version": 1, "where": "x" * 4001, "where_columns": ["x"]}, "where",
     "must be at most 4000 characters long"),
    ("version: 1\ntables: []\n", "tables", "must have at least 1 item"),
    (tables(*({"name": f"t{i}"} for i in range(1001))), "tables",
     "must have at most 1000 items (it has 1001)"),
    (tables({"alias": "a"}), "tables[0].name", "is required"),
    (tables({"name": "a"}, {"name": "b", "colour": 1}), "tables[1]",
     ("unknown key 'colour'; accepted keys: alias, columns, field_aliases, field_notes, name, "
     "relations, reverse_relations, where")),
    (tables({"name": ""}), "tables[0].name", "must be at least 1 character long"),
    (tables({"name": "x" * 65}), "tables[0].name",
     "must be at most 64 characters long"),
    (tables({"name": "a\tb"}), "tables[0].name", "'a\\tb' must not contain control characters"),
    (tables({"name": "a", "alias": "1st"}), "tables[0].alias",
     ("'1st' is not a valid name: use a letter or underscore, then letters, digits or "
     "underscores")),
    (tables({"name": "a", "columns": []}), "tables[0].columns", "must have at least 1 item"),
    (tables({"name": "a", "columns": ["x", "y", "x"]}), "tables[0].columns",
     "items must be unique: 'x' appears more than once"),
    (tables({"name": "a", "columns": ["x", 3]}), "tables[0].columns[1]",
     "must be a string, got a number"),
    (tables({"name": "a", "columns": [f"c{i}" for i in range(1001)]}), "tables[0].columns",
     "must have at most 1000 items (it has 1001)"),
    (tables({"name": "a", "relations": {"include": ["x"], "exclude": ["y"]}}),
     "tables[0].relations", "give either 'include' or 'exclude', not both"),
    (tables({"name": "a", "relations": {}}), "tables[0].relations", "must have at least 1 entry"),
    (tables({"name": "a", "relations": {"only": ["x"]}}), "tables[0].relations",
     "unknown key 'only'; accepted keys: exclude, include"),
    (tables({"name": "a", "reverse_relations": {"include": ["x"]}}),
     "tables[0].reverse_relations.exclude", "is required"),
    (tables({"name": "a", "field_aliases": {"email": "e-mail"}}),
     "tables[0].field_aliases.email",
     ("'e-mail' is not a valid name: use a letter or underscore, then letters, digits or "
     "underscores")),
    (tables({"name": "a", "field_aliases": {"": "x"}}), "tables[0].field_aliases",
     "key must be at least 1 character long"),
    (tables({"name": "a", "field_notes": {"email": "n" * 1001}}),
     "tables[0].field_notes.email", "must be at most 1000 characters long"),
    (tables({"name": "a", "field_notes": {"email": 5}}), "tables[0].field_notes.email",
     "must be a string, got a number"),
    ("version: 1\ntables:\n  - name: a\n    columns: [b\n", "line 5 column 1",
     "not valid YAML: did not find expected ',' or ']'"),
    ("version: 1\nversion: 1\n", "line 2 column 1", "key 'version' appears twice"),
    ("version: 1\ntables:\n  - &t {name: a}\n  - *t\n", "line 4 column 5",
     "YAML aliases (*name) are not supported: write the value out"),
    ("x" * (1024 * 1024 + 1), "", "the schema config is larger than 1048576 bytes"),
    (42, "", "the schema config must be YAML text or a mapping, not int"),
])
def test_errors_name_the_place(config, path, message):
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert (caught.value.path, caught.value.message) == (path, message)


def test_every_problem_is_listed():
    with pytest.raises(ConfigError) as caught:
        load_config(tables({"name": "a", "alias": "1"}, {"name": ""}))
    assert caught.value.errors == [
        ("tables[0].alias", ("'1' is not a valid name: use a letter or underscore, then letters, "
                            "digits or underscores")),
        ("tables[1].name", "must be at least 1 character long")]
    assert str(caught.value) == ("tables[0].alias: '1' is not a valid name: use a letter or "
                                 "underscore, then letters, digits or underscores")
