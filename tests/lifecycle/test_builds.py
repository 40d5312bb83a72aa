"""GET /databases/{id}/builds, one build, its log."""

from __future__ import annotations

import datetime as dt
import uuid

from app.domain import lifecycle
from tests.lifecycle.conftest import T0, add_build
from tests.lifecycle.test_instance_view import ARTIFACT, build_out, ts
from tests.support import assert_error


def test_list_is_newest_first(client, database):
    old = add_build(database, status="failed", created_at=T0, log="boom")
    new = add_build(database, artifact=ARTIFACT, created_at=T0 + dt.timedelta(hours=1),
                    started_at=T0 + dt.timedelta(hours=1), finished_at=T0 + dt.timedelta(hours=1, seconds=3))
    response = client.get(f"/databases/{database['id']}/builds")
    assert response.status_code == 200
    assert response.json() == [
        build_out(new, database, startedAt=ts(T0 + dt.timedelta(hours=1)),
                  finishedAt=ts(T0 + dt.timedelta(hours=1, seconds=3)), durationSeconds=3.0,
                  tables=["users", "articles"]),
        build_out(old, database),
    ]


def test_list_is_empty_before_the_first_build(client, database):
    assert client.get(f"/databases/{database['id']}/builds").json() == []


def test_list_is_bounded(client, database, monkeypatch):
    monkeypatch.setattr(lifecycle, "BUILD_LIST_LIMIT", 2)
    builds = [add_build(database, created_at=T0 + dt.timedelta(minutes=i)) for i in range(3)]
    listed = client.get(f"/databases/{database['id']}/builds").json()
    assert [b["id"] for b in listed] == [str(builds[2].id), str(builds[1].id)]


def test_one_build(client, database):
    build = add_build(database, status="in_progress", started_at=T0)
    response = client.get(f"/databases/{database['id']}/builds/{build.id}")
    assert (response.status_code, response.json()) == (200, build_out(build, database, startedAt=ts(T0)))


def test_log_is_plain_text(client, database):
    log = "00.000 introspect: 2 tables (0.10 s)\n00.100 compile: failed: column 'x' is unknown\n"
    build = add_build(database, status="failed", log=log)
    response = client.get(f"/databases/{database['id']}/builds/{build.id}/logs")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text == log


def test_a_long_log_is_served_from_its_end(client, database, monkeypatch):
    monkeypatch.setattr(lifecycle, "LOG_LIMIT", 100)
    build = add_build(database, log="a" * 200 + "the end\n")
    text = client.get(f"/databases/{database['id']}/builds/{build.id}/logs").text
    assert len(text) == 100
    assert text.startswith("[earlier lines cut: the log is longer than the 1 MiB served]\n")
    assert text.endswith("aaathe end\n")


def test_unknown_builds_are_404(client, connection, database):
    other = client.post("/databases", {"connectionId": connection["id"], "name": "other",
                                       "mysqlDb": "analytics"}).json()
    theirs = add_build(other)
    for build_id in (uuid.uuid4(), theirs.id):
        for suffix in ("", "/logs"):
            assert_error(client.get(f"/databases/{database['id']}/builds/{build_id}{suffix}"), 404, "not_found",
                         f"build {build_id} was not found on this database")


def test_another_customers_builds_are_404(client, other_client, database):
    build = add_build(database)
    for path in ("/builds", f"/builds/{build.id}", f"/builds/{build.id}/logs"):
        assert_error(other_client.get(f"/databases/{database['id']}{path}"), 404, "not_found")


def test_malformed_build_id_is_400(client, database):
    assert_error(client.get(f"/databases/{database['id']}/builds/nope"), 400, "invalid_request", "UUID")
