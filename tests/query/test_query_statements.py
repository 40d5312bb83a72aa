"""Statement counts: a nested include costs one statement per node, whatever the rows."""

import sqlite3

import pytest

from app.query import compile_query, execute, run_plan

NESTED = ("users(id > 20) { id name manager { name } posts { id comments { body author { name } } "
          "post_tags { tag { name } } ORDER BY id DESC LIMIT 3 } }")
NODES = 7  # users, manager, posts, comments, comments.author, post_tags, tag


def count_statements(connection, action):
    statements = []
    connection.set_trace_callback(statements.append)
    try:
        result = action()
    finally:
        connection.set_trace_callback(None)
    return result, statements


@pytest.mark.parametrize("limit", [1, 10, 100, 480])
def test_statement_count_is_independent_of_rows(artifact, big_db, limit):
    result, statements = count_statements(
        big_db, lambda: execute(artifact, big_db, NESTED, default_limit=limit))
    assert len(result) == limit
    assert sum(len(user["posts"]) for user in result) == 3 * limit
    assert len(statements) == NODES
    assert all(statement.lstrip().startswith("SELECT") for statement in statements)


def test_nodes_without_parent_rows_cost_nothing(artifact, db):
    _, statements = count_statements(db, lambda: execute(artifact, db, "users(id > 99) "
                                                         "{ id posts { id comments { id } } }"))
    assert len(statements) == 1


def test_nested_statements_use_json_keys_and_indexes(artifact, big_db):
    plan = compile_query(artifact, "users { id posts { id } }")
    child = plan.root.children[0].node
    assert "json_each(?)" in child.sql
    details = [row[3] for row in big_db.execute("EXPLAIN QUERY PLAN " + child.sql, ("[1, 2]",))]
    assert any("USING" in detail and "INDEX" in detail for detail in details), details


def test_rows_read_by_position_whatever_the_row_factory(artifact):
    from app.query import execute as run_query
    connection = sqlite3.connect(":memory:")
    connection.row_factory = sqlite3.Row
    connection.execute('CREATE TABLE "tags" ("id" INTEGER PRIMARY KEY, "name" TEXT)')
    connection.execute("INSERT INTO tags VALUES (1, 'x')")
    assert run_query(artifact, connection, "tags { name id }") == [{"name": "x", "id": 1}]


def test_plans_are_reusable_and_cached(artifact, db):
    assert compile_query(artifact, "tags { id }") is compile_query(artifact, "tags { id }")
    plan = compile_query(artifact, "tags { name }")
    assert run_plan(plan, db) == run_plan(plan, db) == [
        {"name": "python"}, {"name": "sql"}, {"name": "misc"}]
