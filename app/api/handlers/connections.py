from app.api.pagination import paginated
from app.domain import connections


def list_connections(user, limit, cursor=None):
    return paginated(connections.list_connections(user, limit=limit, cursor=cursor))


def create_connection(user, body):
    created = connections.create_connection(user, body)
    return created, 201, {"Location": f"/v1/connections/{created['id']}"}


def get_connection(user, connection_id):
    return connections.get_connection(user, connection_id), 200


def update_connection(user, connection_id, body):
    return connections.update_connection(user, connection_id, body), 200


def delete_connection(user, connection_id):
    connections.delete_connection(user, connection_id)
    return None, 204
