"""The `reflexdb` command: migrate, create customers, manage secrets, serve."""

from __future__ import annotations

import argparse
import json
import os
import sys

from cryptography.fernet import Fernet
from peewee import DatabaseError

from app.bootstrap import StoreNotReady, configure_services
from app.config import Settings, SettingsError
from app.domain.customers import create_customer
from app.domain.errors import DomainError
from app.domain.secrets import rotate_secrets
from app.resources import GUNICORN_CONFIG
from app.storage.database import db, migrate

# Exit codes: what the user asked for is wrong (bad setting, bad argument,
# refused by a rule) vs. something around it failed (store down, not migrated).
EXIT_USAGE = 2
EXIT_FAILURE = 1


def _services(*, require_migrated: bool = True) -> Settings:
    settings = Settings.from_env()
    configure_services(settings, require_migrated=require_migrated)
    return settings


def cmd_migrate(_args) -> int:
    _services(require_migrated=False)
    applied = migrate()
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""),
          file=sys.stderr)
    return 0


def cmd_customers_create(args) -> int:
    _services()
    with db.connection_context():
        customer, key = create_customer(args.name, plan=args.plan, is_admin=args.admin)
    # Exactly one JSON object on stdout, so scripts can parse it.
    print(json.dumps({"customerId": str(customer.id), "key": key}))
    return 0


def cmd_secrets_generate_key(_args) -> int:
    print(Fernet.generate_key().decode())
    return 0


def cmd_secrets_rotate(_args) -> int:
    """Re-encrypt every stored secret under the newest key (the first of REFLEXDB_SECRET_KEYS)."""
    _services()
    with db.connection_context():
        result = rotate_secrets()
    columns = ", ".join(f"{name} {count}" for name, count in result.rotated.items())
    print(f"re-encrypted {result.total} secret(s) ({columns}); "
          f"{result.already_current} already under the newest key", file=sys.stderr)
    return 0


# -- the engine: `worker`, and `serve` (API + worker) ------------------------

def cmd_worker(_args) -> int:
    """Run the lifecycle engine: job consumer plus reconciler (app/engine/worker.py)."""
    from app.engine.worker import run_worker
    from app.logs import configure_logging
    from app.metrics import use_multiprocess_dir

    settings = Settings.from_env()
    configure_logging(settings.log_level)
    # Before anything imports prometheus_client: the engine's counters go to the files the
    # API's /metrics on this host adds up (app/metrics.py).
    use_multiprocess_dir(settings.data_dir)
    return run_worker(settings, configure_services(settings, require_migrated=True))


def cmd_serve(args) -> int:
    """Migrate, then run the API (gunicorn, ASGI worker) and one engine worker, supervised."""
    from app.engine.supervisor import Child, supervise
    from app.logs import configure_logging
    from app.serving import run_checks

    Settings.from_env()  # a refused setting is one line and exit status 2, before anything runs
    # Refuse a broken release here, in one line, before it migrates the store: the supervisor
    # would start a gunicorn that refuses to start again and again.
    problems = run_checks(store=False)
    if problems:
        return _fail(problems, EXIT_FAILURE)
    cmd_migrate(args)
    env = dict(os.environ, REFLEXDB_DATA_DIR=str(Settings.from_env().data_dir.resolve()))
    # The gunicorn settings inside the package: the same from a checkout or an installed wheel.
    api = [sys.executable, "-m", "gunicorn", "--config", GUNICORN_CONFIG]
    if args.bind:
        api += ["--bind", args.bind]
    if args.workers:
        api += ["--workers", str(args.workers)]
    children = [Child("the API (gunicorn)", api)]
    if not args.no_worker:
        children.append(Child("the engine worker", [sys.executable, "-m", "app.cli", "worker"]))
    configure_logging(Settings.from_env().log_level)
    # The children run where the command was started, so relative paths in settings mean the same.
    return supervise(children, cwd=os.getcwd(), env=env)


# -- account recovery: customers list / set-plan, keys create / list / revoke -------
# Operators use these when an account has no working management key left.


def _account_command(action) -> int:
    """Run `action` on the store; one JSON document on stdout, or `error: ...` and exit 2."""
    from app.domain.errors import DomainError
    from app.storage.database import db

    _services()
    try:
        with db.connection_context():
            result = action()
    except DomainError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    if result is not None:
        print(json.dumps(result))
    return 0


def cmd_customers_list(_args) -> int:
    from app.domain import accounts

    return _account_command(accounts.list_customers)


def cmd_customers_set_plan(args) -> int:
    from app.domain import accounts

    return _account_command(lambda: accounts.set_customer_plan(args.customer_id, args.plan))


def cmd_keys_create(args) -> int:
    from app.domain import accounts

    return _account_command(lambda: accounts.create_management_key(args.customer, args.name))


def cmd_keys_list(args) -> int:
    from app.domain import accounts

    return _account_command(lambda: accounts.list_management_keys(args.customer))


def cmd_keys_revoke(args) -> int:
    from app.domain import accounts

    status = _account_command(lambda: accounts.revoke_management_key(args.customer, args.key_object_id))
    if status == 0:
        print(f"revoked {args.key_object_id}", file=sys.stderr)
    return status


def add_account_commands(sub, customers_sub) -> None:
    """`customers list|set-plan` and `keys create|list|revoke`."""
    customers_sub.add_parser("list", help="list every account (JSON)").set_defaults(func=cmd_customers_list)
    set_plan = customers_sub.add_parser("set-plan", help="set an account's plan")
    set_plan.add_argument("customer_id", metavar="ID")
    set_plan.add_argument("plan", metavar="PLAN", choices=("free", "pro", "teams", "enterprise"))
    set_plan.set_defaults(func=cmd_customers_set_plan)

    keys = sub.add_parser("keys", help="an account's management keys (recovery)")
    keys_sub = keys.add_subparsers(dest="action", required=True)
    create = keys_sub.add_parser("create", help="mint a management key; prints it once (JSON)")
    create.add_argument("--customer", required=True, metavar="ID")
    create.add_argument("--name", default="operator key")
    create.set_defaults(func=cmd_keys_create)
    listing = keys_sub.add_parser("list", help="the account's keys, without secrets (JSON)")
    listing.add_argument("--customer", required=True, metavar="ID")
    listing.set_defaults(func=cmd_keys_list)
    revoke = keys_sub.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("--customer", required=True, metavar="ID")
    revoke.add_argument("key_object_id", metavar="KEY_OBJECT_ID", help="the key's `id` (not its keyId)")
    revoke.set_defaults(func=cmd_keys_revoke)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reflexdb", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("migrate", help="apply pending database migrations").set_defaults(func=cmd_migrate)

    customers = sub.add_parser("customers", help="manage customer accounts")
    customers_sub = customers.add_subparsers(dest="action", required=True)
    create = customers_sub.add_parser("create", help="create a customer and its first management key")
    create.add_argument("--name", required=True)
    create.add_argument("--plan", default="free", choices=("free", "pro", "teams", "enterprise"))
    create.add_argument("--admin", action="store_true", help="the customer may use admin routes")
    create.set_defaults(func=cmd_customers_create)
    add_account_commands(sub, customers_sub)

    secrets = sub.add_parser("secrets", help="encryption keys for stored secrets")
    secrets_sub = secrets.add_subparsers(dest="action", required=True)
    secrets_sub.add_parser("generate-key", help="print a new key for REFLEXDB_SECRET_KEYS").set_defaults(
        func=cmd_secrets_generate_key)
    secrets_sub.add_parser("rotate", help="re-encrypt every stored secret with the newest key").set_defaults(
        func=cmd_secrets_rotate)

    serve = sub.add_parser("serve", help="migrate, then run the API (gunicorn) and an engine worker")
    serve.add_argument("--bind", help="host:port (default 127.0.0.1:8080 or REFLEXDB_BIND)")
    serve.add_argument("--workers", type=int, help="API worker processes (default: CPU count)")
    serve.add_argument("--no-worker", action="store_true",
                       help="the API only (run `reflexdb worker` elsewhere)")
    serve.set_defaults(func=cmd_serve)
    sub.add_parser("worker", help="run the lifecycle engine: job consumer and reconciler").set_defaults(
        func=cmd_worker)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; every error is one line on stderr and a non-zero exit, never a traceback."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SettingsError as exc:
        return _fail(exc.problems, EXIT_USAGE)
    except DomainError as exc:
        return _fail([exc.message], EXIT_USAGE)
    except StoreNotReady as exc:
        return _fail([str(exc)], EXIT_FAILURE)
    except DatabaseError as exc:
        return _fail([f"the store failed: {_first_line(exc)}"], EXIT_FAILURE)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the promise is one line, whatever went wrong
        command = " ".join(filter(None, (args.command, getattr(args, "action", None))))
        return _fail([f"{command} failed: {type(exc).__name__}: {_first_line(exc)}"], EXIT_FAILURE)


def _fail(lines: list[str], code: int) -> int:
    for line in lines:
        print(f"reflexdb: {line}", file=sys.stderr)
    return code


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
