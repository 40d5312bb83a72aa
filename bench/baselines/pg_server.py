"""The direct baseline: the instance's three answers from PostgreSQL, 3 batched queries at most.

A WSGI app, run by the suite under gunicorn (gthread, keep-alive):
    BENCH_PG_DSN=... gunicorn -k gthread -w 2 --threads 2 bench.baselines.pg_server:app
POST /query with {"q": "list" | "nested" | "post", "n": offset or post id}.
"""

import os
import threading

import orjson
import psycopg2

_local = threading.local()
PAGE = ("SELECT id, title, author_id FROM blog.posts WHERE published "
        "ORDER BY id LIMIT 50 OFFSET %s")
ONE = "SELECT id, title, author_id FROM blog.posts WHERE id = %s"
AUTHORS = "SELECT id, name FROM blog.authors WHERE id = ANY(%s)"
COMMENTS = "SELECT post_id, body FROM blog.comments WHERE post_id = ANY(%s){} ORDER BY id"


def cursor():
    if getattr(_local, "conn", None) is None:
        _local.conn = psycopg2.connect(os.environ["BENCH_PG_DSN"])
        _local.conn.autocommit = True
    return _local.conn.cursor()


def answer(kind: str, n: int) -> list:
    with cursor() as cur:
        cur.execute(ONE if kind == "post" else PAGE, (n,))
        posts = cur.fetchall()
        if kind == "list":
            return [{"id": i, "title": t} for i, t, _ in posts]
        cur.execute(AUTHORS, (list({a for _, _, a in posts}),))
        names = dict(cur.fetchall())
        cur.execute(COMMENTS.format("" if kind == "post" else " AND approved"),
                    ([i for i, _, _ in posts],))
        comments: dict[int, list] = {}
        for post_id, body in cur.fetchall():
            comments.setdefault(post_id, []).append({"body": body})
    return [{"id": i, "title": t, "author": {"name": names[a]}, "comments": comments.get(i, [])}
            for i, t, a in posts]


def app(environ, start_response):
    try:
        size = int(environ.get("CONTENT_LENGTH") or 0)
        request = orjson.loads(environ["wsgi.input"].read(size))
        body, status = orjson.dumps(answer(request["q"], int(request["n"]))), "200 OK"
    except (ValueError, KeyError) as exc:
        body, status = orjson.dumps({"error": "bad_request", "message": str(exc)}), "400 Bad Request"
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))])
    return [body]
