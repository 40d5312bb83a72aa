"""The blog dataset, generated deterministically in PostgreSQL and (for mysqldump) in MariaDB.

authors(id, name), posts(id, author_id, title, published), comments(id, post_id, body, approved):
post i is by author (i*13 mod A)+1 and published unless i is a multiple of 3; comment i is on
post (i*17 mod P)+1, approved unless i is a multiple of 4, with a 20–99 character body.
"""

from __future__ import annotations

import contextlib

from bench.common import MARIADB, create_pg_database, mariadb_admin, pg_admin

SCHEMA = "blog"
TABLES = ("authors", "posts", "comments")


def published_count(posts: int) -> int:
    return posts - posts // 3


def create_pg(dbname: str, authors: int, posts: int, comments: int) -> None:
    """Database `dbname`, schema `blog`, with the rows above, indexed on its foreign keys."""
    create_pg_database(dbname)
    with contextlib.closing(pg_admin(dbname)) as conn, conn.cursor() as cur:
        cur.execute(f"""
            CREATE SCHEMA {SCHEMA};
            SET search_path TO {SCHEMA};
            CREATE TABLE authors (id integer PRIMARY KEY, name varchar(100) NOT NULL);
            CREATE TABLE posts (id integer PRIMARY KEY,
                                author_id integer NOT NULL REFERENCES authors (id),
                                title varchar(200) NOT NULL, published boolean NOT NULL);
            CREATE TABLE comments (id integer PRIMARY KEY,
                                   post_id integer NOT NULL REFERENCES posts (id),
                                   body text NOT NULL, approved boolean NOT NULL);
            INSERT INTO authors SELECT i, 'author ' || i FROM generate_series(1, {authors}) i;
            INSERT INTO posts SELECT i, (i * 13) % {authors} + 1, 'post ' || i, i % 3 <> 0
                FROM generate_series(1, {posts}) i;
            INSERT INTO comments SELECT i, (i::bigint * 17) % {posts} + 1,
                                        'comment ' || i || ' ' || repeat('x', 20 + i % 80), i % 4 <> 0
                FROM generate_series(1, {comments}) i;
            CREATE INDEX posts_author_id ON posts (author_id);
            CREATE INDEX comments_post_id ON comments (post_id);
            -- PostGraphile offers conditions only on indexed columns.
            CREATE INDEX posts_published ON posts (published, id);
            CREATE INDEX comments_approved ON comments (approved);
            ANALYZE;
        """)


def create_mariadb(name: str, authors: int, posts: int, comments: int) -> None:
    """The same rows in a MariaDB database `name` (its SEQUENCE engine plays generate_series)."""
    with contextlib.closing(mariadb_admin()) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        cur.execute(f"CREATE DATABASE `{name}`")
        cur.execute(f"USE `{name}`")
        cur.execute("CREATE TABLE authors (id INT PRIMARY KEY, name VARCHAR(100) NOT NULL)")
        cur.execute("CREATE TABLE posts (id INT PRIMARY KEY, author_id INT NOT NULL, "
                    "title VARCHAR(200) NOT NULL, published TINYINT(1) NOT NULL, "
                    "KEY (author_id), FOREIGN KEY (author_id) REFERENCES authors (id))")
        cur.execute("CREATE TABLE comments (id INT PRIMARY KEY, post_id INT NOT NULL, "
                    "body TEXT NOT NULL, approved TINYINT(1) NOT NULL, "
                    "KEY (post_id), FOREIGN KEY (post_id) REFERENCES posts (id))")
        cur.execute(f"INSERT INTO authors SELECT seq, CONCAT('author ', seq) FROM seq_1_to_{authors}")
        cur.execute(f"INSERT INTO posts SELECT seq, (seq * 13) % {authors} + 1, CONCAT('post ', seq), "
                    f"seq % 3 <> 0 FROM seq_1_to_{posts}")
        cur.execute(f"INSERT INTO comments SELECT seq, (seq * 17) % {posts} + 1, "
                    "CONCAT('comment ', seq, ' ', REPEAT('x', 20 + seq % 80)), seq % 4 <> 0 "
                    f"FROM seq_1_to_{comments}")


def drop_mariadb(name: str) -> None:
    with contextlib.closing(mariadb_admin()) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


__all__ = ["MARIADB", "SCHEMA", "TABLES", "create_pg", "create_mariadb", "drop_mariadb",
           "published_count"]
