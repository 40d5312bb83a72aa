"""The lifecycle of a database: the action matrix (contract §6) as data, and the requests on it.

One table, `MATRIX`, drives the action endpoints (`request_action`), the `actions` object of
GET /databases/{id}/instance (`instance_view`) and the engine's queued goals
(`apply_desired_state`). The domain only records what is wanted: status, operation, desired
state, generation. The engine (app/engine) carries it out and is told through the `engine`
port of the environment; this module never imports it.

What the engine reads here (docs/lifecycle-design.md):
- `OPERATION_STEPS[operation]`: the statuses an operation goes through; `next_status()`.
- `databases.operation_params`: {"buildId": ...} for a deploy of an existing build (redeploy,
  reconfigure, resize). On a `running` database (no operation) it holds in-place work:
  {"pending": ["reload", "replication"]}: reload the snapshot; make the instance's
  replication match `replication_paused`. `finish_in_place()` clears what was done.
- `current_config(database)`: what a deploy records in `databases.deployed_config`
  (hasPendingChanges compares the two).
"""

from __future__ import annotations

from app.domain import catalog, credits, query_keys, schemas
from app.domain.environment import current
from app.domain.errors import Conflict, InvalidRequest, NotFound
from app.domain.ids import owned, parse_uuid
from app.domain.principal import Principal
from app.storage.database import db, is_sqlite
from app.storage.models import Build, Connection, Database, Instance, utcnow

STABLE = ("registered", "running", "paused", "failed", "stopped", "terminated")
TRANSITIONAL = ("testing_connection", "queued", "building", "deploying", "pausing", "resuming",
                "terminating")
ACTIONS = ("provision", "rebuild", "reconfigure", "redeploy", "resize", "pause", "resume",
           "terminate", "delete", "reload", "pause_replication", "resume_replication")

Y, Q, IMG, _ = "Y", "Q", "img", None
# Contract §6, cell for cell. Y = now; Q = queued in desiredState until the next stable status;
# img = now if the database has a succeeded build; None = 409 invalid_state.
# `terminating` has no row in the contract: nothing is allowed while it runs [D].
_TABLE = {
    # Columns: ACTIONS, in order.
    #                     prov  rebu  reco  rede  resi  paus  resu  term  dele  relo  psyn  rsyn
    "registered":         (Y,    _,    _,    _,    Y,    _,    _,    _,    Y,    _,    _,    _),
    "testing_connection": (_,    _,    _,    _,    _,    _,    _,    _,    _,    _,    _,    _),
    "queued":             (_,    _,    _,    _,    _,    Q,    _,    Q,    _,    _,    _,    _),
    "building":           (_,    _,    _,    _,    _,    Q,    _,    Q,    _,    _,    _,    _),
    "deploying":          (_,    _,    _,    _,    Y,    Q,    _,    Q,    _,    _,    _,    _),
    "running":            (_,    Y,    Y,    IMG,  Y,    Y,    _,    Y,    _,    Y,    Y,    Y),
    "pausing":            (_,    _,    _,    _,    _,    _,    Q,    Q,    _,    _,    _,    _),
    "paused":             (_,    Y,    _,    IMG,  Y,    _,    Y,    Y,    _,    _,    _,    _),
    "resuming":           (_,    _,    _,    _,    _,    Q,    _,    Q,    _,    _,    _,    _),
    "failed":             (Y,    IMG,  IMG,  IMG,  _,    _,    _,    Y,    _,    _,    _,    _),
    "stopped":            (Y,    _,    _,    _,    Y,    _,    _,    _,    Y,    _,    _,    _),
    "terminated":         (Y,    _,    _,    _,    _,    _,    _,    _,    Y,    _,    _,    _),
    "terminating":        (_,    _,    _,    _,    _,    _,    _,    _,    _,    _,    _,    _),
}
MATRIX: dict[str, dict[str, str | None]] = {
    status: dict(zip(ACTIONS, cells, strict=True)) for status, cells in _TABLE.items()
}

# The statuses each operation goes through, the first one set by the request.
OPERATION_STEPS = {
    "provision": ("testing_connection", "queued", "building", "deploying", "running"),
    "rebuild": ("queued", "building", "deploying", "running"),
    "reconfigure": ("deploying", "running"),
    "redeploy": ("deploying", "running"),
    "resize": ("deploying", "running"),
    "pause": ("pausing", "paused"),
    "resume": ("resuming", "running"),
    "terminate": ("terminating", "terminated"),
}
# What a queued (Q) action stores as desiredState, and back.
QUEUED_GOALS = {"pause": "paused", "resume": "running", "terminate": "terminated"}
GOAL_ACTIONS = {goal: action for action, goal in QUEUED_GOALS.items()}
# Actions that compile a new build, and so spend a build credit.
BUILD_ACTIONS = ("provision", "rebuild")
# Actions that deploy an existing build (its id goes in operation_params).
DEPLOY_ACTIONS = ("reconfigure", "redeploy", "resize")
# Work done on the live instance without a status change (running only).
IN_PLACE_ACTIONS = ("reload", "pause_replication", "resume_replication")
# Resize on these statuses stores the size for the next deploy and does nothing else.
RESIZE_STORE_ONLY = ("registered", "paused", "stopped")
# Statuses in which an instance was deployed and keeps its settings and credentials.
DEPLOYED_STATUSES = ("running", "paused")

# The names users see: the path segment of each action, and its key in `actions`.
WIRE_NAMES = {action: action.replace("_", "-") for action in ACTIONS}
ACTION_KEYS = {"pause_replication": "pauseReplication", "resume_replication": "resumeReplication"}
# The most builds GET /databases/{id}/builds lists, newest first.
BUILD_LIST_LIMIT = 100
# The longest build log served; a longer one is cut at its start (the end says how it ended).
LOG_LIMIT = 1024 * 1024


def next_status(operation: str, status: str) -> str | None:
    """The status after `status` in `operation`, or None when `status` is its last one."""
    steps = OPERATION_STEPS[operation]
    position = steps.index(status)
    return steps[position + 1] if position + 1 < len(steps) else None


def allowed_from(action: str) -> tuple[list[str], list[str]]:
    """The statuses `action` is allowed from: (now or with a build, queued)."""
    now = [s for s in MATRIX if MATRIX[s][action] in (Y, IMG)]
    queued = [s for s in MATRIX if MATRIX[s][action] == Q]
    return now, queued


def refusal(action: str, status: str) -> str:
    """Why `action` is refused while `status`: the invalid_state message."""
    now, queued = allowed_from(action)
    where = []
    if now:
        where.append(f"it is allowed from {_either(now)}")
    if queued:
        where.append(f"it can be queued while the database is {_either(queued)}")
    return (f"{WIRE_NAMES[action]} is not allowed while the database is {status}; "
            + (", and ".join(where) if where else "it is never allowed"))


# -- requests ------------------------------------------------------------------


def request_action(principal: Principal, database_id, action: str, params: dict | None = None) -> dict:
    """Accept a lifecycle action on a database (contract §6) and wake the engine; the 202 body."""
    if action == "delete":
        raise InvalidRequest("delete is DELETE /v1/databases/{id} (app.domain.databases.delete_database)")
    if action not in ACTIONS:
        raise InvalidRequest(f"unknown lifecycle action {action!r}")
    data = _load_params(action, params)
    ident = parse_uuid(database_id, "database id")
    with db.transaction():
        row = Database.lock_owned(principal.customer_id, ident)
        if row is None:
            raise NotFound(f"database {database_id} was not found")
        cell = MATRIX[row.status][action]
        if cell is None:
            raise Conflict(refusal(action, row.status), "invalid_state")
        if cell == IMG:
            _ensure_successful_build(row, action)
        changes, wake = _accept(principal, row, action, cell, data)
        _write(row, changes)
    if wake:
        current().engine.wake(row.id)
    if action in ("pause_replication", "resume_replication"):
        return {"replication_paused": row.replication_paused}
    return {"status": row.status, "desiredState": row.desired_state}


def apply_desired_state(database_id) -> str | None:
    """For the engine, at a stable status: carry out the queued goal, or drop it and say why.

    Returns the action started (the engine then runs the database on), or None.
    """
    with db.transaction():
        query = Database.active().where(Database.id == parse_uuid(database_id, "database id"))
        row = (query if is_sqlite() else query.for_update()).first()
        if row is None or row.status not in STABLE or row.desired_state is None:
            return None
        goal = row.desired_state
        action = GOAL_ACTIONS.get(goal)
        changes = {"desired_state": None}
        started = None
        if goal == row.status:
            pass  # already there
        elif action is not None and MATRIX[row.status][action] == Y:
            changes.update(_start(row, action))
            started = action
        elif action is None:
            changes["last_error"] = f"the queued goal {goal!r} was dropped: it is not a goal this engine knows"
        else:
            changes["last_error"] = f"the queued {WIRE_NAMES[action]} was dropped: {refusal(action, row.status)}"
        _write(row, changes)
    return started


def finish_in_place(database_id, done: list[str]) -> None:
    """For the engine: remove in-place work it has carried out from the database's pending list."""
    with db.transaction():
        query = Database.active().where(Database.id == parse_uuid(database_id, "database id"))
        row = (query if is_sqlite() else query.for_update()).first()
        if row is None or row.operation is not None:
            return
        pending = [p for p in pending_in_place(row) if p not in done]
        _write(row, {"operation_params": {"pending": pending} if pending else None})


def pending_in_place(row: Database) -> list[str]:
    """In-place work asked of a running database: "reload" and/or "replication"."""
    if row.operation is not None or not row.operation_params:
        return []
    return list(row.operation_params.get("pending", []))


def current_config(row: Database) -> dict:
    """The settings a deploy applies; the engine stores them in `deployed_config`."""
    return {"instance_size": row.instance_size, "sync_mode": row.sync_mode,
            "sync_interval": row.sync_interval, "log_level": row.log_level, "safety_net": True}


def _load_params(action: str, params: dict | None) -> dict:
    if action == "resize":
        return schemas.load(schemas.ResizeSchema(), params)
    if action == "redeploy":
        return schemas.load(schemas.RedeploySchema(), params)
    return {}


def _accept(principal: Principal, row: Database, action: str, cell: str, data: dict) -> tuple[dict, bool]:
    """The columns an accepted action changes, and whether the engine has work to do."""
    if cell == Q:
        if action == "terminate":
            query_keys.revoke_all(row)
        return {"desired_state": QUEUED_GOALS[action]}, True
    if action in IN_PLACE_ACTIONS:
        changes = {"generation": row.generation + 1}
        pending = pending_in_place(row)
        if action == "reload":
            item = "reload"
        else:
            item = "replication"
            changes["replication_paused"] = action == "pause_replication"
        changes["operation_params"] = {"pending": pending + [item] if item not in pending else pending}
        return changes, True
    if action == "resize":
        changes = {"instance_size": data["instance_size"]}
        if row.status in RESIZE_STORE_ONLY:
            return changes, False
        if row.status == "deploying":
            # The deploy under way starts again with the new size (its generation is stale).
            return {**changes, "generation": row.generation + 1, "attempts": 0}, True
        return {**changes, **_start(row, action)}, True
    build_id = None
    if action == "redeploy":
        build_id = _succeeded_build(row, data["build_id"]).id
    if action in BUILD_ACTIONS:
        credits.spend_build_credit(principal.customer_id, action, row.id)
    return _start(row, action, build_id), True


def _start(row: Database, action: str, build_id=None) -> dict:
    """The columns that start `action`'s operation on the (locked) row."""
    params = None
    if action in DEPLOY_ACTIONS:
        build_id = build_id or row.deployed_build_id or _latest_succeeded_build_id(row)
        params = {"buildId": str(build_id)} if build_id else None
    if action == "terminate":
        query_keys.revoke_all(row)
    return {
        "status": OPERATION_STEPS[action][0],
        "operation": action,
        "operation_params": params,
        "generation": row.generation + 1,
        "attempts": 0,
        "last_error": None,
        # An action started now supersedes a goal queued earlier.
        "desired_state": None,
    }


def _write(row: Database, changes: dict) -> None:
    """Write only the changed columns: the engine writes others (health, endpoint) concurrently."""
    changes = {**changes, "updated_at": utcnow()}
    Database.update(**changes).where(Database.id == row.id).execute()
    for column, value in changes.items():
        setattr(row, column, value)


def _ensure_successful_build(row: Database, action: str) -> None:
    if _latest_succeeded_build_id(row) is None:
        raise Conflict(
            f"{WIRE_NAMES[action]} needs an earlier successful build of this database and it has "
            "none; use provision",
            "no_successful_build",
        )


def _succeeded_build(row: Database, build_id) -> Build:
    build = Build.select().where((Build.id == build_id) & (Build.database == row.id)).first()
    if build is None:
        raise InvalidRequest(f"buildId: no build {build_id} of this database")
    if build.status != "succeeded":
        raise Conflict(
            f"build {build_id} is {build.status}; redeploy needs a build that succeeded "
            "(GET /v1/databases/{id}/builds lists them)",
            "no_successful_build",
        )
    return build


def _latest_succeeded_build_id(row: Database):
    build = (Build.select(Build.id)
             .where((Build.database == row.id) & (Build.status == "succeeded"))
             .order_by(Build.created_at.desc(), Build.id.desc()).first())
    return build.id if build else None


def _either(statuses: list[str]) -> str:
    return statuses[0] if len(statuses) == 1 else ", ".join(statuses[:-1]) + " or " + statuses[-1]


# -- reads -----------------------------------------------------------------------


def instance_view(principal: Principal, database_id) -> dict:
    """GET /databases/{id}/instance: the database, what is deployed, and what can be done now."""
    row = _owned(principal, database_id)
    connection = Connection.get_by_id(row.connection_id)
    deployed = row.deployed_config if row.status in DEPLOYED_STATUSES else None
    instance = (Instance.select().where((Instance.database == row.id) & Instance.stopped_at.is_null())
                .first())
    latest = (Build.select().where(Build.database == row.id)
              .order_by(Build.created_at.desc(), Build.id.desc()).first())
    has_build = _latest_succeeded_build_id(row) is not None
    return {
        "database": schemas.DatabaseSchema().dump(row),
        "connection": {
            "minSyncInterval": connection.sync_interval,
            "allowedSyncModes": catalog.allowed_sync_modes(connection.backend, connection.sync_mode),
            "availableSchemas": connection.available_schemas,
        },
        "deployedInstanceConfig": _deployed_config_out(deployed),
        "hasPendingChanges": deployed is not None and _differs(deployed, current_config(row)),
        "credentialsPending": (row.status in DEPLOYED_STATUSES
                               and row.deployed_credentials_version is not None
                               and row.deployed_credentials_version != connection.credentials_version),
        "instance": schemas.InstanceOut().dump(instance) if instance else None,
        "latestBuild": schemas.BuildOut().dump(latest) if latest else None,
        "actions": actions_for(row.status, has_build),
    }


def actions_for(status: str, has_succeeded_build: bool) -> dict:
    """The `actions` object: each action's {allowed, mode, reason} in `status`, from MATRIX."""
    out = {}
    for action in ACTIONS:
        cell = MATRIX[status][action]
        key = ACTION_KEYS.get(action, action)
        if cell == Q:
            out[key] = {"allowed": True, "mode": "queued"}
        elif cell == Y or (cell == IMG and has_succeeded_build):
            out[key] = {"allowed": True, "mode": "immediate"}
        elif cell == IMG:
            out[key] = {"allowed": False, "mode": None,
                        "reason": f"{WIRE_NAMES[action]} needs an earlier successful build of this "
                                  "database and it has none; use provision"}
        else:
            out[key] = {"allowed": False, "mode": None, "reason": refusal(action, status)}
    return out


def _deployed_config_out(config: dict | None) -> dict | None:
    if config is None:
        return None
    cpu, memory = catalog.INSTANCE_SIZES[config["instance_size"]]
    return {"instanceSize": config["instance_size"], "taskCpu": cpu, "taskMemoryMb": memory,
            "syncMode": config["sync_mode"], "syncInterval": config["sync_interval"],
            "logLevel": config["log_level"], "safetyNet": config.get("safety_net", True)}


def _differs(deployed: dict, wanted: dict) -> bool:
    return any(deployed.get(key) != wanted[key] for key in wanted if key != "safety_net")


def list_builds(principal: Principal, database_id) -> list[dict]:
    """The database's builds, newest first (at most BUILD_LIST_LIMIT)."""
    row = _owned(principal, database_id)
    builds = (Build.select().where(Build.database == row.id)
              .order_by(Build.created_at.desc(), Build.id.desc()).limit(BUILD_LIST_LIMIT))
    return schemas.BuildOut(many=True).dump(builds)


def get_build(principal: Principal, database_id, build_id) -> dict:
    return schemas.BuildOut().dump(_owned_build(principal, database_id, build_id))


def build_log(principal: Principal, database_id, build_id) -> str:
    """The build's log as text; a log over LOG_LIMIT keeps its end."""
    log = _owned_build(principal, database_id, build_id).log or ""
    if len(log) > LOG_LIMIT:
        note = "[earlier lines cut: the log is longer than the 1 MiB served]\n"
        log = note + log[-(LOG_LIMIT - len(note)):]
    return log


def _owned(principal: Principal, database_id) -> Database:
    return owned(Database, principal, database_id, "database")


def _owned_build(principal: Principal, database_id, build_id) -> Build:
    row = _owned(principal, database_id)
    build = Build.select().where((Build.id == parse_uuid(build_id, "build id"))
                                 & (Build.database == row.id)).first()
    if build is None:
        raise NotFound(f"build {build_id} was not found on this database")
    return build
