"""Every status x every action through the HTTP API, against a literal copy of the contract's table.

The expectations below come from CONTRACT_TABLE (copied from contract §6), never from
app.domain.lifecycle.MATRIX: an edit of the code's table alone fails these tests.
"""

from __future__ import annotations

import uuid

import pytest

from app.domain import databases, lifecycle
from tests.lifecycle.conftest import add_build, set_state, stored_database
from tests.support import assert_error

# Contract §6, copied as written.
CONTRACT_TABLE = """
| status | Provision | Rebuild | Reconfigure | Redeploy | Resize | Pause | Resume | Terminate | Delete | Reload | Pause sync | Resume sync |
|---|---|---|---|---|---|---|---|---|---|---|---|---|
| registered | Y | — | — | — | Y | — | — | — | Y | — | — | — |
| testing_connection | — | — | — | — | — | — | — | — | — | — | — | — |
| queued | — | — | — | — | — | Q | — | Q | — | — | — | — |
| building | — | — | — | — | — | Q | — | Q | — | — | — | — |
| deploying | — | — | — | — | Y | Q | — | Q | — | — | — | — |
| running | — | Y | Y | img | Y | Y | — | Y | — | Y | Y | Y |
| pausing | — | — | — | — | — | — | Q | Q | — | — | — | — |
| paused | — | Y | — | img | Y | — | Y | Y | — | — | — | — |
| resuming | — | — | — | — | — | Q | — | Q | — | — | — | — |
| failed | Y | img | img | img | — | — | — | Y | — | — | — | — |
| stopped **[D]** | Y | — | — | — | Y | — | — | — | Y | — | — | — |
| terminated **[D]** | Y | — | — | — | — | — | — | — | Y | — | — | — |
"""  # noqa: E501
COLUMNS = {"Provision": "provision", "Rebuild": "rebuild", "Reconfigure": "reconfigure",
           "Redeploy": "redeploy", "Resize": "resize", "Pause": "pause", "Resume": "resume",
           "Terminate": "terminate", "Delete": "delete", "Reload": "reload",
           "Pause sync": "pause_replication", "Resume sync": "resume_replication"}


def parse_contract() -> dict[str, dict[str, str | None]]:
    lines = [line for line in CONTRACT_TABLE.strip().splitlines()]
    header = [c.strip() for c in lines[0].strip("|").split("|")][1:]
    table = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        status = cells[0].replace("**[D]**", "").strip()
        table[status] = {COLUMNS[h]: (None if c == "—" else c) for h, c in zip(header, cells[1:], strict=True)}
    return table


CONTRACT = parse_contract()
# The contract has no row for `terminating` (a transitional status): nothing is allowed [D].
CONTRACT_AND_DECISIONS = {**CONTRACT, "terminating": {action: None for action in COLUMNS.values()}}
STATUSES = list(CONTRACT_AND_DECISIONS)
ACTIONS = list(COLUMNS.values())
GOALS = {"pause": "paused", "resume": "running", "terminate": "terminated"}
FIRST_STATUS = {"provision": "testing_connection", "rebuild": "queued", "reconfigure": "deploying",
                "redeploy": "deploying", "resize": "deploying", "pause": "pausing", "resume": "resuming",
                "terminate": "terminating"}


def expected_refusal(action: str, status: str) -> str:
    wire = action.replace("_", "-")
    now = [s for s in STATUSES if CONTRACT_AND_DECISIONS[s][action] in ("Y", "img")]
    queued = [s for s in STATUSES if CONTRACT_AND_DECISIONS[s][action] == "Q"]

    def either(names):
        return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]

    parts = []
    if now:
        parts.append(f"it is allowed from {either(now)}")
    if queued:
        parts.append(f"it can be queued while the database is {either(queued)}")
    return f"{wire} is not allowed while the database is {status}; " + ", and ".join(parts)


def test_the_code_table_is_the_contract_table():
    assert set(lifecycle.MATRIX) == set(CONTRACT_AND_DECISIONS)
    for status, row in CONTRACT_AND_DECISIONS.items():
        assert lifecycle.MATRIX[status] == row, status


def test_statuses_are_split_into_stable_and_transitional():
    assert set(lifecycle.STABLE) == {"registered", "running", "paused", "failed", "stopped", "terminated"}
    assert set(lifecycle.TRANSITIONAL) == {"testing_connection", "queued", "building", "deploying",
                                           "pausing", "resuming", "terminating"}
    from app.domain import catalog
    assert set(lifecycle.STABLE) | set(lifecycle.TRANSITIONAL) == set(catalog.STATUSES) == set(STATUSES)


def test_delete_route_allows_exactly_the_contract_statuses():
    """DELETE /databases/{id} has its own list (app.domain.databases): it must agree with the table."""
    assert set(databases.DELETE_STATUSES) == {s for s in STATUSES if CONTRACT_AND_DECISIONS[s]["delete"] == "Y"}


def test_operations_go_through_the_contract_statuses():
    assert lifecycle.OPERATION_STEPS == {
        "provision": ("testing_connection", "queued", "building", "deploying", "running"),
        "rebuild": ("queued", "building", "deploying", "running"),
        "reconfigure": ("deploying", "running"),
        "redeploy": ("deploying", "running"),
        "resize": ("deploying", "running"),
        "pause": ("pausing", "paused"),
        "resume": ("resuming", "running"),
        "terminate": ("terminating", "terminated"),
    }
    assert lifecycle.next_status("provision", "building") == "deploying"
    assert lifecycle.next_status("pause", "paused") is None
    assert lifecycle.QUEUED_GOALS == GOALS


CASES = [(status, action, False) for status in STATUSES for action in ACTIONS] + [
    (status, action, True) for status in STATUSES for action in ACTIONS
    if CONTRACT_AND_DECISIONS[status][action] == "img"
]


def send(client, database: dict, action: str, build_id=None):
    path = f"/databases/{database['id']}"
    if action == "delete":
        return client.delete(path)
    if action == "resize":
        return client.post(f"{path}/resize", {"instanceSize": "large"})
    if action == "redeploy":
        return client.post(f"{path}/redeploy", {"buildId": str(build_id or uuid.uuid4())})
    return client.post(f"{path}/{action.replace('_', '-')}")


@pytest.mark.parametrize("status,action,with_build", CASES,
                         ids=[f"{s}-{a}{'-with-build' if b else ''}" for s, a, b in CASES])
def test_action_in_status(client, database, engine, status, action, with_build):
    build = add_build(database) if with_build else None
    set_state(database, status=status, deployed_build_id=build.id if build else None)
    cell = CONTRACT_AND_DECISIONS[status][action]
    response = send(client, database, action, build.id if build else None)
    row = stored_database(database) if action != "delete" or cell is None else None

    if cell is None:
        if action == "delete":
            # DELETE /databases/{id} words it its own way (app.domain.databases).
            assert_error(response, 409, "invalid_state",
                         f"a database can be deleted only while registered, stopped or terminated; "
                         f"this one is {status}")
        else:
            assert response.json() == {"error": "invalid_state", "message": expected_refusal(action, status)}
            assert_error(response, 409, "invalid_state")
        assert (row.status, row.desired_state, row.generation, row.instance_size) == (status, None, 0, "nano")
        assert engine.woken == []
        return
    if cell == "img" and not with_build:
        assert_error(response, 409, "no_successful_build")
        assert response.json()["message"] == (
            f"{action} needs an earlier successful build of this database and it has none; use provision")
        assert (row.status, row.generation) == (status, 0)
        assert engine.woken == []
        return
    if action == "delete":
        assert response.status_code == 204
        assert client.get(f"/databases/{database['id']}").status_code == 404
        return

    assert response.status_code == 202, response.text
    if cell == "Q":
        assert response.json() == {"status": status, "desiredState": GOALS[action]}
        assert (row.status, row.desired_state, row.generation) == (status, GOALS[action], 0)
        assert engine.woken == [database["id"]]
        return
    if action in ("pause_replication", "resume_replication"):
        paused = action == "pause_replication"
        assert response.json() == {"replication_paused": paused}
        assert (row.status, row.replication_paused, row.operation, row.operation_params, row.generation) == (
            "running", paused, None, {"pending": ["replication"]}, 1)
        assert engine.woken == [database["id"]]
        return
    if action == "reload":
        assert response.json() == {"status": "running", "desiredState": None}
        assert (row.status, row.operation, row.operation_params, row.generation) == (
            "running", None, {"pending": ["reload"]}, 1)
        assert engine.woken == [database["id"]]
        return
    if action == "resize" and status != "running":
        assert response.json() == {"status": status, "desiredState": None}
        assert row.instance_size == "large" and row.status == status
        if status == "deploying":
            # The deploy under way restarts with the new size: its generation is stale now.
            assert (row.generation, engine.woken) == (1, [database["id"]])
        else:
            assert (row.generation, engine.woken) == (0, [])
        return
    first = FIRST_STATUS[action]
    assert response.json() == {"status": first, "desiredState": None}
    params = {"buildId": str(build.id)} if action in ("reconfigure", "redeploy", "resize") and build else None
    assert (row.status, row.operation, row.operation_params, row.generation, row.attempts, row.last_error,
            row.desired_state) == (first, action, params, 1, 0, None, None)
    assert engine.woken == [database["id"]]


@pytest.mark.parametrize("has_build", [False, True], ids=["no-build", "with-build"])
@pytest.mark.parametrize("status", STATUSES)
def test_actions_object_for_every_status(client, database, status, has_build):
    if has_build:
        add_build(database)
    set_state(database, status=status)
    response = client.get(f"/databases/{database['id']}/instance")
    assert response.status_code == 200, response.text
    keys = {"pause_replication": "pauseReplication", "resume_replication": "resumeReplication"}
    expected = {}
    for action in ACTIONS:
        cell = CONTRACT_AND_DECISIONS[status][action]
        if cell == "Q":
            entry = {"allowed": True, "mode": "queued"}
        elif cell == "Y" or (cell == "img" and has_build):
            entry = {"allowed": True, "mode": "immediate"}
        elif cell == "img":
            entry = {"allowed": False, "mode": None, "reason": f"{action} needs an earlier successful build "
                                                               "of this database and it has none; use provision"}
        else:
            entry = {"allowed": False, "mode": None, "reason": expected_refusal(action, status)}
        expected[keys.get(action, action)] = entry
    assert response.json()["actions"] == expected
