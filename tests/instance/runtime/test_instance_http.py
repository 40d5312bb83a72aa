"""A real instance process over real sources, exercised through HTTP."""

from __future__ import annotations

import json
import os
import select
import socket
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests
from rt_support import (
    N_COMMENTS,
    N_POSTS,
    N_USERS,
    NESTED_QUERY,
    Worker,
    expected_nested_answer,
    posts_rows,
    users_rows,
)

ROW_COUNTS = {"users": N_USERS, "posts": N_POSTS, "comments": N_COMMENTS}
UNAUTHORIZED = {"error": "unauthorized",
                "message": "a valid query key is required: send Authorization: Bearer rxk_…"}


class TestQueryEndToEnd:
    def test_nested_include_query_on_mariadb(self, mysql_instance):
        response = mysql_instance.query(NESTED_QUERY)

        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("application/json")
        assert response.json() == expected_nested_answer()

    def test_nested_include_query_on_postgres(self, start_instance, postgres_blog):
        instance = start_instance(postgres_blog)

        response = instance.query(NESTED_QUERY)

        assert response.status_code == 200
        assert response.json() == expected_nested_answer()
        assert instance.health()["rowCounts"] == ROW_COUNTS

    def test_artifact_from_the_real_build(self, start_instance, mysql_blog):
        from app.build import build_artifact

        artifact, _log = build_artifact(mysql_blog.credentials())
        instance = start_instance(mysql_blog, artifact=artifact)

        response = instance.query(NESTED_QUERY)

        assert (response.status_code, response.json()) == (200, expected_nested_answer())

    def test_relations_both_ways_and_filters(self, mysql_instance):
        response = mysql_instance.query(
            "users(id <= 4) { id name pinned_post { id title } posts(id < 100) { id } }")

        assert response.status_code == 200
        posts = posts_rows()
        titles = {p[0]: p[2] for p in posts}
        assert response.json() == [
            {"id": u[0], "name": u[1],
             "pinned_post": {"id": u[3], "title": titles[u[3]]} if u[3] else None,
             "posts": [{"id": p[0]} for p in posts if p[1] == u[0] and p[0] < 100]}
            for u in users_rows()[:4]]
        assert response.json()[1]["pinned_post"] == {"id": 15, "title": "post 15"}

    def test_health_after_load(self, mysql_instance):
        health = mysql_instance.health()

        assert health["snapshotAgeMs"] >= 0 and health["loadRowsPerSecond"] > 0
        assert health["snapshotBytes"] > 0 and health["lastSyncAt"].endswith("Z")
        variable = ("snapshotAgeMs", "loadRowsPerSecond", "snapshotBytes", "lastSyncAt",
                    "databaseId")
        assert {k: v for k, v in health.items() if k not in variable} == {
            "status": "ok", "serving": True, "loading": False, "swapCount": 0,
            "rowCounts": ROW_COUNTS, "lastSyncError": None, "lastSyncErrorCode": None,
            "replicationPaused": False, "syncMode": "poll", "effectiveSyncMode": "poll",
            "syncNote": None, "syncIntervalSeconds": 3600, "memoryLimitMb": 512,
            "replicationLagMs": None, "eventsApplied": None, "transactionsApplied": None,
            "position": None, "streamStatus": None, "streamReloads": None,
            "lastReloadReason": None,
            "loadCount": 1, "generation": 1, "dataVersion": 0, "workers": os.cpu_count() or 1,
        }

    def test_openapi_describes_tables(self, mysql_instance):
        response = requests.get(f"{mysql_instance.url}/openapi.json",
                                headers={"Authorization": f"Bearer {mysql_instance.key}"})

        assert response.status_code == 200
        document = response.json()
        assert document["openapi"] == "3.0.3"
        assert set(document["paths"]) == {"/query"}
        posts = document["components"]["schemas"]["posts"]["properties"]
        assert posts["published"] == {"type": "boolean",
                                      "description": "boolean column published"}
        assert posts["author"] == {
            "allOf": [{"$ref": "#/components/schemas/users"}], "nullable": True,
            "description": "The users row this row references, or null (only when selected)."}
        assert posts["comments"]["items"] == {"$ref": "#/components/schemas/comments"}
        users = document["components"]["schemas"]["users"]["properties"]
        assert users["email"] == {"type": "string", "nullable": True,
                                  "description": "Where we write to the user."}

    def test_openapi_needs_a_key(self, mysql_instance):
        response = requests.get(f"{mysql_instance.url}/openapi.json")

        assert response.status_code == 401
        assert response.json() == UNAUTHORIZED


class TestErrors:
    def test_syntax_error_has_line_and_column(self, mysql_instance):
        response = mysql_instance.query("users {\n  id name\n  posts { id ")

        assert response.status_code == 400
        assert response.headers["Content-Type"].startswith("application/json")
        body = response.json()
        assert body["error"] == "invalid_query"
        assert body["message"].startswith("line 3, column ")

    def test_unknown_table(self, mysql_instance):
        response = mysql_instance.query("nope { id }")

        assert response.status_code == 400
        assert response.json() == {
            "error": "invalid_query",
            "message": "line 1, column 1: unknown table 'nope' (available: users, posts, "
                       "comments)"}

    def test_missing_key(self, mysql_instance):
        response = mysql_instance.query("users { id }", key=False)

        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.json() == UNAUTHORIZED

    def test_malformed_and_forged_keys(self, mysql_instance):
        forged = mysql_instance.key[:-2] + ("AA" if not mysql_instance.key.endswith("AA") else "BB")
        for key in ("rxk_nope", "rmk_k_main.abc", forged,
                    mysql_instance.key.replace("k_main", "k_other")):
            response = mysql_instance.query("users { id }", key=key)
            assert (response.status_code, response.json()) == (401, UNAUTHORIZED), key

    def test_body_too_large(self, mysql_instance):
        response = mysql_instance.query("users { id " + " " * 70_000 + "}")

        assert response.status_code == 413
        assert response.json() == {
            "error": "payload_too_large",
            "message": "the query is over 65536 bytes (limit maxQueryBytes = 65536)"}

    def test_wrong_content_type(self, mysql_instance):
        response = mysql_instance.query('{"q": 1}', headers={"Content-Type": "application/json"})

        assert response.status_code == 415
        assert response.json() == {
            "error": "unsupported_media_type",
            "message": "the query body must be text/plain, not application/json"}

    def test_missing_content_type_is_text(self, mysql_instance):
        response = requests.post(f"{mysql_instance.url}/query", data=b"users(id = 7) { id }",
                                 headers={"Authorization": f"Bearer {mysql_instance.key}"})

        assert (response.status_code, response.json()) == (200, [{"id": 7}])

    def test_curl_default_content_type_is_text(self, mysql_instance):
        """curl -d / --data-binary send application/x-www-form-urlencoded, unencoded."""
        response = mysql_instance.query('users(name = "user 7") { id }',
                                        headers={"Content-Type": "application/x-www-form-urlencoded"})

        assert (response.status_code, response.json()) == (200, [{"id": 7}])

    def test_empty_query(self, mysql_instance):
        response = mysql_instance.query("  \n")

        assert response.status_code == 400
        assert response.json() == {"error": "invalid_query",
                                   "message": "the query is empty; send e.g. `users { id }`"}

    def test_unknown_path_and_method(self, mysql_instance):
        missing = requests.get(f"{mysql_instance.url}/nope")
        wrong_method = requests.get(f"{mysql_instance.url}/query")

        assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
        assert (wrong_method.status_code, wrong_method.json()) == (405, {
            "error": "method_not_allowed", "message": "GET is not allowed on /query"})

    def test_admin_routes_need_the_admin_token(self, mysql_instance):
        for path in ("/admin/reload", "/admin/replication/pause", "/admin/replication/resume"):
            for headers in ({}, {"Authorization": f"Bearer {mysql_instance.key}"}):
                response = requests.post(f"{mysql_instance.url}{path}", headers=headers)
                assert (response.status_code, response.json()) == (401, {
                    "error": "unauthorized", "message": "the instance admin token is required"})


class TestKeys:
    def test_revoked_key_stops_working_within_seconds(self, start_instance, mysql_blog):
        instance = start_instance(mysql_blog)
        other = instance.keys.add("k_other")
        assert _wait_status(instance, other, 200) == 200

        instance.keys.revoke("k_other")
        revoked_at = time.monotonic()
        assert _wait_status(instance, other, 401) == 401

        assert time.monotonic() - revoked_at < 3.0
        assert instance.query("users(id = 1) { id }").json() == [{"id": 1}]

    def test_expired_key(self, start_instance, mysql_blog):
        instance = start_instance(mysql_blog)
        past = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()
        future = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat().replace(
            "+00:00", "Z")
        expired = instance.keys.add("k_expired", past)
        valid = instance.keys.add("k_valid", future)

        assert _wait_status(instance, valid, 200) == 200
        response = instance.query("users(id = 1) { id }", key=expired)
        assert (response.status_code, response.json()) == (401, UNAUTHORIZED)


class TestLoading:
    def test_503_while_the_first_snapshot_loads(self, start_instance, mysql_blog):
        # A write lock on the source keeps the instance's first load waiting.
        lock = _mariadb_connection(mysql_blog)
        with lock.cursor() as c:
            c.execute("LOCK TABLES posts WRITE")
        try:
            instance = start_instance(mysql_blog, wait=False)
            health = instance.wait_health(lambda h: h["loading"], 10, "the load to start")
            assert (health["status"], health["serving"], health["rowCounts"]) == (
                "loading", False, {})

            response = instance.query("users { id }")

            assert response.status_code == 503
            assert response.headers["Retry-After"] == "5"
            assert response.json() == {"error": "snapshot_loading",
                                       "message": "the snapshot is still loading; retry shortly"}
        finally:
            with lock.cursor() as c:
                c.execute("UNLOCK TABLES")
            lock.close()
        instance.wait_loaded()
        assert instance.query("posts(id = 3) { id }").json() == [{"id": 3}]


class TestConnections:
    """The reader's worker (app/instance/worker.py) on raw keep-alive connections."""

    def test_requests_on_one_connection_one_after_another_and_pipelined(self, mysql_instance):
        with _connect(mysql_instance) as sock:
            reader = sock.makefile("rb")
            sock.sendall(_post(mysql_instance, "users(id = 1) { id }"))
            first = _response(reader)
            # Two requests in one write: answered in order on the same connection.
            sock.sendall(_post(mysql_instance, "users(id = 2) { id }")
                         + _post(mysql_instance, "users(id = 3) { id name }"))
            second, third = _response(reader), _response(reader)
            sock.sendall(_post(mysql_instance, "users(id = 4) { id }", close=True))
            last = _response(reader)
            rest = reader.read()

        assert [(r["status"], r["body"]) for r in (first, second, third, last)] == [
            ("HTTP/1.1 200 OK", b'[{"id":1}]'), ("HTTP/1.1 200 OK", b'[{"id":2}]'),
            ("HTTP/1.1 200 OK", b'[{"id":3,"name":"user 3"}]'), ("HTTP/1.1 200 OK", b'[{"id":4}]')]
        for response in (first, second, third):
            assert response["headers"]["connection"] == "keep-alive"
            assert response["headers"]["content-type"] == "application/json; charset=utf-8"
            assert len(response["headers"]["x-request-id"]) == 32
        assert last["headers"]["connection"] == "close"
        assert rest == b""

    def test_errors_and_health_on_a_kept_connection(self, mysql_instance):
        with _connect(mysql_instance) as sock:
            reader = sock.makefile("rb")
            sock.sendall(_post(mysql_instance, "nope { id }"))
            error = _response(reader)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            health = _response(reader)
            sock.sendall(_post(mysql_instance, "users(id = 5) { id }"))
            answer = _response(reader)

        assert (error["status"], error["body"]) == ("HTTP/1.1 400 BAD REQUEST", (
            b'{"error":"invalid_query","message":"line 1, column 1: unknown table \'nope\' '
            b'(available: users, posts, comments)"}'))
        assert health["status"] == "HTTP/1.1 200 OK" and b'"serving":true' in health["body"]
        assert (answer["status"], answer["body"]) == ("HTTP/1.1 200 OK", b'[{"id":5}]')

    def test_chunked_bodies_are_answered_and_one_past_the_limit_is_413_then_closed(self, mysql_instance):
        with _connect(mysql_instance) as sock:
            reader = sock.makefile("rb")
            sock.sendall(_chunked(mysql_instance, [b"users(id = 7)", b" { id }"]))
            answered = _response(reader)
            sock.sendall(_post(mysql_instance, "users(id = 8) { id }"))   # the same connection
            after = _response(reader)
            sock.sendall(_chunked(mysql_instance, [b"users { id " + b" " * 40_000, b" " * 40_000 + b"}"]))
            too_large = _response(reader)
            rest = reader.read()

        assert (answered["status"], answered["body"]) == ("HTTP/1.1 200 OK", b'[{"id":7}]')
        assert answered["headers"]["connection"] == "keep-alive"
        assert (after["status"], after["body"]) == ("HTTP/1.1 200 OK", b'[{"id":8}]')
        assert (too_large["status"], json.loads(too_large["body"])) == ("HTTP/1.1 413 REQUEST ENTITY TOO LARGE", {
            "error": "payload_too_large", "message": "the query is over 65536 bytes (limit maxQueryBytes = 65536)"})
        assert too_large["headers"]["connection"] == "close"   # the rest of that body is never read
        assert rest == b""

    @pytest.mark.parametrize("request_bytes,message", [
        (b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n", "Invalid HTTP header name: 'Bad Header'"),
        (b"POST /query HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nusers\r\n0\r\n\r\n",
         "Invalid chunk size"),
    ])
    def test_malformed_http_is_a_400_envelope(self, mysql_instance, request_bytes, message):
        with _connect(mysql_instance) as sock:
            sock.sendall(request_bytes)
            reader = sock.makefile("rb")
            answer = _response(reader)
            rest = reader.read()

        assert answer["status"] == "HTTP/1.1 400 Bad Request"
        assert answer["headers"]["content-type"] == "application/json; charset=utf-8"
        assert answer["headers"]["connection"] == "close"
        body = json.loads(answer["body"])
        assert body["error"] == "invalid_request"
        assert body["message"].startswith(f"the request is not valid HTTP: {message}"), body
        assert rest == b""

    def test_a_client_that_stalls_mid_request_is_disconnected(self, start_instance, mysql_blog):
        """A stalled request holds a thread for the read timeout (5 s), not for ever, and is
        closed without an answer (no 500, no traceback), whatever part of it stalled."""
        instance = start_instance(mysql_blog, workers=1, threads=1)
        worker = Worker(instance)
        stalled = []
        chunked = (f"POST /query HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {instance.key}\r\n"
                   "Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n14\r\nusers(").encode()
        for partial in (b"POST /query HTTP/1.1\r\nHost: x\r\nContent-Le",  # in the headers
                        _post(instance, "users(id = 1) { id }")[:-5],       # in the body
                        chunked):                                           # in a chunked body
            sock = _connect(instance)
            sock.sendall(partial)
            stalled.append(sock)

        # The reader's only thread is free again once the stalled ones are dropped.
        answer = instance.query("users(id = 6) { id }")

        assert (answer.status_code, answer.json()) == (200, [{"id": 6}])
        for sock in stalled:
            sock.settimeout(20)
            assert sock.recv(4096) == b""  # closed by the instance, no answer
            sock.close()
        worker.assert_alive()


    def test_a_request_trickling_in_is_closed_at_the_deadline(self, start_instance, mysql_blog):
        """A byte every second keeps each read under the 5 s read timeout: the request's
        deadline (15 s from its first byte) ends it, without an answer, and frees the thread."""
        instance = start_instance(mysql_blog, workers=1, threads=1)
        body = b"users(id = 1) { id }" + b" " * 40
        sock = _connect(instance)
        sock.sendall((f"POST /query HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {instance.key}\r\n"
                      f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n").encode())
        started, answer = time.monotonic(), None
        for byte in body:
            try:
                sock.sendall(bytes([byte]))
            except OSError:    # the instance closed it
                break
            ready, _, _ = select.select([sock], [], [], 1.0)
            if ready:
                answer = sock.recv(4096)
                break
        elapsed = time.monotonic() - started

        assert answer == b""   # closed, no answer
        assert 14 <= elapsed <= 20, elapsed
        assert instance.query("users(id = 6) { id }").json() == [{"id": 6}]   # the thread is free
        sock.close()


def _connect(instance) -> socket.socket:
    host, port = instance.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def _post(instance, text: str, *, close: bool = False) -> bytes:
    body = text.encode()
    return (f"POST /query HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {instance.key}\r\n"
            f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
            + ("Connection: close\r\n" if close else "") + "\r\n").encode() + body


def _chunked(instance, chunks: list[bytes]) -> bytes:
    head = (f"POST /query HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {instance.key}\r\n"
            "Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    return head + b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\n"


def _response(reader) -> dict:
    """One HTTP/1.1 response with a Content-Length, read from a socket's file."""
    status = reader.readline().decode().rstrip("\r\n")
    headers = {}
    while (line := reader.readline().decode()) not in ("\r\n", ""):
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return {"status": status, "headers": headers,
            "body": reader.read(int(headers["content-length"]))}


def _wait_status(instance, key, status, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        got = instance.query("users(id = 1) { id }", key=key).status_code
        if got == status or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def _mariadb_connection(source):
    import pymysql
    from rt_support import MARIADB

    return pymysql.connect(**MARIADB, database=source.schema, autocommit=True)
