"""Build credits: spent by provision and rebuild, refused when none is left, the ledger's arithmetic."""

from __future__ import annotations

import datetime as dt

import pytest

from app.domain.credits import remaining_credits
from app.storage.database import db
from app.storage.models import BuildCreditEntry, Customer
from tests.conftest import Client, make_customer
from tests.lifecycle.conftest import set_state, stored_database
from tests.support import assert_error


def entries(customer_id) -> list[tuple[int, str | None]]:
    with db.connection_context():
        rows = (BuildCreditEntry.select().where(BuildCreditEntry.customer == customer_id)
                .order_by(BuildCreditEntry.created_at))
        return [(row.amount, row.reason) for row in rows]


@pytest.mark.both_stores
class TestSpending:
    def test_provision_and_rebuild_spend_one_each(self, client, customer, database, credits_allowance):
        credits_allowance(3)
        assert client.get("/account/build-credits").json() == {"plan": "free", "unlimited": False, "balance": 3}
        assert client.post(f"/databases/{database['id']}/provision").status_code == 202
        set_state(database, status="running")
        assert client.post(f"/databases/{database['id']}/rebuild").status_code == 202
        assert client.get("/account/build-credits").json() == {"plan": "free", "unlimited": False, "balance": 1}
        assert entries(customer[0].id) == [(-1, f"build: provision of database {database['id']}"),
                                           (-1, f"build: rebuild of database {database['id']}")]

    def test_other_actions_spend_nothing(self, client, customer, database, credits_allowance):
        credits_allowance(1)
        set_state(database, status="running")
        for action in ("reconfigure", "pause"):
            assert client.post(f"/databases/{database['id']}/{action}").status_code == 202
            set_state(database, status="running")
        assert entries(customer[0].id) == []

    def test_refused_when_none_is_left(self, client, customer, connection, database, credits_allowance, engine):
        credits_allowance(1)
        other = client.post("/databases", {"connectionId": connection["id"], "name": "other",
                                           "mysqlDb": "analytics"}).json()
        assert client.post(f"/databases/{other['id']}/provision").status_code == 202
        response = client.post(f"/databases/{database['id']}/provision")
        assert response.json() == {
            "error": "build_credits_exhausted",
            "message": "no build credit left: the free plan includes 1 builds and this account has 0 left; "
                       "upgrade the plan or ask an administrator for credits",
        }
        assert_error(response, 403, "build_credits_exhausted")
        row = stored_database(database)
        assert (row.status, row.operation, row.generation) == ("registered", None, 0)
        assert len(entries(customer[0].id)) == 1
        assert engine.woken == [other["id"]]

    def test_a_refused_action_spends_nothing(self, client, customer, database, credits_allowance):
        credits_allowance(1)
        set_state(database, status="running")
        assert_error(client.post(f"/databases/{database['id']}/provision"), 409, "invalid_state")
        assert client.get("/account/build-credits").json()["balance"] == 1

    def test_a_grant_makes_room_again(self, stack, client, customer, database, credits_allowance):
        credits_allowance(0)
        assert_error(client.post(f"/databases/{database['id']}/provision"), 403, "build_credits_exhausted")
        admin = Client(stack.app, make_customer("Ops", is_admin=True)[1])
        assert admin.post(f"/admin/customers/{customer[0].id}/build-credits", {"amount": 1}).status_code == 201
        assert client.post(f"/databases/{database['id']}/provision").status_code == 202
        assert client.get("/account/build-credits").json()["balance"] == 0

    @pytest.mark.parametrize("plan", ["pro", "teams", "enterprise"])
    def test_paid_plans_are_unlimited(self, client, customer, database, credits_allowance, plan):
        credits_allowance(0)
        with db.connection_context():
            Customer.update(plan=plan).where(Customer.id == customer[0].id).execute()
        assert client.get("/account/build-credits").json() == {"plan": plan, "unlimited": True, "balance": None}
        assert client.post(f"/databases/{database['id']}/provision").status_code == 202
        assert entries(customer[0].id) == []


NOW = dt.datetime(2030, 6, 1)


def at(days: float) -> dt.datetime:
    return NOW + dt.timedelta(days=days)


class TestLedger:
    """remaining_credits replays a ledger: the soonest-expiring credits are spent first."""

    def test_allowance_only(self):
        assert remaining_credits([], 100, NOW) == 100
        assert remaining_credits([(at(-2), -1, None), (at(-1), -1, None)], 100, NOW) == 98

    def test_an_expired_grant_takes_only_what_is_left_of_it(self):
        ledger = [(at(-10), 5, at(-1)), (at(-9), -1, None), (at(-8), -1, None)]
        # Two builds came out of the grant; its other 3 credits expired; the allowance is intact.
        assert remaining_credits(ledger, 10, NOW) == 10
        assert remaining_credits(ledger, 10, at(-2)) == 13

    def test_expiring_grants_are_spent_before_lasting_ones(self):
        ledger = [(at(-10), 2, None), (at(-9), 2, at(5)), (at(-8), -2, None)]
        assert remaining_credits(ledger, 0, NOW) == 2
        assert remaining_credits(ledger, 0, at(6)) == 2

    def test_a_deduction_beyond_the_balance_is_a_debt_later_grants_pay(self):
        ledger = [(at(-3), -5, None)]
        assert remaining_credits(ledger, 2, NOW) == -3
        assert remaining_credits(ledger + [(at(-2), 4, at(1))], 2, NOW) == 1
        # The grant paid the debt first; only the credit left of it expires.
        assert remaining_credits(ledger + [(at(-2), 4, at(1))], 2, at(2)) == 0

    def test_a_spend_after_a_grant_expired_comes_from_the_allowance(self):
        ledger = [(at(-10), 3, at(-5)), (at(-4), -1, None)]
        assert remaining_credits(ledger, 1, NOW) == 0


def test_two_concurrent_builds_cannot_both_spend_the_last_credit(client, customer, connection, database,
                                                                 credits_allowance, monkeypatch):
    """The customer row lock serialises spends; a slow balance read widens the window a race needs."""
    import threading
    import time

    from app.domain import credits, lifecycle
    from app.domain.principal import Principal

    credits_allowance(1)
    other = client.post("/databases", {"connectionId": connection["id"], "name": "other",
                                       "mysqlDb": "analytics"}).json()
    slow_balance = credits.balance

    def balance(*args, **kwargs):
        left = slow_balance(*args, **kwargs)
        time.sleep(0.3)
        return left

    monkeypatch.setattr(credits, "balance", balance)
    principal = Principal(customer_id=customer[0].id, key_id="test")
    outcomes = []

    def provision(database_id):
        with db.connection_context():
            try:
                outcomes.append(lifecycle.request_action(principal, database_id, "provision")["status"])
            except Exception as exc:  # noqa: BLE001 - the outcome is what is asserted
                outcomes.append(getattr(exc, "code", repr(exc)))

    threads = [threading.Thread(target=provision, args=(d["id"],)) for d in (database, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["build_credits_exhausted", "testing_connection"]
    assert len(entries(customer[0].id)) == 1
