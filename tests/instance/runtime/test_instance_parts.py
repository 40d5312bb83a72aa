"""The instance's parts on their own: keys, settings, the snapshot holder, the loader."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import sqlite3
import threading

import pytest
from rt_support import N_COMMENTS, N_POSTS, N_USERS, blog_artifact

from app.contracts.artifact import Column, SchemaArtifact, Table
from app.contracts.instance_settings import InstanceSettings, SettingsError
from app.contracts.query_keys import make_query_key, write_keys_file
from app.contracts.query_limits import QueryLimits
from app.instance.keys import KeyStore
from app.instance.memory import MemoryBudget
from app.instance.openapi import build_openapi
from app.instance.snapshot import (
    LoadCancelled,
    NoSnapshot,
    Snapshot,
    SnapshotHolder,
    SnapshotTooLarge,
    _Inserter,
    index_statements,
)
from app.sources import SourceError, open_source

SETTINGS = {
    "databaseId": "db-1", "artifactPath": "/a.json", "keysFile": "/k.json",
    "source": {"backend": "mysql", "host": "db", "port": 3306, "user": "reader",
               "schema": "shop", "database": None},
}


class TestQueryKeys:
    def test_key_format(self):
        mac = base64.urlsafe_b64encode(
            hmac.new(b"s3cret", b"key1", hashlib.sha256).digest()).rstrip(b"=").decode()

        assert make_query_key("s3cret", "key1") == f"rxk_key1.{mac}"
        assert len(mac) == 43

    def test_rejects_bad_key_ids(self):
        for key_id in ("", "a.b", "x" * 65, "é"):
            with pytest.raises(ValueError):
                make_query_key("s3cret", key_id)

    def test_verify_known_unknown_forged(self, tmp_path):
        path = str(tmp_path / "keys.json")
        write_keys_file(path, "s3cret", {"a": None, "old": "2001-01-01T00:00:00Z"})
        store = KeyStore(path)

        assert store.verify(make_query_key("s3cret", "a")) is True
        assert store.verify(make_query_key("s3cret", "old")) is False      # expired
        assert store.verify(make_query_key("s3cret", "b")) is False        # unknown
        assert store.verify(make_query_key("other", "a")) is False         # forged
        for token in (None, "", "rxk_a", "rxk_a.", "Bearer x", make_query_key("s3cret", "a") + "x"):
            assert store.verify(token) is False

    def test_rereads_the_file_when_it_changes(self, tmp_path):
        path = str(tmp_path / "keys.json")
        now = [0.0]
        write_keys_file(path, "s3cret", {"a": None})
        store = KeyStore(path, clock=lambda: now[0])
        key = make_query_key("s3cret", "a")
        assert store.verify(key)

        write_keys_file(path, "s3cret", {})
        os.utime(path, ns=(1, 1))   # a different mtime even within one clock tick
        assert store.verify(key), "re-read at most once a second"
        now[0] = 1.5
        assert not store.verify(key)

    def test_missing_or_broken_file_fails_closed(self, tmp_path):
        path = tmp_path / "keys.json"
        store = KeyStore(str(path), recheck_seconds=0)
        assert not store.verify(make_query_key("s3cret", "a"))
        path.write_text("{not json")
        assert not store.verify(make_query_key("s3cret", "a"))
        assert store.load_error.endswith("is invalid: JSONDecodeError")


class TestSettings:
    def test_round_trip(self):
        settings = InstanceSettings.from_dict(SETTINGS)

        assert settings.sync_mode == "poll" and settings.limits == QueryLimits()
        assert InstanceSettings.from_dict(settings.to_dict()) == settings
        assert settings.to_dict()["syncIntervalSeconds"] == 30

    def test_the_file_is_flat_camel_case_with_every_limit(self):
        limits = {"maxQueryBytes": 4096, "maxSelectionDepth": 3, "maxFilterDepth": 2,
                  "maxFilterTerms": 7, "maxPathRelations": 0, "defaultLimit": 5, "maxLimit": 9,
                  "maxOffset": 0, "maxAnswerRows": 11, "maxAnswerBytes": 2048,
                  "queryTimeoutMs": 100}
        settings = InstanceSettings.from_dict({**SETTINGS, **limits})

        assert settings.limits == QueryLimits(
            max_query_bytes=4096, max_selection_depth=3, max_filter_depth=2, max_filter_terms=7,
            max_path_relations=0, default_limit=5, max_limit=9, max_offset=0, max_answer_rows=11,
            max_answer_bytes=2048, query_timeout_ms=100)
        assert settings.to_dict() == {
            **SETTINGS, **limits, "syncMode": "poll", "syncIntervalSeconds": 30,
            "instanceId": None, "binlogServerId": None, "cdcUnavailable": None,
            "fullReloadSeconds": None, "replicationPaused": False, "memoryLimitMb": 512,
            "host": "127.0.0.1", "port": 8080, "workers": None, "threads": 2,
            "answerCacheMb": 16, "snapshotDir": None, "logLevel": "info"}

    @pytest.mark.parametrize("change, message", [
        ({"source": {**SETTINGS["source"], "password": "x"}},
         "source.password: must not be in the settings file; the starter passes it through the "
         "secrets pipe (--secrets-fd)"),
        ({"extra": 1}, "extra: unknown field"),
        ({"syncMode": "push"}, "syncMode: one of poll, binlog, logical, cdc"),
        ({"syncIntervalSeconds": 0}, "syncIntervalSeconds: an integer from 1 to 3600"),
        ({"syncIntervalSeconds": 1.5}, "syncIntervalSeconds: an integer from 1 to 3600"),
        ({"memoryLimitMb": "512"}, "memoryLimitMb: an integer from 1 to 1048576 or null"),
        ({"replicationPaused": 1}, "replicationPaused: true or false"),
        ({"databaseId": None}, "databaseId: a non-empty string"),
        ({"databaseId": ""}, "databaseId: a non-empty string"),
        ({"source": "db:3306"}, "source: must be an object"),
        ({"maxSelectionDepth": 33}, "maxSelectionDepth: an integer from 1 to 32"),
        ({"queryTimeoutMs": True}, "queryTimeoutMs: an integer from 10 to 60000"),
        ({"defaultLimit": 20, "maxLimit": 10}, "defaultLimit: at most maxLimit (10)"),
    ])
    def test_rejects(self, change, message):
        with pytest.raises(SettingsError) as error:
            InstanceSettings.from_dict({**SETTINGS, **change})
        assert str(error.value) == message

    def test_every_bad_setting_is_one_line(self):
        settings = {key: value for key, value in SETTINGS.items() if key != "keysFile"}
        with pytest.raises(SettingsError) as error:
            InstanceSettings.from_dict({
                **settings, "port": 70000, "logLevel": "loud", "maxAnswerRows": 0,
                "source": {**SETTINGS["source"], "port": "3306", "backend": "oracle"}})
        assert str(error.value).splitlines() == [
            "keysFile: required: a non-empty string",
            "logLevel: one of debug, info, warn, error",
            "maxAnswerRows: an integer from 1 to 10000000",
            "port: an integer from 0 to 65535",
            "source.backend: one of mysql, postgres",
            "source.port: an integer from 1 to 65535",
        ]

    def test_the_file_must_hold_an_object(self):
        with pytest.raises(SettingsError) as error:
            InstanceSettings.from_dict(["databaseId"])
        assert str(error.value) == "the settings file must hold a JSON object"

    def test_cdc_modes_run_unless_unavailable(self):
        settings = InstanceSettings.from_dict({**SETTINGS, "syncMode": "binlog"})
        assert (settings.effective_sync_mode, settings.sync_note) == ("binlog", None)
        other = InstanceSettings.from_dict({**SETTINGS, "syncMode": "logical"})
        assert (other.effective_sync_mode, other.sync_note) == (
            "poll", "logical is not implemented for mysql; the instance polls")
        fallback = InstanceSettings.from_dict({**SETTINGS, "syncMode": "binlog",
                                               "cdcUnavailable": "log_bin is OFF"})
        assert (fallback.effective_sync_mode, fallback.sync_note) == (
            "poll", "binlog is not available, the instance polls: log_bin is OFF")

    def test_load_reports_unreadable_files(self, tmp_path):
        with pytest.raises(SettingsError, match="cannot read settings file"):
            InstanceSettings.load(str(tmp_path / "missing.json"))
        path = tmp_path / "s.json"
        path.write_text(json.dumps(SETTINGS))
        assert InstanceSettings.load(str(path)).database_id == "db-1"


class _FakeSnapshot:
    def __init__(self, name):
        self.name = name
        self.closed = False
        self.size_bytes = 10

    def close(self):
        self.closed = True

    def age_ms(self):
        return 0


class TestSnapshotHolder:
    def test_no_snapshot(self):
        holder = SnapshotHolder()
        with pytest.raises(NoSnapshot):
            with holder.reading():
                pass

    def test_swap_waits_for_readers_of_the_old_snapshot(self):
        holder = SnapshotHolder()
        first, second = _FakeSnapshot("first"), _FakeSnapshot("second")
        holder.swap(first)
        assert holder.swap_count == 0

        with holder.reading() as reading:
            holder.swap(second)
            assert reading is first and not first.closed
            assert holder.retained_bytes() == 20
            with holder.reading() as newer:
                assert newer is second
        assert first.closed and not second.closed
        assert holder.swap_count == 1 and holder.retained_bytes() == 10

    def test_unread_snapshot_closes_at_swap(self):
        holder = SnapshotHolder()
        first = _FakeSnapshot("first")
        holder.swap(first)
        holder.swap(_FakeSnapshot("second"))
        assert first.closed

    def test_concurrent_readers_and_swaps(self):
        holder = SnapshotHolder()
        holder.swap(_FakeSnapshot(0))
        errors = []
        stop = threading.Event()

        def read():
            while not stop.is_set():
                with holder.reading() as snapshot:
                    if snapshot.closed:
                        errors.append(snapshot.name)

        readers = [threading.Thread(target=read) for _ in range(4)]
        for reader in readers:
            reader.start()
        for n in range(1, 300):
            holder.swap(_FakeSnapshot(n))
        stop.set()
        for reader in readers:
            reader.join()
        assert errors == [] and holder.swap_count == 299


class TestLoader:
    def test_loads_every_table_with_indexes(self, mysql_blog):
        artifact = blog_artifact("mysql", mysql_blog.schema)
        with open_source(mysql_blog.credentials()) as source:
            snapshot = Snapshot.load(artifact, source)
        try:
            assert snapshot.row_counts == {"users": N_USERS, "posts": N_POSTS,
                                           "comments": N_COMMENTS}
            indexes = {row[0]: row[1] for row in snapshot.connection.execute(
                "SELECT name, tbl_name FROM sqlite_master WHERE type = 'index'")}
            # Each table's integer primary key is its rowid: no index repeats it.
            assert sorted(indexes.values()) == ["comments", "comments", "posts", "users"]
            with pytest.raises(Exception, match="readonly"):
                snapshot.connection.execute("DELETE FROM users")
        finally:
            snapshot.close()

    def test_table_where_is_applied_on_the_source(self, postgres_blog):
        artifact = blog_artifact("postgres", postgres_blog.schema)
        users = artifact.tables[0]
        filtered = type(users)(users.name, users.columns, users.primary_key,
                               where="id <= 10 AND name LIKE \"user %\"")
        artifact = type(artifact)(artifact.backend, artifact.schema,
                                  (filtered, *artifact.tables[1:]), artifact.relations)
        with open_source(postgres_blog.credentials()) as source:
            snapshot = Snapshot.load(artifact, source)
        try:
            assert snapshot.row_counts["users"] == 10
            assert snapshot.row_counts["posts"] == N_POSTS
        finally:
            snapshot.close()

    def test_stops_at_the_memory_budget(self, mysql_blog):
        artifact = blog_artifact("mysql", mysql_blog.schema)
        with open_source(mysql_blog.credentials()) as source:
            with pytest.raises(SnapshotTooLarge) as error:
                Snapshot.load(artifact, source, max_bytes=256 * 1024, limit_mb=97)
        assert error.value.message == ("the snapshot needs more than 256 KiB (the instance has 97 "
                                       "MiB in all); choose a larger instanceSize")

    def test_stops_at_the_memory_budget_while_reading_ahead(self, postgres_blog):
        artifact = blog_artifact("postgres", postgres_blog.schema)
        with open_source(postgres_blog.credentials()) as source:
            assert source.read_ahead
            with pytest.raises(SnapshotTooLarge):
                Snapshot.load(artifact, source, max_bytes=256 * 1024, limit_mb=97, batch_size=100)
            assert _load_readers() == []
            # The reader closed its cursor: the connection serves the next load.
            snapshot = Snapshot.load(artifact, source)
        try:
            assert snapshot.row_counts == {"users": N_USERS, "posts": N_POSTS,
                                           "comments": N_COMMENTS}
        finally:
            snapshot.close()

    def test_a_source_error_while_reading_ahead_is_raised_by_the_load(self):
        artifact = SchemaArtifact("postgres", "x", (Table("t", (Column("id", "integer"),)),))
        source = FailingSource([[(1,), (2,)], [(3,)]], SourceError("unreachable", "gone"))
        with pytest.raises(SourceError) as caught:
            Snapshot.load(artifact, source)
        assert caught.value.message == "gone"
        assert source.closed and _load_readers() == []

    def test_a_cancelled_load_stops_its_reader(self):
        artifact = SchemaArtifact("postgres", "x", (Table("t", (Column("id", "integer"),)),))
        source = FailingSource([[(n,)] for n in range(100)], None)
        with pytest.raises(LoadCancelled):
            Snapshot.load(artifact, source, cancelled=lambda: source.batches_read >= 3)
        assert source.closed and _load_readers() == []

    def test_rows_keep_their_order_and_values_across_multi_row_inserts(self):
        log = Table("log", (Column("at", "text"), Column("n", "integer"), Column("raw", "binary")))
        rows = [(f"t{n}", n if n % 7 else None, bytes([n % 256])) for n in range(123)]
        source = FailingSource([rows[:100], rows[100:]], None)
        snapshot = Snapshot.load(SchemaArtifact("postgres", "x", (log,)), source)
        try:
            assert snapshot.connection.execute(
                "SELECT at, n, raw FROM log ORDER BY rowid").fetchall() == rows
        finally:
            snapshot.close()

    def test_rows_per_insert_fit_sqlites_variable_limit(self):
        connection = sqlite3.connect(":memory:")
        connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 10)
        wide = Table("w", (Column("a", "integer"), Column("b", "integer"), Column("c", "integer")))
        connection.execute("CREATE TABLE w (a, b, c)")
        inserter = _Inserter(connection, wide)
        assert inserter.rows_per_statement == 3
        inserter.insert([(n, n, n) for n in range(8)])
        assert connection.execute("SELECT a FROM w ORDER BY rowid").fetchall() == [
            (n,) for n in range(8)]
        connection.close()

    def test_index_statements_cover_keys_and_relations(self):
        statements = index_statements(blog_artifact("mysql", "x"))
        # The primary keys (and the relation ends on them) are the tables' rowids.
        assert statements == [
            'CREATE INDEX "rx_ix_0" ON "posts" ("author_id")',
            'CREATE INDEX "rx_ix_1" ON "users" ("pinned_post_id")',
            'CREATE INDEX "rx_ix_2" ON "comments" ("post_id")',
            'CREATE INDEX "rx_ix_3" ON "comments" ("user_id")',
        ]

    def test_index_statements_keep_unique_keys_that_are_not_rowids(self):
        regions = Table("regions", (Column("country", "text", False),
                                    Column("code", "text", False)), ("country", "code"))
        tags = Table("tags", (Column("slug", "text", False),), ("slug",))
        artifact = SchemaArtifact("postgres", "x", (regions, tags), ())
        assert index_statements(artifact) == [
            'CREATE UNIQUE INDEX "rx_ix_0" ON "regions" ("country", "code")',
            'CREATE UNIQUE INDEX "rx_ix_1" ON "tags" ("slug")',
        ]

    def test_memory_budget(self):
        assert MemoryBudget(None).snapshot_bytes is None
        assert MemoryBudget(512).available_for_new_snapshot(100 * 2**20) == 316 * 2**20
        assert MemoryBudget(50).snapshot_bytes == 0


class FailingSource:
    """A source whose rows are `batches` followed by `error` (None: none), read ahead."""

    read_ahead = True

    def __init__(self, batches, error):
        self.batches, self.error = batches, error
        self.batches_read = 0
        self.closed = False

    @contextlib.contextmanager
    def consistent_read(self):
        yield self

    def stream_rows(self, table, where=None, batch_size=5000):
        try:
            for batch in self.batches:
                self.batches_read += 1
                yield batch
            if self.error is not None:
                raise self.error
        finally:
            self.closed = True


def _load_readers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "rx-load-read"]


def test_openapi_document_is_valid():
    from openapi_spec_validator import validate

    document = build_openapi(blog_artifact("mysql", "shop"), database_id="db-1",
                             server_url="http://127.0.0.1:1")
    validate(document)


def test_answers_keep_integers_beyond_64_bits():
    """orjson refuses them; the answer falls back to json and keeps them exact."""
    from app.instance.server import _json

    response = _json([{"id": 2 ** 70, "name": "é"}], 200)
    assert response.get_data() == '[{"id":1180591620717411303424,"name":"é"}]'.encode()
    assert _json([{"id": 1}], 200).get_data() == b'[{"id":1}]'


def test_lone_surrogates_are_escaped_not_a_500():
    """Text no UTF-8 can hold (e.g. a field note) is sent as JSON escapes."""
    from app.instance.server import _json

    assert _json({"note": "a\ud800b"}, 200).get_data() == b'{"note":"a\\ud800b"}'


def _app_over(respond, limits: QueryLimits | None = None):
    """The instance's app over a fake state: key "k", one generation, `respond` as the engine."""
    from types import SimpleNamespace

    from app.instance.reader import AnswerCache
    from app.instance.server import create_app

    class Reader:
        def refresh(self):
            return (1, 0)

        def reading(self, refresh=True):
            return contextlib.nullcontext((None, (1, 0)))

    state = SimpleNamespace(
        settings=SimpleNamespace(limits=limits or QueryLimits()),
        keys=SimpleNamespace(verify=lambda key: key == "k"), reader=Reader(),
        answers=AnswerCache(0), status=lambda: "ok", queries=SimpleNamespace(respond=respond))
    return create_app(state)


class TestNothingEndsTheProcess:
    """Whatever a request raises is an envelope; the process and its worker stay up."""

    def client(self, answer):
        return _app_over(answer).test_client()

    def query(self, answer):
        return self.client(answer).post("/query", data="users { id }",
                                        headers={"Authorization": "Bearer k"})

    def test_out_of_memory_is_a_503(self):
        def answer(connection, text):
            raise MemoryError()

        response = self.query(answer)

        assert (response.status_code, response.get_json(), response.headers["Retry-After"]) == (
            503, {"error": "unavailable",
                  "message": "the instance has no memory left for this answer right now; retry "
                             "shortly, or ask for fewer rows"}, "5")

    def test_sqlite_out_of_memory_is_a_503(self):
        def answer(connection, text):
            raise sqlite3.OperationalError("out of memory")

        assert self.query(answer).status_code == 503

    def test_anything_else_is_a_500_envelope(self):
        def answer(connection, text):
            raise RecursionError("maximum recursion depth exceeded")

        response = self.query(answer)

        assert response.status_code == 500
        assert response.get_json()["error"] == "internal_error"
        assert response.get_json()["message"].startswith("internal error; request id ")

    def test_a_failing_error_handler_still_answers_an_envelope(self, monkeypatch):
        from app.instance import server

        def answer(connection, text):
            raise RuntimeError("boom")

        def broken(*args, **kwargs):
            raise MemoryError()

        client = self.client(answer)
        monkeypatch.setattr(server, "_error", broken)

        response = client.post("/query", data="users { id }",
                               headers={"Authorization": "Bearer k"})

        assert (response.status_code, response.get_json()) == (500, {
            "error": "internal_error", "message": "internal error"})
        assert response.headers["Content-Type"] == "application/json; charset=utf-8"


class TestQueryFastPath:
    """POST /query answered before Flask's dispatch: the same answers, headers and envelopes."""

    def client(self, respond):
        return _app_over(respond, QueryLimits(max_query_bytes=1024)).test_client()

    def test_an_answer_has_the_flask_path_s_headers(self):
        client = self.client(lambda connection, text: b'[{"id":1}]')

        response = client.post("/query", data="users { id }", headers={"Authorization": "Bearer k"})

        assert (response.status_code, response.get_data()) == (200, b'[{"id":1}]')
        headers = dict(response.headers)
        assert len(headers.pop("X-Request-Id")) == 32
        assert headers == {"Content-Type": "application/json; charset=utf-8",
                           "Content-Length": "10"}

    def test_a_query_error_is_the_envelope_with_a_request_id(self):
        from app.query import QueryError

        def respond(connection, text):
            raise QueryError("line 1, column 1: unknown table 'nope'")

        response = self.client(respond).post("/query", data="nope { id }",
                                                 headers={"Authorization": "Bearer k"})

        assert (response.status_code, response.get_json()) == (400, {
            "error": "invalid_query", "message": "line 1, column 1: unknown table 'nope'"})
        assert len(response.headers["X-Request-Id"]) == 32

    @pytest.mark.parametrize("content_type", ["text/plain; charset=latin-1", "TEXT/PLAIN"])
    def test_other_content_types_are_answered_by_flask(self, content_type):
        texts = []

        def respond(connection, text):
            texts.append(text)
            return b"[]"

        response = self.client(respond).post(
            "/query", data="users { name }".encode("latin-1"),
            headers={"Authorization": "Bearer k", "Content-Type": content_type})

        assert (response.status_code, response.get_data(), texts) == (200, b"[]", ["users { name }"])

    @pytest.mark.parametrize(("body", "headers", "status", "error"), [
        (b"x" * 1025, {}, 413, "payload_too_large"),
        (b"\xff\xfe", {}, 400, "invalid_query"),
        (b"   ", {}, 400, "invalid_query"),
        (b"users { id }", {"Authorization": "Bearer nope"}, 401, "unauthorized"),
        (b"users { id }", {"Content-Type": "application/json"}, 415, "unsupported_media_type"),
    ])
    def test_requests_it_does_not_take_get_flask_s_envelopes(self, body, headers, status, error):
        client = self.client(lambda connection, text: b"[]")

        response = client.post("/query", data=body,
                               headers={"Authorization": "Bearer k", **headers})

        assert (response.status_code, response.get_json()["error"]) == (status, error)
        assert len(response.headers["X-Request-Id"]) == 32

    def test_an_unexpected_exception_is_answered_by_flask_s_handlers(self):
        def respond(connection, text):
            raise MemoryError()

        response = self.client(respond).post("/query", data="users { id }",
                                                 headers={"Authorization": "Bearer k"})

        assert (response.status_code, response.get_json()["error"]) == (503, "unavailable")
