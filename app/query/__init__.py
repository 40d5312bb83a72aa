"""The instance query language: parse, plan and run queries over a snapshot, within limits.

The user manual, the limits and the Python API are in docs/query-language.md.
"""

from app.contracts.query_limits import DEFAULT_LIMITS, QueryLimits

from .errors import QueryError, QueryLimitError, QuerySyntaxError, UnknownNameError
from .executor import (
    Answer,
    QueryEngine,
    SharedConnection,
    answer_plan,
    answer_too_large,
    execute,
    run_plan,
)
from .filters import DIALECTS, compile_filter
from .parser import parse, parse_filter
from .planner import Plan, compile_query, plan_query

__all__ = ["DEFAULT_LIMITS", "DIALECTS", "Answer", "Plan", "QueryEngine", "QueryError",
           "QueryLimitError", "QueryLimits", "QuerySyntaxError", "SharedConnection",
           "UnknownNameError", "answer_plan", "answer_too_large", "compile_filter",
           "compile_query", "execute", "parse", "parse_filter", "plan_query", "run_plan"]
