from app.domain import health


def get_health():
    return health.check(), 200
