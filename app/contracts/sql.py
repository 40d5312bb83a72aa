"""How identifiers reach SQL text, for the snapshot (SQLite) and the sources (MySQL, PostgreSQL)."""

from __future__ import annotations

DIALECTS = ("sqlite", "mysql", "postgres")


def quote_identifier(name: str, dialect: str) -> str:
    """`name` quoted for `dialect`: the only way identifiers reach SQL text.

    For the sources (mysql, postgres) `%` is written `%%`: PyMySQL and psycopg2
    %-format a statement only when given parameters, so every statement that
    holds an identifier is executed with a parameter sequence (empty when it
    has no placeholder) and the doubling is undone exactly once, whatever the
    statement contains. SQLite uses `?` placeholders: no doubling.
    """
    if dialect == "mysql":
        return "`" + name.replace("`", "``").replace("%", "%%") + "`"
    quoted = '"' + name.replace('"', '""') + '"'
    return quoted if dialect == "sqlite" else quoted.replace("%", "%%")


__all__ = ["DIALECTS", "quote_identifier"]
