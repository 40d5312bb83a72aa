from app.domain import lifecycle


def list_database_builds(user, database_id):
    return lifecycle.list_builds(user, database_id), 200


def get_database_build(user, database_id, build_id):
    return lifecycle.get_build(user, database_id, build_id), 200


def get_database_build_logs(user, database_id, build_id):
    return lifecycle.build_log(user, database_id, build_id), 200, {"Content-Type": "text/plain"}
