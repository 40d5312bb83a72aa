"""Admin routes: an account's plan and build credits, admin keys only."""

from __future__ import annotations

import uuid

import pytest

from app.storage.database import db
from app.storage.models import BuildCreditEntry, Customer
from tests.conftest import Client, make_customer
from tests.support import ISO_Z, UUID, assert_error


@pytest.fixture
def admin(stack) -> Client:
    return Client(stack.app, make_customer("Operators", is_admin=True)[1])


def plan_of(customer_id) -> str:
    with db.connection_context():
        return Customer.get_by_id(customer_id).plan


@pytest.mark.both_stores
class TestSetPlan:
    def test_admin_sets_a_plan(self, admin, client, customer):
        response = admin.patch(f"/admin/customers/{customer[0].id}/plan", {"plan": "teams"})
        assert (response.status_code, response.json()) == (200, {"id": str(customer[0].id), "plan": "teams"})
        assert plan_of(customer[0].id) == "teams"
        # The account's next request sees the new plan.
        assert client.get("/account/build-credits").json() == {"plan": "teams", "unlimited": True, "balance": None}

    def test_refused_to_a_non_admin_key(self, client, customer):
        response = client.patch(f"/admin/customers/{customer[0].id}/plan", {"plan": "enterprise"})
        assert response.json() == {"error": "forbidden",
                                   "message": "this route needs an admin key (an account created with --admin)"}
        assert_error(response, 403, "forbidden")
        assert plan_of(customer[0].id) == "free"

    def test_a_non_admin_learns_nothing_about_unknown_accounts(self, client):
        assert_error(client.patch(f"/admin/customers/{uuid.uuid4()}/plan", {"plan": "pro"}), 403, "forbidden")

    def test_unknown_customer_is_404(self, admin):
        unknown = uuid.uuid4()
        assert_error(admin.patch(f"/admin/customers/{unknown}/plan", {"plan": "pro"}), 404, "not_found",
                     f"customer {unknown} was not found")

    @pytest.mark.parametrize("body,fragment", [
        ({"plan": "gold"}, "'gold' is not one of"), ({}, "plan: is required"), ({"plan": None}, "plan"),
        ({"plan": "pro", "isAdmin": True}, "'isAdmin'"),
    ])
    def test_bad_bodies_are_400(self, admin, customer, body, fragment):
        assert_error(admin.patch(f"/admin/customers/{customer[0].id}/plan", body), 400, "invalid_request", fragment)

    def test_malformed_id_is_400(self, admin):
        assert_error(admin.patch("/admin/customers/nope/plan", {"plan": "pro"}), 400, "invalid_request", "UUID")

    def test_without_a_key_is_401(self, client, customer):
        assert_error(client.patch(f"/admin/customers/{customer[0].id}/plan", {"plan": "pro"}, key=None),
                     401, "unauthorized")


@pytest.mark.both_stores
class TestBuildCredits:
    def test_grant(self, admin, client, customer):
        response = admin.post(f"/admin/customers/{customer[0].id}/build-credits",
                              {"amount": 50, "reason": "launch promotion", "expiresAt": "2030-01-01T00:00:00Z"})
        assert response.status_code == 201, response.text
        body = response.json()
        assert UUID.match(body.pop("id")) and ISO_Z.match(body.pop("createdAt"))
        assert body == {"customerId": str(customer[0].id), "amount": 50, "reason": "launch promotion",
                        "expiresAt": "2030-01-01T00:00:00.000000Z", "totalAdjustment": 50, "balance": 150}
        assert client.get("/account/build-credits").json()["balance"] == 150

    def test_deduction_and_totals(self, admin, client, customer, database):
        path = f"/admin/customers/{customer[0].id}/build-credits"
        admin.post(path, {"amount": 10})
        client.post(f"/databases/{database['id']}/provision")        # a build: not an adjustment
        body = admin.post(path, {"amount": -3, "reason": None}).json()
        assert {k: body[k] for k in ("amount", "reason", "expiresAt", "totalAdjustment", "balance")} == {
            "amount": -3, "reason": None, "expiresAt": None, "totalAdjustment": 7, "balance": 106}
        with db.connection_context():
            assert BuildCreditEntry.select().where(BuildCreditEntry.customer == customer[0].id).count() == 3

    def test_paid_accounts_show_no_balance(self, admin, customer):
        admin.patch(f"/admin/customers/{customer[0].id}/plan", {"plan": "pro"})
        body = admin.post(f"/admin/customers/{customer[0].id}/build-credits", {"amount": 5}).json()
        assert (body["totalAdjustment"], body["balance"]) == (5, None)

    def test_refused_to_a_non_admin_key(self, client, customer):
        response = client.post(f"/admin/customers/{customer[0].id}/build-credits", {"amount": 1000})
        assert_error(response, 403, "forbidden", "admin key")
        with db.connection_context():
            assert BuildCreditEntry.select().count() == 0

    def test_unknown_customer_is_404(self, admin):
        assert_error(admin.post(f"/admin/customers/{uuid.uuid4()}/build-credits", {"amount": 1}), 404, "not_found")

    @pytest.mark.parametrize("body,fragment", [
        ({"amount": 0}, "amount: must not be 0"),
        ({"amount": 1_000_001}, "maximum"), ({"amount": -1_000_001}, "minimum"),
        ({"amount": 1.5}, "amount"), ({}, "amount: is required"),
        ({"amount": 1, "reason": ""}, "reason"), ({"amount": 1, "reason": "r" * 501}, "reason"),
        ({"amount": -1, "expiresAt": "2030-01-01T00:00:00Z"}, "expiresAt: applies to grants only"),
        ({"amount": 1, "expiresAt": "2001-01-01T00:00:00Z"}, "expiresAt: must be in the future"),
        ({"amount": 1, "expiresAt": "2030-01-01T00:00:00"}, "expiresAt"),
        ({"amount": 1, "reason": "build: provision of database x"}, "reason: must not start with 'build: '"),
        ({"amount": 1, "note": "x"}, "'note'"),
    ])
    def test_bad_bodies_are_400(self, admin, customer, body, fragment):
        response = admin.post(f"/admin/customers/{customer[0].id}/build-credits", body)
        assert_error(response, 400, "invalid_request", fragment)
        with db.connection_context():
            assert BuildCreditEntry.select().count() == 0
