"""Rate limits per management key: RateLimit-* headers on every authenticated answer, 429
`rate_limited` with Retry-After past a budget, a lower budget for the actions that read the
source database, and one budget shared by every gunicorn worker through Redis."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid

import pytest
import requests
import yaml

from app import create_app
from app.api.ratelimit import SOURCE_BUDGET, budgets_by_operation
from app.config import DEFAULT_SPEC, PROJECT_ROOT, Settings, SettingsError
from app.storage.database import db
from app.storage.models import Connection
from tests.conftest import (
    PG_URL,
    Client,
    connection_payload,
    free_port,
    make_customer,
    stop_process_group,
    wait_until_serving,
)
from tests.support import assert_error

SPEC = yaml.safe_load(DEFAULT_SPEC.read_text())
SOURCE_OPERATIONS = {"provision_database", "rebuild_database", "reconfigure_database",
                     "redeploy_database", "resize_database", "resume_database", "reload_database"}
RATE_HEADERS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")


@pytest.fixture
def app_with(stack):
    """An app on the test store with other settings (the stack's store is active afterwards)."""
    def make(**overrides):
        app = create_app(dataclasses.replace(stack.settings, **overrides))
        stack.activate()
        return app
    return make


def rate(response) -> tuple[int, int, int]:
    return tuple(int(response.headers[name]) for name in RATE_HEADERS)


class TestHeaders:
    def test_every_authenticated_answer_carries_the_budget(self, app_with, customer):
        client = Client(app_with(rate_limit="50/minute"), customer[1])
        answers = [
            client.get("/connections"),                                  # 200
            client.post("/connections", connection_payload()),          # 201
            client.post("/connections", {"name": "x"}),                  # 400 from the spec
            client.get(f"/connections/{uuid.uuid4()}"),                  # 404 from the service
            client.request("PUT", "/connections", json_body={}),         # 405 on a known path
        ]
        assert [a.status_code for a in answers] == [200, 201, 400, 404, 405]
        # The 405 is refused by routing, before the key is looked at: no budget spent, none shown.
        assert not any(name in answers[4].headers for name in RATE_HEADERS)
        assert [rate(a)[:2] for a in answers[:4]] == [(50, 49), (50, 48), (50, 47), (50, 46)]
        assert all(0 < rate(a)[2] <= 60 for a in answers[:4])

    def test_unauthenticated_answers_carry_none(self, app_with, customer):
        client = Client(app_with(rate_limit="50/minute"), customer[1])
        for response in (client.get("/connections", key=None), client.get("/connections", key="rmk_a.b"),
                         client.get("/healthz", key=None), client.get("/openapi.yaml", key=None)):
            assert not any(name in response.headers for name in RATE_HEADERS), response.headers

    def test_off_counts_nothing(self, app_with, customer):
        client = Client(app_with(rate_limit="off", source_rate_limit="off"), customer[1])
        for _ in range(3):
            response = client.get("/connections")
            assert response.status_code == 200
            assert not any(name in response.headers for name in RATE_HEADERS)


class TestLimit:
    def test_past_the_budget_429_with_retry_after_and_nothing_done(self, app_with, customer):
        client = Client(app_with(rate_limit="3/minute"), customer[1])
        for _ in range(3):
            assert client.get("/connections").status_code == 200
        refused = client.post("/connections", connection_payload(name="never"))
        assert_error(refused, 429, "rate_limited")
        assert refused.json()["message"] == (
            f"this management key made more than 3 requests per minute; retry in "
            f"{refused.headers['retry-after']} s")
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert rate(refused)[:2] == (3, 0)
        assert int(refused.headers["retry-after"]) == max(1, rate(refused)[2])
        assert "x-request-id" in refused.headers
        # Refused before the handler: nothing was created.
        with db.connection_context():
            assert Connection.select().where(Connection.name == "never").count() == 0

    def test_each_management_key_has_its_own_budget(self, app_with, customer):
        app = app_with(rate_limit="2/minute")
        first = Client(app, customer[1])
        second_key = first.post("/account/management-keys", {"name": "second"}).json()["key"]
        assert first.get("/connections").status_code == 200
        assert_error(first.get("/connections"), 429, "rate_limited")
        second = Client(app, second_key)
        assert second.get("/connections").status_code == 200
        assert rate(second.get("/connections"))[:2] == (2, 0)
        # Another account's key is untouched too.
        assert Client(app, make_customer("Other")[1]).get("/connections").status_code == 200


class TestSourceBudget:
    def test_the_operations_that_read_the_source_spend_the_source_budget(self):
        marked = {op for op, budgets in budgets_by_operation(SPEC).items() if SOURCE_BUDGET in budgets}
        assert marked == SOURCE_OPERATIONS
        # Every operation that needs a key spends the api budget and documents its 429.
        for path, item in SPEC["paths"].items():
            for method, operation in item.items():
                if method != "parameters" and operation.get("security", SPEC["security"]):
                    assert "429" in operation["responses"], f"{method} {path}"

    def test_provision_past_the_source_budget_is_429_while_reads_go_on(self, app_with, customer):
        client = Client(app_with(rate_limit="100/minute", source_rate_limit="2/minute"), customer[1])
        connection = client.post("/connections", connection_payload()).json()
        database = client.post("/databases", {"connectionId": connection["id"], "name": "d",
                                              "mysqlDb": "shop"}).json()
        accepted = client.post(f"/databases/{database['id']}/provision")
        assert accepted.status_code == 202
        assert rate(accepted)[:2] == (2, 1)      # the source budget is the one closer to its end
        # The second is refused by the lifecycle rules, after spending its unit.
        assert_error(client.post(f"/databases/{database['id']}/provision"), 409, "invalid_state")
        refused = client.post(f"/databases/{database['id']}/provision")
        body = assert_error(refused, 429, "rate_limited")
        assert body["message"] == ("this management key made more than 2 actions that read the "
                                   f"source database per minute; retry in {refused.headers['retry-after']} s")
        assert rate(refused)[:2] == (2, 0)
        # Requests that do not read the source still go through, on the api budget.
        read = client.get(f"/databases/{database['id']}")
        assert read.status_code == 200 and read.json()["status"] == "testing_connection"
        assert rate(read)[:2] == (100, 100 - 6)


class TestRedis:
    def test_redis_down_lets_requests_through_uncounted_with_one_warning(self, app_with, customer, caplog):
        client = Client(app_with(rate_limit="1/minute", redis_url=f"redis://127.0.0.1:{free_port()}/0"),
                        customer[1])
        with caplog.at_level(logging.WARNING):
            answers = [client.get("/connections") for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert not any(name in answers[0].headers for name in RATE_HEADERS)
        warnings = [r.getMessage() for r in caplog.records if r.name == "app.api.ratelimit"]
        assert len(warnings) == 1 and warnings[0].startswith(
            "rate limits are not counted: Redis does not answer")

    def test_two_gunicorn_workers_share_one_budget(self, stack, customer, tmp_path):
        """Through gunicorn with two workers on Redis: exactly the budget goes through, whichever
        worker answers, and each worker answered some of the requests."""
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
        env.update({"DATABASE_URL": PG_URL, "REFLEXDB_SECRET_KEYS": stack.settings.secret_keys[0],
                    "REFLEXDB_DATA_DIR": str(tmp_path / "data"), "REFLEXDB_ACCESS_LOG": "",
                    "REFLEXDB_REDIS_URL": "redis://127.0.0.1:6379/0",
                    # A queue name of its own: other test runs share this Redis.
                    "REFLEXDB_QUEUE_NAME": f"ratelimit-{uuid.uuid4().hex[:8]}",
                    "REFLEXDB_RATE_LIMIT": "10/minute", "HOME": str(tmp_path)})
        log_path = tmp_path / "gunicorn.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "--config", str(PROJECT_ROOT / "gunicorn.conf.py"),
                 "--bind", f"127.0.0.1:{port}", "--workers", "2"],
                cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        base = f"http://127.0.0.1:{port}/v1"
        try:
            wait_until_serving(f"{base}/healthz", proc, log_path)
            # Both workers: each logs its start-up; the second may still be loading the app.
            deadline = time.monotonic() + 60
            while log_path.read_text().count("Application startup complete.") < 2:
                assert time.monotonic() < deadline, log_path.read_text()[-2000:]
                time.sleep(0.1)
            answers, lock = [], threading.Lock()

            def call(n):
                # A new connection per request, from several threads: both workers accept.
                response = requests.get(f"{base}/connections", timeout=30, headers={
                    "Authorization": f"Bearer {customer[1]}", "X-Request-ID": f"shared-{n}"})
                with lock:
                    answers.append(response)

            threads = [threading.Thread(target=call, args=(n,)) for n in range(30)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            stop_process_group(proc)
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [200] * 10 + [429] * 20
        for refused in (a for a in answers if a.status_code == 429):
            assert refused.json()["error"] == "rate_limited"
            assert rate(refused)[:2] == (10, 0) and int(refused.headers["retry-after"]) >= 1
        assert all(0 <= rate(a)[1] < 10 for a in answers if a.status_code == 200)
        lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
        workers = {line["process"] for line in lines
                   if line["logger"] == "reflexdb.request" and line["request_id"].startswith("shared-")}
        assert len(workers) == 2, "one worker answered every request; the test proves nothing"


class TestSettings:
    @pytest.mark.parametrize("value", ["600", "10/fortnight", "0/minute", "-1/second", "many"])
    def test_a_bad_rate_is_refused_by_name(self, value):
        with pytest.raises(SettingsError) as refused:
            Settings.from_env(environ={"REFLEXDB_SOURCE_RATE_LIMIT": value})
        assert refused.value.problems == [
            "REFLEXDB_SOURCE_RATE_LIMIT must be a rate such as 600/minute or 10/second (per second, "
            f"minute, hour or day), or off (it is {value!r})"]

    def test_defaults_and_spelling(self):
        assert (Settings.from_env(environ={}).rate_limit, Settings.from_env(environ={}).source_rate_limit) == (
            "600/minute", "20/minute")
        assert Settings.from_env(environ={"REFLEXDB_RATE_LIMIT": " 5 / Second "}).rate_limit == "5/second"
        assert Settings.from_env(environ={"REFLEXDB_RATE_LIMIT": "OFF"}).rate_limit == "off"
