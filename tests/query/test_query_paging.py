"""ORDER BY, LIMIT and OFFSET at the root and nested, default and maximum limits."""

import pytest

from app.query import QueryEngine, QueryError, QueryLimitError, execute


def ids(rows):
    return [row["id"] for row in rows]


class TestOrdering:
    def test_default_is_primary_key_order(self, run):
        assert ids(run("comments { id }")) == [100, 101, 102, 103, 104, 105]

    def test_desc(self, run):
        assert ids(run("users { id ORDER BY id DESC }")) == [5, 4, 3, 2, 1]

    def test_multi_key_with_pk_tiebreak(self, run):
        assert run("users { plan id ORDER BY plan DESC, age }") == [
            {"plan": "team", "id": 4}, {"plan": "pro", "id": 3}, {"plan": "pro", "id": 1},
            {"plan": "free", "id": 2}, {"plan": "free", "id": 5}]

    def test_nulls_default_and_explicit(self, run):
        assert ids(run("users { id ORDER BY age }")) == [3, 2, 5, 1, 4]
        assert ids(run("users { id ORDER BY age DESC }")) == [4, 1, 5, 2, 3]
        assert ids(run("users { id ORDER BY age NULLS LAST }")) == [2, 5, 1, 4, 3]
        assert ids(run("users { id ORDER BY age DESC NULLS FIRST }")) == [3, 4, 1, 5, 2]

    def test_by_unselected_and_aliased_field(self, run):
        assert ids(run("users { id ORDER BY name DESC }")) == [5, 4, 3, 2, 1]

    def test_composite_primary_key_order(self, run):
        assert run("post_tags { post_id tag_id }") == [
            {"post_id": 10, "tag_id": 1}, {"post_id": 10, "tag_id": 2},
            {"post_id": 12, "tag_id": 2}, {"post_id": 13, "tag_id": 3},
            {"post_id": 15, "tag_id": 1}]


class TestPaging:
    def test_root_limit_offset(self, run):
        assert ids(run("users { id ORDER BY id DESC LIMIT 2 OFFSET 1 }")) == [4, 3]
        assert ids(run("users { id OFFSET 3 }")) == [4, 5]
        assert ids(run("users { id LIMIT 0 }")) == []

    def test_nested_per_parent(self, run):
        assert run("users(id <= 3) { id posts { id ORDER BY id DESC LIMIT 1 } }") == [
            {"id": 1, "posts": [{"id": 11}]}, {"id": 2, "posts": [{"id": 12}]},
            {"id": 3, "posts": [{"id": 14}]}]
        assert run("users(id <= 3) { id posts { id OFFSET 1 } }") == [
            {"id": 1, "posts": [{"id": 11}]}, {"id": 2, "posts": []},
            {"id": 3, "posts": [{"id": 14}]}]

    def test_nested_paging_with_filter_and_deeper_levels(self, run):
        assert run("posts(id IN (10, 15)) { id comments(id > 100) { body author { name } "
                   "ORDER BY body LIMIT 1 } }") == [
            {"id": 10, "comments": [{"body": "meh", "author": {"name": "Cy"}}]},
            {"id": 15, "comments": [{"body": "again", "author": {"name": "Ada"}}]}]

    def test_nested_paging_on_many_rows(self, artifact, big_db, big_data):
        result = execute(artifact, big_db, "users(id <= 200) { id posts { id comments { id "
                                           "ORDER BY id DESC LIMIT 1 } ORDER BY id DESC "
                                           "LIMIT 2 OFFSET 1 } }")
        assert len(result) == 200
        for user in result:
            posts = sorted((row[0] for row in big_data["posts"] if row[1] == user["id"]),
                           reverse=True)[1:3]
            assert user["posts"] == [
                {"id": post, "comments": [{"id": max(row[0] for row in big_data["comments"]
                                                     if row[1] == post)}]}
                for post in posts]

    def test_nested_paging_with_composite_key(self, run):
        assert run("org_users { name badges { label ORDER BY label LIMIT 1 } }") == [
            {"name": "a1", "badges": [{"label": "gold"}]}, {"name": "a2", "badges": []},
            {"name": "b1", "badges": [{"label": "bronze"}]}]

    def test_to_one_takes_no_paging(self, run):
        with pytest.raises(QueryError, match=r"^line 1, column 23: 'author' is a single object"):
            run("posts { author { name LIMIT 1 } }")


class TestLimits:
    def test_default_cap(self, artifact, big_db):
        assert len(execute(artifact, big_db, "users { id }")) == 500
        assert ids(execute(artifact, big_db, "posts { id }")) == sorted(
            row[0] for row in big_db.execute("SELECT id FROM posts"))[:1000]
        assert len(execute(artifact, big_db, "posts { id }", default_limit=7)) == 7
        assert len(execute(artifact, big_db, "posts { id LIMIT 1500 }")) == 1500

    def test_nested_relations_are_not_capped(self, artifact, big_db):
        result = execute(artifact, big_db, "users { id posts { id } }", default_limit=300)
        assert len(result) == 300 and sum(len(user["posts"]) for user in result) == 1200

    def test_explicit_limit_above_maximum_is_an_error(self, artifact, db):
        with pytest.raises(QueryLimitError) as caught:
            execute(artifact, db, "users { id LIMIT 10001 }")
        assert str(caught.value) == (
            "line 1, column 12: LIMIT 10001 is more than 10000 (limit maxLimit = 10000)")
        assert (caught.value.limit, caught.value.value) == ("maxLimit", 10000)
        with pytest.raises(QueryLimitError, match=r"LIMIT 6 is more than 5 \(limit maxLimit"):
            execute(artifact, db, "users { id posts { id LIMIT 6 } }", max_limit=5)
        assert ids(execute(artifact, db, "users { id LIMIT 5 }", max_limit=5)) == [1, 2, 3, 4, 5]

    def test_engine_caches_plans(self, artifact, db):
        engine = QueryEngine(artifact, default_limit=2)
        assert ids(engine.execute(db, "users { id }")) == [1, 2]
        assert ids(engine.execute(db, "users { id }")) == [1, 2]
        assert engine.plan.cache_info().hits == 1  # by text
        assert ids(engine.execute(db, "users { id LIMIT 1 }")) == [1]
        assert ids(engine.execute(db, "users { id LIMIT 3 }")) == [1, 2, 3]
        assert (engine.shapes.hits, engine.shapes.misses, len(engine.shapes)) == (1, 2, 2)
