"""The local runtime's side of the Runtime interface: instances side by side, found, released; keys."""

from __future__ import annotations

import json
import os
import socket
import uuid

import pytest

from app.contracts.artifact import Column, SchemaArtifact, Table
from app.contracts.instance_settings import InstanceSettings, SourceSettings
from app.engine.runtime import InstanceSpec, LocalProcessRuntime


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spec(database_id: str) -> InstanceSpec:
    # A source nobody listens on: the instance starts and reports the failed load in its health.
    settings = InstanceSettings(database_id=database_id, artifact_path="-", keys_file="-", sync_interval_seconds=3600,
                                source=SourceSettings(backend="mysql", host="127.0.0.1", port=closed_port(),
                                                      user="nobody", schema="shop"))
    artifact = SchemaArtifact(backend="mysql", schema="shop", tables=(
        Table(name="users", alias="users", columns=(Column(name="id", field="id", type="int"),),
              primary_key=("id",)),))
    return InstanceSpec(database_id=database_id, instance_id=str(uuid.uuid4()), settings=settings,
                        artifact=artifact, source_password="not-used")


@pytest.fixture
def runtime(tmp_path):
    runtime = LocalProcessRuntime(tmp_path / "instances")
    yield runtime
    for handle in runtime.list_instances():
        runtime.release(handle)


def test_two_instances_of_a_database_run_side_by_side_and_are_found(runtime):
    database_id = str(uuid.uuid4())
    first_spec, second_spec = spec(database_id), spec(database_id)
    first, second = runtime.launch(first_spec), runtime.launch(second_spec)
    assert first.endpoint_url != second.endpoint_url and first.work_dir != second.work_dir
    assert {runtime.instance_id_of(first), runtime.instance_id_of(second)} == {
        first_spec.instance_id, second_spec.instance_id}
    found = sorted(runtime.instances_of(database_id), key=lambda h: h.pid)
    assert [(h.pid, h.endpoint_url, h.work_dir) for h in found] == sorted(
        [(h.pid, h.endpoint_url, h.work_dir) for h in (first, second)])
    assert all(h.admin_token == "" for h in found)   # found, not recorded: for stopping only
    assert runtime.instances_of(str(uuid.uuid4())) == []
    assert runtime.health(first)["databaseId"] == database_id

    runtime.release(first)
    assert not runtime.is_alive(first) and not os.path.exists(os.path.dirname(first.work_dir))
    assert [h.pid for h in runtime.instances_of(database_id)] == [second.pid]
    runtime.release(first)   # idempotent


def test_a_handle_is_stored_without_its_admin_token(runtime):
    handle = runtime.launch(spec(str(uuid.uuid4())))
    record = runtime.record_of(handle)
    assert "admin_token" not in record and handle.admin_token not in json.dumps(record)
    assert runtime.handle_from_record(record, handle.admin_token) == handle
    assert runtime.reload(runtime.handle_from_record(record, handle.admin_token))["status"] == "reloading"


def test_deliver_keys_writes_the_keys_file_instances_read(runtime):
    database_id = str(uuid.uuid4())
    runtime.deliver_keys(database_id, "s3cret", {"k1": None, "k2": "2030-01-01T00:00:00Z"})
    path = runtime.keys_path(database_id)
    assert json.loads(path.read_text()) == {"secret": "s3cret", "keys": {
        "k1": {"expiresAt": None}, "k2": {"expiresAt": "2030-01-01T00:00:00Z"}}}
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
