from app.api.limits import config_validation_slot
from app.domain import schema_configs


def get_database_config(user, database_id):
    return schema_configs.get_config(user, database_id), 200


def put_database_config(user, database_id, body):
    # Validation is bounded but CPU-bound: it never takes every request thread.
    with config_validation_slot():
        return schema_configs.put_config(user, database_id, body), 200


def delete_database_config(user, database_id):
    schema_configs.delete_config(user, database_id)
    return None, 204
