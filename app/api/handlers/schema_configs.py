from app.domain import schema_configs


def get_database_config(user, database_id):
    return schema_configs.get_config(user, database_id), 200


def put_database_config(user, database_id, body):
    return schema_configs.put_config(user, database_id, body), 200


def delete_database_config(user, database_id):
    schema_configs.delete_config(user, database_id)
    return None, 204
