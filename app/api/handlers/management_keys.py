from app.api.pagination import paginated
from app.domain import management_keys


def list_management_keys(user, limit, cursor=None):
    return paginated(management_keys.list_keys(user, limit=limit, cursor=cursor))


def create_management_key(user, body):
    created = management_keys.create_key(user, body)
    return created, 201, {"Location": f"/v1/account/management-keys/{created['id']}"}


def delete_management_key(user, management_key_id):
    management_keys.revoke_key(user, management_key_id)
    return None, 204
