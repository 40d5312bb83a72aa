"""Every error the app can emit is `{error, message}` JSON with the contract's code."""

from __future__ import annotations

import logging

import pytest

from tests.conftest import connection_payload
from tests.support import assert_error

NIL = "00000000-0000-4000-8000-000000000000"


class TestErrorEnvelope:
    def test_unknown_route_is_404(self, client):
        assert_error(client.get("/nothing-here"), 404, "not_found")

    def test_unknown_route_without_key_is_404(self, client):
        assert_error(client.get("/nothing-here", key=None), 404, "not_found")

    def test_wrong_method_is_405(self, client):
        assert_error(client.request("PUT", "/connections"), 405, "method_not_allowed")

    def test_body_over_1_mib_is_413(self, client):
        body = connection_payload(name="x" * (1024 * 1024 + 10))
        assert_error(client.post("/connections", body), 413, "payload_too_large")

    def test_wrong_content_type_is_415(self, client):
        response = client.request("POST", "/connections", content="{}", headers={"Content-Type": "text/plain"})
        assert_error(response, 415, "unsupported_media_type")

    def test_unknown_query_parameter_is_400(self, client):
        assert_error(client.get("/connections?offset=5"), 400, "invalid_request", "offset")

    @pytest.mark.parametrize("method,path", [
        ("GET", "/connections/{}"), ("PATCH", "/connections/{}"), ("DELETE", "/connections/{}"),
        ("GET", "/databases/{}"), ("PATCH", "/databases/{}"), ("DELETE", "/databases/{}"),
        ("DELETE", "/account/management-keys/{}"),
    ])
    @pytest.mark.parametrize("bad_id", ["not-a-uuid", "1", "%27%3B--", NIL + "0", NIL.replace("-", ""),
                                        "abc%0A", "%0A", "a%0Db", "a%00b"])
    def test_malformed_ids_are_400(self, client, method, path, bad_id):
        body = {} if method == "PATCH" else None
        response = client.request(method, path.format(bad_id), json_body=body)
        body = assert_error(response, 400, "invalid_request")
        assert "UUID" in body["message"] or "control characters" in body["message"]

    def test_unexpected_exception_is_500_without_details(self, client, monkeypatch, caplog):
        from app.domain import connections

        def explode(*args, **kwargs):
            raise RuntimeError("secret internals: password=hunter2")

        monkeypatch.setattr(connections, "list_connections", explode)
        with caplog.at_level(logging.ERROR):
            body = assert_error(client.get("/connections"), 500, "internal_error", "request id")
        assert "hunter2" not in body["message"] and "Traceback" not in body["message"]
        request_id = body["message"].rsplit("request id ", 1)[1].split()[0]
        assert any(request_id in record.getMessage() for record in caplog.records)

    def test_service_errors_are_rendered(self, client, connection, database):
        assert_error(client.delete(f"/connections/{connection['id']}"), 409, "connection_in_use")


def test_each_schema_gets_one_validator_and_the_cache_stays_bounded():
    from jsonschema import Draft4Validator, ValidationError

    from app.api import validation

    schema = {"type": "string", "format": "date-time"}
    first = validation.cached_validator(Draft4Validator, schema)
    assert validation.cached_validator(Draft4Validator, schema) is first
    assert validation.cached_validator(Draft4Validator, dict(schema)) is not first   # by identity
    with pytest.raises(ValidationError):
        first.validate("yesterday")                     # the format checker is on
    kept = [{"type": "integer", "minimum": n} for n in range(validation._MAX_VALIDATORS + 10)]
    for each in kept:
        validation.cached_validator(Draft4Validator, each)
    assert len(validation._VALIDATORS) <= validation._MAX_VALIDATORS
