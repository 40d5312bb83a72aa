"""A Python client generated from the checked-in spec works against the running server.

The client is generated with the README's command (openapi-python-client, pinned in the
`test` extra) into a temporary folder, and driven through the app under gunicorn on
PostgreSQL. The session is built from the spec, so an operation added later is walked too:

- every operation is called once with a body made from the spec's request example and the
  ids of resources the walk created (an id path parameter `{fooId}` comes from the POST on the
  collection before it), and its answer parses as the documented model;
- every documented 400, 401, 404, 413, 415 and 429 is provoked the same way for every operation,
  and must parse as the typed `Error` with the right code;
- the 403s, 409s and 412s, which need a particular state, come from `SCENARIOS` keyed by
  operationId (a POST with no other 409 reuses an Idempotency-Key with another body; a PATCH or
  DELETE with If-Match sends a stale ETag); every error answer the spec uses is parsed at least once.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import json
import os
import pkgutil
import re
import shlex
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import attrs
import pytest
import yaml

from app.config import DEFAULT_SPEC, PROJECT_ROOT
from app.domain import lifecycle
from app.storage.database import db
from app.storage.models import Build, Customer, Database
from tests.conftest import make_customer

SPEC = yaml.safe_load(DEFAULT_SPEC.read_text())
PACKAGE = "reflexdb_client"
METHODS = ("get", "post", "put", "patch", "delete")

# Generator warnings we accept, as (header, detail) lines of its output, each with why.
KNOWN_WARNINGS = {
    ("WARNING parsing PUT /databases/{databaseId}/config within databases.",
     "Unsupported content type application/yaml"):
        "PUT /config also takes reflexdb.yaml as text; the generator makes the JSON body only, "
        "which carries the same document, so the operation is complete in the client.",
}
# Lines the generator always prints, warnings or not.
BANNER = (
    re.compile(r"^Generating .*"),
    re.compile(r"^Warning\(s\) encountered while generating\. Client was generated, but some pieces may be missing$"),
    re.compile(r"^If you believe this was a mistake or this tool is missing a feature you need, please open an "
               r"issue at \S+$"),
)

# Request bodies are the spec's examples, with these fields left out, and why.
LEFT_OUT_OF_EXAMPLES = {
    # The walk deletes the connection at the end, which needs it to have no database left;
    # the example's `instance` would add one the walk does not know about.
    "ConnectionCreate": {"instance"},
}

# Documented answers no request can provoke on a healthy server.
NOT_PROVOKED = {
    "500": "internal_error: only an unexpected failure answers it",
    "503": "unavailable: only an unreachable store answers it",
}
NOT_PROVOKED_FOR: dict = {}
GENERIC_CODES = {"400": "invalid_request", "401": "unauthorized", "404": "not_found",
                 "413": "payload_too_large", "415": "unsupported_media_type", "429": "rate_limited"}
# The walk's budgets, on Redis so the test can spend a key's whole budget in one call.
WALK_BUDGET = "100000/minute"
REDIS_URL = "redis://127.0.0.1:6379/0"
# The spec's limit on bodies ("at most 1 MiB"), plus one byte.
TOO_LARGE = 1024 * 1024 + 1


# -- the spec, read as a list of operations -------------------------------------------------


def resolve(node: dict) -> dict:
    """Follow `$ref`s to what they name, and merge `allOf` parts in."""
    while "$ref" in node:
        section, name = node["$ref"].split("/")[-2:]
        node = SPEC["components"][section][name]
    merged = {k: v for k, v in node.items() if k != "allOf"}
    for part in node.get("allOf", []):
        merged = {**resolve(part), **merged}
    return merged


@dataclass
class Operation:
    method: str
    path: str
    spec: dict

    @property
    def operation_id(self) -> str:
        return self.spec["operationId"]

    @property
    def path_params(self) -> list[str]:
        return re.findall(r"\{(\w+)\}", self.path)

    @property
    def query_params(self) -> list[str]:
        return [resolve(parameter)["name"] for parameter in self.spec.get("parameters", [])
                if resolve(parameter)["in"] == "query"]

    @property
    def body_schema(self) -> str | None:
        body = self.spec.get("requestBody")
        return body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1] if body else None

    @property
    def example(self) -> dict:
        return copy.deepcopy(self.spec["requestBody"]["content"]["application/json"]["example"])

    @property
    def success(self) -> tuple[int, dict | None]:
        status = min(s for s in self.spec["responses"] if s.startswith("2"))
        content = self.spec["responses"][status].get("content") or {}
        if "application/json" in content:
            return int(status), content["application/json"]["schema"]
        # A text answer (a build log) is not parsed into a model: the client returns its bytes.
        return int(status), {"type": "string", "mediaType": next(iter(content))} if content else None

    @property
    def error_statuses(self) -> list[str]:
        return [s for s in self.spec["responses"] if s.startswith(("4", "5"))]

    @property
    def creates(self) -> str | None:
        """The id parameter this operation mints: POST /things makes the `{thingId}` of /things/{thingId}."""
        if self.method != "post":
            return None
        for path in SPEC["paths"]:
            if path.startswith(self.path + "/{") and path.count("/") == self.path.count("/") + 1:
                return path.rsplit("{", 1)[1].rstrip("}")
        return None

    def __str__(self):
        return f"{self.method.upper()} {self.path} ({self.operation_id})"


OPERATIONS = [Operation(method, path, item[method])
              for path, item in SPEC["paths"].items() for method in METHODS if method in item]


# -- generating the client --------------------------------------------------------------


def readme_command() -> list[str]:
    """The generation command the README gives users."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme.split("## Use it from Python", 1)[1]
    line = next(line for line in section.splitlines() if line.startswith("openapi-python-client generate"))
    return shlex.split(line)


def unknown_warnings(output: str) -> list[str]:
    """The generator's output less its banner, the JSON it quotes, and the known warnings."""
    lines, quoting = [], False
    for line in output.splitlines():
        if line == "{":
            quoting = True
        if not quoting and line.strip() and not any(p.match(line) for p in BANNER):
            lines.append(line.strip())
        if line == "}":
            quoting = False
    for header, detail in KNOWN_WARNINGS:
        for i in range(len(lines) - 1):
            if lines[i:i + 2] == [header, detail]:
                del lines[i:i + 2]
                break
    return lines


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """The generated package, imported from a temporary folder."""
    folder = tmp_path_factory.mktemp("generated")
    command = readme_command()
    command[command.index("--path") + 1] = str(DEFAULT_SPEC)
    command[command.index("--output-path") + 1] = str(folder / PACKAGE)
    bin_dir = Path(sys.executable).parent
    command[0] = str(bin_dir / command[0])
    # The generator formats its output with ruff, found on PATH.
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert unknown_warnings(output) == [], output
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(folder))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def test_unknown_warning_check_can_fail():
    output = ("Generating x\nWARNING parsing GET /x within default.\n\nCannot parse response\n\n{\n  \"a\": 1\n}\n"
              "WARNING parsing PUT /databases/{databaseId}/config within databases.\n\n"
              "Unsupported content type application/yaml\n\n{\n}\n")
    assert unknown_warnings(output) == ["WARNING parsing GET /x within default.", "Cannot parse response"]


def test_one_class_per_enum_and_no_numbered_types(generated):
    """Each vocabulary is one class; no `…Type0`/`…Type1` copies (a nullable schema without a title)."""
    models = importlib.import_module(f"{PACKAGE}.models")
    enums = [getattr(models, name) for name in models.__all__
             if isinstance(getattr(models, name), type) and issubclass(getattr(models, name), str)
             and hasattr(getattr(models, name), "__members__")]
    by_values = {}
    for enum in enums:
        by_values.setdefault(tuple(sorted(m.value for m in enum)), []).append(enum.__name__)
    assert [names for names in by_values.values() if len(names) > 1] == []
    assert [n for n in models.__all__ if re.search(r"Type\d", n)] == []


# -- driving it ----------------------------------------------------------------------------


def operation_module(operation: Operation):
    api = importlib.import_module(f"{PACKAGE}.api")
    for info in pkgutil.walk_packages(api.__path__, prefix=f"{PACKAGE}.api."):
        if info.name.rsplit(".", 1)[1] == operation.operation_id:
            return importlib.import_module(info.name)
    raise AssertionError(f"the generated client has no module for {operation}")


def unique(text: str) -> str:
    return f"{text}-{uuid.uuid4().hex[:8]}"


@dataclass
class Session:
    """The walk's state: the clients, and the ids of what it created (by path parameter name)."""

    models: object
    client: object
    anonymous: object
    wrong_media_type: object
    non_admin: object = None
    spent: object = None                 # a key whose budget `exhaust` spends
    exhaust: object = None
    ids: dict = field(default_factory=dict)
    created: list = field(default_factory=list)  # path parameter names in creation order
    parsed_errors: set = field(default_factory=set)

    def body(self, operation: Operation, **changes):
        """The operation's request example, with fresh names and the walk's ids, as its model."""
        data = operation.example
        for name in LEFT_OUT_OF_EXAMPLES.get(operation.body_schema, ()):
            data.pop(name, None)
        if "name" in data:
            data["name"] = unique(str(data["name"]))
        for key in data:
            if key in self.ids:
                data[key] = str(self.ids[key])
        data.update(changes)
        return getattr(self.models, operation.body_schema).from_dict(data)

    def call(self, operation: Operation, *, client=None, ids=None, body=None, use_example=True, query=None,
             headers=None):
        module = operation_module(operation)
        parameters = inspect.signature(module.sync_detailed).parameters
        kwargs = {"client": client or self.client, **(query or {}), **(headers or {})}
        for name in operation.path_params:
            python_name = next(p for p in parameters if p.replace("_", "") == name.lower())
            value = (ids or {}).get(name, self.ids.get(name))
            assert value is not None, (f"{operation}: no operation creates a `{name}` (a POST on the path "
                                       f"before it); tell the walk where one comes from")
            kwargs[python_name] = value
        if operation.body_schema:
            kwargs["body"] = body if body is not None else self.body(operation)
        return module.sync_detailed(**kwargs)

    def expect_success(self, operation: Operation, response):
        status, schema = operation.success
        assert response.status_code == status, f"{operation}: {response.status_code} {response.content[:500]!r}"
        if schema is None:
            assert response.parsed is None, operation
            return response.parsed
        if schema.get("type") == "string":
            assert response.headers["content-type"].startswith(schema["mediaType"]), operation
            return response.content.decode()
        if schema.get("type") == "array":
            model = getattr(self.models, schema["items"]["$ref"].rsplit("/", 1)[1])
            assert isinstance(response.parsed, list), operation
            assert all(isinstance(item, model) for item in response.parsed), operation
        else:
            model = getattr(self.models, schema["$ref"].rsplit("/", 1)[1])
            assert isinstance(response.parsed, model), f"{operation}: {response.parsed!r}"
        return response.parsed

    def expect_error(self, operation: Operation, response, status: str, code: str):
        assert str(int(response.status_code)) == status, (
            f"{operation}: expected {status} {code}, got {response.status_code} {response.content[:500]!r}")
        assert status in operation.spec["responses"], f"{operation}: {status} is not documented"
        assert response.headers["content-type"] == "application/json", operation
        error = response.parsed
        assert isinstance(error, self.models.Error), f"{operation}: {error!r}"
        assert error.error == self.models.ErrorError(code), f"{operation}: {error.error} {error.message}"
        assert error.message and error.to_dict() == json.loads(response.content), operation
        self.parsed_errors.add(status)


def creation_order(operations):
    """The creating operations, each after those whose ids it needs (in its path or its body)."""
    pending = [op for op in operations if op.creates]
    minted = {op.creates for op in pending}

    def needs(op: Operation) -> set:
        return set(op.path_params) | (set(op.example if op.body_schema else ()) & minted)

    available, ordered = set(), []
    while pending:
        ready = next((op for op in pending if needs(op) <= available), None)
        assert ready is not None, f"no creation order for {[str(op) for op in pending]}"
        pending.remove(ready)
        available.add(ready.creates)
        ordered.append(ready)
    return ordered


def deletion_order(operations, created):
    """Deletes, innermost first: more path parameters first, then what was created last."""
    deletes = [op for op in operations if op.method == "delete"]
    return sorted(deletes, key=lambda op: (-len(op.path_params), -op.path.count("/"),
                                           -created.index(op.path_params[-1])))


# -- provoking the documented errors --------------------------------------------------------


def breaking_field(operation: Operation) -> tuple[str, dict]:
    """A top-level string field of the request body, and its schema (for 400 and 413)."""
    schema = resolve(SPEC["components"]["schemas"][operation.body_schema])
    for name, sub in schema.get("properties", {}).items():
        sub = resolve(sub)
        # Not an enum nor a formatted string: the model would refuse to hold a wrong one.
        if sub.get("type") == "string" and not {"enum", "format", "readOnly"} & set(sub):
            return name, sub
    if schema.get("additionalProperties"):
        return "padding", {}
    return None, {}  # only formatted fields (a buildId): see oversized_body


def oversized_body(session: Session, operation: Operation):
    """The example body with one field over the size limit.

    A body of formatted fields only (a uuid) cannot hold a long string through the model's
    constructor, so the string is put on the built model, which sends it as it is.
    """
    name, _ = breaking_field(operation)
    if name is not None:
        return session.body(operation, **{name: "x" * TOO_LARGE})
    body = session.body(operation)
    field_name = next(f.name for f in attrs.fields(type(body)) if f.name != "additional_properties")
    setattr(body, field_name, _Oversized("x" * TOO_LARGE))
    return body


class _Oversized(str):
    """A long string the model serialises as it is, whether it expects text, a uuid or an enum."""

    @property
    def value(self) -> str:
        return str(self)


def provoke_generic(session: Session, operation: Operation, status: str):
    code = GENERIC_CODES[status]
    if status == "401":
        response = session.call(operation, client=session.anonymous)
    elif status == "404":
        response = session.call(operation, ids={operation.path_params[-1]: uuid.uuid4()})
    elif status == "400" and operation.path_params:
        response = session.call(operation, ids={operation.path_params[-1]: "not-a-uuid"})
    elif status == "400" and "cursor" in operation.query_params:
        response = session.call(operation, query={"cursor": "not-a-cursor"})
    elif status == "400":
        name, schema = breaking_field(operation)
        response = session.call(operation, body=session.body(operation, **{name: "x" * (schema["maxLength"] + 1)}))
    elif status == "413":
        response = session.call(operation, body=oversized_body(session, operation))
    elif status == "429":
        session.exhaust()
        response = session.call(operation, client=session.spent)
    else:  # 415
        response = session.call(operation, client=session.wrong_media_type)
    session.expect_error(operation, response, status, code)


def by_id(operation_id: str) -> Operation:
    return next(op for op in OPERATIONS if op.operation_id == operation_id)


def _name_taken_on_create(session: Session, operation: Operation):
    """Create again under the name the walk's resource has now."""
    read = next(op for op in OPERATIONS if op.method == "get" and op.path.endswith("{%s}" % operation.creates))
    name = session.expect_success(read, session.call(read)).name
    return session.call(operation, body=session.body(operation, name=name)), "name_taken"


def _schema_in_use(session: Session, operation: Operation):
    body = session.models.ConnectionUpdate(available_schemas=["a-schema-no-database-uses"])
    return session.call(operation, body=body), "schema_in_use"


def _connection_in_use(session: Session, operation: Operation):
    return session.call(operation), "connection_in_use"


def _database_name_taken(session: Session, operation: Operation):
    other = session.expect_success(by_id("create_database"), session.call(by_id("create_database")))
    try:
        return session.call(operation, body=session.models.DatabaseUpdate(name=other.name)), "name_taken"
    finally:
        session.expect_success(by_id("delete_database"),
                               session.call(by_id("delete_database"), ids={"databaseId": other.id}))


def _idempotency_key_reused(session: Session, operation: Operation):
    """One Idempotency-Key for two requests: the first is answered, the second (another body) is a 409."""
    key = str(uuid.uuid4())
    session.expect_success(operation, session.call(operation, headers={"idempotency_key": key}))
    field_name, _ = breaking_field(operation)
    other = session.body(operation, **{field_name: unique("another")})
    return session.call(operation, body=other, headers={"idempotency_key": key}), "idempotency_key_reused"


def _precondition_failed(session: Session, operation: Operation):
    """If-Match with an ETag the resource never had."""
    return session.call(operation, headers={"if_match": '"0000000000000000"'}), "precondition_failed"


def _plan_required(session: Session, operation: Operation):
    body = session.models.DatabaseUpdate(reflexdb_custom_domain=unique("shop"))
    return session.call(operation, body=body), "plan_required"


# -- lifecycle state --------------------------------------------------------------------------
#
# The walk runs no lifecycle worker, so a lifecycle action would leave its database in a
# transitional status forever. Before each action the walk puts the database in a status the
# contract's matrix (app.domain.lifecycle.MATRIX) allows the action from, as the engine would
# have left it, and gives it a succeeded build for the actions that need one.


def lifecycle_action(operation: Operation) -> str | None:
    """The lifecycle action an operation requests (POST /databases/{databaseId}/<action>), or None."""
    if operation.method != "post" or not operation.path.startswith("/databases/{databaseId}/"):
        return None
    wire = operation.path.rsplit("/", 1)[1]
    return next((a for a, name in lifecycle.WIRE_NAMES.items() if name == wire), None)


def set_status(session: "Session", status: str) -> None:
    with db.connection_context():
        Database.update(status=status, desired_state=None, operation=None).where(
            Database.id == session.ids["databaseId"]).execute()


def status_allowing(action: str, cells=("Y",)) -> str:
    return next(s for s in lifecycle.STABLE + lifecycle.TRANSITIONAL if lifecycle.MATRIX[s][action] in cells)


def status_refusing(action: str) -> str:
    return next(s for s in lifecycle.STABLE if lifecycle.MATRIX[s][action] is None)


def give_a_build(session: "Session") -> None:
    """A succeeded build of the walk's database, as the engine leaves one (for img actions)."""
    if "buildId" in session.ids:
        return
    with db.connection_context():
        database = Database.get_by_id(session.ids["databaseId"])
        build = Build.create(customer=database.customer_id, database=database.id, status="succeeded",
                             compute_type="BUILD_GENERAL1_LARGE", artifact={"tables": []}, log="build succeeded\n")
    session.ids["buildId"] = build.id


def prepare(session: "Session", operation: Operation) -> None:
    """Put the store where `operation` succeeds, for the operations that depend on lifecycle state."""
    action = lifecycle_action(operation)
    if action is not None:
        set_status(session, status_allowing(action, ("Y", "img")))
    elif operation.operation_id == "delete_database":
        set_status(session, "registered")


def _invalid_state(session: "Session", operation: Operation):
    action = lifecycle_action(operation) or "delete"
    set_status(session, status_refusing(action))
    return session.call(operation), "invalid_state"


def _not_an_admin(session: "Session", operation: Operation):
    return session.call(operation, client=session.non_admin), "forbidden"


# The errors that need a particular state: (operationId, status) -> how to get there.
SCENARIOS = {
    ("create_connection", "409"): _name_taken_on_create,
    ("update_connection", "409"): _schema_in_use,
    ("delete_connection", "409"): _connection_in_use,
    ("create_database", "409"): _name_taken_on_create,
    ("update_database", "409"): _database_name_taken,
    ("update_database", "403"): _plan_required,
}


SCENARIOS.update({(op.operation_id, "409"): _invalid_state for op in OPERATIONS
                  if lifecycle_action(op) and "409" in op.spec["responses"]})
SCENARIOS[("delete_database", "409")] = _invalid_state
SCENARIOS.update({(op.operation_id, "403"): _not_an_admin for op in OPERATIONS
                  if op.path.startswith("/admin/") and "403" in op.spec["responses"]})
SCENARIOS.update({(op.operation_id, "412"): _precondition_failed for op in OPERATIONS
                  if "412" in op.spec["responses"]})
for _op in OPERATIONS:
    if _op.method == "post" and "409" in _op.spec["responses"]:
        SCENARIOS.setdefault((_op.operation_id, "409"), _idempotency_key_reused)


def test_scenarios_and_exclusions_name_documented_answers():
    for operation_id, status in [*SCENARIOS, *NOT_PROVOKED_FOR]:
        assert status in by_id(operation_id).spec["responses"], f"{operation_id} does not document {status}"


# -- the session ----------------------------------------------------------------------------


@pytest.fixture
def walk_budgets(monkeypatch):
    """The server's budgets (set before `live_server` starts it), and a way to spend one."""
    from app.api.ratelimit import API_BUDGET, SOURCE_BUDGET, RateLimited, RateLimiter

    # A queue of its own: other test runs share this Redis, and nothing here runs the engine.
    queue = f"walk-{uuid.uuid4().hex[:8]}"
    for name, value in {"REFLEXDB_REDIS_URL": REDIS_URL, "REFLEXDB_QUEUE_NAME": queue,
                        "REFLEXDB_RATE_LIMIT": WALK_BUDGET, "REFLEXDB_SOURCE_RATE_LIMIT": WALK_BUDGET}.items():
        monkeypatch.setenv(name, value)
    limiter = RateLimiter({API_BUDGET: WALK_BUDGET, SOURCE_BUDGET: WALK_BUDGET}, redis_url=REDIS_URL,
                          namespace=queue)

    def exhaust(key: str) -> None:
        try:
            limiter.spend(key[len("rmk_"):].split(".")[0], (API_BUDGET,), cost=limiter.items[API_BUDGET].amount)
        except RateLimited:
            pass   # already spent
    return exhaust


def test_generated_client_walks_every_operation(generated, walk_budgets, live_server, customer):
    import httpx

    models = importlib.import_module(f"{PACKAGE}.models")

    def as_text(request: httpx.Request):
        request.headers["Content-Type"] = "text/plain"

    # The walk's account may use the admin routes; a second, ordinary one gets their 403.
    with db.connection_context():
        Customer.update(is_admin=True).where(Customer.id == customer[0].id).execute()
    key = customer[1]
    options = {"base_url": live_server, "raise_on_unexpected_status": True, "timeout": httpx.Timeout(30)}
    session = Session(
        models=models,
        client=generated.AuthenticatedClient(token=key, **options),
        anonymous=generated.Client(**options),
        wrong_media_type=generated.AuthenticatedClient(
            token=key, httpx_args={"event_hooks": {"request": [as_text]}}, **options),
        non_admin=generated.AuthenticatedClient(token=make_customer("Not an admin")[1], **options),
    )
    # Rate limits come before everything else the key may do: another account's key will do.
    spent_key = make_customer("Out of budget")[1]
    session.spent = generated.AuthenticatedClient(token=spent_key, **options)
    session.exhaust = lambda: walk_budgets(spent_key)
    session.ids["customerId"] = customer[0].id
    called = set()

    # 1. Create what the other operations need, each from its example.
    for operation in creation_order(OPERATIONS):
        body = session.body(operation)
        created = session.expect_success(operation, session.call(operation, body=body))
        session.ids[operation.creates] = created.id
        session.created.append(operation.creates)
        called.add(operation.operation_id)

    give_a_build(session)

    # 2. Everything else but the deletes.
    for operation in OPERATIONS:
        if operation.operation_id not in called and operation.method != "delete":
            prepare(session, operation)
            session.expect_success(operation, session.call(operation))
            called.add(operation.operation_id)

    # 3. The documented errors, while every resource exists.
    for operation in OPERATIONS:
        for status in operation.error_statuses:
            if status in GENERIC_CODES:
                provoke_generic(session, operation, status)
            elif (operation.operation_id, status) in SCENARIOS:
                response, code = SCENARIOS[operation.operation_id, status](session, operation)
                session.expect_error(operation, response, status, code)

    # 4. The deletes, innermost first; what was deleted is gone.
    for operation in deletion_order(OPERATIONS, session.created):
        prepare(session, operation)
        session.expect_success(operation, session.call(operation))
        called.add(operation.operation_id)
    listed = session.call(by_id("list_connections")).parsed
    assert [c.id for c in listed] == []

    assert called == {op.operation_id for op in OPERATIONS}
    documented = {s for op in OPERATIONS for s in op.error_statuses}
    assert session.parsed_errors == documented - set(NOT_PROVOKED), "an error answer was never parsed"


def test_readme_snippet_runs(generated, live_server, customer):
    """The README's "Use it from Python" lines, run as written against the server."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme.split("## Use it from Python", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert 'base_url="http://127.0.0.1:8080/v1"' in code and 'token="rmk_..."' in code
    code = (code.replace('base_url="http://127.0.0.1:8080/v1"', f'base_url="{live_server}"')
            .replace('token="rmk_..."', f'token="{customer[1]}"'))
    printed = []
    exec(compile(code, "README.md", "exec"), {"print": printed.append})  # noqa: S102
    # The message names the schema left out and the database using it (contract §5.2).
    assert len(printed) == 1 and "'shop'" in printed[0] and "'live'" in printed[0], printed
