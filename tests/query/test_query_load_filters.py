"""compile_filter(): the schema config's load-time `where`, for each source dialect."""

import sqlite3

import pytest

from app.query import (
    QueryError,
    UnknownNameError,
    compile_filter,
    parse_filter,
)

WHERE = ('name LIKE "A%" AND (plan IN ("pro", "team") OR NOT age BETWEEN 1 AND 2) '
         'AND password_hash IS NOT NULL AND full_name ILIKE "x" AND active != true')


@pytest.fixture
def users(artifact):
    return artifact.table("users")


def test_sqlite(users):
    # For SQLite the most nested operand of AND/OR comes first (its parser stack
    # is small); the values follow the SQL's order.
    assert compile_filter(parse_filter(WHERE), users, "sqlite") == (
        '(((NOT ("age" BETWEEN ? AND ?)) OR "plan" IN (?, ?)) AND "full_name" GLOB ? '
        'AND "password_hash" IS NOT NULL AND lower("full_name") LIKE lower(?) ESCAPE \'\\\' '
        'AND "active" <> ?)',
        [1, 2, "pro", "team", "A*", "x", True])


def test_mysql(users):
    assert compile_filter(parse_filter(WHERE), users, "mysql") == (
        "(CAST(`full_name` AS BINARY) LIKE CAST(%s AS BINARY) AND (`plan` IN (%s, %s) OR "
        "(NOT (`age` BETWEEN %s AND %s))) AND `password_hash` IS NOT NULL AND "
        "LOWER(`full_name`) LIKE LOWER(%s) AND `active` <> %s)",
        ["A%", "pro", "team", 1, 2, "x", True])


def test_postgres(users):
    assert compile_filter(parse_filter(WHERE), users, "postgres") == (
        '("full_name" LIKE %s AND ("plan" IN (%s, %s) OR (NOT ("age" BETWEEN %s AND %s))) '
        'AND "password_hash" IS NOT NULL AND "full_name" ILIKE %s AND "active" <> %s)',
        ["A%", "pro", "team", 1, 2, "x", True])


def test_postgres_like_on_non_text_compares_text(users):
    assert compile_filter(parse_filter('age NOT LIKE "1%"'), users, "postgres") == (
        '(NOT CAST("age" AS TEXT) LIKE %s)', ["1%"])


def test_identifiers_are_quoted_for_each_dialect(artifact):
    from app.contracts.artifact import Column, Table
    odd = Table(name="t", columns=(Column('we"ird`col', "integer", field="odd"),))
    expression = parse_filter("odd = 1")
    assert compile_filter(expression, odd, "sqlite") == ('"we""ird`col" = ?', [1])
    assert compile_filter(expression, odd, "postgres") == ('"we""ird`col" = %s', [1])
    assert compile_filter(expression, odd, "mysql") == ("`we\"ird``col` = %s", [1])


def test_runs_on_sqlite(users, db):
    sql, params = compile_filter(parse_filter('plan = "pro" OR name LIKE "D%"'), users, "sqlite")
    rows = db.execute(f'SELECT id FROM "{users.name}" WHERE {sql} ORDER BY id', params)
    assert [row[0] for row in rows] == [1, 3, 4]


def test_relation_paths_are_refused(users):
    with pytest.raises(QueryError) as caught:
        compile_filter(parse_filter("id = 1 AND posts.id = 1"), users, "mysql")
    assert str(caught.value) == ("line 1, column 12: 'posts.id': a load-time filter can only "
                                 "use this table's own columns, not relation paths")


def test_unknown_column(users):
    with pytest.raises(UnknownNameError) as caught:
        compile_filter(parse_filter("nope = 1"), users, "postgres")
    assert (caught.value.name, caught.value.table, caught.value.available[-1]) == (
        "nope", "users", "password_hash")


def test_unknown_dialect(users):
    with pytest.raises(ValueError):
        compile_filter(parse_filter("id = 1"), users, "oracle")


def test_parse_filter_errors_have_positions():
    with pytest.raises(QueryError) as caught:
        parse_filter('plan = "pro" AND')
    assert (caught.value.position, str(caught.value)) == (
        16, "line 1, column 17: expected a field name, '(' or NOT but found the end of the query")


def test_filter_never_changes_the_database(users):
    connection = sqlite3.connect(":memory:")
    connection.execute('CREATE TABLE "app_users" ("full_name" TEXT)')
    connection.execute("INSERT INTO app_users VALUES ('x')")
    sql, params = compile_filter(parse_filter('name = "x\'); DROP TABLE app_users; --"'),
                                 users, "sqlite")
    assert connection.execute(f"SELECT * FROM app_users WHERE {sql}", params).fetchall() == []
    assert connection.execute("SELECT * FROM app_users").fetchall() == [("x",)]
