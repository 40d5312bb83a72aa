"""The per-database schema config (reflexdb.yaml)."""

from __future__ import annotations

import logging

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

    def test_uploads_of_either_media_type_log_no_warning(self, client, database, caplog):
        # Connexion warns, on every request to an operation taking two media types, that it
        # takes two: the project drops that line (app/api/validation.py).
        with caplog.at_level(logging.WARNING):
            for _ in range(2):
                assert client.request("PUT", f"/databases/{database['id']}/config",
                                      json_body=CONFIG).status_code == 200
                assert client.request("PUT", f"/databases/{database['id']}/config", content=YAML,
                                      headers={"Content-Type": "application/yaml"}).status_code == 200
        assert [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING] == []

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


def put_yaml(client, database, text: str):
    return client.request("PUT", f"/databases/{database['id']}/config", content=text,
                          headers={"Content-Type": "application/yaml"})


def put_json(client, database, text: str):
    return client.request("PUT", f"/databases/{database['id']}/config", content=text,
                          headers={"Content-Type": "application/json"})


def refused(message: str) -> dict:
    return {"error": "invalid_request", "message": f"schema config: {message}"}


class TestMalformedConfig:
    """Input that used to be a 500 (or was stored although no store can keep it): a 400 naming
    where, and nothing stored."""

    @pytest.mark.parametrize("text,message", [
        ("version: 1\ntables: " + "[" * 2000 + "]" * 2000,
         "line 2 column 1008: not valid YAML: exceeded maximum nesting depth"),
        ("version: 1\ntables: " + "[" * 40 + "]" * 40, "line 2 column 40: nested deeper than 32 levels"),
        ("version: 1\nx:\n" + "".join(" " * depth + "a:\n" for depth in range(1, 100)),
         "line 34 column 33: nested deeper than 32 levels"),
        ("version: 1\n1: a\nfoo: b", "line 2 column 1: key 1 is a number: keys are names; write it in quotes"),
        ("version: 1\ntables:\n  - name: users\n    field_aliases: {yes: agreed}\n",
         "line 4 column 21: key yes is true/false: keys are names; write it in quotes"),
        ("version: " + "1" * 5000, "line 1 column 10: the number is too large (at most 20 digits)"),
        ("version: 1\ntables:\n  - &t {name: users}\n  - *t\n",
         "line 4 column 5: YAML aliases (*name) are not supported: write the value out"),
        ("version: 1\nversion: 1\n", "line 2 column 1: key 'version' appears twice"),
        ('version: 1\ntables:\n  - name: users\n    field_notes: {name: "Display\\0name"}\n',
         "tables[0].field_notes.name: must not contain NUL characters"),
        ('version: 1\ntables:\n  - name: users\n    field_notes: {name: "Display\\ud800name"}\n',
         "line 4 column 35: not valid YAML: found invalid Unicode character escape code"),
        ("version: 1\x00", "line 1 column 11: not valid YAML: control characters are not allowed"),
    ])
    def test_yaml(self, client, database, text, message):
        response = put_yaml(client, database, text)
        assert response.status_code == 400
        assert response.json() == refused(message)
        assert client.get(f"/databases/{database['id']}/config").json()["config"] is None

    @pytest.mark.parametrize("config,message", [
        ({"version": 1, "tables": [{"name": "users", "field_notes": {"name": "Display\u0000name"}}]},
         "tables[0].field_notes.name: must not contain NUL characters"),
        ({"version": 1, "tables": [{"name": "users", "field_notes": {"name": "Display\ud800name"}}]},
         "tables[0].field_notes.name: must be valid Unicode text (it holds a lone surrogate)"),
        ({"version": 1, "tables": [{"name": "users", "field_notes": {"na\u0000me": "Display name"}}]},
         "tables[0].field_notes: a key must not contain NUL characters"),
        ({"version": 1, "tables": [{"name": "users", "where": "name = \"\ud83d\""}]},
         "tables[0].where: must be valid Unicode text (it holds a lone surrogate)"),
    ])
    def test_json(self, client, database, config, message):
        response = client.request("PUT", f"/databases/{database['id']}/config", json_body=config)
        assert response.status_code == 400
        assert response.json() == refused(message)
        assert client.get(f"/databases/{database['id']}/config").json()["config"] is None

    def test_json_nested_too_deep(self, client, database):
        response = put_json(client, database, '{"version": 1, "tables": [{"name": "t", "field_notes": {"x": '
                                              + "[" * 40 + "]" * 40 + "}}]}")
        assert response.status_code == 400
        assert response.json() == {"error": "invalid_request", "message": (
            "the request body is nested deeper than 32 levels at line 1 column 90 (char 89)")}

    def test_json_with_duplicate_keys(self, client, database):
        response = put_json(client, database, '{"version": 1, "tables": [{"name": "a", "name": "b"}]}')
        assert response.status_code == 400
        assert response.json() == {"error": "invalid_request", "message": 'the request body repeats the key '
                                                                          '"name" in one object; send each key once'}


class TestConfigBounds:
    """The work of validating a config is bounded before it is done (docs/schema-config.md)."""

    def test_more_than_10000_values_is_refused_while_reading(self, client, database):
        text = "version: 1\ntables:\n" + "".join(f"  - name: t{i}\n    columns: [a, b, c, d]\n" for i in range(2000))
        response = put_yaml(client, database, text)
        assert response.status_code == 400
        assert response.json() == refused("line 2224 column 15: the schema config holds more than 10,000 keys "
                                          "and values; that is the limit")

    def test_more_than_10000_values_as_json(self, client, database):
        config = {"version": 1, "tables": [{"name": f"t{i}", "columns": list("abcde")} for i in range(1000)]}
        response = client.request("PUT", f"/databases/{database['id']}/config", json_body=config)
        assert response.status_code == 400
        assert response.json() == refused("the schema config holds more than 10,000 keys and values; that is the limit")

    def test_at_the_limit_is_accepted(self, client, database):
        config = {"version": 1, "tables": [{"name": f"t{i}", "columns": list("abcde")} for i in range(999)]}
        response = client.request("PUT", f"/databases/{database['id']}/config", json_body=config)
        assert response.status_code == 200, response.text
        assert response.json()["config"] == config

    def test_where_filters_together_at_most_8000_characters(self, client, database):
        where = 'name = "' + "x" * 2990 + '"'
        config = {"version": 1, "tables": [{"name": f"t{i}", "where": where} for i in range(3)]}
        response = client.request("PUT", f"/databases/{database['id']}/config", json_body=config)
        assert response.status_code == 400
        assert response.json() == refused("the where filters add up to 8,997 characters; at most 8,000 in one config")
        config["tables"].pop()
        assert client.request("PUT", f"/databases/{database['id']}/config", json_body=config).status_code == 200

    def test_validation_never_takes_every_request_thread(self, client, stack, database):
        """While config validation holds its slots (every request thread but one), another upload
        is a 503 at once, and other requests are still served."""
        from app.api.limits import CONFIG_VALIDATION

        slots = stack.app.app.extensions[CONFIG_VALIDATION]
        with slots.hold():
            response = client.request("PUT", f"/databases/{database['id']}/config", json_body=CONFIG)
            assert response.status_code == 503
            assert response.headers["retry-after"] == "2"
            assert response.json() == {"error": "unavailable", "message": "the server is busy validating "
                                       "schema configs for other requests; retry in a moment"}
            assert client.get(f"/databases/{database['id']}/config").status_code == 200
        response = client.request("PUT", f"/databases/{database['id']}/config", json_body=CONFIG)
        assert response.status_code == 200, response.text
