"""What operators see: request ids, one JSON log line per request with secrets redacted, liveness
and readiness probes, Prometheus metrics; and a whole scripted run through `reflexdb serve`
(gunicorn with two workers, and the engine worker) whose logs hold no secret."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import re
import sqlite3
import subprocess
import sys
import uuid

import pytest
import requests
from cryptography.fernet import Fernet

from app import create_app
from app.logs import RedactingJsonFormatter, configure_logging, json_handler, redact
from app.storage.database import db
from tests.conftest import SECRETS, Client, connection_payload, free_port
from tests.engine.lifecycle.conftest import FAST, shop, wait_until  # noqa: F401  (shop is a fixture)
from tests.lifecycle.conftest import add_build, add_instance
from tests.support import assert_error

HEX32 = re.compile(r"^[0-9a-f]{32}$")
REQUEST_LINE_FIELDS = {"time", "level", "logger", "process", "message", "request_id", "operation",
                       "method", "path", "status", "duration_ms", "key_id", "customer_id"}


@pytest.fixture
def app_with(stack):
    def make(**overrides):
        app = create_app(dataclasses.replace(stack.settings, **overrides))
        stack.activate()
        return app
    return make


@pytest.fixture
def log_lines():
    """The JSON lines the app logs during the test, parsed."""
    stream = io.StringIO()
    handler = json_handler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.INFO)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def request_lines(lines: list[dict]) -> list[dict]:
    return [line for line in lines if line["logger"] == "reflexdb.request"]


class TestRequestId:
    def test_a_valid_id_is_kept_and_echoed(self, client):
        for request_id in ("abc", "7f1c-22:req/1+2=3_x.y", "x" * 128):
            response = client.get("/connections", headers={"X-Request-ID": request_id})
            assert response.status_code == 200
            assert response.headers["x-request-id"] == request_id

    @pytest.mark.parametrize("bad", ["", "x" * 129, "has space", "semi;colon", "ünï", "a\tb"])
    def test_anything_else_is_replaced(self, client, bad):
        response = client.get("/connections", headers={"X-Request-ID": bad.encode("utf-8")})
        assert HEX32.match(response.headers["x-request-id"])

    def test_two_ids_are_replaced(self, client):
        response = client._client.get("/v1/connections", headers=[
            ("Authorization", f"Bearer {client.key}"), ("X-Request-ID", "a"), ("X-Request-ID", "b")])
        assert response.status_code == 200
        assert HEX32.match(response.headers["x-request-id"])

    def test_every_answer_carries_one(self, client):
        answers = [client.get("/connections"), client.get("/nothing/here", key=None),
                   client.get("/connections", key=None), client.get("/healthz", key=None),
                   client.get("/openapi.json", key=None), client.get("/ui/", key=None),
                   client.request("PUT", "/connections")]
        assert [a.status_code for a in answers] == [200, 404, 401, 200, 200, 200, 405]
        ids = [a.headers["x-request-id"] for a in answers]
        assert all(HEX32.match(i) for i in ids) and len(set(ids)) == len(ids)
        metrics = client._client.get("/metrics")
        assert metrics.status_code == 200 and HEX32.match(metrics.headers["x-request-id"])

    def test_a_500_quotes_the_request_id_which_every_log_line_of_the_request_carries(
            self, client, monkeypatch, log_lines):
        from app.domain import connections

        def explode(*args, **kwargs):
            logging.getLogger("app.domain.connections").warning("about to fail")
            raise RuntimeError("internals: password=hunter2 key rmk_0011aabb.s3cr3tvalue")

        monkeypatch.setattr(connections, "list_connections", explode)
        body = assert_error(client.get("/connections", headers={"X-Request-ID": "trace-500"}),
                            500, "internal_error")
        assert body["message"] == ("something went wrong on our side; quote request id trace-500 "
                                   "when reporting it")
        mine = [line for line in log_lines() if line["request_id"] == "trace-500"]
        assert [line["logger"] for line in mine] == ["app.domain.connections", "app.api.errors",
                                                     "reflexdb.request"]
        failure = mine[1]
        assert failure["message"] == "request GET /v1/connections failed (request id trace-500)"
        # The traceback is logged, its secrets redacted.
        assert "RuntimeError: internals: password=[redacted] key rmk_0011aabb.[redacted]" in failure["exc_info"]
        assert "hunter2" not in json.dumps(mine) and "s3cr3tvalue" not in json.dumps(mine)
        assert mine[2]["status"] == 500


class TestRequestLog:
    def test_one_line_per_request_with_its_operation_and_caller(self, client, customer, connection, log_lines):
        client.get(f"/connections/{connection['id']}", headers={"X-Request-ID": "one"})
        client.get("/no/such/path", key=None, headers={"X-Request-ID": "two"})
        client.post("/connections", {"name": "x"}, headers={"X-Request-ID": "three"})
        lines = {line["request_id"]: line for line in request_lines(log_lines())}
        assert set(lines) == {"one", "two", "three"}
        assert all(set(line) == REQUEST_LINE_FIELDS for line in lines.values())
        one = lines["one"]
        key_id = customer[1][len("rmk_"):].split(".")[0]
        assert {k: one[k] for k in REQUEST_LINE_FIELDS - {"time", "process", "duration_ms", "message"}} == {
            "level": "INFO", "logger": "reflexdb.request", "request_id": "one",
            "operation": "get_connection", "method": "GET", "path": "/v1/connections/{connectionId}",
            "status": 200, "key_id": key_id, "customer_id": str(customer[0].id)}
        assert one["message"] == f"GET /v1/connections/{{connectionId}} 200 {one['duration_ms']}ms"
        assert isinstance(one["duration_ms"], float) and one["duration_ms"] > 0
        # Unrouted: the raw path, no operation, no caller.
        assert (lines["two"]["operation"], lines["two"]["path"], lines["two"]["status"],
                lines["two"]["key_id"], lines["two"]["customer_id"]) == (None, "/v1/no/such/path", 404, None, None)
        assert (lines["three"]["operation"], lines["three"]["status"]) == ("create_connection", 400)

    def test_no_secret_reaches_a_log_line(self, client, log_lines):
        body = connection_payload()
        created = client.post("/connections", body)
        assert created.status_code == 201
        client.patch(f"/connections/{created.json()['id']}", {"mysqlPassword": "N3w-Pa55word!x"})
        SECRETS.add("N3w-Pa55word!x")
        key = client.post("/account/management-keys", {"name": "k"}).json()["key"]
        text = json.dumps(log_lines())
        leaked = sum(secret in text for secret in (*SECRETS, client.key, key))
        assert leaked == 0, "a secret reached a log line"

    def test_redaction(self):
        assert redact("Authorization: Bearer rmk_ab12.SECRET-x_y") == "Authorization: Bearer [redacted]"
        assert redact("key rmk_ab12.SECRET-x_y and rxk_cd34.MAC_z-1") == (
            "key rmk_ab12.[redacted] and rxk_cd34.[redacted]")
        assert redact("postgresql://app:pa55@db:5432/x") == "postgresql://app:[redacted]@db:5432/x"
        assert redact('{"mysqlPassword": "hunter2", "name": "n"}') == '{"mysqlPassword": "[redacted]", "name": "n"}'
        assert redact("admin_token=abc123 secret: s3 password='p w'") == (
            "admin_token=[redacted] secret: [redacted] password='[redacted] w'")
        # The quick pre-check folds case as the patterns' (?i) does, odd letters included.
        assert redact("PASSWORD=abc") == "PASSWORD=[redacted]"
        assert redact("\u017fecret=def") == "\u017fecret=[redacted]"   # long s: (?i) takes it for s
        assert redact("database 5 failed: password authentication failed") == (
            "database 5 failed: password authentication failed")

    def test_the_formatter_redacts_the_message_and_every_extra_field_and_leaves_clean_lines_alone(self):
        formatter = RedactingJsonFormatter()

        def line(message, *args, **extra):
            record = logging.LogRecord("reflexdb.test", logging.INFO, __file__, 1, message, args, None)
            record.__dict__.update(extra, request_id=None)
            return json.loads(formatter.format(record))

        dirty = line("key %s", "rmk_ab12.SECRET", url="postgresql://app:pa55@db/x",
                     nested={"body": ['{"mysqlPassword": "hunter2"}']}, count=3)
        assert {name: dirty[name] for name in ("message", "url", "nested", "count")} == {
            "message": "key rmk_ab12.[redacted]", "url": "postgresql://app:[redacted]@db/x",
            "nested": {"body": ['{"mysqlPassword": "[redacted]"}']}, "count": 3}
        clean = line("GET %s 200", "/v1/connections/{connectionId}", path="/v1/connections/{connectionId}")
        assert (clean["message"], clean["path"]) == ("GET /v1/connections/{connectionId} 200",
                                                     "/v1/connections/{connectionId}")

    def test_configure_logging_installs_one_json_handler(self):
        root = logging.getLogger()
        configure_logging("INFO")
        before = list(root.handlers)
        configure_logging("INFO")   # again (every create_app calls it): nothing added
        assert root.handlers == before
        assert sum(isinstance(h.formatter, RedactingJsonFormatter) for h in root.handlers) == 1


class TestProbes:
    @pytest.mark.both_stores
    def test_readyz_on_each_store(self, client, store):
        ready = client.get("/readyz", key=None)
        assert ready.status_code == 200
        body = ready.json()
        assert body == {"status": "ok", "storage": "postgresql" if store == "postgres" else "sqlite",
                        "jobQueue": {"depth": body["jobQueue"]["depth"]}}
        assert body["jobQueue"]["depth"] >= 0

    def test_healthz_and_readyz(self, client, stack):
        assert client.get("/healthz", key=None).json() == {"status": "ok"}
        ready = client.get("/readyz", key=None)
        with db.connection_context():
            depth = db.execute_sql("SELECT count(*) FROM engine_queue_task WHERE queue = %s",
                                   (stack.settings.queue_name,)).fetchone()[0]
        assert ready.status_code == 200
        assert ready.json() == {"status": "ok", "storage": "postgresql", "jobQueue": {"depth": depth}}

    def test_readyz_is_503_while_the_job_queue_does_not_answer(self, stack, caplog):
        # The job queue on a Redis where nothing listens.
        client = Client(create_app(dataclasses.replace(
            stack.settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")), None)
        try:
            assert client.get("/healthz", key=None).status_code == 200
            with caplog.at_level(logging.WARNING):
                refused = client.get("/readyz", key=None)
        finally:
            stack.activate()
        assert_error(refused, 503, "unavailable")
        assert refused.json()["message"] == "the job queue does not answer; retry in a few seconds"
        assert refused.headers["retry-after"] == "2"
        assert any(r.getMessage().startswith("readiness: the job queue does not answer")
                   for r in caplog.records)

    def test_healthz_answers_while_the_store_is_down_and_readyz_does_not(self, stack, tmp_path):
        from app.config import Settings

        settings = Settings.from_env(environ={}, database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/x",
                                     secret_keys=(Fernet.generate_key().decode(),), data_dir=tmp_path,
                                     validate_responses=True)
        client = Client(create_app(settings), None)
        try:
            assert client.get("/healthz", key=None).json() == {"status": "ok"}
            assert_error(client.get("/readyz", key=None), 503, "unavailable")
            metrics = client._client.get("/metrics")
            assert metrics.status_code == 200 and "reflexdb_store_up 0.0" in metrics.text
        finally:
            db.obj.close_all()
            stack.activate()


class TestMetrics:
    def test_requests_fleet_and_queue(self, client, stack, connection, database, log_lines):
        for _ in range(3):
            client.get("/connections")
        client.get(f"/databases/{uuid.uuid4()}")
        other = client.post("/databases", {"connectionId": connection["id"], "name": "other",
                                           "mysqlDb": "analytics"}).json()
        add_instance(database, add_build(database), health_status="ok")
        add_instance(other, add_build(other), health_status="degraded")
        text = client._client.get("/metrics").text
        samples = dict(re.findall(r"^([a-z_]+(?:\{[^}]*\})?) (\S+)$", text, re.MULTILINE))
        listed = 'method="GET",operation="list_connections",status="200"'
        assert float(samples[f"reflexdb_http_requests_total{{{listed}}}"]) >= 3
        assert float(samples['reflexdb_http_requests_total{method="GET",operation="get_database",status="404"}']) >= 1
        assert f'reflexdb_http_request_duration_seconds_bucket{{le="0.005",{listed}}}' in samples
        assert samples["reflexdb_store_up"] == "1.0"
        assert samples['reflexdb_databases{status="registered"}'] == "2.0"
        assert samples['reflexdb_databases{status="running"}'] == "0.0"
        assert (samples['reflexdb_instances{health="ok"}'], samples['reflexdb_instances{health="degraded"}'],
                samples['reflexdb_instances{health="unknown"}']) == ("1.0", "1.0", "0.0")
        with db.connection_context():
            depth = db.execute_sql("SELECT count(*) FROM engine_queue_task WHERE queue = %s",
                                   (stack.settings.queue_name,)).fetchone()[0]
        assert samples["reflexdb_job_queue_up"] == "1.0"
        assert float(samples["reflexdb_job_queue_depth"]) == depth
        # The scrape is logged as a request outside the API, and counted as one.
        assert request_lines(log_lines())[-1]["path"] == "/metrics"

    def test_only_get_and_head(self, client):
        assert_error(client._client.post("/metrics"), 405, "method_not_allowed")
        head = client._client.head("/metrics")
        assert head.status_code == 200 and head.content == b""


# -- a whole run, through `reflexdb serve` ---------------------------------------------


def test_a_scripted_run_through_serve_logs_json_with_no_secret(tmp_path, shop):  # noqa: F811
    """`reflexdb serve` (gunicorn with two workers, and the engine worker) on the embedded
    store: a user's session from key creation to terminate, through a real instance. Every
    line of the output is JSON, each request has its line, the engine's transitions reach
    /metrics, and no password, management key, query key or admin token is anywhere in it."""
    import os

    data = tmp_path / "data"
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REFLEXDB_", "DATABASE_URL", "PROMETHEUS_"))}
    env.update(FAST, REFLEXDB_DATA_DIR=str(data), REFLEXDB_ACCESS_LOG="-", REFLEXDB_LOG_LEVEL="DEBUG")
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        serve = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--bind", f"127.0.0.1:{port}",
                                  "--workers", "2"], cwd=os.getcwd(), env=env, stdout=log,
                                 stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{port}/v1"
    secrets = {shop.password}
    instance_logs = []
    made = []   # (request id, operationId, status) of every call

    def call(method, path, body=None, *, key, operation, status):
        request_id = f"run-{len(made)}"
        headers = {"X-Request-ID": request_id}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        response = requests.request(method, f"{api}{path}", json=body, headers=headers, timeout=30)
        assert response.status_code == status, response.text
        assert response.headers["x-request-id"] == request_id
        made.append((request_id, operation, status))
        return response.json() if response.content else None

    try:
        wait_until(lambda: _answers(f"{api}/readyz"), timeout=60, what=f"the API: {log_path}")
        created = subprocess.run([sys.executable, "-m", "app.cli", "customers", "create", "--name", "Acme"],
                                 cwd=os.getcwd(), env=env, capture_output=True, text=True, check=True)
        first_key = json.loads(created.stdout)["key"]
        secrets.add(first_key)
        key = call("POST", "/account/management-keys", {"name": "ci"}, key=first_key,
                   operation="create_management_key", status=201)["key"]
        secrets.add(key)
        call("GET", "/connections", key="rmk_0123456789abcdef.not-a-real-secret-value",
             operation="list_connections", status=401)
        secrets.add("not-a-real-secret-value")
        connection = call("POST", "/connections", {
            "name": "shop", "mysqlHost": "127.0.0.1", "mysqlPort": 3306, "availableSchemas": [shop.schema],
            "mysqlUser": shop.user, "mysqlPassword": "first-Wrong-pa55word",
            "instance": {"name": "live", "mysqlDb": shop.schema}}, key=key,
            operation="create_connection", status=201)
        secrets.add("first-Wrong-pa55word")
        call("PATCH", f"/connections/{connection['id']}", {"mysqlPassword": shop.password}, key=key,
             operation="update_connection", status=200)
        call("POST", "/connections", {"name": "bad", "mysqlPassword": "leaky-Pa55word-in-a-400"}, key=key,
             operation="create_connection", status=400)
        secrets.add("leaky-Pa55word-in-a-400")
        database_id = connection["databases"][0]["id"]
        query_key = call("POST", f"/databases/{database_id}/api-keys", {"name": "app"}, key=key,
                         operation="create_api_key", status=201)["key"]
        secrets.add(query_key)
        call("POST", f"/databases/{database_id}/provision", key=key, operation="provision_database",
             status=202)
        running = wait_until(lambda: requests.get(f"{api}/databases/{database_id}", timeout=10, headers={
            "Authorization": f"Bearer {key}"}).json()["status"] in ("running", "failed")
            and requests.get(f"{api}/databases/{database_id}", timeout=10,
                             headers={"Authorization": f"Bearer {key}"}).json(), timeout=90,
            what="the database to run")
        assert running["status"] == "running", running
        answer = requests.post(f"{running['endpointUrl']}/query", data="users { id }", timeout=10,
                               headers={"Authorization": f"Bearer {query_key}"})
        assert answer.json() == [{"id": 1}, {"id": 2}]
        # Actions the engine carries out with the instance's admin token.
        call("POST", f"/databases/{database_id}/pause-replication", key=key,
             operation="pause_database_replication", status=202)
        call("POST", f"/databases/{database_id}/resume-replication", key=key,
             operation="resume_database_replication", status=202)
        call("POST", f"/databases/{database_id}/reload", key=key, operation="reload_database", status=202)
        call("GET", f"/databases/{uuid.uuid4()}", key=key, operation="get_database", status=404)
        # The instance's own log, before terminate releases its directory.
        instance_logs = [path.read_text(errors="replace") for path in (data / "instances").rglob("*.log")]
        call("DELETE", f"/account/management-keys/{_key_object_id(api, key, first_key)}", key=key,
             operation="delete_management_key", status=204)
        call("POST", f"/databases/{database_id}/terminate", key=key, operation="terminate_database",
             status=202)
        wait_until(lambda: requests.get(f"{api}/databases/{database_id}", timeout=10, headers={
            "Authorization": f"Bearer {key}"}).json()["status"] == "terminated", timeout=60,
            what="the database to terminate")
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        secrets |= _admin_tokens(data)
    finally:
        serve.terminate()
        try:
            serve.wait(30)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()

    # The engine worker's transitions reach the API's /metrics (one directory of metric files).
    for change in ('from_status="testing_connection",to_status="queued"',
                   'from_status="deploying",to_status="running"',
                   'from_status="terminating",to_status="terminated"'):
        assert re.search(rf"^reflexdb_lifecycle_transitions_total\{{{change}\}} [1-9]", metrics, re.MULTILINE), change
    assert re.search(r'^reflexdb_http_requests_total\{method="POST",operation="provision_database",'
                     r'status="202"\} 1\.0$', metrics, re.MULTILINE)

    output = log_path.read_text()
    assert instance_logs, "no instance log to check"
    logs = [output, *instance_logs]
    # The shop's password and two more, a bogus key's secret, 2 management keys, a query key,
    # the admin token. (Counted and checked without pytest printing them on a failure.)
    count = len(secrets)
    assert count >= 8
    leaked = sum(secret in text for secret in secrets for text in logs)
    assert leaked == 0, "a secret reached the logs"

    # Every line of the API's and the engine's output is one JSON object (but the migrate report).
    lines = []
    for raw in output.splitlines():
        if re.match(r"applied \d+ migration\(s\)", raw):   # `reflexdb migrate`'s report, on stderr
            continue
        lines.append(json.loads(raw))
    # Each request has its line, with its operation, status and caller.
    by_id = {line["request_id"]: line for line in lines if line["logger"] == "reflexdb.request"}
    for request_id, operation, status in made:
        assert (by_id[request_id]["operation"], by_id[request_id]["status"]) == (operation, status)
    assert by_id["run-1"]["key_id"] is None
    assert by_id["run-2"]["key_id"] == key[len("rmk_"):].split(".")[0]
    # The supervisor, gunicorn's master and two workers, the engine worker: all in JSON.
    assert len({line["process"] for line in lines}) >= 5


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _key_object_id(api: str, key: str, which: str) -> str:
    keys = requests.get(f"{api}/account/management-keys", timeout=10,
                        headers={"Authorization": f"Bearer {key}"}).json()
    key_id = which[len("rmk_"):].split(".")[0]
    return next(k["id"] for k in keys if k["keyId"] == key_id)


def _admin_tokens(data) -> set[str]:
    """Every admin token the run's instances had, decrypted from the embedded store."""
    box = Fernet((data / "secret.key").read_text().strip())
    with sqlite3.connect(data / "reflexdb.sqlite3") as store:
        tokens = {box.decrypt(row[0].encode()).decode()
                  for row in store.execute("SELECT admin_token_encrypted FROM instances")}
    assert tokens, "no instance was started"
    return tokens
