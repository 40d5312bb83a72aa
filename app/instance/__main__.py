"""Run one instance: `python -m app.instance --settings PATH --secrets-fd N [--listen-fd M]`.

Secrets (the source password, the admin token that guards /admin/*) are read
from the pipe or file descriptor N, never from argv or the environment: see
app/contracts/instance_secrets.py. With `--listen-fd`, the instance serves on
the listening socket its starter bound and passed (gunicorn's `fd://M`), so no
other process can take the port between choosing it and serving on it.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys

from app.contracts.instance_secrets import (
    LISTEN_FD_OPTION,
    SECRETS_FD_OPTION,
    SecretsError,
    read_secrets,
)
from app.contracts.instance_settings import InstanceSettings, SettingsError
from app.instance.process import InstanceApplication


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, read settings and secrets, and serve until stopped."""
    parser = argparse.ArgumentParser(prog="python -m app.instance",
                                     description="Serve one ReflexDB instance.")
    parser.add_argument("--settings", required=True, help="path of the instance settings JSON")
    parser.add_argument(SECRETS_FD_OPTION, type=int, required=True, metavar="N",
                        help="file descriptor to read the secrets JSON from (a pipe; 0 = stdin)")
    parser.add_argument(LISTEN_FD_OPTION, type=int, metavar="M",
                        help="an already bound listening socket to serve on, instead of the "
                             "settings' host and port")
    args = parser.parse_args(argv)

    # Read first, so the pipe is drained and closed whatever happens next.
    try:
        secrets = read_secrets(args.secrets_fd)
    except SecretsError as exc:
        print(f"reflexdb instance: {exc}", file=sys.stderr)
        return 2
    try:
        settings = InstanceSettings.load(args.settings)
    except SettingsError as exc:
        print(f"reflexdb instance: {exc}", file=sys.stderr)
        return 2
    # gunicorn's master keeps them in memory: a re-forked worker has them too.
    application = InstanceApplication(settings, source_password=secrets.source_password,
                                      admin_token=secrets.admin_token,
                                      settings_path=args.settings, listen_fd=args.listen_fd)
    try:
        application.run()
    except SystemExit as exc:   # gunicorn's master ends with sys.exit(status)
        return exc.code if isinstance(exc.code, int) else 1
    return 0


def exit_now(status: int) -> None:
    """End the process without the interpreter's teardown.

    By then the readers and the writer are gone and the store directory is
    removed; what is left is finalising every module and object of the
    master (Flask, the query engine…), 50–150 ms of a stop that nobody waits
    for but the runtime. The log is flushed first.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


if __name__ == "__main__":
    exit_now(main())
