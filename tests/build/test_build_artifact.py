"""build_artifact end to end, against real MariaDB and PostgreSQL sources."""

from __future__ import annotations

import dataclasses

import pytest

from app.build import ConfigError, build_artifact
from app.contracts.artifact import Column, Relation, SchemaArtifact, Table
from app.sources import SourceError

CONFIG = """\
version: 1
tables:
  - name: users
    alias: authors
    columns: [name]
  - name: posts
  - name: audit
"""


def expected_artifact(backend, schema):
    return SchemaArtifact(
        backend=backend, schema=schema,
        tables=(
            Table("users", alias="authors", primary_key=("id",), columns=(
                Column("id", "integer", nullable=False, hidden=True),
                Column("name", "text", nullable=False))),
            Table("posts", primary_key=("id",), columns=(
                Column("id", "integer", nullable=False),
                Column("author_id", "integer", nullable=False),
                Column("title", "text", nullable=False))),
            Table("audit", columns=(Column("at", "datetime", nullable=False),
                                    Column("what", "text", nullable=False))),
        ),
        relations=(
            Relation("authors", "posts", "posts", ("id",), ("author_id",), many=True),
            Relation("posts", "author", "authors", ("author_id",), ("id",), many=False),
        ))


def expected_log(credentials):
    c = credentials
    return [
        "validating the schema config",
        f"connecting to {c.backend} server {c.host}:{c.port} as user {c.user!r}",
        f"checking access to schema {c.target!r}",
        "introspecting tables, columns and keys",
        f"found 3 table(s) in schema {c.target!r}",
        "  audit: 2 column(s), primary key (none), 0 foreign key(s), about 0 rows",
        "  posts: 3 column(s), primary key (id), 1 foreign key(s), about 2 rows",
        "  users: 3 column(s), primary key (id), 0 foreign key(s), about 2 rows",
        "compiled 3 table(s) and 2 relation(s)",
        "  users as authors: 1 field(s) + 1 hidden key column(s); relations: posts -> posts[]",
        "  posts: 3 field(s); relations: author -> authors",
        "  audit: 2 field(s); relations: none",
        "warning: table 'audit' has no primary key: rows come in load order",
        "build succeeded",
    ]


@pytest.mark.parametrize("source", ["mariadb_source", "postgres_source"])
def test_build(request, source):
    credentials = request.getfixturevalue(source)
    streamed = []
    compiled, log = build_artifact(credentials, CONFIG, on_log=streamed.append)
    assert compiled == expected_artifact(credentials.backend, credentials.schema)
    assert log == expected_log(credentials)
    assert streamed == log


def test_build_without_config(mariadb_source):
    compiled, log = build_artifact(mariadb_source, None)
    assert [t.name for t in compiled.tables] == ["audit", "posts", "users"]
    assert compiled.table("users").columns[-1] == Column("password_hash", "text",
                                                         nullable=False)
    assert log[0] == "no schema config: every table, column and relation is exposed"


def test_config_errors_come_before_connecting(mariadb_source):
    unreachable = dataclasses.replace(mariadb_source, port=1)
    with pytest.raises(ConfigError) as caught:
        build_artifact(unreachable, "version: 1\ntables:\n  - name: users\n    colour: red\n")
    assert str(caught.value) == ("tables[0]: unknown key 'colour'; accepted keys: alias, columns, "
                                 "field_aliases, field_notes, name, relations, reverse_relations, where")


def test_config_naming_a_missing_table(postgres_source):
    with pytest.raises(ConfigError) as caught:
        build_artifact(postgres_source, "version: 1\ntables: [{name: user}]\n")
    assert str(caught.value) == (f"tables[0].name: table 'user' does not exist in schema "
                                 f"{postgres_source.schema!r} (did you mean 'users'?)")


def test_failed_build_keeps_its_log_and_no_secret(mariadb_source):
    credentials = dataclasses.replace(mariadb_source, schema="rx_src_missing")
    streamed = []
    with pytest.raises(SourceError) as caught:
        build_artifact(credentials, None, on_log=streamed.append)
    assert caught.value.code == "schema_missing"
    assert streamed == [
        "no schema config: every table, column and relation is exposed",
        f"connecting to mysql server {credentials.host}:{credentials.port} as user "
        f"{credentials.user!r}",
        "checking access to schema 'rx_src_missing'",
    ]


def test_password_never_reaches_the_log(mariadb_source):
    credentials = dataclasses.replace(mariadb_source, password="hunter2-secret")
    streamed = []
    with pytest.raises(SourceError) as caught:
        build_artifact(credentials, None, on_log=streamed.append)
    assert caught.value.code == "auth_failed"
    assert all("hunter2" not in line for line in streamed)
    assert "hunter2" not in str(caught.value)
