from app.api.pagination import paginated
from app.domain import audit


def list_audit_entries(user, limit, cursor=None, resource_type=None, resource_id=None, since=None, until=None):
    return paginated(audit.list_entries(user, limit=limit, cursor=cursor, resource_type=resource_type,
                                        resource_id=resource_id, since=since, until=until))
