from app.api.conditional import if_match
from app.api.pagination import paginated
from app.domain import connections


def list_connections(user, limit, cursor=None):
    return paginated(connections.list_connections(user, limit=limit, cursor=cursor))


def create_connection(user, body):
    created = connections.create_connection(user, body)
    return created, 201, {"Location": f"/v1/connections/{created['id']}", "ETag": connections.etag(created)}


def get_connection(user, connection_id):
    found = connections.get_connection(user, connection_id)
    return found, 200, {"ETag": connections.etag(found)}


def update_connection(user, connection_id, body):
    updated = connections.update_connection(user, connection_id, body, if_match=if_match())
    return updated, 200, {"ETag": connections.etag(updated)}


def delete_connection(user, connection_id):
    connections.delete_connection(user, connection_id, if_match=if_match())
    return None, 204
