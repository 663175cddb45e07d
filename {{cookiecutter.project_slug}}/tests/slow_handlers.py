"""Handlers for the fault tests: slow enough to be interrupted, and recorded in Redis.

Loaded into real worker processes with `TW_HANDLER_MODULES=slow_handlers`. An event's
`data.object.sleep` says how long `slow` takes. Every order event runs `first` (quick),
then `slow`; each records its runs, so a test can tell a handler that ran twice from one
that was interrupted and ran again.
"""

import functools
import os
import time

import redis

from {{ cookiecutter.package_name }}.events import Event
from {{ cookiecutter.package_name }}.routing import on

STARTS_KEY = "test:slow:starts"  # hash: event id -> times `slow` started
FINISHES_KEY = "test:slow:finishes"  # hash: event id -> times `slow` finished
FIRST_KEY = "test:slow:first"  # hash: event id -> times `first` ran
PID_KEY = "test:slow:pid"  # hash: event id -> pid of the worker that last started `slow`
FINISHED_AT_KEY = "test:slow:finished_at"  # hash: event id -> unix time `slow` finished


@functools.cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["REDIS_URL"])


@on("order.*")
def first(event: Event) -> None:
    _redis().hincrby(FIRST_KEY, event.id, 1)


@on("order.*")
def slow(event: Event) -> None:
    client = _redis()
    with client.pipeline() as pipe:
        pipe.hincrby(STARTS_KEY, event.id, 1)
        pipe.hset(PID_KEY, event.id, os.getpid())
        pipe.execute()
    time.sleep(float(event.object.get("sleep", 0)))
    with client.pipeline() as pipe:
        pipe.hincrby(FINISHES_KEY, event.id, 1)
        pipe.hset(FINISHED_AT_KEY, event.id, repr(time.time()))
        pipe.execute()


def counts(connection: redis.Redis, key: str) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in connection.hgetall(key).items()}
