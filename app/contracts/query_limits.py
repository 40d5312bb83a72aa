"""The limits every query is held to: their names, defaults and accepted ranges.

One definition for both planes: the instance settings file carries them (flat,
camelCase), the query engine enforces them, and the config validation of the
control plane parses its `where` filters under the defaults. Past a limit a
query is refused, never run partway: see docs/query-language.md.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

MIB = 1024 * 1024


@dataclass(frozen=True)
class QueryLimits:
    """Bounds on what one query may ask for; immutable and hashable (plans are cached by it)."""

    max_query_bytes: int = 64 * 1024
    max_selection_depth: int = 10
    max_filter_depth: int = 16
    max_filter_terms: int = 500
    max_path_relations: int = 4
    default_limit: int = 1000
    max_limit: int = 10_000
    max_offset: int = 1_000_000
    max_answer_rows: int = 100_000
    max_answer_bytes: int = 16 * MIB
    query_timeout_ms: int = 2000

    def __post_init__(self):
        problems = limit_problems({f.name: getattr(self, f.name) for f in fields(self)})
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(frozen=True)
class LimitSpec:
    """How one limit is named on the wire, what it accepts and what it bounds."""

    name: str          # camelCase: settings file key, and the name in error messages
    minimum: int
    maximum: int
    description: str

    @property
    def accepts(self) -> str:
        return f"an integer from {self.minimum} to {self.maximum}"


# Upper bounds keep each limit within what the engine is proven to survive
# (tests/query/test_query_limits.py runs the worst shapes at these bounds):
# Python's recursion limit (selection and filter depth), SQLite's parser
# stack of about 100 entries (filter depth, path length), the work SQLite does
# preparing long OR chains, which no time budget can interrupt (terms), and
# parsing time (text size).
LIMIT_SPECS: dict[str, LimitSpec] = {
    "max_query_bytes": LimitSpec(
        "maxQueryBytes", 1024, 256 * 1024,
        "Size of the query text in bytes (UTF-8). Over it: 413 `payload_too_large`."),
    "max_selection_depth": LimitSpec(
        "maxSelectionDepth", 1, 32,
        "How deeply selections nest: `users { posts { comments { id } } }` is 3."),
    "max_filter_depth": LimitSpec(
        "maxFilterDepth", 1, 32,
        "How deeply one filter nests: its own parentheses, each inner pair of parentheses "
        "and each NOT open one level: `(a = 1)` is 1, `(NOT (a = 1 OR b = 2))` is 3."),
    "max_filter_terms": LimitSpec(
        "maxFilterTerms", 1, 5000,
        "Terms in all the filters of a query together: each comparison, LIKE, IS NULL and "
        "BETWEEN counts one, an IN list one per value."),
    "max_path_relations": LimitSpec(
        "maxPathRelations", 0, 8,
        "Relations one dotted filter path may follow: `posts.comments.approved` follows 2."),
    "default_limit": LimitSpec(
        "defaultLimit", 1, 1_000_000,
        "Rows the root selection returns when it gives no LIMIT."),
    "max_limit": LimitSpec(
        "maxLimit", 1, 1_000_000,
        "Highest LIMIT accepted on any selection (LIMIT takes 0 to this)."),
    "max_offset": LimitSpec(
        "maxOffset", 0, 1_000_000_000,
        "Highest OFFSET accepted on any selection (OFFSET takes 0 to this)."),
    "max_answer_rows": LimitSpec(
        "maxAnswerRows", 1, 10_000_000,
        "Row objects in one answer at every level, counted as sent: a row nested under two "
        "parents counts twice."),
    "max_answer_bytes": LimitSpec(
        "maxAnswerBytes", 1024, 1024 * MIB,
        "Size of one answer's JSON in bytes, estimated before it is encoded and checked "
        "exactly after."),
    "query_timeout_ms": LimitSpec(
        "queryTimeoutMs", 10, 60_000,
        "Time one query may run, in milliseconds, from the start of its first statement."),
}


def limit_problems(values: dict[str, object]) -> list[str]:
    """One line per value out of its range, naming the limit and what it accepts."""
    problems = []
    for name, spec in LIMIT_SPECS.items():
        value = values.get(name)
        if (not isinstance(value, int) or isinstance(value, bool)
                or not spec.minimum <= value <= spec.maximum):
            problems.append(f"{spec.name}: {spec.accepts}, not {value!r}")
    return problems


DEFAULT_LIMITS = QueryLimits()

__all__ = ["DEFAULT_LIMITS", "LIMIT_SPECS", "LimitSpec", "QueryLimits", "limit_problems"]
