"""Account administration: plans and build credits (admin keys), and operator recovery (the CLI)."""

from __future__ import annotations

from app.domain import catalog, credits, management_keys, pagination, schemas
from app.domain.errors import Forbidden, InvalidRequest, NotFound
from app.domain.ids import parse_uuid
from app.domain.principal import Principal
from app.storage.database import db
from app.storage.models import BuildCreditEntry, Customer

# -- admin routes ------------------------------------------------------------------


def set_plan(principal: Principal, customer_id, payload: dict) -> dict:
    """PATCH /admin/customers/{id}/plan."""
    _require_admin(principal)
    data = schemas.load(schemas.PlanUpdateSchema(), payload)
    return set_customer_plan(customer_id, data["plan"])


def adjust_build_credits(principal: Principal, customer_id, payload: dict) -> dict:
    """POST /admin/customers/{id}/build-credits: grant (amount > 0) or deduct (< 0) credits."""
    _require_admin(principal)
    data = schemas.load(schemas.BuildCreditAdjustmentSchema(), payload)
    if (data["reason"] or "").startswith(credits.BUILD_REASON_PREFIX):
        raise InvalidRequest(f"reason: must not start with {credits.BUILD_REASON_PREFIX!r}, which marks "
                             "the lines builds write")
    with db.transaction():
        customer = credits.lock_customer(parse_uuid(customer_id, "customer id"))
        if customer is None:
            raise NotFound(f"customer {customer_id} was not found")
        entry = BuildCreditEntry.create(customer=customer.id, amount=data["amount"],
                                        reason=data["reason"], expires_at=data["expires_at"])
        entry.total_adjustment = credits.total_adjustment(customer.id)
        entry.balance = credits.balance(customer)
    return schemas.BuildCreditEntryOut().dump(entry)


def _require_admin(principal: Principal) -> None:
    # Checked before the customer is looked up: a non-admin learns nothing about other accounts.
    if not principal.is_admin:
        raise Forbidden("this route needs an admin key (an account created with --admin)")


# -- operator recovery (reflexdb customers / keys) -----------------------------------


def list_customers() -> list[dict]:
    return schemas.CustomerOut(many=True).dump(Customer.select().order_by(Customer.created_at, Customer.id))


def set_customer_plan(customer_id, plan: str) -> dict:
    if plan not in catalog.PLANS:
        raise InvalidRequest(f"plan must be one of {', '.join(catalog.PLANS)}")
    with db.transaction():
        customer = _customer(customer_id)
        Customer.update(plan=plan).where(Customer.id == customer.id).execute()
    return {"id": str(customer.id), "plan": plan}


def create_management_key(customer_id, name: str = "operator key") -> dict:
    """A new management key for the account: the way back in when its last key was revoked."""
    customer = _customer(customer_id)
    return management_keys.create_key(_as(customer), {"name": name})


def list_management_keys(customer_id) -> list[dict]:
    """Every management key of the account, revoked ones included, oldest first (page by page)."""
    principal = _as(_customer(customer_id))
    keys, cursor = [], None
    while True:
        page = management_keys.list_keys(principal, limit=pagination.MAX_LIMIT, cursor=cursor)
        keys += page.items
        if page.next_cursor is None:
            return keys
        cursor = page.next_cursor


def revoke_management_key(customer_id, key_object_id) -> None:
    management_keys.revoke_key(_as(_customer(customer_id)), key_object_id)


def _customer(customer_id) -> Customer:
    customer = Customer.get_or_none(Customer.id == parse_uuid(customer_id, "customer id"))
    if customer is None:
        raise NotFound(f"customer {customer_id} was not found")
    return customer


def _as(customer: Customer) -> Principal:
    """The operator acting on the customer's behalf, for the services that take a principal."""
    return Principal(customer_id=customer.id, key_id="operator", is_admin=customer.is_admin,
                     plan=customer.plan)
