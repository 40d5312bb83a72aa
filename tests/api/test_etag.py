"""Safe concurrent edits: ETags on connections and databases, If-Match on PATCH and DELETE (docs/api-hardening.md)."""

from __future__ import annotations

import re
import threading

import pytest
import requests

from app.storage.database import db
from app.storage.models import Connection, Database
from tests.conftest import SECRETS, connection_payload, stored
from tests.support import assert_error

STRONG_ETAG = re.compile(r'^"[0-9a-f]{32}"$')


def precondition_message(what: str, ident: str, sent: str, now: str) -> str:
    return (f"{what} {ident} has changed since you read it (If-Match {sent}, its ETag is now {now}); "
            "nothing was changed. GET it again, reapply your change and retry.")


@pytest.fixture(params=["connection", "database"])
def resource(request, client, connection, database):
    """(path, a valid PATCH body, the model) of a connection or a database of the caller."""
    if request.param == "connection":
        return f"/connections/{connection['id']}", {"syncInterval": 90}, Connection
    return f"/databases/{database['id']}", {"logLevel": "debug"}, Database


@pytest.mark.both_stores
class TestEtags:
    def test_every_answer_about_the_resource_carries_its_etag(self, client):
        created = client.post("/connections", connection_payload(instance={"name": "d1", "mysqlDb": "shop"}))
        connection = created.json()
        read = client.get(f"/connections/{connection['id']}")
        assert STRONG_ETAG.match(created.headers["ETag"])
        assert read.headers["ETag"] == created.headers["ETag"]

        database = client.post("/databases", {"connectionId": connection["id"], "name": "d2", "mysqlDb": "shop"})
        read_db = client.get(f"/databases/{database.json()['id']}")
        assert STRONG_ETAG.match(database.headers["ETag"])
        assert read_db.headers["ETag"] == database.headers["ETag"]

        patched = client.patch(f"/databases/{database.json()['id']}", {"name": "renamed"})
        assert patched.headers["ETag"] != database.headers["ETag"]
        assert client.get(f"/databases/{database.json()['id']}").headers["ETag"] == patched.headers["ETag"]

    def test_a_connections_etag_covers_its_own_fields_not_the_databases_it_embeds(self, client, connection,
                                                                                   database):
        path = f"/connections/{connection['id']}"
        before = client.get(path).headers["ETag"]
        client.patch(f"/databases/{database['id']}", {"name": "renamed"})
        client.post("/databases", {"connectionId": connection["id"], "name": "another", "mysqlDb": "shop"})
        assert client.get(path).headers["ETag"] == before
        # A credential change shows only in updatedAt, and still changes the tag.
        SECRETS.add("another-Secret-9")
        changed = client.patch(path, {"mysqlPassword": "another-Secret-9"}).headers["ETag"]
        assert changed != before

    def test_a_change_by_the_engine_changes_the_etag(self, client, database):
        path = f"/databases/{database['id']}"
        before = client.get(path).headers["ETag"]
        with db.connection_context():
            Database.update(status="running", health_status="ok").where(Database.id == database["id"]).execute()
        now = client.get(path).headers["ETag"]
        assert now != before
        body = assert_error(client.patch(path, {"logLevel": "debug"}, headers={"If-Match": before}),
                            412, "precondition_failed")
        assert body["message"] == precondition_message("database", database["id"], before, now)


@pytest.mark.both_stores
class TestIfMatch:
    def test_patch_with_the_current_etag_applies(self, client, resource):
        path, change, _ = resource
        etag = client.get(path).headers["ETag"]
        response = client.patch(path, change, headers={"If-Match": etag})
        assert response.status_code == 200, response.text
        assert response.headers["ETag"] != etag

    def test_patch_with_a_stale_etag_is_412_and_changes_nothing(self, client, resource):
        path, change, model = resource
        stale = client.get(path).headers["ETag"]
        assert client.patch(path, {"name": "moved-on"}).status_code == 200
        current = client.get(path)
        body = assert_error(client.patch(path, change, headers={"If-Match": stale}), 412, "precondition_failed")
        what, ident = path.split("/")[1][:-1], path.rsplit("/", 1)[1]
        assert body == {"error": "precondition_failed",
                        "message": precondition_message(what, ident, stale, current.headers["ETag"])}
        assert client.get(path).json() == current.json()
        assert stored(model, ident).name == "moved-on"

    def test_an_empty_patch_checks_the_precondition_too(self, client, resource):
        path, _, _ = resource
        stale = client.get(path).headers["ETag"]
        client.patch(path, {"name": "moved-on"})
        assert_error(client.patch(path, {}, headers={"If-Match": stale}), 412, "precondition_failed")
        current = client.get(path).headers["ETag"]
        assert client.patch(path, {}, headers={"If-Match": current}).headers["ETag"] == current

    def test_without_if_match_patch_works_as_before(self, client, resource):
        path, change, _ = resource
        client.patch(path, {"name": "moved-on"})
        response = client.patch(path, change)
        assert response.status_code == 200 and response.json()["name"] == "moved-on"

    @pytest.mark.parametrize("header", ["*", '"0000", {etag}', '  {etag} ,"1111"', '{etag},'])
    def test_star_and_lists_match(self, client, resource, header):
        path, change, _ = resource
        etag = client.get(path).headers["ETag"]
        assert client.patch(path, change, headers={"If-Match": header.format(etag=etag)}).status_code == 200

    @pytest.mark.parametrize("header", ['W/{etag}', '"0000"', '"0000", W/{etag}'])
    def test_weak_and_other_tags_do_not_match(self, client, resource, header):
        path, change, _ = resource
        etag = client.get(path).headers["ETag"]
        assert_error(client.patch(path, change, headers={"If-Match": header.format(etag=etag)}),
                     412, "precondition_failed")

    @pytest.mark.parametrize("header", ["unquoted", '"a" "b"', '"a",,"b"', ","])
    def test_a_malformed_if_match_is_400(self, client, resource, header):
        path, change, _ = resource
        assert_error(client.patch(path, change, headers={"If-Match": header}), 400, "invalid_request",
                     'If-Match: must be "*" or a comma-separated list of quoted entity tags')

    def test_delete_with_a_stale_etag_is_412_and_keeps_the_resource(self, client, connection):
        other = client.post("/connections", connection_payload()).json()
        path = f"/connections/{other['id']}"
        stale = client.get(path).headers["ETag"]
        client.patch(path, {"name": "moved-on"})
        assert_error(client.delete(path, headers={"If-Match": stale}), 412, "precondition_failed")
        current = client.get(path).headers["ETag"]
        assert client.delete(path, headers={"If-Match": current}).status_code == 204
        assert_error(client.get(path), 404, "not_found")

    def test_delete_of_a_database_honours_if_match(self, client, database):
        path = f"/databases/{database['id']}"
        assert_error(client.delete(path, headers={"If-Match": '"0000"'}), 412, "precondition_failed")
        assert client.delete(path, headers={"If-Match": client.get(path).headers["ETag"]}).status_code == 204

    def test_another_accounts_resource_is_404_whatever_the_etag(self, client, other_client, resource):
        path, change, _ = resource
        assert_error(other_client.patch(path, change, headers={"If-Match": "*"}), 404, "not_found")
        assert_error(other_client.delete(path, headers={"If-Match": "*"}), 404, "not_found")


class TestLostUpdateOverHttp:
    """Two clients read the same version and both write: exactly one wins, through gunicorn with two workers."""

    def test_the_second_writer_gets_412(self, live_server, customer, connection, database):
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {customer[1]}"
        path = f"{live_server}/databases/{database['id']}"
        seen_by_alice = session.get(path)
        seen_by_bob = session.get(path)
        assert seen_by_alice.headers["ETag"] == seen_by_bob.headers["ETag"]

        alice = session.patch(path, json={"tags": [{"label": "alice", "color": "red"}]},
                              headers={"If-Match": seen_by_alice.headers["ETag"]})
        bob = session.patch(path, json={"tags": [{"label": "bob", "color": "blue"}]},
                            headers={"If-Match": seen_by_bob.headers["ETag"]})
        assert alice.status_code == 200
        assert bob.status_code == 412
        assert bob.json() == {"error": "precondition_failed", "message": precondition_message(
            "database", database["id"], seen_by_bob.headers["ETag"], alice.headers["ETag"])}
        assert stored(Database, database["id"]).tags == [{"label": "alice", "color": "red"}]

    @pytest.mark.parametrize("what", ["connection", "database"])
    def test_simultaneous_writers_with_one_etag_one_wins(self, live_server, customer, connection, database, what):
        path = f"{live_server}/{what}s/{connection['id'] if what == 'connection' else database['id']}"
        headers = {"Authorization": f"Bearer {customer[1]}"}
        for round_ in range(5):
            etag = requests.get(path, headers=headers, timeout=30).headers["ETag"]
            conditional = {**headers, "If-Match": etag}
            answers = race([lambda i=i, name=f"writer-{round_}", sent=conditional: requests.patch(
                path, json={"name": f"{name}-{i}"}, headers=sent, timeout=30) for i in range(4)])
            assert sorted(a.status_code for a in answers) == [200, 412, 412, 412]
            (winner,) = [a for a in answers if a.status_code == 200]
            current = requests.get(path, headers=headers, timeout=30)
            assert current.json()["name"] == winner.json()["name"]
            assert current.headers["ETag"] == winner.headers["ETag"]


def race(senders: list) -> list:
    """Each of `senders` called on its own thread, all released at once; their answers."""
    barrier = threading.Barrier(len(senders))
    answers: list = [None] * len(senders)

    def run(i):
        barrier.wait()
        answers[i] = senders[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(senders))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return answers
