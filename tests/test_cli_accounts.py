"""Account recovery with the `reflexdb` command: keys create/list/revoke, customers list/set-plan.

The command runs as operators run it, on the same PostgreSQL store the test app serves, so what
it does is checked through the API.
"""

from __future__ import annotations

import json
import uuid

import pytest

from app.storage.database import db
from app.storage.models import Customer
from tests.conftest import PG_URL, Client
from tests.support import assert_error
from tests.test_cli import run


@pytest.fixture
def env(stack):
    return {"DATABASE_URL": PG_URL, "REFLEXDB_SECRET_KEYS": stack.settings.secret_keys[0]}


def test_an_account_whose_last_key_was_revoked_gets_back_in(stack, client, customer, env):
    customer_id = str(customer[0].id)
    (only_key,) = client.get("/account/management-keys").json()
    assert client.delete(f"/account/management-keys/{only_key['id']}").status_code == 204
    assert_error(client.get("/connections"), 401, "unauthorized")

    created = run(["keys", "create", "--customer", customer_id, "--name", "rescue"], env)
    key = json.loads(created.stdout)
    assert created.stdout.count("\n") == 1
    assert (key["customerId"], key["name"], key["revokedAt"]) == (customer_id, "rescue", None)
    assert key["key"].startswith(f"rmk_{key['keyId']}.")
    rescued = Client(stack.app, key["key"])
    assert rescued.get("/connections").status_code == 200

    listed = json.loads(run(["keys", "list", "--customer", customer_id], env).stdout)
    assert [(k["id"], k["name"], k["revokedAt"] is not None) for k in listed] == [
        (only_key["id"], only_key["name"], True), (key["id"], "rescue", False)]
    assert all("key" not in k for k in listed)
    assert key["key"].split(".", 1)[1] not in json.dumps(listed)

    revoked = run(["keys", "revoke", "--customer", customer_id, key["id"]], env)
    assert (revoked.stdout, revoked.stderr) == ("", f"revoked {key['id']}\n")
    assert_error(rescued.get("/connections"), 401, "unauthorized")


def test_keys_create_names_the_key_by_default(customer, env):
    key = json.loads(run(["keys", "create", "--customer", str(customer[0].id)], env).stdout)
    assert key["name"] == "operator key"


def test_customers_list_and_set_plan(customer, env):
    customer_id = str(customer[0].id)
    listed = json.loads(run(["customers", "list"], env).stdout)
    assert [(c["id"], c["name"], c["plan"], c["isAdmin"]) for c in listed] == [(customer_id, "Acme", "free", False)]
    assert set(listed[0]) == {"id", "name", "plan", "isAdmin", "createdAt"}

    changed = run(["customers", "set-plan", customer_id, "teams"], env)
    assert json.loads(changed.stdout) == {"id": customer_id, "plan": "teams"}
    with db.connection_context():
        assert Customer.get_by_id(customer_id).plan == "teams"


@pytest.mark.parametrize("args,message", [
    (["keys", "create", "--customer", "{unknown}"], "error: customer {unknown} was not found\n"),
    (["keys", "list", "--customer", "{unknown}"], "error: customer {unknown} was not found\n"),
    (["keys", "revoke", "--customer", "{customer}", "{unknown}"],
     "error: management key {unknown} was not found\n"),
    (["customers", "set-plan", "{unknown}", "pro"], "error: customer {unknown} was not found\n"),
    (["keys", "create", "--customer", "nope"], "error: customer id must be a UUID, got 'nope'\n"),
])
def test_mistakes_exit_2_with_a_message(customer, env, args, message):
    names = {"unknown": str(uuid.uuid4()), "customer": str(customer[0].id)}
    result = run([a.format(**names) for a in args], env, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (2, "", message.format(**names))


def test_a_plan_outside_the_list_is_refused(customer, env):
    result = run(["customers", "set-plan", str(customer[0].id), "gold"], env, check=False)
    assert result.returncode == 2 and result.stdout == "" and "invalid choice: 'gold'" in result.stderr
