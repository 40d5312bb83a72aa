"""Runs a plan over a snapshot connection and builds the JSON-ready rows, within the limits.

Related objects are shared: a forward relation's object, or a reverse
relation's list, is built once and referenced by every parent row with that
key. The answer in memory is therefore a DAG about as large as the rows
fetched, while the JSON a client receives is a tree that repeats shared
objects and can be exponentially larger (`posts { author { posts { author
... } } }`). The answer limits count that tree: each node's rows carry their
subtree's row count and estimated JSON size, computed bottom-up while the
DAG is built, and the query is refused at the first node whose rows already
exceed a limit, before anything is encoded.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from operator import itemgetter

from app.contracts.artifact import SchemaArtifact
from app.contracts.query_limits import DEFAULT_LIMITS, QueryLimits

from .errors import QueryLimitError
from .jsonsql import UNSAFE_FUNCTION
from .parser import check_size, parse
from .planner import ChildPlan, ColumnOutput, NodePlan, Plan, Slot, compile_query, plan_query
from .shapes import ShapeCache, shape_of

# SQLite virtual machine instructions between two deadline checks: about 5%
# of a scan's time at 1,000 (measured: 15.2 ms plain, 16.1 ms checked).
_PROGRESS_STEPS = 1000
# How SQLite says a statement is beyond its parser or expression limits.
_TOO_COMPLEX = ("parser stack overflow", "Expression tree is too large",
                "too many SQL variables", "too many terms in compound SELECT")


class SharedConnection(sqlite3.Connection):
    """A snapshot connection shared by request threads, whose statements stop at a deadline.

    Open it with `sqlite3.connect(..., factory=SharedConnection)` and call
    `enforce_time_budget()` once it is loaded. Statements then run one at a
    time under `statement_lock`: the deadline check is Python code, which
    needs the GIL while the running statement holds the connection's mutex,
    and the sqlite3 module reads columns and binds parameters with the GIL
    held, waiting for that mutex; without the lock two request threads
    deadlock (seen as a hung worker). SQLite serialises a connection's
    statements anyway, and the Python work around them holds the GIL.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.statement_lock = threading.Lock()
        self.deadline: float | None = None  # of the statement holding the lock
        # Called by JSON statements on a value they cannot write exactly
        # (app.query.jsonsql): raising sends the query to the Python path.
        self.create_function(UNSAFE_FUNCTION, 0, _unsafe_value)

    def enforce_time_budget(self) -> None:
        """Interrupt statements run by the executor at their query's deadline."""
        self.set_progress_handler(self._past_deadline, _PROGRESS_STEPS)

    def _past_deadline(self) -> int:
        deadline = self.deadline
        return 1 if deadline is not None and time.monotonic() > deadline else 0


class _UnsafeValue(Exception):
    """A JSON statement met a value SQLite would not write as the Python path does."""


def _unsafe_value():
    raise _UnsafeValue


def execute(artifact: SchemaArtifact, connection: sqlite3.Connection, text: str, *,
            limits: QueryLimits = DEFAULT_LIMITS, **overrides) -> list[dict]:
    """Run query `text` over the snapshot in `connection`: a list of row objects.

    `overrides` replace single limits, e.g. `default_limit=10`.
    """
    if overrides:
        limits = dataclasses.replace(limits, **overrides)
    return run_plan(compile_query(artifact, text, limits), connection, limits)


def run_plan(plan: Plan, connection: sqlite3.Connection,
             limits: QueryLimits = DEFAULT_LIMITS) -> list[dict]:
    """Run a compiled plan: one statement per selection node that has parent rows."""
    return answer_plan(plan, connection, limits).objects


@dataclass(frozen=True)
class Answer:
    """A query's row objects, and the size of the JSON they make (as sent)."""

    objects: list[dict]
    rows: int            # row objects at every level
    estimated_bytes: int  # JSON bytes, escapes not counted


def answer_plan(plan: Plan, connection: sqlite3.Connection,
                limits: QueryLimits = DEFAULT_LIMITS, values: tuple = (), *,
                started: float | None = None) -> Answer:
    """Run a compiled plan and measure its answer.

    `values` are the literal values a plan for a query's shape binds to its
    slots (checked already: see `app.query.shapes`). `started` (time.monotonic())
    is when the query's time budget began, if before this call (a JSON
    statement tried first: see `answer_json`). Raises QueryLimitError
    past the answer limits or the time budget; the budget interrupts
    statements only on a `SharedConnection` that enforces it.
    """
    limit, offset = plan.limit, plan.offset
    if values:
        limit = limit.bind(values) if isinstance(limit, Slot) else limit
        offset = offset.bind(values) if isinstance(offset, Slot) else offset
    if limit is None:
        limit = min(limits.default_limit, limits.max_limit)
    run = _Run(connection, limits, values, started)
    rows = run.fetch(plan.root.sql, (*run.params(plan.root), limit, offset),
                     plan.root.size_index)
    objects, total_rows, total_bytes = run.build(plan.root, rows)
    total_bytes += 2  # the brackets of the answer's list
    run.check_tree(total_rows, total_bytes)
    return Answer(objects, total_rows, total_bytes)


# JSON statements SQLite refused to prepare as too complex: not tried again
# (a set of at most this many, emptied when full).
_TOO_COMPLEX_STATEMENTS: set[str] = set()
_TOO_COMPLEX_MEMORY = 256

# Near the answer limits the Python path decides: its byte count is an
# estimate made before encoding, which may exceed the encoded size by about a
# byte per boolean and per list (measured well under this margin).
_JSON_BYTES_MARGIN = 5 / 4
# The longest answer SQLite writes: building one takes a few times its size in
# SQLite's heap (group_concat grows by doubling, `||` copies), which a reader
# caps (app/instance/memory.py: 32 MiB); longer answers take the Python path.
JSON_MAX_BYTES = 4 * 1024 * 1024


def answer_json(plan: Plan, connection: sqlite3.Connection,
                limits: QueryLimits = DEFAULT_LIMITS, values: tuple = (), *,
                started: float | None = None) -> bytes | None:
    """The answer's JSON bytes from the plan's one statement, or None: take the Python path.

    None when the plan has no JSON statement, when the statement meets a
    value it cannot write exactly, or when the answer is near or past a limit
    (the Python path refuses it with its own message, or answers it: one
    verdict for both). The statement cannot build a string over
    max_answer_bytes nor JSON_MAX_BYTES (SQLite's length limit is set to the
    lower while it runs), so its work is bounded before the answer is counted;
    running out of SQLite's heap declines too; the deadline holds as
    for every statement; pass the same `started` to `answer_plan` after a
    None, so that both paths together stay within one budget.
    """
    if (plan.json_sql is None or not isinstance(connection, SharedConnection)
            or plan.json_sql in _TOO_COMPLEX_STATEMENTS):
        return None
    limit, offset = plan.limit, plan.offset
    if values:
        limit = limit.bind(values) if isinstance(limit, Slot) else limit
        offset = offset.bind(values) if isinstance(offset, Slot) else offset
        params = tuple(param.bind(values) if type(param) is Slot else param
                       for param in plan.json_params)
    else:
        params = plan.json_params
    if limit is None:
        limit = min(limits.default_limit, limits.max_limit)
    run = _Run(connection, limits, values, started)
    try:
        body = run.fetch_json(plan.json_sql, (*params, limit, offset))
    except (_UnsafeValue, sqlite3.DataError):
        return None
    # Every object opens with a brace; braces in strings only overcount.
    if (len(body) * _JSON_BYTES_MARGIN > limits.max_answer_bytes
            or body.count(b"{") > limits.max_answer_rows):
        return None
    return body


class QueryEngine:
    """Queries over snapshots of one artifact, with plans cached by query shape.

    A query's shape is its text with the literal values (filter strings and
    numbers, LIMIT and OFFSET) left out: texts that differ only in those share
    one plan, whose values are checked and bound on every run. Texts the
    shapes cannot serve (and every error) take the exact-text path: the full
    parse of the text, its plans cached by text. In front of both, the plan
    and values of the latest texts are kept by text, so that a repeated text
    costs one lookup.
    """

    def __init__(self, artifact: SchemaArtifact, *, limits: QueryLimits = DEFAULT_LIMITS,
                 cache_size: int = 512, **overrides):
        self.artifact = artifact
        self.limits = dataclasses.replace(limits, **overrides) if overrides else limits
        self.shapes = ShapeCache(artifact, self.limits, cache_size)
        self.compile = functools.lru_cache(maxsize=cache_size)(self._compile)
        self.plan = functools.lru_cache(maxsize=cache_size)(self._plan)

    def _compile(self, text: str) -> Plan:
        return plan_query(self.artifact, parse(text, self.limits))

    def _plan(self, text: str) -> tuple[Plan, tuple]:
        """The plan for `text` and the values to run it with (raises the text's QueryError)."""
        if isinstance(text, str):
            check_size(text, self.limits)
            shape = shape_of(text)
            if shape is not None:
                key, raws = shape
                shaped = self.shapes.plan(key, text)
                if shaped is not None:
                    values = shaped.bind(raws, self.limits)
                    if values is not None:
                        return shaped.plan, values
        # Not a shape's (or a value the full parse refuses, with its position).
        return self.compile(text), ()

    def execute(self, connection: sqlite3.Connection, text: str) -> list[dict]:
        """Run query `text` over the snapshot in `connection`."""
        return self.answer(connection, text).objects

    def answer(self, connection: sqlite3.Connection, text: str, *,
               started: float | None = None) -> Answer:
        """Run query `text` and measure its answer (`started`: see `answer_plan`)."""
        plan, values = self.plan(text)
        return answer_plan(plan, connection, self.limits, values, started=started)

    def answer_json(self, connection: sqlite3.Connection, text: str, *,
                    started: float | None = None) -> bytes | None:
        """Query `text`'s answer as JSON bytes built by SQLite, or None: call `answer`.

        Raises the text's QueryError, and QueryLimitError for the time budget.
        """
        plan, values = self.plan(text)
        return answer_json(plan, connection, self.limits, values, started=started)

    def respond(self, connection: sqlite3.Connection, text: str) -> bytes | Answer:
        """What the instance sends for `text`: SQLite's JSON bytes, else the Python path's answer.

        One time budget for both, from when the plan is ready (as for either alone).
        """
        plan, values = self.plan(text)
        started = time.monotonic()
        body = answer_json(plan, connection, self.limits, values, started=started)
        if body is not None:
            return body
        return answer_plan(plan, connection, self.limits, values, started=started)


class _Run:
    """One execution: its deadline and the rows and bytes fetched so far."""

    def __init__(self, connection: sqlite3.Connection, limits: QueryLimits, values: tuple = (),
                 started: float | None = None):
        self.connection = connection
        self.limits = limits
        self.values = values
        if started is None:
            started = time.monotonic()
        self.deadline = started + limits.query_timeout_ms / 1000
        self.rows = 0
        self.bytes = 0

    # -- limits --------------------------------------------------------------

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise self.timed_out()

    def timed_out(self) -> QueryLimitError:
        budget = self.limits.query_timeout_ms
        return QueryLimitError(f"the query ran longer than {budget} ms",
                               limit="query_timeout_ms", value=budget,
                               hint="narrow its filters or ask for fewer rows")

    def check_tree(self, rows: int, size: int) -> None:
        """Refuse an answer (or part of one) of `rows` objects and about `size` JSON bytes."""
        limits = self.limits
        if rows > limits.max_answer_rows:
            raise QueryLimitError(
                f"the answer would hold more than {limits.max_answer_rows} objects, counting "
                "every level as sent (an object under two parents counts twice)",
                limit="max_answer_rows", value=limits.max_answer_rows,
                hint="ask for fewer rows with filters and LIMIT, or nest fewer relations")
        if size > limits.max_answer_bytes:
            raise answer_too_large(limits)

    # -- statements ----------------------------------------------------------

    def params(self, node: NodePlan) -> tuple:
        """A node's statement parameters, its slots bound to this run's values."""
        values = self.values
        if not values:
            return node.params
        return tuple(param.bind(values) if type(param) is Slot else param
                     for param in node.params)

    def fetch(self, sql: str, params: tuple, size_index: int) -> list[tuple]:
        """All rows of one statement; never more than the answer could still hold."""
        self.check_time()
        room = self.limits.max_answer_rows - self.rows
        try:
            rows = self._read_in_turn(sql, params, room)
        except sqlite3.OperationalError as exc:
            raise self.refusal(exc) from None
        # Every fetched row appears at least once in the answer, so the rows
        # and bytes fetched so far are a lower bound of the answer's.
        self.rows += len(rows)
        self.bytes += sum(map(itemgetter(size_index), rows))
        self.check_tree(self.rows, self.bytes)
        return rows

    def fetch_json(self, sql: str, params: tuple) -> bytes:
        """The one value of a JSON statement; raises `_UnsafeValue` where the Python path must answer."""
        self.check_time()
        lock = self.connection.statement_lock
        if not lock.acquire(timeout=max(self.deadline - time.monotonic(), 0)):
            raise self.timed_out()
        connection = self.connection
        connection.deadline = self.deadline
        # No string the statement builds may pass the answer's byte limit (nor JSON_MAX_BYTES).
        length = connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH,
                                     min(self.limits.max_answer_bytes, JSON_MAX_BYTES))
        try:
            cursor = connection.cursor()
            try:
                cursor.row_factory = None
                cursor.execute(sql, params)
                return cursor.fetchone()[0]
            finally:
                cursor.close()
        except sqlite3.OperationalError as exc:
            message = str(exc)
            if "interrupted" in message:
                raise self.timed_out() from None
            # A value it cannot write (the function raised), or a statement
            # past SQLite's parser limits: the Python path answers or refuses.
            if "user-defined function" in message:
                raise _UnsafeValue from None
            if any(sign in message for sign in _TOO_COMPLEX):
                # About 15 entries of SQLite's parser stack (100) per nested
                # selection: selections 7 deep, or fewer with deep filters.
                if len(_TOO_COMPLEX_STATEMENTS) >= _TOO_COMPLEX_MEMORY:
                    _TOO_COMPLEX_STATEMENTS.clear()
                _TOO_COMPLEX_STATEMENTS.add(sql)
                raise _UnsafeValue from None
            raise
        except MemoryError:
            # SQLite's heap limit met while building the string (sqlite3 raises
            # MemoryError for SQLITE_NOMEM): the Python path counts the answer
            # row by row and refuses it with the limit it passes, if any.
            raise _UnsafeValue from None
        finally:
            connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, length)
            connection.deadline = None
            lock.release()

    def refusal(self, exc: sqlite3.OperationalError) -> Exception:
        """The client's error for a statement SQLite stopped, or `exc` itself (a defect)."""
        message = str(exc)
        if "interrupted" in message:
            return self.timed_out()
        if any(sign in message for sign in _TOO_COMPLEX):
            # The limits keep statements well inside SQLite's parser stack and
            # expression depth (measured at their maxima); this is the net
            # under that measurement.
            depth = self.limits.max_filter_depth
            return QueryLimitError("the filters are too deeply nested or too long for the "
                                   "query engine", limit="max_filter_depth", value=depth,
                                   hint="simplify them")
        return exc

    def _read_in_turn(self, sql: str, params: tuple, room: int) -> list[tuple]:
        connection = self.connection
        lock = getattr(connection, "statement_lock", None)
        if lock is None:  # a private connection: no deadline inside statements
            return self._read(sql, params, room)
        if not lock.acquire(timeout=max(self.deadline - time.monotonic(), 0)):
            raise self.timed_out()
        connection.deadline = self.deadline
        try:
            return self._read(sql, params, room)
        finally:
            connection.deadline = None
            lock.release()

    def _read(self, sql: str, params: tuple, room: int) -> list[tuple]:
        cursor = self.connection.cursor()
        try:
            # Rows are read by position whatever row factory the loader chose.
            cursor.row_factory = None
            cursor.execute(sql, params)
            return cursor.fetchmany(room + 1)
        finally:
            cursor.close()  # resets the statement while the lock is held

    # -- building ------------------------------------------------------------

    def build(self, node: NodePlan, rows: list[tuple], grouping: ChildPlan | None = None):
        """The row objects of `node`, and the rows and JSON bytes of the tree they stand for.

        For the root (`grouping` None): `(objects, rows, bytes)`. For a child:
        `(groups, rows, bytes)` where `groups` maps a parent key to
        `[value, rows, bytes]`: the list of objects (or the one object of a
        forward relation) and the size of their subtrees as sent. Keys are
        scalars for one-column relations and tuples otherwise, on both sides
        (itemgetter's own convention).
        """
        related = [self.fetch_children(child, rows) for child in node.children]
        self.check_time()
        # Resolve each output once per node, not once per row: this loop is the
        # hot path of every query.
        steps = []
        for output in node.outputs:
            if isinstance(output, ColumnOutput):
                steps.append((False, output.key, output.index, output.convert, None))
            else:
                child = node.children[output.child]
                # A parent without related rows gets [] or null: one shared empty
                # list, like every related value (answers are read-only).
                steps.append((True, output.key, itemgetter(*child.parent_key),
                              related[output.child], [] if child.many else None))
        size_index, fixed = node.size_index, node.fixed_size
        link = itemgetter(*node.link) if grouping is not None else None
        many = grouping is not None and grouping.many
        objects, groups = [], {}
        # What related objects add to the root's rows (their own size is known
        # without a loop).
        nested_rows = nested_bytes = 0
        for row in rows:
            tree_rows = tree_bytes = 0
            item = {}
            for is_relation, key, where, extra, missing in steps:
                if is_relation:
                    found = extra.get(where(row))
                    if found is None:
                        item[key] = missing
                    else:
                        item[key] = found[0]
                        tree_rows += found[1]
                        tree_bytes += found[2]
                else:
                    value = row[where]
                    item[key] = extra(value) if extra is not None and value is not None else value
            if link is None:
                objects.append(item)
                nested_rows += tree_rows
                nested_bytes += tree_bytes
                continue
            parent_key = link(row)
            group = groups.get(parent_key)
            if group is None:
                groups[parent_key] = [[item] if many else item, tree_rows + 1,
                                      tree_bytes + fixed + row[size_index]]
            elif many:
                group[0].append(item)
                group[1] += tree_rows + 1
                group[2] += tree_bytes + fixed + row[size_index]
        if link is None:
            total_rows = len(rows) + nested_rows
            total_bytes = fixed * len(rows) + sum(map(itemgetter(size_index), rows)) + nested_bytes
        else:
            total_rows = sum(group[1] for group in groups.values())
            total_bytes = sum(group[2] for group in groups.values())
        # Each fetched row appears in the answer at least once, so this node's
        # totals are a lower bound of the answer's: refuse before a parent
        # multiplies them.
        self.check_tree(total_rows, total_bytes)
        return (objects if link is None else groups), total_rows, total_bytes

    def fetch_children(self, child: ChildPlan, parent_rows: list[tuple]) -> dict:
        """Parent key -> `[value, rows, bytes]` of a nested selection (see `build`)."""
        parent_key = itemgetter(*child.parent_key)
        composite = len(child.parent_key) > 1
        keys = dict.fromkeys(parent_key(row) for row in parent_rows)
        keys = [key for key in keys if (None not in key if composite else key is not None)]
        if not keys:
            return {}
        payload = json.dumps([_json_key(key if composite else (key,)) for key in keys])
        rows = self.fetch(child.node.sql, (payload, *self.params(child.node)),
                          child.node.size_index)
        return self.build(child.node, rows, child)[0]


def answer_too_large(limits: QueryLimits) -> QueryLimitError:
    """The error for an answer over max_answer_bytes (estimated, or once encoded)."""
    return QueryLimitError(
        f"the answer would be larger than {limits.max_answer_bytes} bytes of JSON",
        limit="max_answer_bytes", value=limits.max_answer_bytes,
        hint="ask for fewer rows or fields, or nest fewer relations")


def _json_key(key: tuple):
    # Bytes are not JSON: binary keys travel as upper-case hex, which the
    # statement matches against hex(column) (see ChildPlan.binary_key).
    values = [value.hex().upper() if isinstance(value, bytes) else value for value in key]
    return values[0] if len(values) == 1 else values


__all__ = ["Answer", "QueryEngine", "SharedConnection", "answer_json", "answer_plan",
           "answer_too_large",
           "execute", "run_plan"]
