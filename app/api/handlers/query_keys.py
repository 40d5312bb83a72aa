from app.api.pagination import paginated
from app.domain import query_keys


def list_api_keys(user, database_id, limit, cursor=None):
    return paginated(query_keys.list_keys(user, database_id, limit=limit, cursor=cursor))


def create_api_key(user, database_id, body):
    created = query_keys.create_key(user, database_id, body)
    return created, 201, {"Location": f"/v1/databases/{database_id}/api-keys/{created['id']}"}


def delete_api_key(user, database_id, api_key_id):
    query_keys.revoke_key(user, database_id, api_key_id)
    return None, 204
