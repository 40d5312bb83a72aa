"""Build credits: what provision and rebuild spend (docs/lifecycle.md, "Build credits").

The free plan includes a number of builds (REFLEXDB_FREE_PLAN_BUILD_CREDITS); paid plans are
unlimited. An account's ledger (`build_credit_entries`) holds the administrators' grants and
deductions and one -1 per build started on the free plan. Grants may expire: builds spend the
credits that expire soonest first, then the plan's allowance, so an expiring grant takes with
it only what is left of it.
"""

from __future__ import annotations

import datetime as dt
import uuid

from app.domain.environment import current
from app.domain.errors import BuildCreditsExhausted
from app.domain.principal import Principal
from app.storage.database import is_sqlite
from app.storage.models import BuildCreditEntry, Customer, utcnow

# Plans whose builds are not counted.
UNLIMITED_PLANS = ("pro", "teams", "enterprise")
# The reason of the ledger line a build writes; admin lines carry the admin's reason.
BUILD_REASON_PREFIX = "build: "


def is_unlimited(plan: str) -> bool:
    return plan in UNLIMITED_PLANS


def balance(customer: Customer, now: dt.datetime | None = None) -> int | None:
    """Credits the account can spend now; None when its plan is unlimited."""
    if is_unlimited(customer.plan):
        return None
    entries = (BuildCreditEntry.select(BuildCreditEntry.amount, BuildCreditEntry.expires_at,
                                       BuildCreditEntry.created_at)
               .where(BuildCreditEntry.customer == customer.id)
               .order_by(BuildCreditEntry.created_at, BuildCreditEntry.id))
    return remaining_credits([(e.created_at, e.amount, e.expires_at) for e in entries],
                             current().free_plan_build_credits, now or utcnow())


def remaining_credits(entries, allowance: int, now: dt.datetime) -> int:
    """Replay a ledger, oldest first: [(created_at, amount, expires_at)] -> credits left at `now`.

    A spend takes from the unexpired grants that expire soonest, then from the allowance,
    and beyond that runs a debt that later grants pay off first. May be negative.
    """
    grants: list[list] = []            # [expires_at or None, credits left], unexpired
    left_in_allowance, debt = allowance, 0

    def drop_expired(moment):
        grants[:] = [g for g in grants if g[0] is None or g[0] > moment]

    for created_at, amount, expires_at in entries:
        drop_expired(created_at)
        if amount > 0:
            paid = min(debt, amount)
            debt -= paid
            if amount - paid:
                grants.append([expires_at, amount - paid])
            continue
        need = -amount
        grants.sort(key=lambda g: (g[0] is None, g[0] or dt.datetime.max))
        for grant in grants:
            taken = min(grant[1], need)
            grant[1] -= taken
            need -= taken
        grants[:] = [g for g in grants if g[1] > 0]
        taken = min(left_in_allowance, need)
        left_in_allowance -= taken
        debt += need - taken
    drop_expired(now)
    return left_in_allowance + sum(g[1] for g in grants) - debt


def lock_customer(customer_id) -> Customer | None:
    """The customer row, locked until the transaction ends, so two spends cannot both see one credit."""
    query = Customer.select().where(Customer.id == customer_id)
    if not is_sqlite():
        query = query.for_update()
    return query.first()


def spend_build_credit(customer_id: uuid.UUID, action: str, database_id) -> None:
    """Spend one credit for a build in the caller's transaction; 403 when none is left."""
    customer = lock_customer(customer_id)
    if is_unlimited(customer.plan):
        return
    left = balance(customer)
    if left < 1:
        raise BuildCreditsExhausted(
            f"no build credit left: the {customer.plan} plan includes "
            f"{current().free_plan_build_credits} builds and this account has {max(left, 0)} left; "
            "upgrade the plan or ask an administrator for credits"
        )
    BuildCreditEntry.create(customer=customer.id, amount=-1,
                            reason=f"{BUILD_REASON_PREFIX}{action} of database {database_id}")


def total_adjustment(customer_id) -> int:
    """The sum of the administrators' grants and deductions on the account (builds left out)."""
    entries = BuildCreditEntry.select(BuildCreditEntry.amount, BuildCreditEntry.reason).where(
        BuildCreditEntry.customer == customer_id)
    return sum(e.amount for e in entries if not (e.reason or "").startswith(BUILD_REASON_PREFIX))


def account_credits(principal: Principal) -> dict:
    """GET /account/build-credits: the caller's plan and what it can still build."""
    customer = Customer.get_by_id(principal.customer_id)
    left = balance(customer)
    return {"plan": customer.plan, "unlimited": left is None, "balance": left}
