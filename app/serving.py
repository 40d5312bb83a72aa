"""Serving the API: the checks that refuse a broken start, the app factory servers load, and
the gunicorn worker that stops without dropping requests.

gunicorn's master (gunicorn.conf.py, `on_starting`) and `reflexdb serve` run the checks
before any worker starts, each in a fresh interpreter (`python -m app.serving`): building the
app in the master would import all of it there, and the workers it forks at a reload (HUP)
would keep that old code.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Mapping

import uvicorn
from gunicorn.arbiter import Arbiter
from uvicorn_worker import UvicornWorker

from app.config import Settings, SettingsError
from app.logs import lean_records

# gunicorn's exit status for "the application failed to load": its master stops instead of
# starting the worker again and again.
APP_LOAD_ERROR = 4
# How long the checks may take (a store that does not answer fails sooner: CONNECT_TIMEOUT).
CHECK_TIMEOUT_SECONDS = 120
# `reflexdb serve` checks the spec before it migrates: a release that cannot serve changes nothing.
NO_STORE_CHECK = "--no-store-check"
# How often a stopping worker looks whether its last connections are closed.
DRAIN_POLL_SECONDS = 0.05


class CannotServe(Exception):
    """The app cannot be built as configured; the message says why, in one line."""


def check_ready_to_serve(settings: Settings, *, store: bool = True) -> None:
    """Raise StoreNotReady or CannotServe unless the store is reachable and migrated (not
    checked with `store=False`) and the API builds from the spec (every operationId resolving
    to a handler)."""
    from app import create_app
    from app.bootstrap import check_migrated
    from app.storage.database import make_database

    if store:
        database = make_database(settings.database_url, settings.data_dir, pool_size=1)
        try:
            check_migrated(database)
        finally:
            # A pooled database keeps the connection it checked with: let none outlive the check.
            getattr(database, "close_all", database.close)()

    try:
        _start_up(create_app(settings))
    except Exception as exc:  # noqa: BLE001 - whatever stops the build, the answer is one line
        raise CannotServe(f"cannot build the API from {settings.spec_path}: {_reason(exc)}") from None


def run_checks(environ: Mapping[str, str] | None = None, *, store: bool = True) -> list[str]:
    """Run the checks in a fresh interpreter; returns the lines saying what is wrong (none: ready)."""
    env = dict(os.environ if environ is None else environ)
    argv = [sys.executable, "-m", "app.serving", *([] if store else [NO_STORE_CHECK])]
    try:
        done = subprocess.run(argv, env=env, capture_output=True,
                              text=True, timeout=CHECK_TIMEOUT_SECONDS, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return [f"the start-up checks did not finish in {CHECK_TIMEOUT_SECONDS} s"]
    if done.returncode == 0:
        return []
    # Library log lines (Connexion's, the app's) may come before ours: keep ours only.
    lines = [line.removeprefix("reflexdb: ") for line in done.stderr.splitlines()
             if line.startswith("reflexdb: ")]
    return lines or [f"the start-up checks failed (exit status {done.returncode}): "
                     f"{(done.stderr.strip().splitlines() or ['no output'])[-1]}"]


def asgi_app():
    """The control plane for ASGI servers (`app.serving:asgi_app()`, wsgi.py): a refused
    setting is one line and exit status 4 (gunicorn then stops), not a traceback per worker."""
    from app import create_app

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        _print_problems(exc.problems)
        sys.exit(APP_LOAD_ERROR)
    lean_records()
    return create_app(settings)


def main(argv: list[str] | None = None) -> int:
    """`python -m app.serving [--no-store-check]`: run the checks here; one line per problem on stderr."""
    from app.bootstrap import StoreNotReady

    argv = sys.argv[1:] if argv is None else argv
    try:
        check_ready_to_serve(Settings.from_env(), store=NO_STORE_CHECK not in argv)
    except SettingsError as exc:
        _print_problems(exc.problems)
        return 2
    except (StoreNotReady, CannotServe) as exc:
        _print_problems([str(exc)])
        return 1
    return 0


def _start_up(asgi) -> None:
    """Run the app's ASGI start-up and shut-down, as a server does before its first request:
    Connexion resolves the handlers and builds its middleware there, not in create_app."""
    import asyncio

    async def lifespan() -> None:
        events = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
        sent: list[dict] = []

        async def receive() -> dict:
            return next(events)

        async def send(message: dict) -> None:
            sent.append(message)

        await asgi({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
        failed = [m for m in sent if m["type"].endswith(".failed")]
        if failed:
            raise RuntimeError(failed[0].get("message") or "the app's start-up failed")

    asyncio.run(lifespan())


class _DrainingServer(uvicorn.Server):
    """uvicorn's server with a shutdown that drops no request it could still answer.

    uvicorn stops listening and, in the same instant, closes every connection that holds no
    request being answered: one accepted a moment earlier whose request is still in the socket,
    and an idle keep-alive one that a client is writing to. Those requests are lost ("connection
    reset", a 502 behind a proxy; uvicorn issue #2757). Here, once it stops listening, every
    response says `Connection: close` (clients then take their next request elsewhere), and the
    connections get until the keep-alive time (gunicorn's `keepalive`) to bring their last
    request before uvicorn's own shutdown closes what is left.
    """

    draining = False

    async def shutdown(self, sockets=None) -> None:
        self.draining = True
        for server in self.servers:
            server.close()
        deadline = time.monotonic() + self.config.timeout_keep_alive
        while self.server_state.connections and time.monotonic() < deadline:
            await asyncio.sleep(DRAIN_POLL_SECONDS)
        await super().shutdown(sockets=sockets)


def _closing_connections_while(draining, app):
    """ASGI middleware: while `draining()`, every response carries `Connection: close`."""

    async def asgi(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)

        async def send_closing(message):
            if message["type"] == "http.response.start" and draining():
                message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
            await send(message)

        return await app(scope, receive, send_closing)

    return asgi


class DrainingUvicornWorker(UvicornWorker):
    """gunicorn's uvicorn worker (`worker_class` in gunicorn.conf.py), draining at shutdown:
    a reload (HUP), a stop (TERM) or a restart loses no request (tests/test_zero_downtime.py)."""

    async def _serve(self) -> None:
        # UvicornWorker._serve, with the draining server in front of the app.
        server = _DrainingServer(config=self.config)
        self.config.app = _closing_connections_while(lambda: server.draining, self.wsgi)
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)


def _print_problems(lines: list[str]) -> None:
    for line in lines:
        print(f"reflexdb: {line}", file=sys.stderr, flush=True)


def _reason(exc: Exception) -> str:
    """One line saying what is wrong, with the place in the file for a YAML error."""
    import yaml

    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"not valid YAML: {exc.problem} (line {mark.line + 1}, column {mark.column + 1})"
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
