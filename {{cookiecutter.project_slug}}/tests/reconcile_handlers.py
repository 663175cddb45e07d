"""Handlers for the reconciliation tests: each order transition a handler ran for is
counted in Redis, where the test reads it.

Loaded with `TW_HANDLER_MODULES=reconcile_handlers` (or the `handler_modules` fixture).
With `TEST_CALL_API=1` the handler also reads the order from the API, and notes any
`ApiError` it meets (a 429 that reached it, say) before raising it.
"""

import functools
import os

import redis

from {{ cookiecutter.package_name }}.api import ApiError, api
from {{ cookiecutter.package_name }}.events import Event
from {{ cookiecutter.package_name }}.routing import on

RUNS_KEY = "test:transitions"  # hash: "<order>:<status>" -> handler runs
SYNTHETIC_KEY = "test:synthetic"  # set of "<order>:<status>" delivered by a synthetic event
SAW_KEY = "test:saw"  # set of "<order>:<status>": the order's status as some run saw it
API_ERRORS_KEY = "test:api_errors"  # list of "<status> <code>"


@functools.cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["REDIS_URL"])


@on("order.*")
def record_transition(event: Event) -> None:
    order = event.object
    transition = f"{order['id']}:{event.type.partition('.')[2]}"
    if os.environ.get("TEST_CALL_API") == "1":
        try:
            api.get_order(order["id"])
        except ApiError as exc:
            _redis().rpush(API_ERRORS_KEY, f"{exc.status} {exc.code}")
            raise
    pipe = _redis().pipeline()
    pipe.hincrby(RUNS_KEY, transition, 1)
    pipe.sadd(SAW_KEY, f"{order['id']}:{order['status']}")
    if event.synthetic:
        pipe.sadd(SYNTHETIC_KEY, transition)
    pipe.execute()


def runs(connection: redis.Redis) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in connection.hgetall(RUNS_KEY).items()}


def saw(connection: redis.Redis) -> set[str]:
    """ "<order>:<status>" for every status of an order some handler run saw."""
    return {member.decode() for member in connection.smembers(SAW_KEY)}


def synthetic(connection: redis.Redis) -> set[str]:
    return {member.decode() for member in connection.smembers(SYNTHETIC_KEY)}
