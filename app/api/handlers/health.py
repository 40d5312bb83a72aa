from app.domain import health


def get_health():
    return health.check(), 200


def get_healthz():
    return health.alive(), 200


def get_readyz():
    return health.ready(), 200
