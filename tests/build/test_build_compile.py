"""compile_artifact: source schema + schema config -> artifact."""

from __future__ import annotations

from typing import ClassVar

import pytest

from app.build import ConfigError, compile_artifact, compile_schema
from app.contracts.artifact import Column, Relation, SchemaArtifact, Table
from app.sources import ForeignKey, SourceColumn, SourceSchema, SourceTable


def col(name, type_="integer", nullable=False, source_type=None):
    source_type = source_type or {"integer": "int", "text": "varchar(100)",
                                  "boolean": "tinyint(1)", "datetime": "datetime"}[type_]
    return SourceColumn(name=name, type=type_, source_type=source_type, nullable=nullable)


def fk(name, columns, target, target_columns=("id",)):
    return ForeignKey(name=name, columns=tuple(columns), target_table=target,
                      target_columns=tuple(target_columns))


def blog_schema() -> SourceSchema:
    """A blog: both directions of keys, a self reference, two keys between the same
    tables, a composite key, a key column without `_id` and a table without a key."""
    return SourceSchema(backend="mysql", schema="blog", tables=(
        SourceTable("comments", (col("id"), col("post_id"), col("author_id"), col("body", "text"),
                                 col("approved", "boolean")),
                    ("id",), (fk("fk_comments_author", ["author_id"], "users"),
                              fk("fk_comments_post", ["post_id"], "posts"))),
        SourceTable("events", (col("happened_at", "datetime"), col("kind", "text"),
                               col("tenant_id"))),
        SourceTable("messages", (col("id"), col("sender_id"), col("recipient_id"),
                                 col("body", "text")),
                    ("id",), (fk("fk_messages_recipient", ["recipient_id"], "users"),
                              fk("fk_messages_sender", ["sender_id"], "users"))),
        SourceTable("offices", (col("id"), col("country", "text"), col("region_code", "text")),
                    ("id",), (fk("fk_offices_region", ["country", "region_code"], "regions",
                                 ["country", "code"]),)),
        SourceTable("posts", (col("id"), col("author_id"), col("title", "text"),
                              col("body", "text", True), col("tenant_id")),
                    ("id",), (fk("fk_posts_author", ["author_id"], "users"),)),
        SourceTable("regions", (col("country", "text"), col("code", "text"), col("name", "text")),
                    ("country", "code")),
        SourceTable("tags", (col("id"), col("post"), col("label", "text")),
                    ("id",), (fk("fk_tags_post", ["post"], "posts"),)),
        SourceTable("users", (col("id"), col("name", "text"), col("email", "text", True),
                              col("manager_id", nullable=True), col("tenant_id")),
                    ("id",), (fk("fk_users_manager", ["manager_id"], "users"),)),
    ))


@pytest.fixture
def blog():
    return blog_schema()



def C(name, type_="integer", nullable=False, **kwargs):
    return Column(name=name, type=type_, nullable=nullable, **kwargs)


def R(table, name, target, columns, target_columns, many=False):
    return Relation(table=table, name=name, target=target, columns=tuple(columns),
                    target_columns=tuple(target_columns), many=many)


BLOG_TABLES = (
    Table("comments", (C("id"), C("post_id"), C("author_id"), C("body", "text"),
                       C("approved", "boolean")), ("id",)),
    Table("events", (C("happened_at", "datetime"), C("kind", "text"), C("tenant_id"))),
    Table("messages", (C("id"), C("sender_id"), C("recipient_id"), C("body", "text")), ("id",)),
    Table("offices", (C("id"), C("country", "text"), C("region_code", "text")), ("id",)),
    Table("posts", (C("id"), C("author_id"), C("title", "text"), C("body", "text", True),
                    C("tenant_id")), ("id",)),
    Table("regions", (C("country", "text"), C("code", "text"), C("name", "text")),
          ("country", "code")),
    Table("tags", (C("id"), C("post"), C("label", "text")), ("id",)),
    Table("users", (C("id"), C("name", "text"), C("email", "text", True),
                    C("manager_id", nullable=True), C("tenant_id")), ("id",)),
)

BLOG_RELATIONS = (
    R("comments", "author", "users", ["author_id"], ["id"]),
    R("comments", "post", "posts", ["post_id"], ["id"]),
    R("messages", "recipient", "users", ["recipient_id"], ["id"]),
    R("messages", "sender", "users", ["sender_id"], ["id"]),
    # A composite key names the relation after the target table.
    R("offices", "regions", "regions", ["country", "region_code"], ["country", "code"]),
    R("posts", "author", "users", ["author_id"], ["id"]),
    R("posts", "comments", "comments", ["id"], ["post_id"], many=True),
    R("posts", "tags", "tags", ["id"], ["post"], many=True),
    R("regions", "offices", "offices", ["country", "code"], ["country", "region_code"], many=True),
    # A key column without `_id` names the relation after the target table too.
    R("tags", "posts", "posts", ["post"], ["id"]),
    R("users", "manager", "users", ["manager_id"], ["id"]),
    R("users", "comments", "comments", ["id"], ["author_id"], many=True),
    # Two keys from messages to users: each reverse relation says which one.
    R("users", "messages_by_recipient", "messages", ["id"], ["recipient_id"], many=True),
    R("users", "messages_by_sender", "messages", ["id"], ["sender_id"], many=True),
    R("users", "posts", "posts", ["id"], ["author_id"], many=True),
    R("users", "users", "users", ["id"], ["manager_id"], many=True),
)


class TestWithoutConfig:
    def test_everything_is_exposed(self, blog):
        assert compile_artifact(blog) == SchemaArtifact(
            backend="mysql", schema="blog", tables=BLOG_TABLES, relations=BLOG_RELATIONS)

    def test_minimal_config_is_the_same(self, blog):
        assert compile_artifact(blog, "version: 1\n") == compile_artifact(blog)

    def test_warnings(self, blog):
        assert compile_schema(blog).warnings == [
            "table 'events' has no primary key: rows come in load order"]

    def test_round_trips_through_json(self, blog):
        compiled = compile_artifact(blog)
        assert SchemaArtifact.from_json(compiled.to_json()) == compiled


class TestTablesAndColumns:
    CONFIG: ClassVar[dict] = {
        "version": 1,
        "tables": [
            {"name": "users", "alias": "people", "columns": ["name", "email"],
             "field_aliases": {"email": "contact"}, "field_notes": {"name": "Display name"}},
            {"name": "posts", "columns": ["title"], "relations": {"include": ["author"]}},
            {"name": "comments", "columns": ["body"], "relations": {"exclude": ["author"]}},
        ],
    }

    def test_allow_lists_aliases_and_hidden_key_columns(self, blog):
        assert compile_artifact(blog, self.CONFIG) == SchemaArtifact(
            backend="mysql", schema="blog",
            tables=(
                Table("users", alias="people", primary_key=("id",), columns=(
                    C("id", hidden=True), C("name", "text", note="Display name"),
                    C("email", "text", True, field="contact"),
                    C("manager_id", nullable=True, hidden=True))),
                Table("posts", primary_key=("id",), columns=(
                    C("id", hidden=True), C("author_id", hidden=True), C("title", "text"))),
                # author_id stays loaded: people.comments (the reverse side) needs it.
                Table("comments", primary_key=("id",), columns=(
                    C("id", hidden=True), C("post_id", hidden=True), C("author_id", hidden=True),
                    C("body", "text"))),
            ),
            relations=(
                R("people", "manager", "people", ["manager_id"], ["id"]),
                R("people", "people", "people", ["id"], ["manager_id"], many=True),
                R("people", "posts", "posts", ["id"], ["author_id"], many=True),
                R("people", "comments", "comments", ["id"], ["author_id"], many=True),
                R("posts", "author", "people", ["author_id"], ["id"]),
                R("posts", "comments", "comments", ["id"], ["post_id"], many=True),
                R("comments", "post", "posts", ["post_id"], ["id"]),
            ))

    def test_hidden_columns_are_not_exposed(self, blog):
        people = compile_artifact(blog, self.CONFIG).table("people")
        assert people.column("contact").name == "email"
        assert people.column("email") is None
        assert people.column("id") is None

    def test_reverse_relations_exclude(self, blog):
        config = {"version": 1, "tables": [
            {"name": "users", "columns": ["name"],
             "reverse_relations": {"exclude": ["users", "posts"]},
             "relations": {"exclude": ["manager"]}},
            {"name": "posts", "columns": ["title"], "relations": {"exclude": ["author"]}},
        ]}
        compiled = compile_artifact(blog, config)
        assert compiled.relations == ()
        # Nothing needs the key columns but the primary keys.
        assert [c.name for c in compiled.table("users").columns] == ["id", "name"]
        assert [c.name for c in compiled.table("posts").columns] == ["id", "title"]

    def test_key_to_a_table_left_out(self, blog):
        result = compile_schema(blog, {"version": 1, "tables": [{"name": "posts"}]})
        assert result.artifact.relations == ()
        assert result.artifact.table("posts").columns == BLOG_TABLES[4].columns
        assert result.warnings == [
            ("foreign key posts(author_id) -> users gives no relation: table 'users' is not "
            "included")]

    def test_names_queries_cannot_use_are_warned_about(self):
        schema = SourceSchema("postgres", "s", (
            SourceTable("order items", (col("id"), col("unit price", "text")), ("id",)),))
        assert compile_schema(schema).warnings == [
            "table 'order items' is not a valid query name: give it an alias in the schema config",
            ("column order items.'unit price' is not a valid query name: give it a field alias "
            "in the schema config")]
        config = {"version": 1, "tables": [{"name": "order items", "alias": "order_items",
                                            "field_aliases": {"unit price": "unit_price"}}]}
        assert compile_schema(schema, config).warnings == []


class TestRelationNames:
    def test_clashes_get_rel_then_a_number(self):
        schema = SourceSchema("mysql", "s", (
            SourceTable("posts", (col("id"), col("author", "text"), col("author_rel", "text"),
                                  col("author_id")),
                        ("id",), (fk("fk_posts_author", ["author_id"], "users"),)),
            SourceTable("users", (col("id"), col("posts", "text")), ("id",)),
        ))
        assert compile_artifact(schema).relations == (
            R("posts", "author_rel2", "users", ["author_id"], ["id"]),
            # `posts` is a column of users: the reverse relation says which key.
            R("users", "posts_by_author_rel2", "posts", ["id"], ["author_id"], many=True),
        )

    def test_an_allow_list_frees_a_name(self):
        schema = SourceSchema("mysql", "s", (
            SourceTable("posts", (col("id"), col("author", "text"), col("author_id")),
                        ("id",), (fk("fk_posts_author", ["author_id"], "users"),)),
            SourceTable("users", (col("id"),), ("id",)),
        ))
        assert compile_artifact(schema).relation("posts", "author_rel") is not None
        config = {"version": 1, "tables": [{"name": "posts", "columns": ["id"]},
                                           {"name": "users"}]}
        assert compile_artifact(schema, config).relation("posts", "author") is not None

    def test_forward_names_win_over_reverse_names(self):
        # users.posts_id -> posts gives users.posts; posts.user_id -> users would give
        # users.posts too: the reverse relation takes the `_by_` form.
        schema = SourceSchema("mysql", "s", (
            SourceTable("posts", (col("id"), col("user_id")), ("id",),
                        (fk("fk_posts_user", ["user_id"], "users"),)),
            SourceTable("users", (col("id"), col("posts_id")), ("id",),
                        (fk("fk_users_posts", ["posts_id"], "posts"),)),
        ))
        assert compile_artifact(schema).relations == (
            R("posts", "user", "users", ["user_id"], ["id"]),
            R("posts", "users", "users", ["id"], ["posts_id"], many=True),
            R("users", "posts", "posts", ["posts_id"], ["id"]),
            R("users", "posts_by_user", "posts", ["id"], ["user_id"], many=True),
        )


class TestWhere:
    CONFIG: ClassVar[dict] = {
        "version": 1,
        "where": "tenant_id = 7",
        "where_columns": ["tenant_id"],
        "tables": [
            {"name": "users", "columns": ["id", "name"], "where": "email IS NOT NULL"},
            {"name": "posts", "columns": ["title"], "where": 'title != "body"'},
            {"name": "events"},
            {"name": "regions"},
        ],
    }

    def test_global_and_table_filters_are_combined(self, blog):
        tables = compile_schema(blog, self.CONFIG).artifact.tables
        assert [(table.name, table.where) for table in tables] == [
            ("users", "(tenant_id = 7) AND (email IS NOT NULL)"),
            ("posts", '(tenant_id = 7) AND (title != "body")'),
            ("events", "tenant_id = 7"),
            ("regions", None),
        ]

    def test_filter_columns_are_loaded_hidden(self, blog):
        compiled = compile_artifact(blog, self.CONFIG)
        # tenant_id for the global where, email for the table's where; `body`
        # only appears inside a string, so nothing loads it.
        assert compiled.table("users").columns == (
            C("id"), C("name", "text"), C("email", "text", True, hidden=True),
            C("manager_id", nullable=True, hidden=True), C("tenant_id", hidden=True))
        assert compiled.table("posts").columns == (
            C("id", hidden=True), C("author_id", hidden=True), C("title", "text"),
            C("tenant_id", hidden=True))

    def test_tables_without_the_columns_are_reported(self, blog):
        assert compile_schema(blog, self.CONFIG).warnings == [
            ("the global where is not applied to 1 table(s) without column(s) tenant_id: "
            "regions"),
            "table 'events' has no primary key: rows come in load order"]

    def test_global_where_without_tables(self, blog):
        compiled = compile_artifact(blog, {"version": 1, "where": "tenant_id = 7",
                                           "where_columns": ["tenant_id"]})
        assert {t.name for t in compiled.tables if t.where} == {"events", "posts", "users"}


def config_for(*tables, **top):
    return {"version": 1, "tables": list(tables), **top}


@pytest.mark.parametrize("config, path, message", [
    (config_for({"name": "nope"}), "tables[0].name",
     "table 'nope' does not exist in schema 'blog'"),
    (config_for({"name": "Users"}), "tables[0].name",
     "table 'Users' does not exist in schema 'blog' (did you mean 'users'?)"),
    (config_for({"name": "usres"}), "tables[0].name",
     "table 'usres' does not exist in schema 'blog' (did you mean 'users'?)"),
    (config_for({"name": "users", "columns": ["id", "emial"]}), "tables[0].columns[1]",
     "column 'emial' does not exist on table 'users' (did you mean 'email'?)"),
    (config_for({"name": "users"}, {"name": "users", "alias": "u"}), "tables[1].name",
     "table 'users' is listed twice (first at tables[0])"),
    (config_for({"name": "users", "alias": "posts"}, {"name": "posts"}), "tables[1].name",
     "table name 'posts' is already used by table 'users': give one of them another alias"),
    (config_for({"name": "users"}, {"name": "posts", "alias": "users"}), "tables[1].alias",
     "table name 'users' is already used by table 'users': give one of them another alias"),
    (config_for({"name": "users", "columns": ["id", "nam"]}), "tables[0].columns[1]",
     "column 'nam' does not exist on table 'users' (did you mean 'name'?)"),
    (config_for({"name": "users", "field_aliases": {"nope": "x"}}),
     "tables[0].field_aliases.nope", "column 'nope' does not exist on table 'users'"),
    (config_for({"name": "users", "field_notes": {"Email": "x"}}),
     "tables[0].field_notes.Email",
     "column 'Email' does not exist on table 'users' (did you mean 'email'?)"),
    (config_for({"name": "users", "columns": ["id"], "field_aliases": {"name": "n"}}),
     "tables[0].field_aliases.name", "column 'name' is not in the table's columns allow-list"),
    (config_for({"name": "users", "field_aliases": {"name": "email"}}),
     "tables[0].field_aliases.name",
     "field name 'email' is used twice on table 'users' (columns 'name' and 'email')"),
    (config_for({"name": "users", "columns": ["name"], "field_aliases": {"name": "id"}}),
     "tables[0].field_aliases.name",
     ("field name 'id' is also the name of key column 'id', which is loaded (hidden) for keys "
     "and relations: choose another alias")),
    (config_for({"name": "users"}, {"name": "posts", "relations": {"include": ["writer"]}}),
     "tables[1].relations.include[0]", ("table 'posts' has no relation 'writer'; its relations: "
                                       "author")),
    (config_for({"name": "posts", "relations": {"exclude": ["author"]}}),
     "tables[0].relations.exclude[0]", ("table 'posts' has no relation 'author'; its relations: "
                                       "none")),
    (config_for({"name": "users", "reverse_relations": {"exclude": ["posts"]}}),
     "tables[0].reverse_relations.exclude[0]",
     "table 'users' has no reverse relation 'posts'; its reverse relations: users"),
    (config_for({"name": "users", "field_aliases": {"tenant_id": "tenant"}},
                where="tenant_id = 1", where_columns=["tenant_id"]),
     "tables[0].field_aliases.tenant_id",
     "column 'tenant_id' is renamed, but the global where uses it by its name: remove the alias"),
    ({"version": 1, "tables": [{"name": "users", "columns": "id"}]}, "tables[0].columns",
     "must be a list, got a string"),
])
def test_config_errors(blog, config, path, message):
    with pytest.raises(ConfigError) as caught:
        compile_artifact(blog, config)
    assert (caught.value.path, caught.value.message) == (path, message)
    assert str(caught.value) == f"{path}: {message}"
