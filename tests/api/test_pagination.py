"""Every list answers a bare array a page at a time: `limit`, `cursor`, and a `Link` to the next page."""

from __future__ import annotations

import base64
import datetime as dt
import re
import struct
import uuid

import pytest

from app.domain import management_keys, pagination
from app.domain.errors import InvalidRequest
from app.storage.database import db
from app.storage.models import Connection, Database, ManagementKey, QueryKey
from tests.conftest import connection_payload
from tests.support import assert_error

NEXT = re.compile(r'^<(/v1(/[^>]*))>; rel="next"$')


def next_path(response) -> str | None:
    """The path (under /v1) the response's Link header sends to, or None on the last page."""
    link = response.headers.get("link")
    if link is None:
        return None
    match = NEXT.match(link)
    assert match, link
    return match.group(2)


def walk(client, path: str) -> tuple[list[dict], list[int], list[str]]:
    """Every item a walk from `path` sees, the size of each page, and each Link followed."""
    items, sizes, links = [], [], []
    while path:
        response = client.get(path)
        assert response.status_code == 200, response.text
        items.extend(response.json())
        sizes.append(len(response.json()))
        path = next_path(response)
        if path:
            links.append(path)
    return items, sizes, links


# Each list, and how to fill it with `count` items (returns its path).


def _connections(client, count: int) -> str:
    for _ in range(count):
        assert client.post("/connections", connection_payload()).status_code == 201
    return "/connections"


def _databases(client, count: int) -> str:
    connection = client.post("/connections", connection_payload()).json()
    for n in range(count):
        assert client.post("/databases", {"connectionId": connection["id"], "name": f"d{n}",
                                          "mysqlDb": "shop"}).status_code == 201
    return "/databases"


def _api_keys(client, count: int) -> str:
    connection = client.post("/connections", connection_payload()).json()
    database = client.post("/databases", {"connectionId": connection["id"], "name": "keyed",
                                          "mysqlDb": "shop"}).json()
    for n in range(count):
        assert client.post(f"/databases/{database['id']}/api-keys", {"name": f"k{n}"}).status_code == 201
    return f"/databases/{database['id']}/api-keys"


def _management_keys(client, count: int) -> str:
    # The account's first key is the one the client uses.
    for n in range(count - 1):
        assert client.post("/account/management-keys", {"name": f"m{n}"}).status_code == 201
    return "/account/management-keys"


LISTS = {"connections": _connections, "databases": _databases, "api-keys": _api_keys,
         "management-keys": _management_keys}
MODELS = {"connections": Connection, "databases": Database, "api-keys": QueryKey,
          "management-keys": ManagementKey}


@pytest.fixture(params=list(LISTS))
def listing(request):
    return request.param


@pytest.mark.both_stores
class TestEveryList:
    def test_a_walk_in_pages_is_the_whole_list_in_order(self, client, listing):
        path = LISTS[listing](client, 7)
        whole = client.get(f"{path}?limit=1000")
        assert whole.status_code == 200 and "link" not in whole.headers
        whole = whole.json()
        assert len(whole) == 7
        assert [item["createdAt"] for item in whole] == sorted(item["createdAt"] for item in whole)
        items, sizes, links = walk(client, f"{path}?limit=3")
        assert items == whole
        assert sizes == [3, 3, 1]
        assert all(link.startswith(f"{path}?limit=3&cursor=") for link in links)

    def test_without_parameters_one_page_of_up_to_100(self, client, listing):
        path = LISTS[listing](client, 2)
        response = client.get(path)
        assert response.status_code == 200
        assert "link" not in response.headers
        assert response.json() == client.get(f"{path}?limit=100").json()
        assert len(response.json()) == 2

    def test_a_last_page_that_is_full_has_no_link(self, client, listing):
        path = LISTS[listing](client, 4)
        assert walk(client, f"{path}?limit=2")[1] == [2, 2]
        assert "link" not in client.get(f"{path}?limit=4").headers

    @pytest.mark.parametrize("limit,message", [
        ("0", "limit: 0 is less than the minimum of 1"),
        ("1001", "limit: 1001 is greater than the maximum of 1000"),
        ("ten", "limit: must be an integer, got a string"),
        ("-1", "limit: -1 is less than the minimum of 1"),
    ])
    def test_limit_out_of_bounds_is_400(self, client, listing, limit, message):
        path = LISTS[listing](client, 1)
        body = assert_error(client.get(f"{path}?limit={limit}"), 400, "invalid_request")
        assert body["message"] == message

    def test_limit_bounds_themselves_are_accepted(self, client, listing):
        path = LISTS[listing](client, 2)
        assert len(client.get(f"{path}?limit=1").json()) == 1
        assert len(client.get(f"{path}?limit=1000").json()) == 2

    @pytest.mark.parametrize("cursor", [
        "not-a-cursor",
        "!" * 34,
        # Our layout, but a version this API never issued.
        base64.urlsafe_b64encode(struct.pack(">bq16s", 9, 0, bytes(16))).rstrip(b"=").decode(),
        # A date no store holds.
        base64.urlsafe_b64encode(struct.pack(">bq16s", 1, 2 ** 62, bytes(16))).rstrip(b"=").decode(),
    ])
    def test_a_cursor_the_api_did_not_issue_is_400_naming_it(self, client, listing, cursor):
        path = LISTS[listing](client, 1)
        body = assert_error(client.get(f"{path}?cursor={cursor}"), 400, "invalid_request")
        assert body["message"] == (
            "cursor: not a cursor this API issued; pass the one from the previous page's Link header, "
            "or leave it out to start at the first page")

    @pytest.mark.parametrize("cursor,message", [
        ("", "cursor: must be at least 1 character long"),
        ("A" * 65, "cursor: must be at most 64 characters long"),
    ])
    def test_a_cursor_out_of_bounds_is_400(self, client, listing, cursor, message):
        path = LISTS[listing](client, 1)
        body = assert_error(client.get(f"{path}?cursor={cursor}"), 400, "invalid_request")
        assert body["message"] == message

    def test_rows_created_at_the_same_instant_are_ordered_by_id(self, client, listing):
        """Ties on created_at (bulk loads, coarse clocks) are broken by id: none is skipped or repeated."""
        path = LISTS[listing](client, 5)
        model = MODELS[listing]
        with db.connection_context():
            model.update(created_at=dt.datetime(2026, 1, 15, 9, 30)).execute()
            # PostgreSQL orders UUIDs by their bytes, SQLite by their hex text: both as their text sorts.
            ids = sorted(str(row.id) for row in model.select(model.id))
        items, sizes, _ = walk(client, f"{path}?limit=2")
        assert sizes == [2, 2, 1]
        assert [item["id"] for item in items] == ids

    def test_a_cursor_outlives_the_row_it_was_made_from(self, client, listing):
        """The cursor is a position, not a row: deleting the row it came from changes nothing."""
        path = LISTS[listing](client, 4)
        whole = client.get(f"{path}?limit=1000").json()
        first = client.get(f"{path}?limit=2")
        model = MODELS[listing]
        with db.connection_context():
            model.delete().where(model.id == first.json()[-1]["id"]).execute()
        rest = client.get(next_path(first)).json()
        assert [item["id"] for item in rest] == [item["id"] for item in whole[2:]]


@pytest.mark.both_stores
class TestListDatabasesFilters:
    @pytest.fixture
    def two_connections(self, client):
        """Two connections with three databases each, alternating; every other one stopped."""
        first = client.post("/connections", connection_payload()).json()
        second = client.post("/connections", connection_payload()).json()
        for n in range(6):
            owner = (first, second)[n % 2]
            assert client.post("/databases", {"connectionId": owner["id"], "name": f"d{n}",
                                              "mysqlDb": "shop"}).status_code == 201
        with db.connection_context():
            Database.update(status="stopped").where(Database.name.in_(["d0", "d3", "d4"])).execute()
        return first, second

    def names(self, items):
        return [item["name"] for item in items]

    def test_by_connection(self, client, two_connections):
        first, second = two_connections
        items, sizes, links = walk(client, f"/databases?connectionId={first['id']}&limit=2")
        assert self.names(items) == ["d0", "d2", "d4"] and sizes == [2, 1]
        assert links[0].startswith(f"/databases?connectionId={first['id']}&limit=2&cursor=")
        assert self.names(client.get(f"/databases?connectionId={second['id']}").json()) == ["d1", "d3", "d5"]

    def test_by_status(self, client, two_connections):
        items, sizes, links = walk(client, "/databases?status=stopped&limit=1")
        assert self.names(items) == ["d0", "d3", "d4"] and sizes == [1, 1, 1]
        assert all(link.startswith("/databases?status=stopped&limit=1&cursor=") for link in links)
        assert self.names(client.get("/databases?status=registered").json()) == ["d1", "d2", "d5"]
        assert client.get("/databases?status=running").json() == []

    def test_both_filters_combine(self, client, two_connections):
        first, second = two_connections
        assert self.names(client.get(f"/databases?connectionId={first['id']}&status=stopped").json()) == [
            "d0", "d4"]
        assert self.names(client.get(f"/databases?status=registered&connectionId={second['id']}").json()) == [
            "d1", "d5"]

    def test_with_each_item_whole(self, client, two_connections):
        first, _ = two_connections
        filtered = client.get(f"/databases?connectionId={first['id']}").json()
        assert filtered == [client.get(f"/databases/{item['id']}").json() for item in filtered]

    def test_a_connection_of_another_account_matches_nothing(self, client, other_client, two_connections):
        first, _ = two_connections
        assert other_client.get(f"/databases?connectionId={first['id']}").json() == []
        assert client.get("/databases?connectionId=00000000-0000-4000-8000-000000000000").json() == []

    def test_deleted_databases_are_not_listed(self, client, two_connections):
        first, _ = two_connections
        d2 = next(d for d in client.get("/databases").json() if d["name"] == "d2")
        assert client.delete(f"/databases/{d2['id']}").status_code == 204
        assert self.names(client.get(f"/databases?connectionId={first['id']}").json()) == ["d0", "d4"]

    @pytest.mark.parametrize("query,message", [
        ("connectionId=nope", "connectionId: 'nope' is not a valid UUID"),
        ("status=sleeping", "status: 'sleeping' is not one of registered, testing_connection, queued, "
                            "building, deploying, running, pausing, paused, resuming, failed, stopped, "
                            "terminated, terminating"),
    ])
    def test_malformed_filters_are_400(self, client, query, message):
        body = assert_error(client.get(f"/databases?{query}"), 400, "invalid_request")
        assert body["message"] == message


@pytest.mark.both_stores
class TestListApiKeys:
    def test_revoked_keys_are_not_listed_and_pages_skip_them(self, client, database):
        made = [client.post(f"/databases/{database['id']}/api-keys", {"name": f"k{n}"}).json() for n in range(5)]
        for key in (made[1], made[2]):
            assert client.delete(f"/databases/{database['id']}/api-keys/{key['id']}").status_code == 204
        items, sizes, _ = walk(client, f"/databases/{database['id']}/api-keys?limit=2")
        assert [item["name"] for item in items] == ["k0", "k3", "k4"] and sizes == [2, 1]

    def test_another_accounts_database_is_404(self, client, other_client, database):
        assert_error(other_client.get(f"/databases/{database['id']}/api-keys?limit=5"), 404, "not_found")


@pytest.mark.both_stores
class TestConnectionEmbedsABoundedPage:
    def test_at_most_100_databases_and_the_count(self, client, connection):
        for n in range(101):
            assert client.post("/databases", {"connectionId": connection["id"], "name": f"d{n:03}",
                                              "mysqlDb": "shop"}).status_code == 201
        read = client.get(f"/connections/{connection['id']}").json()
        assert read["databaseCount"] == 101
        everything, sizes, _ = walk(client, f"/databases?connectionId={connection['id']}")
        assert sizes == [100, 1]
        assert read == {**connection, "databaseCount": 101, "databases": everything[:100]}
        assert [d["name"] for d in everything] == [f"d{n:03}" for n in range(101)]


@pytest.mark.both_stores
class TestPagesStopBefore1MiB:
    def test_large_items_make_shorter_pages_and_nothing_is_lost(self, client, connection):
        for n in range(30):
            assert client.post("/databases", {"connectionId": connection["id"], "name": f"d{n}",
                                              "mysqlDb": "shop"}).status_code == 201
        with db.connection_context():
            # Text at its maximum length, each character escaped as JSON writes it (12 bytes).
            Database.update(last_error="\U0001F600" * 4000).execute()
        response = client.get("/databases?limit=1000")
        shown = len(response.json())
        assert 10 < shown < 30
        assert len(response.content) <= pagination.MAX_PAGE_BYTES
        assert next_path(response) is not None
        items, sizes, _ = walk(client, "/databases?limit=1000")
        assert [item["name"] for item in items] == [f"d{n}" for n in range(30)]
        assert sizes[0] == shown
        read = client.get(f"/connections/{connection['id']}")
        assert read.json()["databaseCount"] == 30
        assert read.json()["databases"] == items[:shown]
        assert len(read.content) <= pagination.MAX_PAGE_BYTES + 2000

    def test_one_item_larger_than_the_budget_still_makes_a_page(self):
        items = [{"text": "x" * 100}] * 3
        assert pagination.items_within(items, 10) == 1
        whole = len('[{"text":"' + "x" * 100 + '"}]') * 3 - 2
        assert pagination.items_within(items, whole) == 3
        assert pagination.items_within(items, whole - 1) == 2


class TestDefaultLimit:
    def test_a_page_holds_100_unless_told(self, client, customer):
        with db.connection_context():
            for n in range(100):
                management_keys.mint(customer[0].id, f"bulk-{n}")
        first = client.get("/account/management-keys")
        assert len(first.json()) == 100
        assert next_path(first).startswith("/account/management-keys?cursor=")
        rest = client.get(next_path(first))
        assert len(rest.json()) == 1 and "link" not in rest.headers


class TestPaginationHelper:
    """What non-HTTP callers of the services get (the spec checks the same for HTTP)."""

    @pytest.mark.parametrize("limit", [0, 1001, -5, True, "10", 2.5])
    def test_a_limit_out_of_range_is_refused(self, limit):
        with pytest.raises(InvalidRequest, match="limit: must be an integer from 1 to 1000"):
            pagination.checked_limit(limit)

    def test_no_limit_is_the_default(self):
        assert pagination.checked_limit(None) == pagination.DEFAULT_LIMIT == 100

    def test_a_cursor_round_trips(self):
        at, ident = dt.datetime(2026, 1, 15, 9, 30, 0, 123456), uuid.uuid4()
        cursor = pagination.encode_cursor(at, ident)
        assert re.fullmatch(r"[A-Za-z0-9_-]{34}", cursor)
        assert pagination.decode_cursor(cursor) == (at, ident)
