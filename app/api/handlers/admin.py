from app.domain import accounts, credits


def get_build_credits(user):
    return credits.account_credits(user), 200


def update_customer_plan(user, customer_id, body):
    return accounts.set_plan(user, customer_id, body), 200


def create_build_credit_adjustment(user, customer_id, body):
    return accounts.adjust_build_credits(user, customer_id, body), 201
