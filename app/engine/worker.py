"""`reflexdb worker`: the Huey consumer that runs engine steps, plus the reconciler thread.

Stopping a worker (SIGTERM/SIGINT) stops taking work and lets running steps
finish; instances keep running (they are their own processes) and the next
worker adopts them.
"""

from __future__ import annotations

import logging

from app.config import Settings
from app.domain.environment import Environment
from app.engine.context import Engine
from app.engine.executor import Executor
from app.engine.reconciler import Reconciler

log = logging.getLogger(__name__)


def run_worker(settings: Settings, environment: Environment) -> int:
    """Serve engine tasks until told to stop; returns the exit status.

    `environment` is the configured services' (app.bootstrap.configure_services).
    """
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    queue, runtime = environment.engine, environment.instance_keys
    engine = Engine(settings=settings, runtime=runtime, wake=queue.wake)
    executor = Executor(engine)
    queue.set_handler(executor.run_database)
    consumer = queue.huey.create_consumer(
        workers=settings.worker_threads, worker_type="thread", periodic=False,
        # SQLite storage is polled: wait at most a second for a wake-up.
        initial_delay=0.1, max_delay=1.0, check_worker_health=True)
    reconciler = Reconciler(engine)
    reconciler.start()
    log.info("engine worker started: %d step thread(s), queue %r on %s", settings.worker_threads,
             settings.queue_name, type(queue.huey.storage).__name__)
    try:
        consumer.run()   # returns on SIGINT/SIGTERM, after running steps finish
    finally:
        reconciler.stop()
    return 0


__all__ = ["run_worker"]
