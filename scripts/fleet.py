"""Make a large account on PostgreSQL: one connection with N databases, inserted in bulk.

For the fleet-scale tests (tests/api/test_fleet_scale.py) and benchmarks at 10, 10,000
and 100,000 databases. As a script, it creates a customer, prints its management key
and the connection id, on the store DATABASE_URL names (migrated first, e.g. `reflexdb migrate`):

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/reflexdb_bench \\
        .venv/bin/python scripts/fleet.py --databases 100000

As a module (the services configured, e.g. by app.bootstrap.configure_services):

    connection_id = make_connection(customer_id)
    add_databases(customer_id, connection_id, 100_000)
"""

from __future__ import annotations

import argparse
import sys
import uuid

from app.domain import connections
from app.domain.environment import current
from app.domain.principal import Principal
from app.storage.database import db, is_sqlite
from app.storage.models import utcnow

FLEET_SCHEMAS = ("s0", "s1", "s2")
NAME_PREFIX = "g"
# Rows made in one statement share a timestamp in groups of this size, so the
# (created_at, id) order is exercised on ties as well.
TIED = 7

# Database i (first…last) is named g<i>, uses schema schemas[i % len(schemas)]
# (0-based) and takes the connection's sync policy, as POST /databases would.
_INSERT = """
INSERT INTO databases (id, customer_id, connection_id, name, mysql_db, sync_mode, sync_interval,
                       instance_size, log_level, status, tags, region, created_at, updated_at,
                       generation, attempts, replication_paused)
SELECT gen_random_uuid(), c.customer_id, c.id, %(prefix)s || i,
       (%(schemas)s::text[])[1 + i %% %(schema_count)s], c.sync_mode, c.sync_interval,
       'nano', 'info', 'registered', '[]', %(region)s, t.at, t.at, 0, 0, false
FROM generate_series(%(first)s, %(last)s) AS i
CROSS JOIN connections c
CROSS JOIN LATERAL (SELECT %(start)s::timestamp + ((i - %(first)s) / %(tied)s) * interval '1 millisecond'
                    AS at) t
WHERE c.id = %(connection)s AND c.customer_id = %(customer)s
"""


def make_connection(customer_id, *, name: str = "fleet", schemas=FLEET_SCHEMAS) -> str:
    """A connection of `customer_id` exposing `schemas`, made by the service POST /connections calls."""
    principal = Principal(customer_id=customer_id, key_id="fleet-script")
    created = connections.create_connection(principal, {
        "name": name, "mysqlHost": "fleet.example.com", "availableSchemas": list(schemas),
        "mysqlUser": "reader", "mysqlPassword": uuid.uuid4().hex,
    })
    return created["id"]


def add_databases(customer_id, connection_id, count: int, *, first: int = 1,
                  schemas=FLEET_SCHEMAS) -> None:
    """Insert databases g<first>…g<first+count-1> on the connection in ONE INSERT … SELECT generate_series.

    They are created now (the newest of the account, in name order), in the connection's
    sync policy, status `registered`. PostgreSQL only. The table is analysed afterwards,
    as autovacuum would do soon after such a load, so plans are those of a settled store.
    """
    if is_sqlite():
        raise SystemExit("fleets are made on PostgreSQL (generate_series, gen_random_uuid)")
    with db.atomic():
        db.execute_sql(_INSERT, {
            "prefix": NAME_PREFIX, "schemas": list(schemas), "schema_count": len(schemas),
            "region": current().region, "first": first, "last": first + count - 1,
            "start": utcnow(), "tied": TIED, "connection": str(connection_id), "customer": str(customer_id),
        })
    db.execute_sql("ANALYZE databases")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", type=int, default=10_000, help="how many (default 10000)")
    parser.add_argument("--customer-name", default="Fleet")
    args = parser.parse_args(argv)

    from app.bootstrap import configure_services
    from app.config import Settings
    from app.domain.customers import create_customer

    configure_services(Settings.from_env(), require_migrated=True)
    with db.connection_context():
        customer, key = create_customer(args.customer_name, plan="teams")
        connection_id = make_connection(customer.id)
        add_databases(customer.id, connection_id, args.databases)
    print(f"management key: {key}")
    print(f"connection id:  {connection_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
