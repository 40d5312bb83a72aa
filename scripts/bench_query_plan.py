"""Micro-benchmark of the query plan cache: the text cache against the shape cache (not a test).

Builds an in-memory SQLite snapshot of issue 12's blog (1,000 authors, 20,000
posts, 100,000 comments by default, laid out as bench/dataset.py describes) and
runs the benchmark's three queries in process, each with a fresh literal per
call (a random page offset, a random post id), as the instance receives them:

  before  `answer_plan(<lru_cache by text>(text))`, the engine until now: every
          new text is parsed and planned;
  after   `QueryEngine.answer(connection, text)`: the plan cached by shape, the
          literals cut out by one regex pass and bound as SQLite parameters.

It prints, per query, the median µs per call of compiling alone (text -> plan
and values) and of compiling plus executing, over alternated rounds, with the
ratios before/after, plus the same for one repeated text (where the text cache
hits too), and the costs inside the shape path: shape_of, bind, parse + plan.
Figures: docs/query-language.md, "Plan cache".

Usage: .venv/bin/python scripts/bench_query_plan.py [--authors N --posts N --comments N]
       [--calls N] [--rounds N] [--json]
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import sqlite3
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.contracts.artifact import Column, Relation, SchemaArtifact, Table  # noqa: E402
from app.query import QueryEngine, answer_plan, parse, plan_query  # noqa: E402
from app.query.shapes import compile_shape, shape_of  # noqa: E402

# The instance benchmark's queries (bench/instance.py), %d the value varied per call.
QUERIES = {
    "list": "posts(published = true) { id title LIMIT 50 OFFSET %d }",
    "nested": "posts(published = true) { id title author { name } comments(approved = true) "
              "{ body } LIMIT 50 OFFSET %d }",
    "post": "posts(id = %d) { id title author { name } comments { body } }",
}


def make_artifact() -> SchemaArtifact:
    tables = (
        Table(name="authors", primary_key=("id",), columns=(
            Column("id", "integer", nullable=False), Column("name", "text"))),
        Table(name="posts", primary_key=("id",), columns=(
            Column("id", "integer", nullable=False), Column("author_id", "integer"),
            Column("title", "text"), Column("published", "boolean"))),
        Table(name="comments", primary_key=("id",), columns=(
            Column("id", "integer", nullable=False), Column("post_id", "integer"),
            Column("body", "text"), Column("approved", "boolean"))),
    )
    relations = (
        Relation(table="posts", name="author", target="authors", columns=("author_id",),
                 target_columns=("id",), many=False),
        Relation(table="authors", name="posts", target="posts", columns=("id",),
                 target_columns=("author_id",), many=True),
        Relation(table="posts", name="comments", target="comments", columns=("id",),
                 target_columns=("post_id",), many=True),
        Relation(table="comments", name="post", target="posts", columns=("post_id",),
                 target_columns=("id",), many=False),
    )
    return SchemaArtifact(backend="postgres", schema="blog", tables=tables, relations=relations)


def make_snapshot(authors: int, posts: int, comments: int) -> sqlite3.Connection:
    """The blog as bench/dataset.py fills it, with the loader's indexes."""
    connection = sqlite3.connect(":memory:", check_same_thread=False)
    connection.executescript("""
        CREATE TABLE authors (id INTEGER PRIMARY KEY, name TEXT);
        CREATE TABLE posts (id INTEGER PRIMARY KEY, author_id INTEGER, title TEXT,
                            published INTEGER);
        CREATE TABLE comments (id INTEGER PRIMARY KEY, post_id INTEGER, body TEXT,
                               approved INTEGER);
    """)
    connection.executemany("INSERT INTO authors VALUES (?, ?)",
                           ((i, f"author {i}") for i in range(1, authors + 1)))
    connection.executemany("INSERT INTO posts VALUES (?, ?, ?, ?)",
                           ((i, (i * 13) % authors + 1, f"post {i}", int(i % 3 != 0))
                            for i in range(1, posts + 1)))
    connection.executemany("INSERT INTO comments VALUES (?, ?, ?, ?)",
                           ((i, (i * 17) % posts + 1, "x" * (20 + i % 80), int(i % 4 != 0))
                            for i in range(1, comments + 1)))
    connection.executescript("""
        CREATE INDEX posts_author ON posts (author_id);
        CREATE INDEX comments_post ON comments (post_id);
    """)
    return connection


def texts_for(query: str, calls: int, posts: int, published: int, vary: bool) -> list[str]:
    rng = random.Random(12)
    top = posts if query == "post" else max(published - 50, 1)
    return [QUERIES[query] % (rng.randint(1, top) if vary else 7) for _ in range(calls)]


def per_call_us(call, texts: list[str]) -> float:
    started = time.perf_counter()
    for text in texts:
        call(text)
    return (time.perf_counter() - started) / len(texts) * 1e6


def by_text(artifact, connection):
    """QueryEngine.answer as it was: plans cached by text."""
    engine = QueryEngine(artifact)

    def answer(text: str):
        return answer_plan(engine.compile(text), connection, engine.limits)
    return answer


def measure(artifact, connection, texts: list[str], rounds: int) -> dict:
    """Median µs per call of each way, over rounds that alternate them (fresh caches each)."""
    samples: dict[str, list[float]] = {"compile before": [], "compile after": [],
                                       "total before": [], "total after": []}
    for _ in range(rounds):
        # An engine's .compile is the text cache (QueryEngine.answer until now).
        samples["compile before"].append(per_call_us(QueryEngine(artifact).compile, texts))
        samples["compile after"].append(per_call_us(QueryEngine(artifact).plan, texts))
        samples["total before"].append(per_call_us(by_text(artifact, connection), texts))
        samples["total after"].append(per_call_us(
            functools.partial(QueryEngine(artifact).answer, connection), texts))
    return {name: statistics.median(values) for name, values in samples.items()}


def parts(artifact, texts: list[str]) -> dict:
    """µs per call of the steps inside the shape path (and of the parse + plan it saves)."""
    engine = QueryEngine(artifact)
    shaped = compile_shape(artifact, texts[0], engine.limits)
    raws = [shape_of(text)[1] for text in texts]
    return {
        "shape_of": per_call_us(shape_of, texts),
        "bind": per_call_us(lambda raw: shaped.bind(raw, engine.limits), raws),
        "parse + plan": per_call_us(
            lambda text: plan_query(artifact, parse(text, engine.limits)), texts[:300]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--authors", type=int, default=1000)
    parser.add_argument("--posts", type=int, default=20_000)
    parser.add_argument("--comments", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=1000, help="calls per round and way")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()

    artifact = make_artifact()
    connection = make_snapshot(args.authors, args.posts, args.comments)
    published = args.posts - args.posts // 3
    results = {}
    for query in QUERIES:
        for vary in (True, False):
            texts = texts_for(query, args.calls, args.posts, published, vary)
            figures = measure(artifact, connection, texts, args.rounds)
            figures["compile ratio"] = figures["compile before"] / figures["compile after"]
            figures["total ratio"] = figures["total before"] / figures["total after"]
            if vary:
                figures.update(parts(artifact, texts))
            results[f"{query} ({'varied' if vary else 'repeated'})"] = figures

    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"µs per call, median of {args.rounds} alternated rounds of {args.calls} calls "
          f"({args.authors} authors, {args.posts} posts, {args.comments} comments)")
    print(f"{'query':<20} {'compile before':>14} {'after':>8} {'ratio':>7} "
          f"{'+execute before':>16} {'after':>8} {'ratio':>7} {'shape_of':>9} {'bind':>6} "
          f"{'parse+plan':>10}")
    for name, f in results.items():
        extra = (f"{f['shape_of']:>9.1f} {f['bind']:>6.1f} {f['parse + plan']:>10.0f}"
                 if "shape_of" in f else "")
        print(f"{name:<20} {f['compile before']:>14.1f} {f['compile after']:>8.1f} "
              f"{f['compile ratio']:>6.1f}× {f['total before']:>16.1f} {f['total after']:>8.1f} "
              f"{f['total ratio']:>6.2f}× {extra}")


if __name__ == "__main__":
    main()
