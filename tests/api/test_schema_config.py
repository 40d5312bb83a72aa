"""The per-database schema config (reflexdb.yaml)."""

from __future__ import annotations

import pytest

from tests.support import ISO_Z, assert_error

CONFIG = {"version": 1, "tables": [{"name": "users", "columns": ["id", "name"],
                                    "field_notes": {"name": "Display name"}},
                                   {"name": "posts", "alias": "articles", "where": "published = true"}]}
YAML = """\
version: 1
tables:
  - name: users
    columns: [id, name]
    field_notes: {name: Display name}
  - name: posts
    alias: articles
    where: published = true
"""


@pytest.mark.both_stores
class TestSchemaConfig:
    def test_none_until_uploaded(self, client, database):
        response = client.get(f"/databases/{database['id']}/config")
        assert response.status_code == 200
        assert response.json() == {"databaseId": database["id"], "config": None, "updatedAt": None}

    def test_put_json_then_get(self, client, database):
        response = client.request("PUT", f"/databases/{database['id']}/config", json_body=CONFIG)
        assert response.status_code == 200, response.text
        body = response.json()
        assert ISO_Z.match(body["updatedAt"])
        assert body == {"databaseId": database["id"], "config": CONFIG, "updatedAt": body["updatedAt"]}
        assert client.get(f"/databases/{database['id']}/config").json() == body

    def test_put_yaml(self, client, database):
        response = client.request("PUT", f"/databases/{database['id']}/config", content=YAML,
                                  headers={"Content-Type": "application/yaml"})
        assert response.status_code == 200, response.text
        assert response.json()["config"] == CONFIG

    @pytest.mark.parametrize("config,fragment", [
        ({"tables": []}, "version"),
        ({"version": 2}, "version"),
        ({"version": 1, "tables": [{"name": "users", "colums": ["id"]}]}, "tables[0]"),
        ({"version": 1, "tables": [{"name": "users"}, {"name": "posts", "alias": "1bad"}]}, "tables[1].alias"),
        ({"version": 1, "tables": [{"name": "users", "columns": [""]}]}, "tables[0].columns[0]"),
        ({"version": 1, "tables": [{"name": "users", "where": "age >> 3"}]}, "tables[0].where: line 1, column"),
        ({"version": 1, "where": "tenant_id = ", "where_columns": ["tenant_id"]}, "where: line 1"),
    ])
    def test_invalid_json_names_the_path(self, client, database, config, fragment):
        response = client.request("PUT", f"/databases/{database['id']}/config", json_body=config)
        assert_error(response, 400, "invalid_request", fragment)
        assert client.get(f"/databases/{database['id']}/config").json()["config"] is None

    @pytest.mark.parametrize("text,fragment", [
        ("version: 1\ntables:\n  - name: [unclosed\n", "YAML"),
        ("- just\n- a list\n", "mapping"),
        ("version: 1\ntables:\n  - name: users\n    columns: id\n", "tables[0].columns"),
    ])
    def test_invalid_yaml(self, client, database, text, fragment):
        response = client.request("PUT", f"/databases/{database['id']}/config", content=text,
                                  headers={"Content-Type": "application/yaml"})
        assert_error(response, 400, "invalid_request", fragment)

    def test_delete(self, client, database):
        client.request("PUT", f"/databases/{database['id']}/config", json_body=CONFIG)
        assert client.delete(f"/databases/{database['id']}/config").status_code == 204
        assert client.get(f"/databases/{database['id']}/config").json()["config"] is None

    def test_other_customer_is_404(self, other_client, database):
        assert_error(other_client.get(f"/databases/{database['id']}/config"), 404, "not_found")
        assert_error(other_client.request("PUT", f"/databases/{database['id']}/config", json_body=CONFIG),
                     404, "not_found")
