"""Run one instance: `python -m app.instance --settings PATH`.

Secrets come from the environment only: REFLEXDB_SOURCE_PASSWORD (the source
password) and REFLEXDB_INSTANCE_ADMIN_TOKEN (guards /admin/*; admin routes
answer 401 when it is unset).
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, read settings and secrets, and serve until stopped."""
    parser = argparse.ArgumentParser(prog="python -m app.instance",
                                     description="Serve one ReflexDB instance.")
    parser.add_argument("--settings", required=True, help="path of the instance settings JSON")
    args = parser.parse_args(argv)

    from app.contracts.instance_settings import (
        ADMIN_TOKEN_ENV,
        SOURCE_PASSWORD_ENV,
        InstanceSettings,
        SettingsError,
    )
    from app.instance.process import InstanceApplication

    try:
        settings = InstanceSettings.load(args.settings)
    except SettingsError as exc:
        print(f"reflexdb instance: {exc}", file=sys.stderr)
        return 2
    # Taken out of the environment so nothing this process starts inherits them.
    password = os.environ.pop(SOURCE_PASSWORD_ENV, "")
    admin_token = os.environ.pop(ADMIN_TOKEN_ENV, None)
    InstanceApplication(settings, source_password=password, admin_token=admin_token,
                        settings_path=args.settings).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
