from app.api.conditional import if_match
from app.api.pagination import paginated
from app.domain import databases


def list_databases(user, limit, cursor=None, connection_id=None, status=None):
    return paginated(databases.list_databases(user, limit=limit, cursor=cursor,
                                              connection_id=connection_id, status=status))


def create_database(user, body):
    created = databases.create_database(user, body)
    return created, 201, {"Location": f"/v1/databases/{created['id']}", "ETag": databases.etag(created)}


def get_database(user, database_id):
    found = databases.get_database(user, database_id)
    return found, 200, {"ETag": databases.etag(found)}


def update_database(user, database_id, body):
    updated = databases.update_database(user, database_id, body, if_match=if_match())
    return updated, 200, {"ETag": databases.etag(updated)}


def delete_database(user, database_id):
    databases.delete_database(user, database_id, if_match=if_match())
    return None, 204
