"""Property-based: whatever text a client sends, the engine answers rows or a QueryError, nothing else."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.query import QueryError, execute

# Fragments of the language, so generated text often gets past the first token.
TOKENS = st.sampled_from([
    "users", "posts", "comments", "author", "id", "name", "*", "...", "{", "}", "(", ")", "=", "!=", "<",
    ">=", "LIKE", "ILIKE", "IN", "IS", "NOT", "NULL", "BETWEEN", "AND", "OR", "ORDER BY", "LIMIT", "OFFSET",
    "DESC", ",", ".", '"x"', '"%"', "1", "-5", "1e309", "99999999999999999999", "true", "false", "`", ";",
    "--", "'", "\\", "\n", " ",
])


def query_text():
    return st.one_of(st.text(max_size=200), st.lists(TOKENS, max_size=30).map(" ".join))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=query_text())
def test_any_text_gives_rows_or_a_query_error(artifact, db, text):
    before = db.total_changes
    try:
        rows = execute(artifact, db, text)
    except QueryError as exc:
        assert str(exc) and "Traceback" not in str(exc) and "SELECT" not in str(exc)
    else:
        assert isinstance(rows, list) and all(isinstance(row, dict) for row in rows)
    assert db.total_changes == before   # nothing a query says can write to the snapshot
