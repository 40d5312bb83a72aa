"""Connexion operation handlers: operationId == function name, one service call each.

The spec's operationIds resolve relative to this package, so every handler is
re-exported here.
"""

from app.api.handlers.admin import (  # noqa: F401
    create_build_credit_adjustment,
    get_build_credits,
    update_customer_plan,
)
from app.api.handlers.audit_log import list_audit_entries  # noqa: F401
from app.api.handlers.builds import (  # noqa: F401
    get_database_build,
    get_database_build_logs,
    list_database_builds,
)
from app.api.handlers.connections import (  # noqa: F401
    create_connection,
    delete_connection,
    get_connection,
    list_connections,
    update_connection,
)
from app.api.handlers.databases import (  # noqa: F401
    create_database,
    delete_database,
    get_database,
    list_databases,
    update_database,
)
from app.api.handlers.health import get_health, get_healthz, get_readyz  # noqa: F401
from app.api.handlers.lifecycle import (  # noqa: F401
    get_database_instance,
    pause_database,
    pause_database_replication,
    provision_database,
    rebuild_database,
    reconfigure_database,
    redeploy_database,
    reload_database,
    resize_database,
    resume_database,
    resume_database_replication,
    terminate_database,
)
from app.api.handlers.management_keys import (  # noqa: F401
    create_management_key,
    delete_management_key,
    list_management_keys,
)
from app.api.handlers.query_keys import create_api_key, delete_api_key, list_api_keys  # noqa: F401
from app.api.handlers.schema_configs import (  # noqa: F401
    delete_database_config,
    get_database_config,
    put_database_config,
)
