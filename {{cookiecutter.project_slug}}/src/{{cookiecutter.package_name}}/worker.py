"""The `worker` command: RQ workers on the project's queues.

It runs RQ's `SimpleWorker`, which performs jobs in its own process instead of forking a
child per job. RQ's default `Worker` forks for isolation, and pays for it with roughly ten
milliseconds per job; the handlers here are the project's own short functions, so the
isolation buys little and the fork costs most of the throughput (see the benchmarks in the
README). Run several worker processes to use several cores.
"""

from __future__ import annotations

import logging
import os

import redis
from rq import SimpleWorker
from rq.serializers import JSONSerializer

from .config import Settings
from .connection import connect
from .events import QUEUES
from .intake import open_queues
from .registry import registry

log = logging.getLogger(__name__)

# How often a worker looks for jobs abandoned by a crashed worker and requeues them.
MAINTENANCE_INTERVAL_SECONDS = 15


def build_worker(
    settings: Settings,
    queue_names: list[str] | None = None,
    connection: redis.Redis | None = None,
) -> SimpleWorker:
    """A worker for `queue_names` (default: all, orders first), handlers loaded."""
    registry.load(settings.handler_modules)
    if connection is None:
        connection = connect(settings)
    queues = open_queues(connection)
    names = queue_names or list(QUEUES)
    unknown = sorted(set(names) - set(queues))
    if unknown:
        raise ValueError(f"unknown queue(s) {', '.join(unknown)}; choose from {', '.join(QUEUES)}")
    return SimpleWorker(
        [queues[name] for name in names],
        connection=connection,
        serializer=JSONSerializer,
        maintenance_interval=MAINTENANCE_INTERVAL_SECONDS,
    )


def run(settings: Settings, queue_names: list[str] | None = None, burst: bool = False) -> None:
    worker = build_worker(settings, queue_names)
    names = ", ".join(queue.name for queue in worker.queues)
    log.info("worker %s listening on %s (pid %d)", worker.name, names, os.getpid())
    # RQ narrates every job at INFO; the handlers' own lines say what matters.
    rq_level = "DEBUG" if settings.log_level == "DEBUG" else "WARNING"
    worker.work(burst=burst, with_scheduler=True, logging_level=rq_level)
