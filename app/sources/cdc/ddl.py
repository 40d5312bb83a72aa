"""What a DDL statement from the MySQL/MariaDB binlog does to which tables.

The binlog carries DDL and TRUNCATE as statement text (a Query event), not as row events.
`classify` reads the statements that change a table's shape or empty it; anything else
(GRANT, CREATE VIEW, indexes...) changes no row a snapshot holds and is ignored.
"""

from __future__ import annotations

import re

# A character of an unquoted identifier: [A-Za-z0-9_$\u0080-\uffff], written as the characters it
# excludes: the same set (checked over every code point), but its compiled form is a
# few ASCII ranges, where the positive one took ~4 ms per use under re.I (~100 ms of import).
_UNQUOTED = r"[^\x00-#%-/:-@\[-^`{-\x7f\U00010000-\U0010ffff]"
_IDENT = rf"(?:`(?:[^`]|``)+`|{_UNQUOTED}+)"
_QNAME = rf"{_IDENT}(?:\s*\.\s*{_IDENT})?"
_LIST = rf"{_QNAME}(?:\s*,\s*{_QNAME})*"

_TRUNCATE = re.compile(rf"TRUNCATE\s+(?:TABLE\s+)?({_QNAME})", re.I | re.S)
_ALTER = re.compile(rf"ALTER\s+(?:ONLINE\s+)?(?:IGNORE\s+)?TABLE\s+(?:IF\s+EXISTS\s+)?"
                    rf"({_QNAME})(.*)", re.I | re.S)
_RENAME_CLAUSE = re.compile(r"(?:^|,)\s*RENAME\s+(?!COLUMN\b|INDEX\b|KEY\b)", re.I)
_DROP = re.compile(rf"DROP\s+(TEMPORARY\s+)?TABLES?\s+(?:IF\s+EXISTS\s+)?({_LIST})",
                   re.I | re.S)
_RENAME = re.compile(rf"RENAME\s+TABLES?\s+({_QNAME}\s+TO\s+{_QNAME}"
                     rf"(?:\s*,\s*{_QNAME}\s+TO\s+{_QNAME})*)", re.I | re.S)
_CREATE = re.compile(rf"CREATE\s+(?:OR\s+REPLACE\s+)?(TEMPORARY\s+)?TABLE\s+"
                     rf"(?:IF\s+NOT\s+EXISTS\s+)?({_QNAME})", re.I | re.S)
_DROP_DATABASE = re.compile(rf"DROP\s+(?:DATABASE|SCHEMA)\s+(?:IF\s+EXISTS\s+)?({_IDENT})",
                            re.I | re.S)
# Statements that may change a table but that the patterns above did not read.
_SHAPE_CHANGING = re.compile(r"(?:ALTER|DROP|RENAME|TRUNCATE)\s+(?:\w+\s+)*?TABLES?\b|"
                             r"CREATE\s+(?:OR\s+REPLACE\s+)?(?:TEMPORARY\s+)?TABLE\b", re.I)
_COMMENT = re.compile(r"/\*!\d*\s?(.*?)\*/|/\*.*?\*/|(?:--\s|#)[^\n]*", re.S)


def _uncomment(statement: str) -> str:
    # Executable comments (/*!50100 ... */) run on the server: keep what is inside.
    return _COMMENT.sub(lambda m: f" {m.group(1)} " if m.group(1) else " ", statement).strip()


def _unquote(identifier: str) -> str:
    identifier = identifier.strip()
    if identifier.startswith("`"):
        return identifier[1:-1].replace("``", "`")
    return identifier


def _split_name(qualified: str, default_schema: str | None) -> tuple[str | None, str]:
    parts = re.findall(_IDENT, qualified)
    if len(parts) == 2:
        return _unquote(parts[0]), _unquote(parts[1])
    return default_schema, _unquote(parts[0])


def _names(listed: str, default_schema: str | None) -> list[tuple[str | None, str]]:
    return [_split_name(match.group(0), default_schema)
            for match in re.finditer(_QNAME, listed)]


def classify(statement: str, default_schema: str | None) -> list[tuple[str | None, str | None, str]]:
    """(schema, table, kind) for each table `statement` changes; kind is a SCHEMA_CHANGE_KIND.

    `table` is None for DROP DATABASE (every table) and for a statement that changes tables
    but could not be read ("unknown"; schema is then the session's default schema).
    """
    text = _uncomment(statement)
    match = _TRUNCATE.match(text)
    if match:
        return [(*_split_name(match.group(1), default_schema), "truncate")]
    match = _ALTER.match(text)
    if match:
        kind = "rename" if _RENAME_CLAUSE.search(match.group(2)) else "alter"
        return [(*_split_name(match.group(1), default_schema), kind)]
    match = _DROP.match(text)
    if match:
        if match.group(1):   # a temporary table is private to its session
            return []
        return [(schema, table, "drop") for schema, table in _names(match.group(2),
                                                                     default_schema)]
    match = _RENAME.match(text)
    if match:
        pairs = re.finditer(rf"({_QNAME})\s+TO\s+({_QNAME})", match.group(1), re.I)
        return [(*_split_name(name, default_schema), "rename")
                for pair in pairs for name in pair.groups()]
    match = _CREATE.match(text)
    if match:
        if match.group(1):   # a temporary table is private to its session
            return []
        return [(*_split_name(match.group(2), default_schema), "create")]
    match = _DROP_DATABASE.match(text)
    if match:
        return [(_unquote(match.group(1)), None, "drop")]
    if _SHAPE_CHANGING.match(text):
        return [(default_schema, None, "unknown")]
    return []
