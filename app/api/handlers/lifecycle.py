from app.domain import lifecycle


def get_database_instance(user, database_id):
    return lifecycle.instance_view(user, database_id), 200


def provision_database(user, database_id):
    return lifecycle.request_action(user, database_id, "provision"), 202


def rebuild_database(user, database_id):
    return lifecycle.request_action(user, database_id, "rebuild"), 202


def reconfigure_database(user, database_id):
    return lifecycle.request_action(user, database_id, "reconfigure"), 202


def redeploy_database(user, database_id, body):
    return lifecycle.request_action(user, database_id, "redeploy", body), 202


def resize_database(user, database_id, body):
    return lifecycle.request_action(user, database_id, "resize", body), 202


def pause_database(user, database_id):
    return lifecycle.request_action(user, database_id, "pause"), 202


def resume_database(user, database_id):
    return lifecycle.request_action(user, database_id, "resume"), 202


def terminate_database(user, database_id):
    return lifecycle.request_action(user, database_id, "terminate"), 202


def reload_database(user, database_id):
    return lifecycle.request_action(user, database_id, "reload"), 202


def pause_database_replication(user, database_id):
    return lifecycle.request_action(user, database_id, "pause_replication"), 202


def resume_database_replication(user, database_id):
    return lifecycle.request_action(user, database_id, "resume_replication"), 202
