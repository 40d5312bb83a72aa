"""Customer accounts (created by an operator through the CLI)."""

from __future__ import annotations

from app.domain import catalog, management_keys
from app.domain.errors import InvalidRequest
from app.storage.database import db
from app.storage.models import Customer


def create_customer(name: str, plan: str = "free", is_admin: bool = False) -> tuple[Customer, str]:
    """A new customer and its first management key (the full key, shown once)."""
    if not 1 <= len(name) <= 100:
        raise InvalidRequest("name must be 1 to 100 characters")
    if plan not in catalog.PLANS:
        raise InvalidRequest(f"plan must be one of {', '.join(catalog.PLANS)}")
    with db.transaction():
        customer = Customer.create(name=name, plan=plan, is_admin=is_admin)
        _, key = management_keys.mint(customer.id, "initial key")
    return customer, key
