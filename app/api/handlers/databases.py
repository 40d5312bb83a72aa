from app.api.pagination import paginated
from app.domain import databases


def list_databases(user, limit, cursor=None, connection_id=None, status=None):
    return paginated(databases.list_databases(user, limit=limit, cursor=cursor,
                                              connection_id=connection_id, status=status))


def create_database(user, body):
    created = databases.create_database(user, body)
    return created, 201, {"Location": f"/v1/databases/{created['id']}"}


def get_database(user, database_id):
    return databases.get_database(user, database_id), 200


def update_database(user, database_id, body):
    return databases.update_database(user, database_id, body), 200


def delete_database(user, database_id):
    databases.delete_database(user, database_id)
    return None, 204
